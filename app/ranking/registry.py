"""Model registry and deployment records: plain files under one root.

Locally the root is ``.rerank/local/<stack>/registry``; on Vertex AI it is the pipeline bucket
through its Cloud Storage FUSE mount (``/gcs/<bucket>/registry``), so one implementation serves
both. Layout::

    models/<model_id>/model.txt        the LightGBM booster
    models/<model_id>/metadata.json    task, env, params, data window, evaluation, code version, approval
    deployments/<variant>.json         what a variant's workers serve (workers reload on change)
    deployments/history.jsonl          every deployment, oldest first: which variant served what since when

Whether a model may be deployed is decided at evaluation (``app/ranking/evaluation.decide``),
against the serving model on the same days; the registry only records.

Every record is read through ``read_record``: a file that is not the JSON object this module wrote
(damaged, empty, list-shaped, lacking a field) is a ``DamagedRecord`` naming the file, never a
``KeyError`` in a caller; ``models()`` lists the readable ones and ``damaged`` names the rest.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


class RegistryError(LookupError):
    pass


class DamagedRecord(RegistryError):
    """A registry file that is not the record this module wrote."""


# What each record must hold for its readers, and as what; a field of OPTIONAL, when there, has its type.
MODEL_RECORD = {"model_id": str, "registered_at": str}
DEPLOYMENT_RECORD = {"variant": str, "model_id": str, "model_uri": str, "deployed_at": str}
OPTIONAL = {"metrics": dict, "data_window": dict, "evaluation": dict, "task": str, "env": str}
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def record_from(doc: Any, where: str, required: dict[str, type]) -> dict[str, Any]:
    """``doc`` if it is an object holding every ``required`` field with its type; else ``DamagedRecord``."""
    if not isinstance(doc, dict):
        raise DamagedRecord(f"{where}: damaged record (a JSON {type(doc).__name__}, not an object)")
    optional = {k: v for k, v in OPTIONAL.items() if k in doc and k not in required}
    for key, kind in {**required, **optional}.items():
        if not isinstance(doc.get(key), kind):
            got = "missing" if key not in doc else f"a {type(doc[key]).__name__}"
            raise DamagedRecord(f"{where}: damaged record ({key} is {got}, not a {kind.__name__})")
    return doc


def read_record(path: Path, required: dict[str, type]) -> dict[str, Any]:
    """The JSON record at ``path``, checked as ``record_from`` does."""
    try:
        doc = json.loads(path.read_bytes())
    except (ValueError, RecursionError) as exc:
        raise DamagedRecord(f"{path}: damaged record (not JSON: {' '.join(str(exc).split())[:120]})") from None
    except OSError as exc:
        raise DamagedRecord(f"{path}: unreadable record ({exc.strerror or exc})") from None
    return record_from(doc, str(path), required)


@dataclass(frozen=True)
class Deployment:
    variant: str
    model_id: str
    model_uri: str
    deployed_at: str
    reason: str = ""
    previous_model_id: str | None = None

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Deployment:
        # Records written before the reason was kept carry a metric and value instead: ignored.
        known = {k: v for k, v in doc.items() if k in {f.name for f in fields(cls)}}
        if not isinstance(known.get("reason", ""), str):
            known["reason"] = str(known["reason"])
        if not isinstance(known.get("previous_model_id"), (str, type(None))):
            known["previous_model_id"] = None
        return cls(**known)


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)  # readers (workers) see the old record or the new one, never half


class ModelRegistry:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.damaged: list[str] = []  # the last models() call's unreadable records, one line each

    def register(self, model_file: Path, metadata: dict[str, Any]) -> str:
        created = datetime.now(UTC)
        model_id = f"{metadata.get('task', 'model')}-{created:%Y%m%dT%H%M%S%f}"
        folder = self.root / "models" / model_id
        folder.mkdir(parents=True)
        shutil.copyfile(model_file, folder / "model.txt")
        _write_json(folder / "metadata.json", {**metadata, "model_id": model_id, "registered_at": created.isoformat()})
        return model_id

    def metadata(self, model_id: str) -> dict[str, Any]:
        path = self.root / "models" / model_id / "metadata.json"
        if not _ID.match(model_id) or not path.exists():
            raise RegistryError(f"no model {model_id[:200]!r} in {self.root}")
        return read_record(path, MODEL_RECORD)

    def model_path(self, model_id: str) -> Path:
        return self.root / "models" / model_id / "model.txt"

    def models(self) -> list[dict[str, Any]]:
        """Every readable model record, oldest first; the unreadable ones are in ``damaged``."""
        folder = self.root / "models"
        docs, self.damaged = [], []
        for path in sorted(folder.glob("*/metadata.json")) if folder.is_dir() else []:
            try:
                docs.append(read_record(path, MODEL_RECORD))
            except DamagedRecord as exc:
                self.damaged.append(str(exc))
        return sorted(docs, key=lambda d: d["registered_at"])

    def latest_approved(self, task: str, env: str) -> dict[str, Any]:
        """The newest approved model of ``task`` trained in ``env``: what another pipeline imports."""
        found = [d for d in self.models() if d.get("task") == task and d.get("env") == env and d.get("approved")]
        if not found:
            raise RegistryError(f"no approved {task!r} model for env {env!r} in {self.root}")
        return found[-1]

    def deployment(self, variant: str) -> Deployment | None:
        """What ``variant`` serves; ``DamagedRecord`` when its record is not one this module wrote."""
        path = self.root / "deployments" / f"{variant}.json"
        return Deployment.from_dict(read_record(path, DEPLOYMENT_RECORD)) if path.exists() else None

    def deployments(self) -> dict[str, Deployment]:
        """What every variant serves now."""
        folder = self.root / "deployments"
        paths = sorted(folder.glob("*.json")) if folder.is_dir() else []
        return {p.stem: Deployment.from_dict(read_record(p, DEPLOYMENT_RECORD)) for p in paths}

    def history(self) -> list[Deployment]:
        path = self.root / "deployments" / "history.jsonl"
        try:
            lines = path.read_bytes().splitlines() if path.exists() else []
        except OSError as exc:
            raise DamagedRecord(f"{path}: unreadable record ({exc.strerror or exc})") from None
        out = []
        for n, line in enumerate(lines, start=1):
            if line.strip():
                try:
                    doc = json.loads(line)
                except (ValueError, RecursionError):
                    raise DamagedRecord(f"{path}:{n}: damaged record (not JSON)") from None
                out.append(Deployment.from_dict(record_from(doc, f"{path}:{n}", DEPLOYMENT_RECORD)))
        return out

    def deploy(self, variant: str, model_id: str, reason: str = "") -> Deployment:
        self.metadata(model_id)  # refuses an id the registry does not hold
        current = self.deployment(variant)
        d = Deployment(
            variant,
            model_id,
            str(self.model_path(model_id)),
            datetime.now(UTC).isoformat(),
            reason,
            current.model_id if current else None,
        )
        _write_json(self.root / "deployments" / f"{variant}.json", asdict(d))
        with open(self.root / "deployments" / "history.jsonl", "a") as f:
            f.write(json.dumps(asdict(d), sort_keys=True) + "\n")
        return d
