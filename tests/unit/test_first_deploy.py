"""What a first `pulumi up` on a fresh project, review stacks and their destroy need, checked over
the whole planned inventory (so the next resource added is checked too): grants against what each
workload runs as, APIs against the resource types, review stacks from dev's file alone, content-
addressed specs and sources, per-stack Kubernetes identities, and every stack rule of the policy
pack catching a broken copy of a real inventory."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pulumi
import pytest
import yaml

from app.naming import SERVICE_ACCOUNT_ROLES, Names
from app.settings import REPO_ROOT, StackConfigError, load_stack
from infra import access
from infra.config import stack_config_mapping
from infra.plan import Plan, PlannedResource, StackMocks, plan_entry, plan_stack
from infra.policy import rules
from infra.program import APIS
from infra.serving import KEDA_DEPLOYMENTS
from tests.unit.infra_plans import planned, spec

pytestmark = pytest.mark.timeout(300)
STACKS = ("dev", "prod", "pr-7")


def custom(plan: Plan, type_token: str | None = None) -> list[PlannedResource]:
    return [r for r in plan.resources if r.custom and (type_token is None or r.type == type_token)]


def account_of(plan: Plan, value: str) -> str | None:
    """The role (ingest, worker, ...) of the stack account named in ``value``, if any."""
    emails = plan.outputs["service_accounts"]
    return next((role for role, email in emails.items() if email in value), None)


# --- 2. what runs as which account, and may it ------------------------------------------------


def _runs_as(plan: Plan) -> set[str]:
    """Every account something in the inventory runs as."""
    found: set[str | None] = set()
    for r in custom(plan):
        i = r.inputs
        if r.type == "gcp:dataflow/flexTemplateJob:FlexTemplateJob":
            found.add(account_of(plan, i["serviceAccountEmail"]))
        elif r.type == "gcp:cloudfunctionsv2/function:Function":
            found.add(account_of(plan, i["serviceConfig"]["serviceAccountEmail"]))
            found.add(account_of(plan, i["buildConfig"]["serviceAccount"]))
            found.add(account_of(plan, i["eventTrigger"]["serviceAccountEmail"]))
            found.add(account_of(plan, i["serviceConfig"]["environmentVariables"]["PIPELINE_SERVICE_ACCOUNT"]))
        elif r.type == "gcp:container/nodePool:NodePool":
            found.add(account_of(plan, i["nodeConfig"]["serviceAccount"]))
        elif r.type == "kubernetes:core/v1:ServiceAccount":
            found.add(account_of(plan, i["metadata"]["annotations"]["iam.gke.io/gcp-service-account"]))
        elif r.type == "kubernetes:helm.sh/v3:Release":
            found.add(account_of(plan, json.dumps(i.get("values"))))
        elif r.type == "command:local:Command" and "build-images.sh" in i["create"]:
            found.add(account_of(plan, i["create"]))
    assert None not in found, "something runs as an account that is not the stack's"
    return {f for f in found if f}


def _grants_to(plan: Plan, account: str) -> list[PlannedResource]:
    who = f"serviceAccount:{plan.outputs['service_accounts'][account]}"
    return [r for r in custom(plan) if r.inputs.get("member") == who and "role" in r.inputs]


def _meets(r: PlannedResource, need: access.Need) -> bool:
    """Whether grant ``r`` is ``need``: the same role, on the project or on the named resource."""
    i = r.inputs
    if i.get("role") != need.role:
        return False
    if need.scope == access.PROJECT:
        return r.type == "gcp:projects/iAMMember:IAMMember"
    scoped = str(i.get(need.scope, ""))
    if scoped == need.target or scoped.rsplit("/", 1)[-1] == need.target:
        return True
    return need.scope == access.SERVICE_ACCOUNT and f"/{need.target}@" in scoped


def _granted(plan: Plan, account: str, need: access.Need) -> bool:
    if need.scope == access.AWS_ROLE_TRUST:
        return account in _trusted_by_aws(plan).get(need.target, set())
    return any(_meets(r, need) for r in _grants_to(plan, account))


def _trusted_by_aws(plan: Plan) -> dict[str, set[str]]:
    """AWS role name -> the stack accounts (by table key) whose Google ID tokens its trust admits."""
    mocks = StackMocks(load_stack(plan.stack))
    key_of = {email: key for key, email in plan.outputs["service_accounts"].items()}
    by_unique_id = {}
    for r in custom(plan, "gcp:serviceaccount/account:Account"):
        out = mocks.new_resource(pulumi.runtime.MockResourceArgs(r.type, r.name, r.inputs))[1]
        by_unique_id[out["uniqueId"]] = key_of[out["email"]]
    trusted: dict[str, set[str]] = {}
    for role in custom(plan, "aws:iam/role:Role"):
        for st in json.loads(role.inputs["assumeRolePolicy"])["Statement"]:
            if (st.get("Principal") or {}).get("Federated") == "accounts.google.com":
                subs = st["Condition"]["StringEquals"]["accounts.google.com:sub"]
                ids = [subs] if isinstance(subs, str) else subs
                trusted.setdefault(role.inputs["name"], set()).update(by_unique_id.get(i, f"unknown {i}") for i in ids)
    return trusted


def _kubernetes_bindings(plan: Plan) -> set[tuple[str, str]]:
    """(account key, "<namespace>/<ksa>") for each workload identity grant on a stack account and
    each Kubernetes account annotated to act as one."""
    key_of = {email: key for key, email in plan.outputs["service_accounts"].items()}
    found = set()
    for r in custom(plan, "gcp:serviceaccount/iAMMember:IAMMember"):
        if r.inputs["role"] == "roles/iam.workloadIdentityUser":
            email = r.inputs["serviceAccountId"].rsplit("/", 1)[-1]
            found.add((key_of.get(email, email), r.inputs["member"].split("[", 1)[1].rstrip("]")))
    for r in custom(plan, "kubernetes:core/v1:ServiceAccount"):
        meta = r.inputs["metadata"]
        email = meta["annotations"]["iam.gke.io/gcp-service-account"]
        found.add((key_of.get(email, email), f"{meta['namespace']}/{meta['name']}"))
    return found


def access_problems(plan: Plan, table: list[access.Workload]) -> list[str]:
    """The access table against the inventory, both ways: every need granted, and nothing granted,
    trusted or bound that the table does not give (the class: a shadow able to write results, a
    variant able to pull another's requests, a Kubernetes account acting as another's identity)."""
    by_account = {w.account: w for w in table}
    problems = [
        f"{w.account}: missing {n.role} on {n.target or 'the project'}"
        for w in table
        for n in w.needs
        if not _granted(plan, w.account, n)
    ]
    for account in plan.outputs["service_accounts"]:
        needs = by_account[account].needs if account in by_account else ()
        problems += [
            f"{account}: {r.name} grants {r.inputs['role']}, which the access table does not give it"
            for r in _grants_to(plan, account)
            if not any(_meets(r, n) for n in needs)
        ]
    for role, accounts in _trusted_by_aws(plan).items():
        problems += [
            f"{a}: the trust of AWS role {role} admits it, which the access table does not give it"
            for a in sorted(accounts)
            if a not in by_account
            or not any(n.scope == access.AWS_ROLE_TRUST and n.target == role for n in by_account[a].needs)
        ]
    bound = _kubernetes_bindings(plan)
    allowed = {(w.account, k) for w in table for k in w.kubernetes}
    problems += [
        f"{a}: Kubernetes account {k} acts as it, which the access table does not give"
        for a, k in sorted(bound - allowed)
    ]
    problems += [f"{a}: Kubernetes account {k} is not bound to it" for a, k in sorted(allowed - bound)]
    return problems


@pytest.mark.parametrize("stack", STACKS)
def test_every_workload_runs_as_a_listed_account_with_what_it_needs_and_nothing_else(stack: str) -> None:
    plan, table = planned(stack), access.workloads(load_stack(stack))
    assert _runs_as(plan) == {w.account for w in table}
    assert access_problems(plan, table) == []


def _replaced(plan: Plan, type_token: str, name: str, change: Any) -> Plan:
    """A copy of ``plan`` with one resource's inputs changed."""
    changed = [
        replace(r, inputs=change(r.inputs)) if (r.type, r.name) == (type_token, name) else r for r in plan.resources
    ]
    return Plan(plan.stack, changed, plan.outputs)


