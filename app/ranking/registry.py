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
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


class RegistryError(LookupError):
    pass


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
        return cls(**{k: v for k, v in doc.items() if k in {f.name for f in fields(cls)}})


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)  # readers (workers) see the old record or the new one, never half


class ModelRegistry:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

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
        if not path.exists():
            raise RegistryError(f"no model {model_id!r} in {self.root}")
        return json.loads(path.read_text())

    def model_path(self, model_id: str) -> Path:
        return self.root / "models" / model_id / "model.txt"

    def models(self) -> list[dict[str, Any]]:
        folder = self.root / "models"
        docs = [json.loads(p.read_text()) for p in folder.glob("*/metadata.json")] if folder.exists() else []
        return sorted(docs, key=lambda d: d["registered_at"])

    def latest_approved(self, task: str, env: str) -> dict[str, Any]:
        """The newest approved model of ``task`` trained in ``env``: what another pipeline imports."""
        found = [d for d in self.models() if d.get("task") == task and d.get("env") == env and d.get("approved")]
        if not found:
            raise RegistryError(f"no approved {task!r} model for env {env!r} in {self.root}")
        return found[-1]

    def deployment(self, variant: str) -> Deployment | None:
        path = self.root / "deployments" / f"{variant}.json"
        return Deployment.from_dict(json.loads(path.read_text())) if path.exists() else None

    def deployments(self) -> dict[str, Deployment]:
        """What every variant serves now."""
        folder = self.root / "deployments"
        paths = sorted(folder.glob("*.json")) if folder.exists() else []
        return {p.stem: Deployment.from_dict(json.loads(p.read_text())) for p in paths}

    def history(self) -> list[Deployment]:
        path = self.root / "deployments" / "history.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        return [Deployment.from_dict(json.loads(line)) for line in lines if line.strip()]

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
