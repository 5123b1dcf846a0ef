"""CrossGuard policy pack: ``pulumi preview --policy-pack infra/policy`` (rules in ``rules.py``)."""

from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyPack,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from rules import RULES, STACK_RULES, Rule, StackResource


def resource_policy(rule: Rule) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        for message in rule.check(args.resource_type, args.props):
            report_violation(message, args.urn)

    return ResourceValidationPolicy(name=rule.name, description=rule.description, validate=validate)


def stack_resource(r: Any) -> StackResource:
    """CrossGuard's view of a resource (its dependencies, explicit and through inputs, and its
    options) as the rules take it."""
    opts = getattr(r, "opts", None)
    return StackResource(
        type=r.resource_type,
        urn=r.urn,
        props=r.props,
        dependencies=tuple(d.urn for d in r.dependencies or []),
        protect=bool(getattr(opts, "protect", False)),
        ignore_changes=tuple(getattr(opts, "ignore_changes", None) or ()),
    )


def stack_policy(name: str, description: str, rule: Any) -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        for message in rule([stack_resource(r) for r in args.resources]):
            report_violation(message)

    return StackValidationPolicy(name=name, description=description, validate=validate)


PolicyPack(
    name="rerank-guardrails",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[resource_policy(rule) for rule in RULES]
    + [stack_policy(name, description, rule) for name, (description, rule) in STACK_RULES.items()],
)