def test_the_table_catches_a_missing_grant_a_grant_beyond_it_and_a_shadow_that_can_write_results() -> None:
    plan, table = planned("dev"), access.workloads(load_stack("dev"))
    n, emails = Names.of(load_stack("dev")), plan.outputs["service_accounts"]
    pull = access.Need("roles/artifactregistry.reader", access.REPOSITORY, n.image_repository)
    assert _granted(plan, "ingest", pull)
    without = Plan(plan.stack, [r for r in plan.resources if r.name != "feature-store-ingest-pull"], plan.outputs)
    assert access_problems(without, table) == [f"ingest: missing roles/artifactregistry.reader on {n.image_repository}"]
    # The B arm's workers able to pull the primary's requests.
    b_pulls_primary = _replaced(
        plan,
        "gcp:pubsub/subscriptionIAMMember:SubscriptionIAMMember",
        "serving-worker-primary-pull",
        lambda i: {**i, "member": f"serviceAccount:{emails['worker-b']}"},
    )
    found = access_problems(b_pulls_primary, table)
    assert (
        "worker-b: serving-worker-primary-pull grants roles/pubsub.subscriber, which the access table does not give it"
        in found
    )
    # The shadow's account in the results writer's trust.
    (role,) = custom(plan, "aws:iam/role:Role")
    shadow = next(r for r in custom(plan, "gcp:serviceaccount/account:Account") if r.name == "identities-worker-shadow")
    shadow_id = StackMocks(load_stack("dev")).new_resource(
        pulumi.runtime.MockResourceArgs(shadow.type, shadow.name, shadow.inputs)
    )[1]["uniqueId"]

    def admit_shadow(i: dict[str, Any]) -> dict[str, Any]:
        doc = json.loads(i["assumeRolePolicy"])
        equals = doc["Statement"][0]["Condition"]["StringEquals"]
        for key in ("accounts.google.com:aud", "accounts.google.com:sub"):
            equals[key] = [*equals[key], shadow_id]
        return {**i, "assumeRolePolicy": json.dumps(doc)}

    assert access_problems(_replaced(plan, role.type, role.name, admit_shadow), table) == [
        f"worker-shadow: the trust of AWS role {n.results_writer_role} admits it, "
        "which the access table does not give it"
    ]
    # The shadow's pods acting as the primary's account.
    as_primary = _replaced(
        plan,
        "kubernetes:core/v1:ServiceAccount",
        "serving-worker-shadow",
        lambda i: _set(i, ("metadata", "annotations", "iam.gke.io/gcp-service-account"), emails["worker-primary"]),
    )
    assert any(
        "worker-primary: Kubernetes account rerank-dev/worker-shadow acts as it" in p
        for p in access_problems(as_primary, table)
    )


