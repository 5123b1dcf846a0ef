"""Run the program under Pulumi's mocks and list what it declares: the stack's inventory.

No Pulumi CLI, no plugins and no credentials: ``pulumi.runtime.set_mocks`` stands in for the engine
and the providers, answers with plausible computed values (an e-mail for a service account, an
endpoint for a cluster) and records every registration. ``rerank infra plan`` prints the inventory
and diffs it against another commit's; the tests assert on it; the policy pack's rules run over it.
"""

from __future__ import annotations

import hashlib
import json
import runpy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import mocks as pulumi_mocks

from app.settings import PROJECT, REPO_ROOT, StackSettings
from infra.common import content_digest

PROJECT_NUMBER = "123456789012"
rpc_secret_sig = pulumi.runtime.rpc._special_sig_key
rpc_secret_value = pulumi.runtime.rpc._special_secret_sig


@dataclass(frozen=True)
class PlannedResource:
    """One registration: the type token, the logical name, its inputs as the engine sees them."""

    type: str
    name: str
    urn: str
    inputs: dict[str, Any]
    custom: bool
    protect: bool
    # URNs as the engine records them: explicit depends_on plus the resources whose outputs feed
    # an input. A parent component's dependencies are not implied for its children.
    dependencies: tuple[str, ...] = ()
    parent: str | None = None
    # Engine options a guard reads: input properties a diff skips, and resources a destroy leaves.
    ignore_changes: tuple[str, ...] = ()
    retain_on_delete: bool = False

    @property
    def key(self) -> str:
        return f"{self.type}::{self.name}"

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "name": self.name,
            "protect": self.protect,
            "dependencies": sorted({urn_key(u) for u in self.dependencies}),
            "parent": urn_key(self.parent) if self.parent else None,
            "ignore_changes": sorted(self.ignore_changes),
            "retain_on_delete": self.retain_on_delete,
            "settings": key_settings(self),
            "inputs": _digested(self.inputs),
        }


def urn_key(urn: str) -> str:
    """``type::name`` of a URN (``urn:pulumi:<stack>::<project>::<parent types$>type::name``)."""
    _stack, _project, qualified, name = urn.split("::", 3)
    return f"{qualified.rsplit('$', 1)[-1]}::{name}"


@dataclass
class Plan:
    stack: str
    resources: list[PlannedResource] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)

    def of_type(self, type_token: str) -> list[PlannedResource]:
        return [r for r in self.resources if r.type == type_token]

    def resource(self, ref: PlannedResource | str) -> PlannedResource:
        """The resource a ``type::name`` key (or a logical name used once in the plan) refers to."""
        if isinstance(ref, PlannedResource):
            return ref
        found = [r for r in self.resources if ref in (r.key, r.name)]
        if len(found) != 1:
            raise KeyError(f"{ref!r} names {len(found)} resources in the {self.stack} plan; give type::name")
        return found[0]

    def dependencies(self, ref: PlannedResource | str, transitive: bool = False) -> set[str]:
        """Keys of what ``ref`` waits for: as recorded, or with ``transitive`` everything upstream."""
        from infra.policy.rules import upstream

        direct = self.resource(ref).dependencies
        if not transitive:
            return {urn_key(u) for u in direct}
        return {urn_key(u) for u in upstream(direct, {r.urn: r.dependencies for r in self.resources})}

    def depends_on(self, ref: PlannedResource | str, on: PlannedResource | str) -> bool:
        """Whether ``ref`` is created only after ``on`` (directly or through other resources)."""
        return self.resource(on).key in self.dependencies(ref, transitive=True)

    def to_json(self) -> dict[str, Any]:
        custom = [r for r in self.resources if r.custom]
        counts: dict[str, int] = {}
        for r in custom:
            counts[r.type] = counts.get(r.type, 0) + 1
        return {
            "stack": self.stack,
            "resources": len(custom),
            "by_type": dict(sorted(counts.items())),
            "inventory": [r.to_json() for r in sorted(custom, key=lambda r: r.key)],
            "outputs": self.outputs,
        }


def _digits(text: str, n: int) -> str:
    return str(int(hashlib.sha256(text.encode()).hexdigest(), 16))[:n]


