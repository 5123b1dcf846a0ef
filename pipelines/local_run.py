"""Run the training pipeline on this machine with ``kfp.local`` against a local stack."""

import contextlib
import json
import os
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kfp.local

from app.settings import TrainingResourcesConfig
from pipelines.training import build_pipeline


@dataclass
class TrainingRequest:
    offline_uri: str
    impressions_uri: str
    registry_uri: str
    pipeline_root: str
    env: str
    variant: str
    worker_deployment: str
    arguments: dict[str, Any] = field(default_factory=dict)  # the pipeline's optional parameters
    # The stack's ladder: compiled into the pipeline (one branch per machine), as in the cloud.
    resources: TrainingResourcesConfig = field(default_factory=TrainingResourcesConfig)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class TrainingFailed(RuntimeError):
    pass


@contextlib.contextmanager
def _output_to(log: Path) -> Iterator[None]:
    """Send this process's stdout/stderr (and the steps' subprocesses') to ``log``.

    kfp.local streams every step's executor input and output; that belongs in a log, not in a
    command's output (``--json`` must print one object)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, "a", buffering=1, errors="replace") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            # kfp.local prints the steps' output through Python's sys.stdout, which may not be fd 1
            # (pytest, notebooks): swap the objects as well as the descriptors.
            with contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
                yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def run_training(req: TrainingRequest) -> dict[str, Any]:
    """Run every step in this interpreter (no containers); returns the run's outputs and timing.

    The steps' logs go to ``<pipeline_root>/training.log``; a failure raises ``TrainingFailed``
    with the log's last lines."""
    root = Path(req.pipeline_root)
    root.mkdir(parents=True, exist_ok=True)
    log = root / "training.log"
    kfp.local.init(runner=kfp.local.SubprocessRunner(use_venv=False), pipeline_root=req.pipeline_root)
    started = time.perf_counter()
    try:
        with _output_to(log):
            task = _run(req)
    except RuntimeError as exc:
        errors = [line for line in log.read_text(errors="replace").splitlines() if "Error" in line or "error" in line]
        detail = errors[-1].strip() if errors else f"see {log}"
        raise TrainingFailed(_ANSI.sub("", f"{exc}; {detail} (log: {log})")) from None
    out = dict(task.outputs)
    out["metrics"] = json.loads(out.pop("metrics_json"))
    out["dataset"] = json.loads(out.pop("dataset_json"))
    out["seconds"] = round(time.perf_counter() - started, 1)
    out["log"] = str(log)
    return out


def _run(req: TrainingRequest) -> Any:
    return build_pipeline(resources=req.resources)(
        offline_uri=req.offline_uri,
        impressions_uri=req.impressions_uri,
        registry_uri=req.registry_uri,
        env=req.env,
        worker_deployment=req.worker_deployment,
        variant=req.variant,
        **req.arguments,
    )