# --- 3. review stacks need no stack file ------------------------------------------------------


def _inventory(plan: Plan) -> list[dict[str, Any]]:
    return plan.to_json()["inventory"]


def test_a_review_stack_plans_from_devs_file_with_empty_config_and_again_the_same() -> None:
    """What the review workflow does on every push: `pulumi up --stack pr-7` on a runner with no
    stack file, so the engine passes no configuration at all."""
    settings = load_stack("pr-7")
    first = plan_entry(settings, {})
    second = plan_entry(settings, {})
    derived = plan_stack(settings, pipeline_spec=None)
    assert _inventory(first) == _inventory(second) == _inventory(derived)
    assert len(_inventory(first)) > 100


def test_review_stack_config_that_disagrees_with_dev_is_refused_with_the_key() -> None:
    from infra.config import settings_from_config

    dev = yaml.safe_load((REPO_ROOT / "stacks/Pulumi.dev.yaml").read_text())["config"]
    assert settings_from_config(stack_config_mapping(dev), "pr-9").env == "ephemeral"
    stale = stack_config_mapping({**dev, "rerank-platform:image_tag": "0.0.9"})
    with pytest.raises(StackConfigError) as err:
        settings_from_config(stale, "pr-9")
    assert err.value.problems == [
        "rerank-platform:image_tag: review stacks take their settings from stacks/Pulumi.dev.yaml; remove it"
    ]


# --- 4. destroy leaves nothing ----------------------------------------------------------------


def test_a_review_stack_has_nothing_that_blocks_its_destroy() -> None:
    plan = planned("pr-7")
    assert [r.name for r in plan.resources if r.protect] == []
    blockers = []
    for r in custom(plan):
        i = r.inputs
        for key in ("deletionProtection", "deletionProtectionEnabled"):
            if i.get(key):
                blockers.append(f"{r.name}: {key}")
        if r.type == "gcp:storage/bucket:Bucket" and not i.get("forceDestroy"):
            blockers.append(f"{r.name}: bucket not emptied")
        if r.type == "gcp:bigquery/dataset:Dataset" and not i.get("deleteContentsOnDestroy"):
            blockers.append(f"{r.name}: dataset not emptied")
        if r.type == "gcp:servicenetworking/connection:Connection" and i.get("deletionPolicy") != "REMOVE_PEERING":
            blockers.append(f"{r.name}: connection or its peering outlives Memorystore and blocks the VPC")
    assert blockers == []
    (connection,) = custom(plan, "gcp:servicenetworking/connection:Connection")
    assert connection.inputs["updateOnCreationFail"] is True  # a PR reopened under the same names


# --- 5. builds run as the build account -------------------------------------------------------


def test_builds_run_as_the_build_account_never_the_default_one() -> None:
    plan = planned("dev")
    build = plan.outputs["service_accounts"]["build"]
    (function,) = custom(plan, "gcp:cloudfunctionsv2/function:Function")
    assert function.inputs["buildConfig"]["serviceAccount"].endswith(f"/serviceAccounts/{build}")
    (images,) = [r for r in custom(plan, "command:local:Command") if "build-images.sh" in r.inputs["create"]]
    assert f"--service-account projects/rerank-dev-123456/serviceAccounts/{build}" in images.inputs["create"]
    cloudbuild = yaml.safe_load((REPO_ROOT / "cloudbuild.yaml").read_text())
    assert cloudbuild["options"]["logging"] == "CLOUD_LOGGING_ONLY"  # required with a user-specified account
    script = (REPO_ROOT / "scripts/build-images.sh").read_text()
    assert '--service-account "$account"' in script and '--gcs-source-staging-dir "$staging"' in script


