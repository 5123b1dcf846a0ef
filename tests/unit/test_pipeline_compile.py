"""The compiled pipeline spec: what a Cloud Function or CI submits to Vertex AI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from app.settings import REPO_ROOT


def test_compile_writes_a_spec_with_every_step_sized(tmp_path: Path) -> None:
    out = tmp_path / "spec.yaml"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "pipeline",
            "compile",
            "--out",
            str(out),
            "--image",
            "europe-west1-docker.pkg.dev/p/rerank/training:abc",
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    assert run.returncode == 0, run.stderr
    spec = yaml.safe_load(out.read_text())
    assert spec["pipelineInfo"]["name"] == "rerank-training"
    tasks = spec["root"]["dag"]["tasks"]
    assert {t["taskInfo"]["name"] for t in tasks.values()} == {
        "point-in-time dataset",
        "size the training steps from the data",
        "train pointwise LightGBM",
        "train LambdaRank baseline",
        "evaluate vs baseline and serving model",
        "register model",
        "deploy gate",
    }
    executors = spec["deploymentSpec"]["executors"].values()
    for ex in executors:
        container = ex["container"]
        assert container["image"] == "europe-west1-docker.pkg.dev/p/rerank/training:abc"
        assert container["resources"]["resourceCpuLimit"] and container["resources"]["resourceMemoryLimit"]
        assert container["resources"]["resourceCpuRequest"] and container["resources"]["resourceMemoryRequest"]
        # only kfp itself is installed at start; the image carries every dependency
        installs = [part for part in container["command"] if "pip install" in part]
        assert all("lightgbm" not in p and "pyarrow" not in p for p in installs)
    # Train, baseline and evaluate get CPU and memory from the sizing step's outputs at run time.
    by_name = {t["taskInfo"]["name"]: t for t in tasks.values()}
    for name, step in (
        ("train pointwise LightGBM", "train"),
        ("train LambdaRank baseline", "train"),
        ("evaluate vs baseline and serving model", "evaluate"),
    ):
        assert "size-training" in by_name[name]["dependentTasks"], "sized after the sizing step has run"
        wired = by_name[name]["inputs"]["parameters"]
        for what in ("cpu", "memory"):
            source = wired[f"pipelinechannel--size-training-{step}_{what}"]["taskOutputParameter"]
            assert source == {"outputParameterKey": f"{step}_{what}", "producerTask": "size-training"}
            assert f"size-training-{step}_{what}" in wired[f"{what}_limit"]["runtimeValue"]["constant"]
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert {"offline_uri", "impressions_uri", "registry_uri", "hyperparameters", "features", "gate_margin"} <= set(
        params
    )
    # nothing in the cloud path needs the simulator's oracle: it is optional and off by default
    assert params["oracle_uri"]["defaultValue"] == "" and params["min_oracle_ratio"]["defaultValue"] == 0.0
    assert "gate_metric" not in params
