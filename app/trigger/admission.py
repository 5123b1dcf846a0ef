"""What a cloud stack's trigger function agrees to submit: its own stack's pipeline spec, with each
trained variant's parameters as the program published them, and only the training window chosen
by the sender.

Anyone who may publish to the training-triggers topic (the drift account, project editors) reaches
this function, and the pipeline it submits runs as the pipeline account, which writes the model
registry. So the payload names nothing that runs or where it lands: the spec is the one
``infra/training.py`` uploaded (its URI and SHA-256 are in the function's environment, and the
submitter checks the object's bytes against the digest), and every parameter that says where
data is read, where models are registered or which Deployments they go to is the program's.
The local stack (kfp.local, ``app.trigger.local``) submits without this: it runs the code in the
checkout.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.contracts import EnvContractError, TriggerEnv
from app.trigger.payload import PayloadError, TriggerPayload

# What a sender may choose for one run: the window it trains and tests on (a drift check retrains
# on the days before the drift and tests on the recent ones, app.commands.drift.retrain_window).
# Every other parameter is the program's for the variant, or refused.
WINDOW_DATES = ("window_start", "window_end")
WINDOW_DAYS = ("valid_days", "test_days")
TUNABLE = (*WINDOW_DATES, *WINDOW_DAYS)
MAX_WINDOW_DAYS = 90


class SpecDigestMismatch(RuntimeError):
    """The stored spec's bytes are not the ones the program published (someone rewrote the object)."""


def _show(value: Any) -> str:
    """A sent value in a one-line reason: repr'd (no newlines), and short."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _same(sent: Any, published: Any) -> bool:
    # JSON-equal, with 5 and 5.0 the same number but true never 1.
    if isinstance(sent, int | float) and isinstance(published, int | float):
        return isinstance(sent, bool) == isinstance(published, bool) and sent == published
    return json.dumps(sent, sort_keys=True) == json.dumps(published, sort_keys=True)


def _tunable(key: str, value: Any) -> str | None:
    """Why ``value`` is not a usable ``key``, or None."""
    if key in WINDOW_DATES:
        if value == "":
            return None
        if not isinstance(value, str) or len(value) > 40:
            return "an ISO date or time"
        try:
            datetime.fromisoformat(value)
        except ValueError:
            return "an ISO date or time"
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_WINDOW_DAYS:
        return f"a whole number of days from 1 to {MAX_WINDOW_DAYS}"
    return None


@dataclass(frozen=True)
class StackPipeline:
    """One stack's pipeline as the program published it (``TriggerEnv``)."""

    stack: str
    template_uri: str
    spec_sha256: str
    parameters: Mapping[str, Mapping[str, Any]]  # trained variant -> its published parameters

    @classmethod
    def from_env(cls, env: TriggerEnv) -> StackPipeline:
        try:
            parameters = json.loads(env.variant_parameters)
        except (TypeError, ValueError) as exc:
            raise EnvContractError(f"VARIANT_PARAMETERS: {exc}") from None
        if not isinstance(parameters, dict) or not all(isinstance(p, dict) for p in parameters.values()):
            raise EnvContractError("VARIANT_PARAMETERS: not a JSON object of variant -> parameters")
        if not str(env.pipeline_template).startswith(f"gs://{env.ledger_bucket}/pipelines/"):
            raise EnvContractError(
                f"PIPELINE_TEMPLATE: not under gs://{env.ledger_bucket}/pipelines/, the stack's bucket"
            )
        if len(str(env.pipeline_spec_sha256)) != 64:
            raise EnvContractError("PIPELINE_SPEC_SHA256: not a SHA-256 hex digest")
        return cls(env.stack, env.pipeline_template, env.pipeline_spec_sha256, parameters)

    def admit(self, p: TriggerPayload) -> TriggerPayload:
        """The payload to submit: the stack's spec and the variant's published parameters with the
        sender's window. ``PayloadError`` (400) with one line naming the first thing refused."""
        if p.stack != self.stack:
            raise PayloadError(f"stack: this function submits for stack {self.stack} only, not {_show(p.stack)}")
        if p.pipeline_spec is not None:
            raise PayloadError(f"pipeline_spec: inline specs are refused; send template_uri {self.template_uri}")
        if p.template_uri != self.template_uri:
            raise PayloadError(
                f"template_uri: only this stack's pipeline spec {self.template_uri} runs, not {_show(p.template_uri)}"
            )
        variant = p.parameters.get("variant")
        if not isinstance(variant, str) or variant not in self.parameters:
            raise PayloadError(
                f"parameters.variant: {_show(variant)} is not a variant this stack trains "
                f"({', '.join(sorted(self.parameters))})"
            )
        published = self.parameters[variant]
        chosen: dict[str, Any] = {}
        for key, value in p.parameters.items():
            if key in published:
                if not _same(value, published[key]):
                    raise PayloadError(
                        f"parameters.{key}: the stack sets it for variant {variant} "
                        f"({_show(published[key])}); a trigger may not change it"
                    )
            elif key in TUNABLE:
                problem = _tunable(key, value)
                if problem:
                    raise PayloadError(f"parameters.{key}: {_show(value)} is not {problem}")
                chosen[key] = value
            else:
                name = key if key.isidentifier() else _show(key)
                raise PayloadError(
                    f"parameters.{name}: not a parameter a trigger may set (it may set {', '.join(TUNABLE)})"
                )
        return p.model_copy(update={"parameters": {**published, **chosen}})


def verified_spec(uri: str, sha256: str, read: Callable[[str], bytes]) -> bytes:
    """The spec's bytes at ``uri``, only if their SHA-256 is the published ``sha256``."""
    data = read(uri)
    found = hashlib.sha256(data).hexdigest()
    if found != sha256:
        raise SpecDigestMismatch(f"{uri} has SHA-256 {found[:16]}..., the program published {sha256[:16]}...")
    return data
