"""The deployer's own AWS policy and the boundary of every role it makes (infra/aws/): parliament-
clean, enough to deploy what each stack plans, and not enough to make any role admin: a role is
created, or given policies, only with its deployer's boundary, which the deployer can neither
change nor remove, and the boundary holds exactly the results table's item reads and writes.

The policies are evaluated here by a small model of IAM's rules (explicit deny wins, then any
allow; wildcards in actions and resources; the condition operators the documents use), over the
requests each planned resource makes."""

from __future__ import annotations

import json
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest

from app.settings import REPO_ROOT, load_stack
from infra.cross_cloud import deployer_of, role_boundary_arn
from infra.plan import PlannedResource
from infra.policy import rules
from tests.unit.infra_plans import planned

pytestmark = pytest.mark.timeout(180)
POLICIES = REPO_ROOT / "infra/aws"
STACKS = ("dev", "prod", "pr-7")
DEPLOYERS = ("dev", "prod", "review")


def document(kind: str, deployer: str) -> dict[str, Any]:
    return json.loads((POLICIES / f"{kind}-{deployer}.json").read_text())


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _applies(st: dict[str, Any], action: str, resource: str, context: dict[str, str]) -> bool:
    if not any(fnmatchcase(action.lower(), a.lower()) for a in _list(st["Action"])):
        return False
    if not any(fnmatchcase(resource, r) for r in _list(st["Resource"])):
        return False
    for operator, keys in (st.get("Condition") or {}).items():
        for key, wanted in keys.items():
            have = context.get(key)
            if operator in ("ArnEquals", "StringEquals"):
                holds = have is not None and have in _list(wanted)
            elif operator in ("ArnNotEquals", "StringNotEquals"):
                holds = have is None or have not in _list(wanted)  # a missing key is "not equal"
            else:
                raise AssertionError(f"this model of IAM does not know the operator {operator}")
            if not holds:
                return False
    return True


def allows(doc: dict[str, Any], action: str, resource: str, **context: str) -> bool:
    hits = [st for st in doc["Statement"] if _applies(st, action, resource, context)]
    return not any(st["Effect"] == "Deny" for st in hits) and any(st["Effect"] == "Allow" for st in hits)


def aws_resources(stack: str) -> list[PlannedResource]:
    return [r for r in planned(stack).resources if r.custom and r.type.startswith("aws:")]


def requests(stack: str) -> list[tuple[str, str, dict[str, str]]]:
    """(action, resource ARN, condition context) for creating, updating and deleting what the stack plans."""
    s = load_stack(stack)
    assert s.cross_cloud is not None
    account, region = s.cross_cloud.aws_account_id, s.aws.region
    roles = {r.name + "-id": r.inputs for r in aws_resources(stack) if r.type == "aws:iam/role:Role"}
    roles.update({r["name"]: r for r in list(roles.values())})
    out: list[tuple[str, str, dict[str, str]]] = []
    for r in aws_resources(stack):
        i = r.inputs
        if r.type == "aws:dynamodb/table:Table":
            arn = f"arn:aws:dynamodb:{region}:{account}:table/{i['name']}"
            for verb in ("CreateTable", "DescribeTable", "UpdateTimeToLive", "DescribeTimeToLive", "TagResource"):
                out.append((f"dynamodb:{verb}", arn, {}))
            out += [(f"dynamodb:{v}", arn, {}) for v in ("UpdateContinuousBackups", "UpdateTable", "DeleteTable")]
        elif r.type == "aws:iam/role:Role":
            arn, bound = (
                f"arn:aws:iam::{account}:role/{i['name']}",
                {"iam:PermissionsBoundary": i["permissionsBoundary"]},
            )
            out += [("iam:CreateRole", arn, bound), ("iam:PutRolePermissionsBoundary", arn, bound)]
            for verb in ("GetRole", "TagRole", "UpdateAssumeRolePolicy", "ListRolePolicies", "DeleteRole"):
                out.append((f"iam:{verb}", arn, {}))
        elif r.type == "aws:iam/rolePolicy:RolePolicy":
            role = roles[i["role"]]
            arn = f"arn:aws:iam::{account}:role/{role['name']}"
            bound = {"iam:PermissionsBoundary": role["permissionsBoundary"]}
            out += [
                ("iam:PutRolePolicy", arn, bound),
                ("iam:DeleteRolePolicy", arn, bound),
                ("iam:GetRolePolicy", arn, {}),
            ]
        elif r.type == "aws:iam/policy:Policy":
            arn = f"arn:aws:iam::{account}:policy/{i['name']}"
            for verb in ("CreatePolicy", "GetPolicy", "CreatePolicyVersion", "TagPolicy", "DeletePolicy"):
                out.append((f"iam:{verb}", arn, {}))
        else:
            raise AssertionError(f"{r.type}: say which requests the deployer makes for it, and allow them")
    return out


@pytest.mark.parametrize("path", sorted(POLICIES.glob("*.json")), ids=lambda p: p.name)
def test_every_aws_policy_document_passes_parliament(path: Path) -> None:
    from parliament import analyze_policy_string

    findings = analyze_policy_string(path.read_text()).findings
    assert findings == [], [(f.issue, f.detail) for f in findings]


def test_there_is_a_deployer_and_a_boundary_for_each_deployer_and_no_other_document() -> None:
    assert sorted(p.name for p in POLICIES.glob("*.json")) == sorted(
        f"{kind}-{d}.json" for kind in ("boundary", "deployer") for d in DEPLOYERS
    )
    assert sorted({deployer_of(load_stack(s)) for s in STACKS}) == sorted(DEPLOYERS)


