"""One step of ``rerank bench training`` in a process of its own (so its peak RSS is its own):
``python -m bench.training_steps '<json>'`` prints the step's result as JSON on its last line.

The streaming path calls the pipeline's component functions as a run would; the in-memory path
calls the copies of the old steps in bench/in_memory_path.py.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

ENTITIES = "user_profile:v1,user_activity:v1"


def _artifact(kind: Any, path: str, metadata: dict[str, Any] | None = None) -> Any:
    a = kind(uri=path)
    a.metadata.update(metadata or {})
    return a


def streaming(step: str, a: dict[str, Any]) -> dict[str, Any]:
    from kfp.dsl import ClassificationMetrics, Dataset, Metrics, Model

    work = Path(a["work"])
    meta = json.loads((work / "dataset.json").read_text()) if step != "dataset" else {}
    if step == "dataset":
        from pipelines.components.dataset import make_dataset

        outs = {n: _artifact(Dataset, str(work / n)) for n in ("train", "valid", "test", "rejected")}
        text = make_dataset(
            a["offline"], a["impressions"], "", "", a["valid_days"], a["test_days"], ENTITIES,
            outs["train"], outs["valid"], outs["test"], outs["rejected"],
            window_days=a["days"], memory_limit=a["memory_limit"],
        )  # fmt: skip
        result = json.loads(text)
        (work / "dataset.json").write_text(json.dumps({n: dict(outs[n].metadata) for n in outs}))
        return {"rows": sum(s["rows"] for s in result["splits"].values()), "splits": result["splits"]}
    if step in ("train", "baseline"):
        from pipelines.components.train import train_model

        extra = {}
        if a.get("sampling") is not None and step == "train":  # LambdaRank learns from whole sessions
            extra["negative_rate"] = a["sampling"]
        stem = a.get("model", "train") if step == "train" else step
        model = _artifact(Model, str(work / f"{stem}.txt"))
        train_model(
            train=_artifact(Dataset, str(work / "train"), meta["train"]),
            valid=_artifact(Dataset, str(work / "valid"), meta["valid"]),
            hyperparameters="{}", features="", entities=ENTITIES,
            objective="pointwise" if step == "train" else "lambdarank",
            task="bench", env="local", model=model, **extra,
        )  # fmt: skip
        # What a pipeline hands the next step with the artifact (the sampling rate among it).
        (work / f"{stem}.json").write_text(json.dumps(dict(model.metadata), default=str))
        return {
            "rows": meta["train"]["rows"] + meta["valid"]["rows"],
            "best_iteration": model.metadata.get("best_iteration"),
            "learnt_rows": model.metadata.get("learnt_rows"),
        }
    if step == "evaluate":
        from pipelines.components.evaluate import evaluate_models

        stem = a.get("model", "train")
        out = evaluate_models(
            test=_artifact(Dataset, str(work / "test"), meta["test"]),
            model=_artifact(Model, str(work / f"{stem}.txt"), json.loads((work / f"{stem}.json").read_text())),
            baseline=_artifact(Model, str(work / "baseline.txt"), json.loads((work / "baseline.json").read_text())),
            registry_uri=str(work / "registry"), variant="bench", oracle_uri="",
            gate_margin=0.005, min_oracle_ratio=0.0,
            metrics=_artifact(Metrics, str(work / "metrics")),
            roc=_artifact(ClassificationMetrics, str(work / "roc")),
        )  # fmt: skip
        return {"rows": meta["test"]["rows"], "figures": json.loads(out.metrics_json)}
    raise SystemExit(f"unknown step {step!r}")


def in_memory(step: str, a: dict[str, Any]) -> dict[str, Any]:
    from bench import in_memory_path as old

    work = Path(a["work"])
    files = {n: work / f"{n}.parquet" for n in ("train", "valid", "test")}
    if step == "dataset":
        result = json.loads(
            old.make_dataset(
                a["offline"], a["impressions"], a["days"], a["valid_days"], a["test_days"], ENTITIES, files,
                work / "rejected.parquet",
            )
        )  # fmt: skip
        (work / "dataset.json").write_text(json.dumps(result))
        return {"rows": sum(s["rows"] for s in result["splits"].values()), "splits": result["splits"]}
    meta = json.loads((work / "dataset.json").read_text())["splits"]
    if step in ("train", "baseline"):
        objective = "pointwise" if step == "train" else "lambdarank"
        out = old.train_model(files["train"], files["valid"], ENTITIES, objective, work / f"{step}.txt")
        return {"rows": meta["train"]["rows"] + meta["valid"]["rows"], **out}
    if step == "evaluate":
        figures = old.evaluate_models(files["test"], work / "train.txt", work / "baseline.txt")
        return {"rows": meta["test"]["rows"], "figures": figures}
    raise SystemExit(f"unknown step {step!r}")


def main() -> None:
    spec = json.loads(sys.argv[1])
    t = time.perf_counter()
    run = streaming if spec["path"] == "streaming" else in_memory
    result = run(spec["step"], spec["args"])
    result["seconds"] = time.perf_counter() - t
    print(json.dumps(result, default=str), flush=True)


if __name__ == "__main__":
    main()