# --- 6. APIs ----------------------------------------------------------------------------------

# Each resource module of the provider and the API it needs; a module missing here fails the test,
# so a new kind of resource brings its API along.
MODULE_APIS = {
    "artifactregistry": ("artifactregistry",),
    "bigquery": ("bigquery",),
    "cloudfunctionsv2": ("cloudfunctions", "run", "cloudbuild", "eventarc", "artifactregistry"),
    "cloudrunv2": ("run",),
    "cloudscheduler": ("cloudscheduler",),
    "compute": ("compute",),
    "container": ("container",),
    "dataflow": ("dataflow",),
    "iam": ("iam", "sts"),
    "logging": ("logging",),
    "monitoring": ("monitoring",),
    "projects": ("cloudresourcemanager", "serviceusage"),
    "pubsub": ("pubsub",),
    "redis": ("redis",),
    "secretmanager": ("secretmanager",),
    "serviceaccount": ("iam",),
    "servicenetworking": ("servicenetworking",),
    "storage": ("storage",),
}
# What the workloads call at run time: workload identity tokens, federation, BigQuery's read API.
RUNTIME_APIS = ("iamcredentials", "sts", "bigquerystorage", "aiplatform", "logging", "cloudbuild")


@pytest.mark.parametrize("stack", STACKS)
def test_every_api_the_stack_uses_is_enabled_and_nothing_is_looked_up_before(stack: str) -> None:
    enabled = {a.split(".")[0] for a in APIS}
    modules = {r.type.split(":")[1].split("/")[0] for r in custom(planned(stack)) if r.type.startswith("gcp:")}
    unmapped = sorted(modules - set(MODULE_APIS))
    assert unmapped == [], f"add the APIs of {unmapped} to MODULE_APIS and infra/program.py APIS"
    needed = {api for m in modules for api in MODULE_APIS[m]} | set(RUNTIME_APIS)
    assert sorted(needed - enabled) == []
    # No invoke (like a project lookup, which needs cloudresourcemanager) runs before the APIs:
    # the program makes none at all (the mocks refuse unexpected ones).
    program = (REPO_ROOT / "infra/program.py").read_text()
    assert "get_project" not in program


# --- 9. new specs and sources reach their consumers -------------------------------------------


def test_a_changed_function_source_or_pipeline_changes_its_consumers_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    import infra.training as training

    settings = load_stack("dev")
    before = planned("dev")
    monkeypatch.setattr(training, "FUNCTION_MAIN", training.FUNCTION_MAIN + "# a new version\n")
    after = plan_stack(settings, pipeline_spec=spec() + "\n# a new pipeline\n")

    def inputs(plan: Plan, type_token: str) -> list[str]:
        return [json.dumps(r.inputs, sort_keys=True) for r in custom(plan, type_token)]

    for consumer in (
        "gcp:cloudfunctionsv2/function:Function",
        "gcp:cloudscheduler/job:Job",
        "kubernetes:batch/v1:CronJob",
    ):
        assert inputs(before, consumer) != inputs(after, consumer), consumer
    # ... and nothing else changed that should not have.
    assert inputs(before, "gcp:dataflow/flexTemplateJob:FlexTemplateJob") == inputs(
        after, "gcp:dataflow/flexTemplateJob:FlexTemplateJob"
    )


def test_every_uploaded_spec_is_named_by_its_content() -> None:
    from infra.common import content_digest

    for r in custom(planned("dev"), "gcp:storage/bucketObject:BucketObject"):
        if "content" in r.inputs:
            assert content_digest(r.inputs["content"].encode()) in r.inputs["name"], r.name


# --- 11. no Kubernetes identity shared between stacks of a project ----------------------------


def test_no_two_stacks_sharing_a_project_share_a_kubernetes_identity() -> None:
    by_project: dict[str, dict[str, set[str]]] = {}
    for stack in ("dev", "pr-7", "pr-8", "prod"):
        plan = planned(stack)
        members = {
            r.inputs["member"]
            for r in custom(plan, "gcp:serviceaccount/iAMMember:IAMMember")
            if ".svc.id.goog[" in r.inputs["member"]
        }
        assert members, stack
        by_project.setdefault(plan.outputs["gcp_project"], {})[stack] = members
    shared = [
        (a, b, ma & mb)
        for stacks in by_project.values()
        for a, ma in stacks.items()
        for b, mb in stacks.items()
        if a < b and ma & mb
    ]
    assert shared == [] and len(by_project["rerank-dev-123456"]) == 1
    assert set(by_project[load_stack("dev").review.gcp_project]) == {"pr-7", "pr-8"}  # type: ignore[union-attr]


# --- 12. the AWS trust, checked by parliament too ---------------------------------------------


