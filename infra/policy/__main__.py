"""CrossGuard policy pack: ``pulumi preview --policy-pack infra/policy`` (rules in ``rules.py``)."""

from pulumi_policy import (
    EnforcementLevel,
    PolicyPack,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from rules import RULES, Rule, alerts_for_subscriptions


def resource_policy(rule: Rule) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        for message in rule.check(args.resource_type, args.props):
            report_violation(message, args.urn)

    return ResourceValidationPolicy(name=rule.name, description=rule.description, validate=validate)


def validate_stack(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    for message in alerts_for_subscriptions([(r.resource_type, r.props) for r in args.resources]):
        report_violation(message)


PolicyPack(
    name="rerank-guardrails",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[resource_policy(rule) for rule in RULES]
    + [
        StackValidationPolicy(
            name="alerts-for-subscriptions",
            description="Every dead-lettered subscription is watched by an alert.",
            validate=validate_stack,
        )
    ],
)
