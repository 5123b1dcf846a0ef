"""`rerank models list|show ID`: registered models, their evaluations, and which variant serves which since when.

Locally the registry is the stack's (``.rerank/local/<stack>/registry``); any other (a cloud
stack's, through the pipeline bucket's Cloud Storage FUSE mount) with ``--registry PATH``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from app.commands.base import RunFailed, UsageError, emit
from app.settings import load_stack

FIGURES = ("model_ndcg_at_10", "baseline_ndcg_at_10", "serving_ndcg_at_10")


def registry_path(args: argparse.Namespace, state_dir: Path) -> Path:
    if args.registry:
        path = Path(args.registry)
    else:
        settings = load_stack(args.stack)
        if settings.env != "local":
            raise UsageError(
                f"stack {args.stack} keeps its registry in the pipeline bucket: pass --registry /gcs/<bucket>/registry"
            )
        path = state_dir / settings.stack / "registry"
    if not path.is_dir():
        raise UsageError(f"{path}: no model registry there (train a model first: rerank train)")
    return path


def _row(meta: dict[str, Any], serves: list[str]) -> dict[str, Any]:
    m = meta.get("metrics", {})
    return {
        "model_id": meta["model_id"],
        "task": meta.get("task"),
        "registered_at": meta.get("registered_at"),
        "approved": bool(meta.get("approved")),
        "approval_reason": meta.get("approval_reason"),
        "evaluated_against": (meta.get("evaluation") or {}).get("serving_model_id"),
        "data_window": meta.get("data_window"),
        **{k: m.get(k) for k in FIGURES},
        "serves": serves,
    }


def run(args: argparse.Namespace, state_dir: Path) -> int:
    from app.ranking.registry import DamagedRecord, ModelRegistry, RegistryError

    registry = ModelRegistry(registry_path(args, state_dir))
    if args.action == "list" and args.model_id:
        raise UsageError("list takes no model id (rerank models show ID)")
    if args.action == "show" and not args.model_id:
        raise UsageError("show needs a model id (rerank models list shows them)")
    try:
        serving = registry.deployments()
        serves: dict[str, list[str]] = {}
        for variant, d in serving.items():
            serves.setdefault(d.model_id, []).append(variant)
        if args.action == "list":
            rows = [_row(meta, serves.get(meta["model_id"], [])) for meta in registry.models()]
            doc = {
                "registry": str(registry.root),
                "models": rows,
                "serving": {
                    v: {"model_id": d.model_id, "since": d.deployed_at, "reason": d.reason} for v, d in serving.items()
                },
                "damaged": registry.damaged,
            }
            emit(args, doc, lambda: _list_text(doc))
            if registry.damaged:
                raise RunFailed(
                    f"{len(registry.damaged)} model record(s) could not be read, listed without them: "
                    f"{registry.damaged[0]}"
                )
            return 0
        try:
            meta = registry.metadata(args.model_id)
        except DamagedRecord:
            raise
        except RegistryError as exc:
            raise UsageError(str(exc)) from None
        history = [
            {"variant": d.variant, "since": d.deployed_at, "reason": d.reason, "replaced": d.previous_model_id}
            for d in registry.history()
            if d.model_id == args.model_id
        ]
    except DamagedRecord as exc:
        raise RunFailed(str(exc)) from None
    doc = {"model": meta, "serves": serves.get(args.model_id, []), "deployments": history}
    emit(args, doc, lambda: _show_text(doc))
    return 0


def _fmt(x: Any) -> str:
    return f"{x:.4f}" if isinstance(x, float) else "-"


def _list_text(doc: dict[str, Any]) -> str:
    if not doc["models"]:
        return f"no models registered in {doc['registry']}"
    lines = [f"{'model':44} {'registered (UTC)':19} {'approved':8} {'NDCG@10 new / baseline / serving':33} serves"]
    for r in doc["models"]:
        figures = " / ".join(_fmt(r[k]) for k in FIGURES)
        lines.append(
            f"{r['model_id']:44} {str(r['registered_at'])[:19].replace('T', ' '):19} "
            f"{'yes' if r['approved'] else 'no':8} {figures:33} {', '.join(r['serves']) or '-'}"
        )
    lines.append("")
    for v, d in sorted(doc["serving"].items()):
        lines.append(f"{v} serves {d['model_id']} since {d['since'][:19].replace('T', ' ')}")
    return "\n".join(lines)


def _show_text(doc: dict[str, Any]) -> str:
    from app.commands.train import metrics_table

    meta = doc["model"]
    w = meta.get("data_window") or {}
    lines = [
        f"{meta['model_id']}: {meta.get('task')} ({meta.get('objective', '?')}), env {meta.get('env')}, "
        f"code {meta.get('code_version') or '?'}",
        f"registered {meta.get('registered_at')}; trained on {w.get('start')} .. {w.get('train_end')}, "
        f"tested on {w.get('valid_end')} .. {w.get('end')}",
        f"{'approved' if meta.get('approved') else 'not approved'}: {meta.get('approval_reason')}",
        *metrics_table(meta.get("metrics", {})),
        f"serves: {', '.join(doc['serves']) or 'nothing now'}",
    ]
    lines += [
        f"deployed to {h['variant']} at {h['since']} (replacing {h['replaced'] or 'nothing'})"
        for h in doc["deployments"]
    ]
    return "\n".join(lines)