def test_aws_policies_pin_the_token_and_pass_parliament() -> None:
    from parliament import analyze_policy_string

    plan = planned("dev")
    (role,) = custom(plan, "aws:iam/role:Role")
    trust = json.loads(role.inputs["assumeRolePolicy"])
    equals = trust["Statement"][0]["Condition"]["StringEquals"]
    assert equals["accounts.google.com:oaud"] == plan.outputs["results_writer_role_arn"]
    assert equals["accounts.google.com:aud"] == equals["accounts.google.com:sub"]
    documents = [
        r.inputs["policy"] for r in custom(plan) if r.type in ("aws:iam/rolePolicy:RolePolicy", "aws:iam/policy:Policy")
    ]
    assert len(documents) == 2
    for doc in documents:
        findings = [f for f in analyze_policy_string(doc).findings if f.severity in ("HIGH", "MEDIUM", "CRITICAL")]
        assert findings == [], [(f.issue, f.detail) for f in findings]


# --- 14. limits -------------------------------------------------------------------------------


def test_a_stack_with_many_variants_keeps_every_alert_policy_within_six_conditions() -> None:
    dev = load_stack("dev")
    extra = [dev.serving.variants[1].model_copy(update={"name": f"arm{i}", "traffic_share": 0.0}) for i in range(6)]
    many = dev.model_copy(
        update={"serving": dev.serving.model_copy(update={"variants": [*dev.serving.variants, *extra]})}
    )
    plan = plan_stack(many, pipeline_spec=spec())
    policies = custom(plan, "gcp:monitoring/alertPolicy:AlertPolicy")
    assert max(len(p.inputs["conditions"]) for p in policies) <= 6 and len(policies) > 4
    watched = json.dumps([p.inputs["conditions"] for p in policies])
    assert all(f'\\"{Names.of(many).variant_subscription(v.name)}\\"' in watched for v in many.serving.variants)
    assert rules.violations(custom(plan)) == []


# --- 15. pods: kubernetes-validate over every object the program declares ---------------------


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_kubernetes_object_is_valid_for_the_api_server(stack: str) -> None:
    import kubernetes_validate

    kinds = 0
    for r in custom(planned(stack)):
        group_version_kind = r.type.split(":")
        if group_version_kind[0] != "kubernetes" or "helm.sh" in r.type or "keda.sh" in r.type:
            continue
        group, version = group_version_kind[1].split("/")
        api = version if group == "core" else f"{group}/{version}"
        doc = {"apiVersion": api, "kind": group_version_kind[2], **r.inputs}
        kubernetes_validate.validate(doc, "1.33", strict=True)
        kinds += 1
    assert kinds >= 10
    # The KEDA chart's pod placement values, as the pod specs the chart renders them into.
    (keda,) = custom(planned(stack), "kubernetes:helm.sh/v3:Release")
    values = keda.inputs["values"]
    for part, app in KEDA_DEPLOYMENTS.items():
        pod = {
            "containers": [{"name": part, "image": "ghcr.io/kedacore/keda"}],
            "topologySpreadConstraints": values["topologySpreadConstraints"][part],
            **({"nodeSelector": values["nodeSelector"]} if "nodeSelector" in values else {}),
        }
        deployment = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": app},
            "spec": {
                "replicas": values[part]["replicaCount"],
                "selector": {"matchLabels": {"app": app}},
                "template": {"metadata": {"labels": {"app": app}}, "spec": pod},
            },
        }
        kubernetes_validate.validate(deployment, "1.33", strict=True)


def test_prod_pods_run_images_pinned_by_digest() -> None:
    for stack, pinned in (("prod", True), ("dev", False)):
        plan = planned(stack)
        pods = [r.inputs["spec"]["template"]["spec"] for r in custom(plan, "kubernetes:apps/v1:Deployment")]
        images = {c["image"] for p in pods for c in p["containers"]}
        assert images and all(("@sha256:" in i) == pinned for i in images), images


# --- the stack rules, each on a broken copy of a real inventory -------------------------------


def _stack(stack: str) -> list[rules.StackResource]:
    return rules.as_stack(custom(planned(stack)))


def _without_deps(resources: list[rules.StackResource], pick: Any) -> list[rules.StackResource]:
    return [replace(r, dependencies=()) if pick(r) else r for r in resources]


