"""The guardrails every stack must pass, as plain functions over a resource's type and its inputs
(the property names the engine uses: ``deadLetterPolicy``, not ``dead_letter_policy``).

No Pulumi import here: ``__main__.py`` wraps each rule for CrossGuard (``pulumi preview
--policy-pack infra/policy``), and the tests run the same rules over the inventory the program
declares under mocks (``infra.plan``) and over deliberately bad resources.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
        return []  # a dead-letter queue's own subscription
    policy = props.get("deadLetterPolicy") or {}
    if not policy.get("deadLetterTopic"):
        return ["consumed subscriptions need a dead-letter policy so a poison message cannot block them"]
    if int(policy.get("maxDeliveryAttempts") or 0) < 5:
        return ["dead-letter policies need maxDeliveryAttempts of at least 5"]
    return []


def worker_pool_preemptible(t: str, props: Props) -> list[str]:
    if t != "gcp:container/nodePool:NodePool":
        return []
    node = props.get("nodeConfig") or {}
    found = []
    if not (node.get("spot") or node.get("preemptible")):
        found.append("worker node pools run on spot or preemptible VMs")
    if (node.get("workloadMetadataConfig") or {}).get("mode") != "GKE_METADATA":
        found.append("node pools must use workload identity (workloadMetadataConfig.mode GKE_METADATA)")
    if not props.get("autoscaling"):
        found.append("worker node pools must autoscale")
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
        "Node pools are spot/preemptible, autoscaled, workload identity.",
        worker_pool_preemptible,
    ),
    Rule("gke-workload-identity", "GKE clusters use workload identity.", workload_identity),
    Rule("prod-protected", "prod: deletion protection, HA Redis with AUTH and TLS, PITR.", prod_protected),
    Rule("results-expire", "The results table expires items and is encrypted.", results_expire),
)


def alerts_for_subscriptions(resources: list[tuple[str, Props]]) -> list[str]:
    """Stack rule: a stack that consumes subscriptions also alerts on them."""
    subs = [p for t, p in resources if t == "gcp:pubsub/subscription:Subscription"]
    alerts = [p for t, p in resources if t == "gcp:monitoring/alertPolicy:AlertPolicy"]
    watched = " ".join(str(c) for a in alerts for c in a.get("conditions") or [])
    unwatched = [str(s.get("name")) for s in subs if s.get("deadLetterPolicy") and f'"{s.get("name")}"' not in watched]
    return [f"no alert watches subscription {name}" for name in unwatched]


def violations(resources: list[tuple[str, Props]]) -> list[str]:
    """Every violation of every rule in a stack, as ``rule: type: message`` lines."""
    found = [f"{r.name}: {t}: {m}" for t, props in resources for r in RULES for m in r.check(t, props)]
    return found + [f"alerts-for-subscriptions: {m}" for m in alerts_for_subscriptions(resources)]
