"""The guardrails every stack must pass, as plain functions over a resource's type and its inputs
(the property names the engine uses: ``deadLetterPolicy``, not ``dead_letter_policy``).

No Pulumi import here: ``__main__.py`` wraps each rule for CrossGuard (``pulumi preview
--policy-pack infra/policy``), and the tests run the same rules over the inventory the program
declares under mocks (``infra.plan``) and over deliberately bad resources.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

Props = Mapping[str, Any]
REQUIRED_LABELS = ("app", "stack", "env")
KEY_TYPES = {
    "gcp:serviceaccount/key:Key": "a service account key",
    "gcp:storage/hmacKey:HmacKey": "an HMAC key",
    "aws:iam/accessKey:AccessKey": "an IAM access key",
}
PUBLIC_MEMBERS = ("allUsers", "allAuthenticatedUsers")
PRIMITIVE_ROLES = ("roles/owner", "roles/editor", "roles/viewer")
LABELLED = {
    "gcp:pubsub/topic:Topic": "labels",
    "gcp:pubsub/subscription:Subscription": "labels",
    "gcp:bigquery/dataset:Dataset": "labels",
    "gcp:bigquery/table:Table": "labels",
    "gcp:storage/bucket:Bucket": "labels",
    "gcp:redis/instance:Instance": "labels",
    "gcp:dataflow/flexTemplateJob:FlexTemplateJob": "labels",
    "gcp:cloudfunctionsv2/function:Function": "labels",
    "gcp:artifactregistry/repository:Repository": "labels",
    "gcp:secretmanager/secret:Secret": "labels",
    "gcp:container/cluster:Cluster": "resourceLabels",
    "gcp:monitoring/alertPolicy:AlertPolicy": "userLabels",
    "aws:dynamodb/table:Table": "tags",
    "aws:iam/role:Role": "tags",
}
PROTECTABLE = {
    "gcp:bigquery/table:Table": "deletionProtection",
    "gcp:redis/instance:Instance": "deletionProtection",
    "gcp:container/cluster:Cluster": "deletionProtection",
    "aws:dynamodb/table:Table": "deletionProtectionEnabled",
}


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    check: Callable[[str, Props], list[str]]


def _env(props: Props, key: str = "labels") -> str | None:
    for k in (key, "labels", "resourceLabels", "userLabels", "tags"):
        value = props.get(k)
        if isinstance(value, Mapping) and "env" in value:
            return str(value["env"])
    return None


def no_long_lived_keys(t: str, props: Props) -> list[str]:
    if t in KEY_TYPES:
        return [f"{KEY_TYPES[t]} is a long-lived credential; use workload identity or OIDC federation"]
    return []


def no_public_access(t: str, props: Props) -> list[str]:
    found = []
    members = [props.get("member"), *(props.get("members") or [])]
    public = [m for m in members if isinstance(m, str) and m in PUBLIC_MEMBERS]
    if public:
        found.append(f"IAM grant to {public[0]} makes the resource public")
    if t == "gcp:storage/bucket:Bucket":
        if props.get("publicAccessPrevention") != "enforced":
            found.append("buckets must set publicAccessPrevention: enforced")
        if props.get("uniformBucketLevelAccess") is not True:
            found.append("buckets must use uniform bucket-level access (no object ACLs)")
    if t == "gcp:container/cluster:Cluster":
        if not (props.get("privateClusterConfig") or {}).get("enablePrivateNodes"):
            found.append("GKE nodes must be private (privateClusterConfig.enablePrivateNodes)")
        cidrs = [b.get("cidrBlock") for b in (props.get("masterAuthorizedNetworksConfig") or {}).get("cidrBlocks", [])]
        if "0.0.0.0/0" in cidrs:
            found.append("the control plane must not be open to 0.0.0.0/0")
    if t == "gcp:cloudfunctionsv2/function:Function":
        ingress = (props.get("serviceConfig") or {}).get("ingressSettings")
        if ingress not in ("ALLOW_INTERNAL_ONLY", "ALLOW_INTERNAL_AND_GCLB"):
            found.append(f"functions must not accept traffic from the internet (ingressSettings {ingress})")
    return found


def least_privilege(t: str, props: Props) -> list[str]:
    role = props.get("role")
    if not isinstance(role, str):
        return []
    if role in PRIMITIVE_ROLES:
        return [f"{role} is a primitive role; grant the predefined role the workload uses"]
    if t == "gcp:projects/iAMMember:IAMMember" and (role.endswith(".admin") or role.endswith("Admin")):
        return [f"{role} across the whole project; grant it on the resource instead"]
    return []


def required_labels(t: str, props: Props) -> list[str]:
    key = LABELLED.get(t)
    if key is None:
        return []
    labels = props.get(key) or {}
    missing = [k for k in REQUIRED_LABELS if not labels.get(k)]
    return (
        [f"missing labels {missing} in {key} (every resource says which app, stack and env it belongs to)"]
        if missing
        else []
    )


def subscriptions_dead_lettered(t: str, props: Props) -> list[str]:
    if t != "gcp:pubsub/subscription:Subscription":
        return []
    if "dead-letter" in str(props.get("topic", "")):
        # A dead-letter queue's own subscription: people peek and hand letters back, which a
        # backoff retry policy would hide for minutes.
        if props.get("retryPolicy"):
            return ["a dead-letter queue's subscription must redeliver at once (no retry policy)"]
        return []
    if (props.get("labels") or {}).get("consumer") == "dataflow":
        # Dataflow's Pub/Sub source does not support dead-letter topics (or backoff retry
        # policies) on its subscription; the ingest job dead-letters rejects itself, with a reason.
        if props.get("deadLetterPolicy") or props.get("retryPolicy"):
            return ["a Dataflow-consumed subscription must not set a dead-letter or retry policy (unsupported)"]
        return []
    policy = props.get("deadLetterPolicy") or {}
    if not policy.get("deadLetterTopic"):
        return ["consumed subscriptions need a dead-letter policy so a poison message cannot block them"]
    if int(policy.get("maxDeliveryAttempts") or 0) < 5:
        return ["dead-letter policies need maxDeliveryAttempts of at least 5"]
    return []


POOL_LABEL = "rerank.dev/pool"
SYSTEM_POOL = "system"


def _on_spot(node: Props) -> bool:
    return bool(node.get("spot") or node.get("preemptible"))


def worker_pool_preemptible(t: str, props: Props) -> list[str]:
    """Worker pools run on Spot (or preemptible) VMs; the one exception is the system pool (labelled
    rerank.dev/pool=system), which must be on-demand: it carries what has to outlive a preemption."""
    if t != "gcp:container/nodePool:NodePool":
        return []
    node = props.get("nodeConfig") or {}
    system = (node.get("labels") or {}).get(POOL_LABEL) == SYSTEM_POOL
    found = []
    if system and _on_spot(node):
        found.append("the system pool runs on-demand VMs (add-ons and KEDA must outlive a Spot preemption)")
    if not system and not _on_spot(node):
        found.append(f"worker node pools run on spot or preemptible VMs (only {POOL_LABEL}={SYSTEM_POOL} may not)")
    if (node.get("workloadMetadataConfig") or {}).get("mode") != "GKE_METADATA":
        found.append("node pools must use workload identity (workloadMetadataConfig.mode GKE_METADATA)")
    if not props.get("autoscaling"):
        found.append("node pools must autoscale")
    return found


def workload_identity(t: str, props: Props) -> list[str]:
    if t == "gcp:container/cluster:Cluster" and not (props.get("workloadIdentityConfig") or {}).get("workloadPool"):
        return ["GKE clusters must enable workload identity (pods get no node credentials or keys)"]
    return []


def prod_protected(t: str, props: Props) -> list[str]:
    if _env(props) != "prod":
        return []
    found = []
    key = PROTECTABLE.get(t)
    if key and props.get(key) is not True:
        found.append(f"prod resources need {key}: true")
    if t == "gcp:redis/instance:Instance":
        if props.get("tier") != "STANDARD_HA":
            found.append("prod Redis must be STANDARD_HA")
        if not props.get("authEnabled") or props.get("transitEncryptionMode") != "SERVER_AUTHENTICATION":
            found.append("prod Redis needs AUTH and in-transit encryption")
    if t == "aws:dynamodb/table:Table" and not (props.get("pointInTimeRecovery") or {}).get("enabled"):
        found.append("prod DynamoDB tables need point-in-time recovery")
    return found


def results_expire(t: str, props: Props) -> list[str]:
    if t != "aws:dynamodb/table:Table":
        return []
    found = []
    if not (props.get("ttl") or {}).get("enabled"):
        found.append("DynamoDB tables need a TTL so stale results disappear")
    if not (props.get("serverSideEncryption") or {}).get("enabled"):
        found.append("DynamoDB tables need server-side encryption with a KMS key")
    return found


POD_KINDS = {
    "kubernetes:apps/v1:Deployment": ("spec", "template"),
    "kubernetes:apps/v1:StatefulSet": ("spec", "template"),
    "kubernetes:apps/v1:DaemonSet": ("spec", "template"),
    "kubernetes:batch/v1:Job": ("spec", "template"),
    "kubernetes:batch/v1:CronJob": ("spec", "jobTemplate", "spec", "template"),
}


def _dig(props: Props, path: tuple[str, ...]) -> Any:
    value: Any = props
    for key in path:
        value = (value or {}).get(key) if isinstance(value, Mapping) else None
    return value


def pods_restricted(t: str, props: Props) -> list[str]:
    """Every pod template meets the Pod Security Standard "restricted", mounts no API token it does
    not use, takes secrets as files, and in prod runs images pinned by digest."""
    if t not in POD_KINDS:
        return []
    pod = _dig(props, (*POD_KINDS[t], "spec")) or {}
    found = []
    security = pod.get("securityContext") or {}
    if security.get("runAsNonRoot") is not True:
        found.append("pods must set securityContext.runAsNonRoot")
    if (security.get("seccompProfile") or {}).get("type") not in ("RuntimeDefault", "Localhost"):
        found.append("pods must set a RuntimeDefault seccomp profile")
    if pod.get("automountServiceAccountToken") is not False:
        found.append("pods must not mount a Kubernetes API token (automountServiceAccountToken: false)")
    for c in [*(pod.get("containers") or []), *(pod.get("initContainers") or [])]:
        name, sc = c.get("name"), c.get("securityContext") or {}
        if sc.get("allowPrivilegeEscalation") is not False:
            found.append(f"container {name}: allowPrivilegeEscalation must be false")
        if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            found.append(f"container {name}: drop ALL capabilities")
        if sc.get("readOnlyRootFilesystem") is not True:
            found.append(f"container {name}: the root filesystem must be read-only")
        secret_env = [e.get("name") for e in c.get("env") or [] if (e.get("valueFrom") or {}).get("secretKeyRef")]
        if secret_env:
            found.append(f"container {name}: secrets as environment variables {secret_env}; mount them as files")
        if _env(props.get("metadata") or {}) == "prod":
            if "@sha256:" not in str(c.get("image")):
                found.append(f"container {name}: prod images are pinned by digest (image@sha256:...)")
    return found


def alert_condition_limit(t: str, props: Props) -> list[str]:
    """At most 6 conditions a policy; a log-match condition alone, with a notification rate limit
    (Cloud Monitoring refuses either otherwise)."""
    if t != "gcp:monitoring/alertPolicy:AlertPolicy":
        return []
    conditions = props.get("conditions") or []
    if len(conditions) > 6:
        return ["an alert policy takes at most 6 conditions; split it"]
    if any(c.get("conditionMatchedLog") for c in conditions):
        if len(conditions) > 1:
            return ["a log-match condition must be its alert policy's only condition"]
        if not _dig(props, ("alertStrategy", "notificationRateLimit", "period")):
            return ["a log-match alert policy needs alertStrategy.notificationRateLimit"]
    return []


GOOGLE_TRUST_KEYS = ("accounts.google.com:aud", "accounts.google.com:oaud", "accounts.google.com:sub")


def federated_trust_pinned(t: str, props: Props) -> list[str]:
    """An AWS role trusting Google ID tokens pins the account (aud/azp and sub) and the audience."""
    if t != "aws:iam/role:Role":
        return []
    doc = props.get("assumeRolePolicy")
    try:
        policy = json.loads(doc) if isinstance(doc, str) else doc or {}
    except ValueError:
        return ["the trust policy is not JSON"]
    found = []
    for st in policy.get("Statement") or []:
        if (st.get("Principal") or {}).get("Federated") != "accounts.google.com":
            continue
        equals = (st.get("Condition") or {}).get("StringEquals") or {}
        missing = [k for k in GOOGLE_TRUST_KEYS if not equals.get(k)]
        if missing:
            found.append(f"a trust in Google ID tokens must pin {missing} with StringEquals")
    return found


# The boundary an admin made once per deployer (infra/aws/boundary-<deployer>.json): review stacks
# share `review`, every other stack has its own.
ROLE_BOUNDARY = re.compile(r"^arn:aws:iam::[0-9]{12}:policy/[a-z][a-z0-9]*-boundary-(?P<deployer>[a-z0-9-]+)$")


def roles_bounded(t: str, props: Props) -> list[str]:
    """Every AWS role carries its deployer's permissions boundary, so what the deployer may write
    into a role (its policies, its trust) never reaches past the boundary: no role it makes is admin."""
    if t != "aws:iam/role:Role":
        return []
    env, stack = _env(props, "tags"), (props.get("tags") or {}).get("stack")
    deployer = "review" if env == "ephemeral" else stack
    found = ROLE_BOUNDARY.match(str(props.get("permissionsBoundary") or ""))
    if found is None or found["deployer"] != deployer:
        return [
            f"roles need permissionsBoundary = the {deployer} deployer's boundary "
            f"(arn:aws:iam::<account>:policy/<prefix>-boundary-{deployer}), not {props.get('permissionsBoundary')!r}"
        ]
    return []


def review_stack_destroyable(t: str, props: Props) -> list[str]:
    """A review stack destroys to nothing: no deletion protection, buckets and datasets emptied."""
    if _env(props) != "ephemeral":
        return []
    found = []
    key = PROTECTABLE.get(t)
    if key and props.get(key):
        found.append(f"review stacks must not set {key}")
    if t == "gcp:storage/bucket:Bucket" and props.get("forceDestroy") is not True:
        found.append("review stack buckets need forceDestroy so destroy can empty them")
    if t == "gcp:bigquery/dataset:Dataset" and props.get("deleteContentsOnDestroy") is not True:
        found.append("review stack datasets need deleteContentsOnDestroy")
    if t == "gcp:dataflow/flexTemplateJob:FlexTemplateJob" and props.get("onDelete") != "cancel":
        found.append("review stack jobs are cancelled on destroy (a drain can take hours)")
    return found


def service_networking_removable(t: str, props: Props) -> list[str]:
    # Deleting the connection fails while a producer (Memorystore) still holds it (pulumi-gcp#3354);
    # ABANDON leaves the peering, which then blocks deleting the VPC.
    if t == "gcp:servicenetworking/connection:Connection" and props.get("deletionPolicy") != "REMOVE_PEERING":
        return ["private service access connections need deletionPolicy REMOVE_PEERING so the VPC can go"]
    return []


# Accounts Google makes per project; whatever runs as one runs with far more than it needs, and an
# org policy may disable them (terraform-provider-google#4435).
DEFAULT_ACCOUNT = re.compile(r"(-compute@developer|@appspot|@cloudbuild)\.gserviceaccount\.com")
# Where a resource says what it runs as; unset means a default account.
RUNNER_FIELDS = {
    "gcp:container/cluster:Cluster": (("nodeConfig", "serviceAccount"),),
    "gcp:container/nodePool:NodePool": (("nodeConfig", "serviceAccount"),),
    "gcp:dataflow/flexTemplateJob:FlexTemplateJob": (("serviceAccountEmail",),),
    "gcp:cloudfunctionsv2/function:Function": (
        ("serviceConfig", "serviceAccountEmail"),
        ("buildConfig", "serviceAccount"),
    ),
}


def no_default_accounts(t: str, props: Props) -> list[str]:
    """Nothing runs as (or grants to) a default account, even for a minute: every runner names its
    account, and no input names a default one."""
    if t == "gcp:container/cluster:Cluster" and props.get("enableAutopilot"):
        return []
    found = [
        f"{'.'.join(path)} is {_dig(props, path) or 'unset'}: that runs as a default account; name the stack's"
        for path in RUNNER_FIELDS.get(t, ())
        if _dig(props, path) in (None, "", "default")
    ]
    if t == "gcp:cloudfunctionsv2/function:Function" and props.get("eventTrigger"):
        if not _dig(props, ("eventTrigger", "serviceAccountEmail")):
            found.append("eventTrigger.serviceAccountEmail is unset: the trigger would push as a default account")
    named = sorted({v for v in _strings(props) if DEFAULT_ACCOUNT.search(v)})
    found += [f"{v} is a default account" for v in named]
    return found


def nodes_stated(t: str, props: Props) -> list[str]:
    """Every cluster (its default pool is created before `remove_default_node_pool` deletes it) and
    node pool states its disk: GKE's default, 100 GB pd-balanced per node, meets a fresh project's
    SSD_TOTAL_GB quota (terraform-google-kubernetes-engine#1795)."""
    if t not in ("gcp:container/cluster:Cluster", "gcp:container/nodePool:NodePool") or props.get("enableAutopilot"):
        return []
    node = props.get("nodeConfig") or {}
    return [
        f"nodeConfig.{k} is unset: state it (GKE's default is 100 GB pd-balanced)"
        for k in ("diskType", "diskSizeGb")
        if not node.get(k)
    ]


def storage_bounded(t: str, props: Props) -> list[str]:
    """Storage that only grows: every partitioned table expires its partitions, a registry's cleanup
    deletes tagged versions too (a KEEP policy only exempts what it matches), versioned buckets drop
    old versions."""
    found = []
    if t == "gcp:bigquery/table:Table" and props.get("timePartitioning"):
        if not _dig(props, ("timePartitioning", "expirationMs")):
            found.append("partitions never expire: set the stack's retention (timePartitioning.expirationMs)")
    if t == "gcp:artifactregistry/repository:Repository":
        policies = props.get("cleanupPolicies") or []
        deletes = [
            p
            for p in policies
            if p.get("action") == "DELETE" and _dig(p, ("condition", "tagState")) in ("ANY", "TAGGED")
        ]
        if not deletes:
            found.append(
                "cleanup deletes no tagged image, and every build is tagged: the repository grows without bound"
            )
    if t == "gcp:storage/bucket:Bucket" and _dig(props, ("versioning", "enabled")):
        noncurrent = [
            r
            for r in props.get("lifecycleRules") or []
            if _dig(r, ("action", "type")) == "Delete"
            and (_dig(r, ("condition", "daysSinceNoncurrentTime")) or _dig(r, ("condition", "numNewerVersions")))
        ]
        if not noncurrent:
            found.append("a versioned bucket keeps every old version: add a lifecycle rule deleting noncurrent ones")
    return found


# The Dataflow service options naming a streaming mode (infra/dataflow_options.py; the policy pack
# runs without the repository on its path, so a test keeps the two the same).
STREAMING_MODES = ("streaming_mode_at_least_once", "streaming_mode_exactly_once")


def streaming_mode_stated(t: str, props: Props) -> list[str]:
    """A Streaming Engine job states its streaming mode, which is its billing (at-least-once is
    billed per compute unit, exactly-once per GiB processed): left out, the job runs the template
    metadata's default mode, which neither a plan nor `rerank infra cost` can see."""
    if t != "gcp:dataflow/flexTemplateJob:FlexTemplateJob" or not props.get("enableStreamingEngine"):
        return []
    modes = [m for m in STREAMING_MODES if m in (props.get("additionalExperiments") or [])]
    if len(modes) != 1:
        return [
            f"additionalExperiments state {len(modes)} streaming modes: give exactly one of "
            f"{' or '.join(STREAMING_MODES)} (the mode decides how Streaming Engine is billed)"
        ]
    return []


# GCP service account ids: 6-30 characters, a lowercase letter first, no hyphen last.
SERVICE_ACCOUNT_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")


def service_account_ids_fit(t: str, props: Props) -> list[str]:
    if t != "gcp:serviceaccount/account:Account":
        return []
    account_id = str(props.get("accountId"))
    if not SERVICE_ACCOUNT_ID.match(account_id):
        return [f"service account id {account_id!r} ({len(account_id)} chars) breaks GCP's limit: 6-30 of [a-z0-9-]"]
    return []


# A KFP step resource set from a placeholder (another task's output, a run-time parameter):
# Vertex AI Pipelines documents literal CPU and memory limits only (vertex-ai/docs/pipelines/machine-types).
PLACEHOLDER_RESOURCE = re.compile(
    r"^\s*(resource(?:Cpu|Memory)(?:Limit|Request)|resourceType|resourceCount):\s*'?\{\{", re.M
)


def pipeline_resources_literal(t: str, props: Props) -> list[str]:
    content = props.get("content")
    if t != "gcp:storage/bucketObject:BucketObject" or not isinstance(content, str) or "deploymentSpec:" not in content:
        return []
    fields = sorted({m.group(1) for m in PLACEHOLDER_RESOURCE.finditer(content)})
    if fields:
        return [
            f"pipeline spec {props.get('name')} sets {', '.join(fields)} from placeholders; Vertex AI documents "
            "literal step resources only: one branch per machine (pipelines/training.py)"
        ]
    return []


RULES = (
    Rule("no-long-lived-keys", "No service account keys, HMAC keys or IAM access keys.", no_long_lived_keys),
    Rule(
        "no-public-access",
        "Nothing public: no allUsers grants, private buckets, nodes and functions.",
        no_public_access,
    ),
    Rule("least-privilege-iam", "No primitive roles and no project-wide admin roles.", least_privilege),
    Rule("required-labels", "Every labelled resource carries app, stack and env.", required_labels),
    Rule(
        "subscriptions-dead-lettered",
        "Consumed subscriptions dead-letter after >= 5 attempts.",
        subscriptions_dead_lettered,
    ),
    Rule(
        "worker-pool-preemptible",
        "Node pools are spot/preemptible (the system pool on-demand), autoscaled, workload identity.",
        worker_pool_preemptible,
    ),
    Rule("gke-workload-identity", "GKE clusters use workload identity.", workload_identity),
    Rule("prod-protected", "prod: deletion protection, HA Redis with AUTH and TLS, PITR.", prod_protected),
    Rule("results-expire", "The results table expires items and is encrypted.", results_expire),
    Rule("pods-restricted", "Pod templates meet PSS restricted; secrets as files; prod by digest.", pods_restricted),
    Rule(
        "alert-condition-limit",
        "Alert policies: at most 6 conditions, a log-match one alone and rate-limited.",
        alert_condition_limit,
    ),
    Rule("federated-trust-pinned", "Trusts in Google ID tokens pin aud, oaud and sub.", federated_trust_pinned),
    Rule("roles-bounded", "AWS roles carry their deployer's permissions boundary.", roles_bounded),
    Rule("review-stack-destroyable", "Review stacks destroy to nothing.", review_stack_destroyable),
    Rule(
        "service-networking-removable",
        "Private service access connections remove their peering on destroy.",
        service_networking_removable,
    ),
    Rule("no-default-accounts", "Everything runs as a named stack account, never a default one.", no_default_accounts),
    Rule("nodes-stated", "Clusters and node pools state their disk type and size.", nodes_stated),
    Rule("storage-bounded", "Tables, registries and versioned buckets expire what they keep.", storage_bounded),
    Rule("service-account-ids-fit", "Service account ids fit GCP's 6-30 character limit.", service_account_ids_fit),
    Rule(
        "streaming-mode-stated",
        "Streaming Dataflow jobs state their streaming mode (their billing).",
        streaming_mode_stated,
    ),
    Rule(
        "pipeline-resources-literal",
        "Pipeline specs give every step literal CPU and memory, the form Vertex AI documents.",
        pipeline_resources_literal,
    ),
)


@dataclass(frozen=True)
class StackResource:
    """One resource as a stack rule sees it: CrossGuard's ``PolicyResource`` or a planned one."""

    type: str
    urn: str
    props: Props
    dependencies: tuple[str, ...] = ()  # URNs of what it depends on (explicit and through inputs)
    protect: bool = False
    ignore_changes: tuple[str, ...] = ()  # input properties the engine's diff skips

    @property
    def name(self) -> str:
        return self.urn.rsplit("::", 1)[-1]


def as_stack(items: Iterable[Any]) -> list[StackResource]:
    """``StackResource``s from what callers have: (type, props) pairs, planned resources
    (``infra.plan.PlannedResource``) or stack resources."""
    out = []
    for i, item in enumerate(items):
        if isinstance(item, StackResource):
            out.append(item)
        elif isinstance(item, tuple):
            out.append(StackResource(item[0], f"urn:pulumi:s::p::{item[0]}::r{i}", item[1]))
        else:
            out.append(
                StackResource(
                    item.type, item.urn, item.inputs, tuple(item.dependencies), item.protect, tuple(item.ignore_changes)
                )
            )
    return out


def upstream(start: Iterable[str], dependencies_of: Mapping[str, Iterable[str]]) -> set[str]:
    """Every URN ``start`` leads to through ``dependencies_of`` (URN -> what it depends on)."""
    seen: set[str] = set()
    todo = list(start)
    while todo:
        urn = todo.pop()
        if urn not in seen:
            seen.add(urn)
            todo.extend(dependencies_of.get(urn, ()))
    return seen


def _depends_on(resources: list[StackResource]) -> Callable[[StackResource, Callable[[StackResource], bool]], bool]:
    by_urn = {r.urn: r for r in resources}
    graph = {r.urn: r.dependencies for r in resources}

    def reaches(start: StackResource, target: Callable[[StackResource], bool]) -> bool:
        return any(target(by_urn[u]) for u in upstream(start.dependencies, graph) if u in by_urn)

    return reaches


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def alerts_for_subscriptions(resources: list[StackResource]) -> list[str]:
    """A stack that consumes subscriptions also alerts on them."""
    subs = [r.props for r in resources if r.type == "gcp:pubsub/subscription:Subscription"]
    alerts = [r.props for r in resources if r.type == "gcp:monitoring/alertPolicy:AlertPolicy"]
    watched = " ".join(str(c) for a in alerts for c in a.get("conditions") or [])
    unwatched = [str(s.get("name")) for s in subs if s.get("deadLetterPolicy") and f'"{s.get("name")}"' not in watched]
    return [f"no alert watches subscription {name}" for name in unwatched]


def _is_cluster(r: StackResource) -> bool:
    return r.type == "gcp:container/cluster:Cluster"


def workload_identity_after_cluster(resources: list[StackResource]) -> list[str]:
    """A grant to ``<project>.svc.id.goog[ns/ksa]`` fails until a workload-identity cluster made
    the pool ("Identity Pool does not exist"), so it must depend on the cluster."""
    reaches = _depends_on(resources)
    return [
        f"{r.name}: grants to the workload identity pool must depend on the GKE cluster"
        for r in resources
        if ".svc.id.goog[" in str(r.props.get("member", "")) and not reaches(r, _is_cluster)
    ]


SERVICE_AGENT = re.compile(r"^serviceAccount:service-[0-9]+@(gcp-sa-[a-z-]+|[a-z-]+)\.iam\.gserviceaccount\.com$")


def service_agents_created(resources: list[StackResource]) -> list[str]:
    """A Google service agent may not exist on a fresh project until something asks for it: grants
    to one must depend on a ``gcp.projects.ServiceIdentity`` (and take its member from it)."""
    reaches = _depends_on(resources)
    return [
        f"{r.name}: grants to a service agent must depend on its gcp.projects.ServiceIdentity"
        for r in resources
        if SERVICE_AGENT.match(str(r.props.get("member", "")))
        and not reaches(r, lambda d: d.type == "gcp:projects/serviceIdentity:ServiceIdentity")
    ]


IMAGE_REGISTRY = re.compile(r"[a-z0-9-]+-docker\.pkg\.dev/")


def _is_image_build(r: StackResource) -> bool:
    return r.type == "command:local:Command" and "build-images.sh" in str(r.props.get("create", ""))


def images_built_first(resources: list[StackResource]) -> list[str]:
    """Whatever names an image in Artifact Registry waits for the build that pushes it: on a
    first `pulumi up` the registry is empty until then."""
    reaches = _depends_on(resources)
    return [
        f"{r.name}: names an image but does not depend on the image build"
        for r in resources
        if not _is_image_build(r)
        and any(IMAGE_REGISTRY.search(v) for v in _strings(r.props))
        and not reaches(r, _is_image_build)
    ]


SETTLE = re.compile(r"^sleep [0-9]+$")


def _is_settle(r: StackResource) -> bool:
    """A settle step (``infra.common.settle``): ordering is not propagation, so a consumer of a
    fresh grant or API waits for one of these after it."""
    return r.type == "command:local:Command" and bool(SETTLE.match(str(r.props.get("create", ""))))


def _settled(resources: list[StackResource]) -> Callable[[StackResource], set[str]]:
    """URN -> everything that has settled before it: what lies upstream of a settle step upstream of it."""
    by_urn = {r.urn: r for r in resources}
    graph = {r.urn: r.dependencies for r in resources}

    def settled(r: StackResource) -> set[str]:
        steps = [u for u in upstream(r.dependencies, graph) if u in by_urn and _is_settle(by_urn[u])]
        return upstream([d for u in steps for d in graph[u]], graph)

    return settled


def event_triggers_after_eventarc_agent(resources: list[StackResource]) -> list[str]:
    """A function with an event trigger is created only once Eventarc's service agent exists and
    holds its role, settled ("Permission denied while using the Eventarc Service Agent" otherwise,
    terraform-provider-google#25294)."""
    settled = _settled(resources)

    def agent_role(d: StackResource) -> bool:
        return d.props.get("role") == "roles/eventarc.serviceAgent" and "@gcp-sa-eventarc." in str(
            d.props.get("member")
        )

    roles = {r.urn for r in resources if agent_role(r)}
    return [
        f"{r.name}: event-triggered functions must wait for the Eventarc agent's role grant through a settle step"
        for r in resources
        if r.type == "gcp:cloudfunctionsv2/function:Function" and r.props.get("eventTrigger") and not roles & settled(r)
    ]


ACCOUNT_IN = re.compile(r"serviceAccounts/([^/\s]+@[^/\s]+)")


def _runs_as(r: StackResource) -> set[str]:
    """The accounts a resource runs (or builds) as, as IAM members."""
    emails: list[Any] = []
    if r.type == "gcp:cloudfunctionsv2/function:Function":
        emails += [_dig(r.props, ("serviceConfig", "serviceAccountEmail"))]
        emails += ACCOUNT_IN.findall(str(_dig(r.props, ("buildConfig", "serviceAccount")) or ""))
    elif r.type == "gcp:dataflow/flexTemplateJob:FlexTemplateJob":
        emails += [r.props.get("serviceAccountEmail")]
    elif r.type in ("gcp:container/cluster:Cluster", "gcp:container/nodePool:NodePool"):
        emails += [_dig(r.props, ("nodeConfig", "serviceAccount"))]
    elif _is_image_build(r):
        emails += ACCOUNT_IN.findall(str(r.props.get("create")))
    return {f"serviceAccount:{e}" for e in emails if isinstance(e, str) and "@" in e}


def runs_as_after_grants(resources: list[StackResource]) -> list[str]:
    """What runs as an account (a function and its build, a Dataflow job, the image build, GKE
    nodes) starts only after every grant to that account has settled: created first is not yet
    seen everywhere, and the first run must not race its permissions."""
    graph = {r.urn: r.dependencies for r in resources}
    settled = _settled(resources)
    found = []
    for r in resources:
        accounts = _runs_as(r)
        if not accounts:
            continue
        before = settled(r)
        for who in accounts:
            missing = [
                g.name
                for g in resources
                if g.props.get("member") == who
                and g.urn not in before
                and r.urn not in upstream(g.dependencies, graph)  # grants on the resource itself
            ]
            if missing:
                found.append(f"{r.name}: runs as {who} but does not wait for {sorted(missing)} to settle")
    return found


def apis_settled(resources: list[StackResource]) -> list[str]:
    """Every resource that waits for an API waits for it to settle too: a freshly enabled API
    races its first callers as a fresh grant does."""
    graph = {r.urn: r.dependencies for r in resources}
    services = {r.urn for r in resources if r.type == "gcp:projects/service:Service"}
    settled = _settled(resources)
    found = []
    for r in resources:
        if _is_settle(r) or r.urn in services:
            continue
        raced = services & upstream(r.dependencies, graph) - settled(r)
        if raced:
            found.append(f"{r.name}: uses {len(raced)} API(s) without waiting for them to settle")
    return found


# Fields a provider reports back differently from what was declared, per resource type, with the
# provider issue that says so: each one a resource sets must be in its ignore_changes, or every
# `pulumi up` changes (or replaces) it.
PERMA_DIFFS: dict[str, dict[str, str]] = {
    "gcp:dataflow/flexTemplateJob:FlexTemplateJob": {
        # The job's sdkPipelineOptions come back without them (fix proposed in
        # GoogleCloudPlatform/magic-modules#14038, open): every `up` relaunches the streaming job.
        "machineType": "terraform-provider-google#21322, #19909",
        "subnetwork": "terraform-provider-google#21322",
        "maxWorkers": "terraform-provider-google#21322, #19909",
    },
    "gcp:container/cluster:Cluster": {
        # Once remove_default_node_pool deleted the default pool the cluster reports no node
        # config, and the declared one forces a replacement.
        "nodeConfig": "GoogleCloudPlatform/cloud-foundation-fabric#1275",
    },
}


def perma_diffs_ignored(resources: list[StackResource]) -> list[str]:
    found = []
    for r in resources:
        for field, issue in PERMA_DIFFS.get(r.type, {}).items():
            if r.props.get(field) is not None and field not in r.ignore_changes:
                found.append(f"{r.name}: {field} perma-diffs ({issue}); list it in ignore_changes")
    return found


def autoscaled_without_replicas(resources: list[StackResource]) -> list[str]:
    """A Deployment that KEDA (or an HPA) scales must not declare ``spec.replicas``: every update
    would reset the count the autoscaler chose."""
    targets = {
        (str(_dig(r.props, ("metadata", "namespace"))), str(_dig(r.props, ("spec", "scaleTargetRef", "name"))))
        for r in resources
        if r.props.get("kind") in ("ScaledObject", "HorizontalPodAutoscaler")
        or r.type == "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
    }
    return [
        f"{r.name}: autoscaled Deployments must not set spec.replicas"
        for r in resources
        if r.type == "kubernetes:apps/v1:Deployment"
        and (str(_dig(r.props, ("metadata", "namespace"))), str(_dig(r.props, ("metadata", "name")))) in targets
        and _dig(r.props, ("spec", "replicas")) is not None
    ]


def namespaces_locked_down(resources: list[StackResource]) -> list[str]:
    """Each namespace the stack runs pods in enforces PSS restricted and denies by default."""
    pods = {str(_dig(r.props, ("metadata", "namespace"))) for r in resources if r.type in POD_KINDS}
    labels = {
        str(_dig(r.props, ("metadata", "name"))): _dig(r.props, ("metadata", "labels")) or {}
        for r in resources
        if r.type == "kubernetes:core/v1:Namespace"
    }
    deny = {
        str(_dig(r.props, ("metadata", "namespace")))
        for r in resources
        if r.type == "kubernetes:networking.k8s.io/v1:NetworkPolicy"
        and _dig(r.props, ("spec", "podSelector")) == {}
        and set(_dig(r.props, ("spec", "policyTypes")) or []) == {"Ingress", "Egress"}
        and not _dig(r.props, ("spec", "ingress"))
        and not _dig(r.props, ("spec", "egress"))
    }
    found = []
    for ns in sorted(pods):
        if labels.get(ns, {}).get("pod-security.kubernetes.io/enforce") != "restricted":
            found.append(f"namespace {ns}: label pod-security.kubernetes.io/enforce=restricted")
        if ns not in deny:
            found.append(f"namespace {ns}: needs a default-deny NetworkPolicy")
    return found


# Charts whose webhooks or API services the control plane must reach on the nodes (a private
# cluster's firewall admits only 443 and 10250 from it).
CONTROL_PLANE_PORTS = {"keda": ("6443", "9443")}


def control_plane_reaches_charts(resources: list[StackResource]) -> list[str]:
    masters = {
        str(_dig(r.props, ("privateClusterConfig", "masterIpv4CidrBlock")))
        for r in resources
        if _is_cluster(r) and _dig(r.props, ("privateClusterConfig", "enablePrivateNodes"))
    }
    opened: set[tuple[str, str]] = set()
    for r in resources:
        if r.type == "gcp:compute/firewall:Firewall" and r.props.get("direction", "INGRESS") == "INGRESS":
            for source in r.props.get("sourceRanges") or []:
                for allow in r.props.get("allows") or []:
                    opened.update((source, str(p)) for p in allow.get("ports") or [])
    found = []
    for r in resources:
        if r.type == "kubernetes:helm.sh/v3:Release" and r.props.get("chart") in CONTROL_PLANE_PORTS:
            for master in masters:
                closed = [p for p in CONTROL_PLANE_PORTS[r.props["chart"]] if (master, p) not in opened]
                if closed:
                    found.append(f"{r.name}: the control plane ({master}) cannot reach ports {closed} on the nodes")
    return found


def review_stack_unprotected(resources: list[StackResource]) -> list[str]:
    """``protect`` is an engine option, not a property: a stack rule sees it."""
    if not any(_env(r.props) == "ephemeral" for r in resources):
        return []
    return [f"{r.name}: review stacks must not protect resources" for r in resources if r.protect]


TAINT_EFFECTS = {"NO_SCHEDULE": "NoSchedule", "NO_EXECUTE": "NoExecute"}  # PREFER_NO_SCHEDULE blocks nothing


def _tolerates(tolerations: list[Mapping[str, Any]], taint: Mapping[str, Any]) -> bool:
    effect = TAINT_EFFECTS.get(str(taint.get("effect")))
    for t in tolerations:
        exists = t.get("operator") == "Exists"
        if (
            (t.get("key") == taint.get("key") or (exists and not t.get("key")))
            and (exists or t.get("value") == taint.get("value"))
            and t.get("effect") in (None, "", effect)
        ):
            return True
    return False


def _pools(resources: list[StackResource]) -> list[StackResource]:
    return [r for r in resources if r.type == "gcp:container/nodePool:NodePool"]


def _placements(resources: list[StackResource]) -> Iterable[tuple[str, Mapping[str, Any]]]:
    """(name, pod spec or chart values) for every pod template and Helm release."""
    for r in resources:
        if r.type in POD_KINDS:
            yield r.name, _dig(r.props, (*POD_KINDS[r.type], "spec")) or {}
        elif r.type == "kubernetes:helm.sh/v3:Release":
            yield r.name, r.props.get("values") or {}


def pods_land_on_a_pool(resources: list[StackResource]) -> list[str]:
    """A pod (or chart) that selects a node pool by its label finds that pool and tolerates its
    taints: otherwise it stays Pending, silently, until someone looks."""
    pools = {
        (_dig(p.props, ("nodeConfig", "labels")) or {}).get(POOL_LABEL): _dig(p.props, ("nodeConfig", "taints")) or []
        for p in _pools(resources)
    }
    found = []
    for name, pod in _placements(resources):
        wanted = (pod.get("nodeSelector") or {}).get(POOL_LABEL)
        if wanted is None:
            continue
        if wanted not in pools:
            found.append(f"{name}: selects pool {POOL_LABEL}={wanted}, which the stack does not have")
            continue
        blocked = [t["key"] for t in pools[wanted] if not _tolerates(pod.get("tolerations") or [], t)]
        if blocked:
            found.append(f"{name}: does not tolerate the taints {blocked} of pool {wanted}")
    return found


def prod_survives_a_preemption(resources: list[StackResource]) -> list[str]:
    """prod: exactly one on-demand pool (the system pool) holding KEDA while every Spot pool is
    tainted against system pods; workers spread over zones and nodes behind a PodDisruptionBudget;
    maintenance windows on the cluster and Memorystore; a release channel."""
    clusters = [r for r in resources if _is_cluster(r) and _env(r.props) == "prod"]
    if not clusters:
        return []
    found = []
    pools = _pools(resources)
    on_demand = [p for p in pools if not _on_spot(p.props.get("nodeConfig") or {})]
    system = [p for p in on_demand if (_dig(p.props, ("nodeConfig", "labels")) or {}).get(POOL_LABEL) == SYSTEM_POOL]
    if len(on_demand) != 1 or len(system) != 1:
        found.append(f"prod needs exactly one on-demand pool, the system pool (found {[p.name for p in on_demand]})")
    for p in pools:
        node = p.props.get("nodeConfig") or {}
        if _on_spot(node) and not any(TAINT_EFFECTS.get(str(t.get("effect"))) for t in node.get("taints") or []):
            found.append(
                f"{p.name}: a Spot pool beside the system pool needs a NoSchedule taint (system pods avoid it)"
            )
    for r in resources:
        if r.type == "kubernetes:helm.sh/v3:Release" and r.props.get("chart") == "keda":
            values = r.props.get("values") or {}
            if (values.get("nodeSelector") or {}).get(POOL_LABEL) != SYSTEM_POOL:
                found.append(f"{r.name}: KEDA runs on the system pool (nodeSelector {POOL_LABEL}: {SYSTEM_POOL})")
            if not values.get("podDisruptionBudget"):
                found.append(f"{r.name}: KEDA needs a PodDisruptionBudget")
    budgets = [
        (str(_dig(r.props, ("metadata", "namespace"))), _dig(r.props, ("spec", "selector", "matchLabels")) or {})
        for r in resources
        if r.type == "kubernetes:policy/v1:PodDisruptionBudget"
    ]
    for r in resources:
        if r.type != "kubernetes:apps/v1:Deployment":
            continue
        ns, labels = (
            str(_dig(r.props, ("metadata", "namespace"))),
            _dig(r.props, ("spec", "template", "metadata", "labels")) or {},
        )
        keys = {
            c.get("topologyKey") for c in _dig(r.props, ("spec", "template", "spec", "topologySpreadConstraints")) or []
        }
        if not {"topology.kubernetes.io/zone", "kubernetes.io/hostname"} <= keys:
            found.append(f"{r.name}: prod Deployments spread over zones and nodes (topologySpreadConstraints)")
        if not any(n == ns and sel and sel.items() <= labels.items() for n, sel in budgets):
            found.append(f"{r.name}: prod Deployments need a PodDisruptionBudget")
    for c in clusters:
        if not _dig(c.props, ("maintenancePolicy", "recurringWindow")):
            found.append(f"{c.name}: prod clusters need a maintenance window")
        if not _dig(c.props, ("releaseChannel", "channel")):
            found.append(f"{c.name}: prod clusters need a release channel")
    for r in resources:
        if r.type == "gcp:redis/instance:Instance" and not _dig(
            r.props, ("maintenancePolicy", "weeklyMaintenanceWindows")
        ):
            found.append(f"{r.name}: prod Memorystore needs a maintenance window")
    return found


def service_accounts_distinct(resources: list[StackResource]) -> list[str]:
    """Every workload its own account: two account resources with one id would be one account
    (the second create fails, or a shortened long name folds two variants into one identity)."""
    ids = [str(r.props.get("accountId")) for r in resources if r.type == "gcp:serviceaccount/account:Account"]
    return [f"service account id {i} is declared {ids.count(i)} times" for i in sorted(set(ids)) if ids.count(i) > 1]


STACK_RULES: dict[str, tuple[str, Callable[[list[StackResource]], list[str]]]] = {
    "alerts-for-subscriptions": ("Every dead-lettered subscription is watched by an alert.", alerts_for_subscriptions),
    "workload-identity-after-cluster": (
        "Workload identity grants depend on the cluster.",
        workload_identity_after_cluster,
    ),
    "service-agents-created": ("Grants to service agents depend on their ServiceIdentity.", service_agents_created),
    "images-built-first": ("What names an image depends on the image build.", images_built_first),
    "autoscaled-without-replicas": ("Autoscaled Deployments leave replicas alone.", autoscaled_without_replicas),
    "event-triggers-after-eventarc-agent": (
        "Event-triggered functions wait for the Eventarc agent's role to settle.",
        event_triggers_after_eventarc_agent,
    ),
    "runs-as-after-grants": (
        "What runs as an account waits for that account's grants to settle.",
        runs_as_after_grants,
    ),
    "apis-settled": ("What uses an API waits for it to settle.", apis_settled),
    "perma-diffs-ignored": ("Known permanent-diff fields are in ignore_changes.", perma_diffs_ignored),
    "namespaces-locked-down": ("Pod namespaces enforce PSS restricted and deny by default.", namespaces_locked_down),
    "control-plane-reaches-charts": (
        "Private clusters open the ports their charts need.",
        control_plane_reaches_charts,
    ),
    "review-stack-unprotected": ("Review stacks protect nothing.", review_stack_unprotected),
    "service-accounts-distinct": ("No two service accounts share an id.", service_accounts_distinct),
    "pods-land-on-a-pool": ("Pods find the node pool they select and tolerate its taints.", pods_land_on_a_pool),
    "prod-survives-a-preemption": (
        "prod: one on-demand system pool with KEDA, tainted Spot pools, spread and budgets, maintenance windows.",
        prod_survives_a_preemption,
    ),
}


def violations(resources: Iterable[Any]) -> list[str]:
    """Every violation of every rule in a stack, as ``rule: type: message`` lines."""
    stack = as_stack(resources)
    found = [f"{r.name}: {s.type}: {m}" for s in stack for r in RULES for m in r.check(s.type, s.props)]
    return found + [f"{name}: {m}" for name, (_, rule) in STACK_RULES.items() for m in rule(stack)]