def _set(props: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    if len(path) == 1:
        return {**props, path[0]: value}
    return {**props, path[0]: _set(props.get(path[0]) or {}, path[1:], value)}


BREAKS = {
    "workload-identity-after-cluster": (
        "dev",
        lambda rs: _without_deps(rs, lambda r: ".svc.id.goog[" in str(r.props.get("member"))),
        "must depend on the GKE cluster",
    ),
    "service-agents-created": (
        "dev",
        lambda rs: _without_deps(rs, lambda r: "gcp-sa-pubsub" in str(r.props.get("member"))),
        "ServiceIdentity",
    ),
    "images-built-first": (
        "dev",
        lambda rs: _without_deps(rs, lambda r: r.type == "kubernetes:apps/v1:Deployment"),
        "does not depend on the image build",
    ),
    "autoscaled-without-replicas": (
        "dev",
        lambda rs: [
            replace(r, props=_set(r.props, ("spec", "replicas"), 1)) if r.type == "kubernetes:apps/v1:Deployment" else r
            for r in rs
        ],
        "must not set spec.replicas",
    ),
    "namespaces-locked-down": (
        "dev",
        lambda rs: [r for r in rs if r.type != "kubernetes:networking.k8s.io/v1:NetworkPolicy"],
        "default-deny NetworkPolicy",
    ),
    "control-plane-reaches-charts": (
        "dev",
        lambda rs: [r for r in rs if "control-plane" not in r.name],
        "cannot reach ports ['6443', '9443']",
    ),
    "review-stack-unprotected": (
        "pr-7",
        lambda rs: [replace(r, protect=r.type == "gcp:redis/instance:Instance") for r in rs],
        "must not protect",
    ),
    "event-triggers-after-eventarc-agent": (
        "dev",
        lambda rs: _without_deps(rs, lambda r: r.type == "gcp:cloudfunctionsv2/function:Function"),
        "Eventarc agent",
    ),
    "runs-as-after-grants": (
        "dev",
        lambda rs: _without_deps(rs, lambda r: r.type == "gcp:dataflow/flexTemplateJob:FlexTemplateJob"),
        "does not wait for",
    ),
    "alerts-for-subscriptions": (
        "dev",
        lambda rs: [r for r in rs if r.type != "gcp:monitoring/alertPolicy:AlertPolicy"],
        "no alert watches subscription",
    ),
    "apis-settled": ("prod", lambda rs: _unsettled(rs, "apis-settled"), "without waiting for them to settle"),
    "perma-diffs-ignored": (
        "dev",
        lambda rs: [replace(r, ignore_changes=()) for r in rs],
        "list it in ignore_changes",
    ),
    "pods-land-on-a-pool": (
        "prod",
        lambda rs: [
            replace(r, props=_set(r.props, ("spec", "jobTemplate", "spec", "template", "spec", "tolerations"), []))
            if r.type == "kubernetes:batch/v1:CronJob"
            else r
            for r in rs
        ],
        "does not tolerate the taints ['cloud.google.com/gke-spot'] of pool workers",
    ),
    "prod-survives-a-preemption": (
        "prod",
        lambda rs: [r for r in rs if r.type != "gcp:container/nodePool:NodePool" or "system" not in r.name],
        "prod needs exactly one on-demand pool, the system pool",
    ),
    # Two variants folded into one identity (what a careless shortening of long names would do).
    "service-accounts-distinct": (
        "dev",
        lambda rs: [
            replace(r, props={**r.props, "accountId": "rerank-dev-w-primary"}) if r.name == "identities-worker-b" else r
            for r in rs
        ],
        "rerank-dev-w-primary is declared 2 times",
    ),
}


def _unsettled(resources: list[rules.StackResource], *steps: str) -> list[rules.StackResource]:
    """``resources`` with the settle steps ``steps`` taken out but their order kept: what waited
    for a step now waits directly for what the step waited for (ordering, no propagation)."""
    gone = {r.urn: r.dependencies for r in resources if r.name in steps}
    assert gone, steps
    return [
        replace(r, dependencies=tuple(d for u in r.dependencies for d in (gone.get(u) or (u,))))
        for r in resources
        if r.urn not in gone
    ]


def _changed(type_token: str, change: Any, name: str | None = None) -> Any:
    def apply(rs: list[rules.StackResource]) -> list[rules.StackResource]:
        return [replace(r, props=change(r.props)) if r.type == type_token and name in (None, r.name) else r for r in rs]

    return apply


POOL = "gcp:container/nodePool:NodePool"
# Each way prod can go dark on one preemption or an unplanned upgrade, on a copy of prod's inventory.
PROD_BREAKS = {
    "the system pool on Spot": (
        _changed(POOL, lambda p: _set(p, ("nodeConfig", "spot"), True), "serving-system"),
        "exactly one on-demand pool",
    ),
    "a second on-demand pool": (
        _changed(POOL, lambda p: _set(p, ("nodeConfig", "spot"), False), "serving-workers"),
        "exactly one on-demand pool",
    ),
    "an untainted Spot pool": (
        _changed(POOL, lambda p: _set(p, ("nodeConfig", "taints"), []), "serving-workers"),
        "needs a NoSchedule taint",
    ),
    "KEDA off the system pool": (
        _changed("kubernetes:helm.sh/v3:Release", lambda p: _set(p, ("values", "nodeSelector"), {})),
        "KEDA runs on the system pool",
    ),
    "workers without spread": (
        _changed(
            "kubernetes:apps/v1:Deployment",
            lambda p: _set(p, ("spec", "template", "spec", "topologySpreadConstraints"), []),
        ),
        "spread over zones and nodes",
    ),
    "no budget for the workers": (
        lambda rs: [r for r in rs if r.type != "kubernetes:policy/v1:PodDisruptionBudget"],
        "need a PodDisruptionBudget",
    ),
    "no cluster maintenance window": (
        _changed("gcp:container/cluster:Cluster", lambda p: {**p, "maintenancePolicy": None}),
        "prod clusters need a maintenance window",
    ),
    "no Memorystore maintenance window": (
        _changed("gcp:redis/instance:Instance", lambda p: {**p, "maintenancePolicy": None}),
        "prod Memorystore needs a maintenance window",
    ),
}


@pytest.mark.parametrize("case", sorted(PROD_BREAKS))
def test_prod_survives_a_preemption_catches_each_way_to_break_it(case: str) -> None:
    breaking, needle = PROD_BREAKS[case]
    assert rules.prod_survives_a_preemption(_stack("prod")) == []
    found = rules.prod_survives_a_preemption(breaking(_stack("prod")))
    assert any(needle in m for m in found), found


def test_every_stack_rule_has_a_break() -> None:
    assert set(BREAKS) == set(rules.STACK_RULES)


@pytest.mark.parametrize("name", sorted(BREAKS))
def test_each_stack_rule_catches_its_break_of_a_real_inventory(name: str) -> None:
    stack, breaking, needle = BREAKS[name]
    _, rule = rules.STACK_RULES[name]
    assert rule(_stack(stack)) == []
    found = rule(breaking(_stack(stack)))
    assert found and all(needle in m for m in found), found


@pytest.mark.parametrize(
    "step, rule, needle",
    [
        ("feature-store-ingest-settled", "runs-as-after-grants", "feature-store-ingest: runs as"),
        ("images-build-settled", "runs-as-after-grants", "images-build: runs as"),
        ("serving-nodes-settled", "runs-as-after-grants", "serving-cluster: runs as"),
        ("training-trigger-settled", "event-triggers-after-eventarc-agent", "Eventarc agent"),
    ],
)
def test_ordering_without_its_settle_step_fails_the_ordering_rules(step: str, rule: str, needle: str) -> None:
    """Ordering is not propagation: a consumer created right after its grants (each in order, the
    settle step gone) is what fails a fresh project's first apply; the rule must see it."""
    _, check = rules.STACK_RULES[rule]
    found = check(_unsettled(_stack("dev"), step))
    assert found and any(needle in m for m in found), found


@pytest.mark.parametrize("stack", STACKS)
def test_every_consumer_of_a_fresh_grant_or_api_passes_a_settle_step(stack: str) -> None:
    from infra.common import SETTLE_SECONDS

    plan = planned(stack)
    steps = [r for r in custom(plan, "command:local:Command") if r.inputs["create"] == f"sleep {SETTLE_SECONDS}"]
    assert {r.name for r in steps} >= {"apis-settled", "images-build-settled", "serving-nodes-settled"}
    # A second `up` waits for nothing: a step runs again only when what it waits for is replaced.
    assert all(r.inputs["triggers"] and all(isinstance(t, str) for t in r.inputs["triggers"]) for r in steps)
    for consumer in ("images-build", "serving-cluster", "training-trigger"):
        assert any(plan.depends_on(consumer, s.key) for s in steps), consumer


# --- review stacks live in a project of their own ---------------------------------------------


def test_review_stacks_plan_into_the_review_project_never_devs() -> None:
    dev = load_stack("dev")
    assert dev.review is not None and dev.review.gcp_project != dev.gcp.project
    for stack in ("pr-7", "pr-8"):
        plan = planned(stack)
        assert plan.outputs["gcp_project"] == dev.review.gcp_project
        projects = {r.inputs["project"] for r in custom(plan) if isinstance(r.inputs.get("project"), str)}
        assert projects == {dev.review.gcp_project}, projects


def test_a_review_stack_without_a_review_project_is_refused_with_the_key() -> None:
    from app.settings import ephemeral_settings

    dev = load_stack("dev")
    with pytest.raises(StackConfigError) as err:
        ephemeral_settings(dev.model_copy(update={"review": None}), "pr-3")
    assert err.value.problems == [
        "rerank-platform:review.gcp_project: missing; review stacks (pr-3) live in a GCP project of their own"
    ]
    same = yaml.safe_load((REPO_ROOT / "stacks/Pulumi.dev.yaml").read_text())["config"]
    same["rerank-platform:review"] = {"gcp_project": same["rerank-platform:gcp"]["project"]}
    from app.settings import settings_from_mapping

    with pytest.raises(StackConfigError) as err:
        settings_from_mapping(same, stack="dev", source="dev")
    assert [p for p in err.value.problems if "review" in p] == [
        "rerank-platform:review.gcp_project: review stacks need a project of their own, not the stack's "
        "'rerank-dev-123456'"
    ]


def test_no_stack_deletes_project_state_another_stack_of_its_project_declares() -> None:
    """dev, pr-7 and pr-8 planned together: no deletable project-scoped resource is declared by two
    of them, and destroying pr-7's plan removes nothing dev (or pr-8) declares."""
    from infra.shared_state import destroy_removes, shared_deletable

    dev, pr7, pr8 = planned("dev"), planned("pr-7"), planned("pr-8")
    assert shared_deletable([dev, pr7]) == [] and shared_deletable([dev, pr7, pr8]) == []
    assert destroy_removes(pr7, dev) == [] and destroy_removes(pr7, pr8) == []


def test_the_shared_state_guard_catches_a_shared_grant_a_destroy_would_delete() -> None:
    """Broken copies of real plans: review stacks sharing their project with a grant each would
    delete (no retain_on_delete), and a review stack planned into dev's own project."""
    from infra.shared_state import destroy_removes, shared_deletable

    def deleting(plan: Plan) -> Plan:
        return Plan(plan.stack, [replace(r, retain_on_delete=False) for r in plan.resources], plan.outputs)

    found = shared_deletable([planned("dev"), deleting(planned("pr-7")), planned("pr-8")])
    assert found and all("roles/eventarc.serviceAgent" in m or "eventarc-agent" in m for m in found), found
    assert "declared by pr-7, pr-8; pr-7 would delete it" in found[0]
    dev = load_stack("dev")
    in_devs_project = ephemeral_settings_in(dev, "pr-9")
    pr9 = deleting(plan_stack(in_devs_project, pipeline_spec=spec()))
    assert "gcp:projects/iAMMember:IAMMember training-eventarc-agent" in destroy_removes(pr9, planned("dev"))


def ephemeral_settings_in(dev: Any, stack: str) -> Any:
    """A review stack as it was before review projects: in dev's own project."""
    from app.settings import ephemeral_settings

    settings = ephemeral_settings(dev, stack)
    return settings.model_copy(update={"gcp": settings.gcp.model_copy(update={"project": dev.gcp.project})})


def test_every_role_has_a_purpose() -> None:
    from infra.identities import PURPOSES

    assert set(PURPOSES) == set(SERVICE_ACCOUNT_ROLES)


@pytest.mark.parametrize("stack", STACKS)
def test_no_input_depends_on_where_the_checkout_is(stack: str) -> None:
    """A preview from another machine or directory must show no change: no input may carry the
    checkout's absolute path (file assets are compared by content, and shown by repository path)."""
    dumped = json.dumps([r.inputs for r in custom(planned(stack))])
    assert str(REPO_ROOT) not in dumped


def test_the_image_tag_follows_tracked_sources_only(tmp_path: Any) -> None:
    """A runner's `stacks/Pulumi.pr-N.yaml` or an editor's backup must not change the tag (every
    push would rebuild and roll everything); an edit of a tracked source must."""
    import subprocess

    from infra.images import source_digest

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    (tmp_path / "app").mkdir()
    (tmp_path / "stacks").mkdir()
    (tmp_path / "Dockerfile").write_text("FROM python:3.11-slim\nCOPY app ./app\nCOPY stacks ./stacks\n")
    (tmp_path / "cloudbuild.yaml").write_text("steps: []\n")
    (tmp_path / "app/worker.py").write_text("print('v1')\n")
    (tmp_path / "stacks/Pulumi.dev.yaml").write_text("config: {}\n")
    git("init", "-q")
    git("add", ".")
    clean = source_digest("app", tmp_path)
    (tmp_path / "stacks/Pulumi.pr-3.yaml").write_text("encryptionsalt: v1:abc\n")
    (tmp_path / "app/worker.py~").write_text("backup\n")
    assert source_digest("app", tmp_path) == clean
    (tmp_path / "app/worker.py").write_text("print('v2')\n")
    assert source_digest("app", tmp_path) != clean


def test_each_image_tag_follows_only_what_goes_into_that_image() -> None:
    """The inputs are read from each Dockerfile's COPY lines; a change to the program (infra/) or a
    stack's alert threshold rebuilds no ingest image, so the Dataflow job is left alone."""
    from infra import images

    assert images.image_inputs("ingest") == (
        "app/featurestore/flex_template/Dockerfile",
        "cloudbuild.yaml",
        "app/featurestore/flex_template/requirements.txt",
        "pyproject.toml",
        "README.md",
        "app",
        "bench",
    )
    app_inputs = images.image_inputs("app")
    assert "infra" not in app_inputs and "stacks" in app_inputs  # workers read their stack's file
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert all(f"COPY {i}" in dockerfile or f" {i} " in dockerfile for i in app_inputs[2:])
    plan = planned("dev")
    tags = plan.outputs["image_tags"]
    assert set(tags) == set(images.IMAGES) and tags["app"] != tags["ingest"]
    (build,) = [r for r in custom(plan, "command:local:Command") if "build-images.sh" in r.inputs["create"]]
    assert all(f"--image {i}={images.IMAGES[i]}={t}" in build.inputs["create"] for i, t in tags.items())