@pytest.mark.parametrize("stack", STACKS)
def test_the_deployer_may_make_all_the_stack_plans(stack: str) -> None:
    doc = document("deployer", deployer_of(load_stack(stack)))
    refused = [(a, arn) for a, arn, ctx in requests(stack) if not allows(doc, a, arn, **ctx)]
    assert refused == []


@pytest.mark.parametrize("stack", STACKS)
def test_every_role_the_stack_makes_carries_its_deployers_boundary_which_covers_what_the_role_does(
    stack: str,
) -> None:
    s = load_stack(stack)
    boundary = document("boundary", deployer_of(s))
    roles = [r for r in aws_resources(stack) if r.type == "aws:iam/role:Role"]
    assert roles and all(r.inputs["permissionsBoundary"] == role_boundary_arn(s) for r in roles)
    for r in aws_resources(stack):
        if r.type == "aws:iam/rolePolicy:RolePolicy":
            for st in json.loads(r.inputs["policy"])["Statement"]:
                for action in _list(st["Action"]):
                    for arn in _list(st["Resource"]):
                        assert allows(boundary, action, arn), (action, arn)


@pytest.mark.parametrize("deployer", DEPLOYERS)
def test_no_deployer_can_make_a_role_that_escapes_its_boundary(deployer: str) -> None:
    stack = {"review": "pr-7"}.get(deployer, deployer)
    s = load_stack(stack)
    assert s.cross_cloud is not None
    doc, account, region = document("deployer", deployer), s.cross_cloud.aws_account_id, s.aws.region
    own, role = role_boundary_arn(s), f"arn:aws:iam::{account}:role/rerank-{stack}-new"
    other = "rerank-dev" if deployer != "dev" else "rerank-prod"
    # Roles of its own: only with its boundary, which it cannot change or take off.
    assert allows(doc, "iam:CreateRole", role, **{"iam:PermissionsBoundary": own})
    assert not allows(doc, "iam:CreateRole", role)
    another = own.replace(f"boundary-{deployer}", "boundary-review" if deployer == "dev" else "boundary-dev")
    for boundary in (
        another,
        own.replace(f"boundary-{deployer}", "open"),
        "arn:aws:iam::aws:policy/AdministratorAccess",
    ):
        assert not allows(doc, "iam:CreateRole", role, **{"iam:PermissionsBoundary": boundary})
        assert not allows(doc, "iam:PutRolePolicy", role, **{"iam:PermissionsBoundary": boundary})
    assert not allows(doc, "iam:DeleteRolePermissionsBoundary", role)
    for verb in ("CreatePolicyVersion", "SetDefaultPolicyVersion", "DeletePolicyVersion", "DeletePolicy"):
        assert not allows(doc, f"iam:{verb}", own)
    # Nothing outside its names: another deployer's roles and tables, the core service's role, users.
    for arn in (f"arn:aws:iam::{account}:role/{other}-results-writer", f"arn:aws:iam::{account}:role/core-service"):
        assert not allows(doc, "iam:PutRolePolicy", arn, **{"iam:PermissionsBoundary": own})
        assert not allows(doc, "iam:UpdateAssumeRolePolicy", arn)
    assert not allows(doc, "dynamodb:DeleteTable", f"arn:aws:dynamodb:{region}:{account}:table/{other}-rerank-results")
    for action in ("iam:CreateUser", "iam:CreateAccessKey", "iam:AttachUserPolicy"):
        assert not allows(doc, action, f"arn:aws:iam::{account}:user/admin")
    assert not allows(doc, "iam:PassRole", role) and not allows(doc, "sts:AssumeRole", role)
    assert not allows(doc, "iam:CreatePolicy", f"arn:aws:iam::{account}:policy/rerank-boundary-{deployer}")
    # And a role with the boundary can do no more than the results table's items, whatever it is given.
    boundary = document("boundary", deployer)
    table = f"arn:aws:dynamodb:{region}:{account}:table/rerank-{stack}-rerank-results"
    assert allows(boundary, "dynamodb:PutItem", table)
    for action, arn in (("iam:CreateRole", "*"), ("dynamodb:DeleteTable", table), ("s3:GetObject", "*")):
        assert not allows(boundary, action, arn)
    assert not allows(boundary, "dynamodb:PutItem", table.replace(f"rerank-{stack}", other))


def test_the_documents_name_the_accounts_and_regions_of_the_stack_files() -> None:
    for stack in STACKS:
        s = load_stack(stack)
        assert s.cross_cloud is not None
        for kind in ("deployer", "boundary"):
            text = (POLICIES / f"{kind}-{deployer_of(s)}.json").read_text()
            accounts = {arn.split(":")[4] for arn in _arns(text) if arn.split(":")[4] not in ("", "*")}
            regions = {arn.split(":")[3] for arn in _arns(text) if arn.split(":")[3]}
            assert accounts == {s.cross_cloud.aws_account_id} and regions <= {s.aws.region}, (kind, stack)


def _arns(text: str) -> list[str]:
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str) and value.startswith("arn:"):
            found.append(value)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(json.loads(text))
    return found


@pytest.mark.parametrize("stack", STACKS)
def test_the_roles_bounded_rule_catches_a_role_without_or_with_another_boundary(stack: str) -> None:
    resources = [r for r in planned(stack).resources if r.custom]
    assert [m for m in rules.violations(resources) if m.startswith("roles-bounded")] == []
    for boundary in (None, "arn:aws:iam::111111111111:policy/rerank-boundary-open"):
        broken = [
            (r.type, {**r.inputs, "permissionsBoundary": boundary} if r.type == "aws:iam/role:Role" else r.inputs)
            for r in resources
        ]
        found = [m for m in rules.violations(broken) if m.startswith("roles-bounded")]
        assert len(found) == len([r for r in resources if r.type == "aws:iam/role:Role"]) >= 1, found