class _Recorder(pulumi_mocks.MockMonitor):
    """The mock engine, also keeping what ``MockResourceArgs`` leaves out (protect, dependencies)."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.registrations: list[PlannedResource] = []

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            inputs = pulumi.runtime.rpc.deserialize_properties(request.object)
            self.registrations.append(
                PlannedResource(
                    type=request.type,
                    name=request.name,
                    urn=response.urn,
                    inputs=_plain(inputs),
                    custom=bool(request.custom),
                    protect=bool(request.protect),
                    dependencies=tuple(request.dependencies),
                    parent=request.parent or None,
                    ignore_changes=tuple(request.ignoreChanges),
                    retain_on_delete=bool(request.retainOnDelete),
                )
            )
        return response


def _plain(value: Any) -> Any:
    """Inputs as JSON-able data: secrets unwrapped, whole numbers as ints, files by their path in
    the repository and a digest of their content (so a changed function source shows in a diff)."""
    if isinstance(value, dict) and value.get(rpc_secret_sig) == rpc_secret_value:
        return _plain(value["value"])
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if not k.startswith("__")}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, pulumi.Resource):
        return f"<resource {type(value).__name__}>"
    if isinstance(value, pulumi.AssetArchive):
        return {k: _plain(v) for k, v in value.assets.items()}
    if isinstance(value, pulumi.FileAsset | pulumi.FileArchive):
        path = Path(value.path)
        shown = path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path
        digest = content_digest(path.read_bytes()) if path.is_file() else "?"
        return f"<{type(value).__name__} {shown} sha256:{digest}>"
    if isinstance(value, pulumi.StringAsset):
        return f"<StringAsset sha256:{content_digest(value.text.encode())}>"
    return repr(value)


class StackMocks(pulumi.runtime.Mocks):
    """Computed outputs a real provider would return, so dependent resources see realistic values."""

    def __init__(self, settings: StackSettings) -> None:
        self.project = settings.gcp.project
        self.region = settings.gcp.region
        self.aws_account = settings.cross_cloud.aws_account_id if settings.cross_cloud else "000000000000"
        self.aws_region = settings.aws.region

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        inputs, t, p = dict(args.inputs), args.typ, self.project
        outputs: dict[str, Any] = {}
        rid = f"{args.name}-id"
        if t == "gcp:serviceaccount/account:Account":
            email = f"{inputs['accountId']}@{p}.iam.gserviceaccount.com"
            rid = f"projects/{p}/serviceAccounts/{email}"
            outputs = {"email": email, "uniqueId": _digits(email, 21), "member": f"serviceAccount:{email}", "name": rid}
        elif t == "gcp:pubsub/topic:Topic":
            rid = f"projects/{p}/topics/{inputs['name']}"
        elif t == "gcp:pubsub/subscription:Subscription":
            rid = f"projects/{p}/subscriptions/{inputs['name']}"
        elif t == "gcp:bigquery/dataset:Dataset":
            rid = f"projects/{p}/datasets/{inputs['datasetId']}"
        elif t == "gcp:bigquery/table:Table":
            rid = f"projects/{p}/datasets/{inputs['datasetId']}/tables/{inputs['tableId']}"
        elif t == "gcp:redis/instance:Instance":
            tls = inputs.get("transitEncryptionMode") == "SERVER_AUTHENTICATION"
            outputs = {
                "host": "10.128.0.3",
                "port": 6378 if tls else 6379,
                "authString": "mock-auth-string" if inputs.get("authEnabled") else "",
                "serverCaCerts": [{"cert": "-----BEGIN CERTIFICATE-----\nmock\n-----END CERTIFICATE-----"}]
                if tls
                else [],
            }
        elif t == "gcp:container/cluster:Cluster":
            outputs = {
                "controlPlaneEndpointsConfig": {
                    "dnsEndpointConfig": {"allowExternalTraffic": True, "endpoint": f"gke-mock.{self.region}.gke.goog"}
                }
            }
        elif t == "gcp:compute/network:Network":
            rid = f"projects/{p}/global/networks/{inputs['name']}"
            outputs = {"selfLink": f"https://www.googleapis.com/compute/v1/{rid}"}
        elif t == "gcp:compute/subnetwork:Subnetwork":
            outputs = {
                "selfLink": f"https://www.googleapis.com/compute/v1/projects/{p}/regions/{self.region}/subnetworks/{inputs['name']}"
            }
        elif t == "gcp:iam/workloadIdentityPool:WorkloadIdentityPool":
            pool = inputs["workloadIdentityPoolId"]
            outputs = {"name": f"projects/{PROJECT_NUMBER}/locations/global/workloadIdentityPools/{pool}"}
        elif t == "gcp:dataflow/flexTemplateJob:FlexTemplateJob":
            outputs = {"jobId": f"2026-01-01_00_00_00-{_digits(inputs['name'], 19)}"}
        elif t == "gcp:secretmanager/secret:Secret":
            rid = f"projects/{p}/secrets/{inputs['secretId']}"
        elif t == "gcp:secretmanager/secretVersion:SecretVersion":
            secret = str(inputs["secret"]).rsplit("/", 1)[-1]
            outputs = {"name": f"projects/{PROJECT_NUMBER}/secrets/{secret}/versions/1", "version": "1"}
        elif t == "gcp:projects/serviceIdentity:ServiceIdentity":
            agent = f"service-{PROJECT_NUMBER}@gcp-sa-{inputs['service'].split('.')[0]}.iam.gserviceaccount.com"
            outputs = {"email": agent, "member": f"serviceAccount:{agent}"}
        elif t == "gcp:artifactregistry/repository:Repository":
            rid = f"projects/{p}/locations/{inputs['location']}/repositories/{inputs['repositoryId']}"
            outputs = {"name": inputs["repositoryId"]}
        elif t == "gcp:compute/globalAddress:GlobalAddress":
            outputs = {"address": "10.64.0.0"}
        elif t == "command:local:Command":
            # scripts/build-images.sh prints the digests of what it built.
            digests = {
                i: f"sha256:{hashlib.sha256(f'{args.name}/{i}'.encode()).hexdigest()}" for i in ("app", "ingest")
            }
            outputs = {"stdout": json.dumps(digests), "stderr": ""}
        elif t == "gcp:cloudfunctionsv2/function:Function" and inputs.get("eventTrigger"):
            # Eventarc names the trigger it makes for a function after the function.
            trigger = f"projects/{p}/locations/{self.region}/triggers/{inputs['name']}-{_digits(args.name, 6)}"
            outputs = {"eventTrigger": {**inputs["eventTrigger"], "trigger": trigger}}
        elif t == "gcp:monitoring/notificationChannel:NotificationChannel":
            rid = f"projects/{p}/notificationChannels/{_digits(args.name, 19)}"
        elif t.startswith("aws:"):
            service, kind = t.split(":")[1].split("/")[0], t.split("/")[-1].split(":")[0]
            region = "" if service == "iam" else self.aws_region
            resource = f"{kind.lower()}/{inputs.get('name', args.name)}"
            outputs = {"arn": f"arn:aws:{service}:{region}:{self.aws_account}:{resource}"}
        state = {**inputs, **outputs}
        if "id" not in state:
            state["id"] = rid
        state.setdefault("name", inputs.get("name", args.name))
        return rid, state

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        if args.token == "gcp:organizations/getProject:getProject":
            return {"number": PROJECT_NUMBER, "projectId": self.project, "name": self.project}
        raise NotImplementedError(f"the program made an unexpected invoke: {args.token}")


def _planned(settings: StackSettings, program: Callable[[], dict[str, Any]], config: dict[str, str]) -> Plan:
    """Run ``program`` under mocks for ``settings``'s stack with Pulumi config ``config``."""
    mocks = StackMocks(settings)
    recorder = _Recorder(mocks)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=settings.stack, preview=False, monitor=recorder)
    pulumi.runtime.set_all_config(config)
    plan = Plan(stack=settings.stack)

    @pulumi.runtime.test
    def run() -> pulumi.Output[Any]:
        outputs = program()
        return pulumi.Output.from_input(outputs).apply(lambda resolved: plan.outputs.update(_plain(resolved)))

    try:
        run()
    finally:
        pulumi.runtime.set_all_config({})
    plan.resources = list(recorder.registrations)
    return plan


def plan_stack(settings: StackSettings, pipeline_spec: str | None = None) -> Plan:
    """Run ``infra.program.build`` for ``settings`` under mocks and return what it declared
    (``pipeline_spec``: an already compiled training pipeline, to skip compiling it again)."""
    from infra.program import build

    return _planned(settings, lambda: build(settings, pipeline_spec), {})


def plan_entry(settings: StackSettings, config: dict[str, str]) -> Plan:
    """Run ``infra/__main__.py`` as ``pulumi up`` does, with ``config`` as the engine passes it
    (``settings`` names the stack and feeds the mocks). Its exports go to the engine, not here."""

    def entry() -> dict[str, Any]:
        runpy.run_path(str(REPO_ROOT / "infra/__main__.py"))
        return {}

    return _planned(settings, entry, config)


def key_settings(r: PlannedResource) -> dict[str, Any]:
    """What a reviewer scans first: the scalar inputs (names, sizes, tiers, flags)."""
    skip = ("project", "content", "source", "assumeRolePolicy", "policy")
    return {k: v for k, v in r.inputs.items() if not isinstance(v, dict | list) and k not in skip}


# Inputs that are uploaded objects or payloads (a compiled pipeline, a rendered template spec, an
# archive, base64 data): opaque to a reviewer, shown by digest when long.
OPAQUE_INPUTS = ("content", "source", "data", "secretData")
LONG = 300


def _document(text: str) -> Any:
    """``text`` parsed when it is a JSON or YAML document (a mapping or a list), else None."""
    try:
        doc = json.loads(text)
    except ValueError:
        try:
            doc = yaml.safe_load(text) if "\n" in text else None
        except yaml.YAMLError:
            doc = None
    return doc if isinstance(doc, dict | list) else None


def _digested(value: Any, key: str | None = None) -> Any:
    """Inputs as a reviewer reads them: long JSON or YAML documents (a trust policy, an IAM or
    network policy, a kubeconfig) parsed, so a diff names the leaf that changed; only opaque blobs
    by their digest, so diffs stay short."""
    if isinstance(value, dict):
        return {k: _digested(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_digested(v, key) for v in value]
    if isinstance(value, str) and len(value) > LONG:
        doc = None if key in OPAQUE_INPUTS else _document(value)
        if doc is not None:
            return _digested(doc, key)
        return f"sha256:{content_digest(value.encode())} ({len(value)} characters)"
    return value
