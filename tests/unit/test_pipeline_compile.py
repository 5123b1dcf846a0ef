"""The compiled pipeline spec: what a Cloud Function or CI submits to Vertex AI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from app.ranking.sizing import StepSize, allowed_machines
from app.settings import REPO_ROOT, MachineConfig, TrainingResourcesConfig, load_stack
from pipelines.training import compile_pipeline

SIZED = ("train pointwise LightGBM", "train LambdaRank baseline", "evaluate vs baseline and serving model")
RUNG = "inputs.parameter_values['pipelinechannel--size-training-Output']"


def resources(spec: dict[str, Any], component: str) -> tuple[str, str]:
    """A task's (cpu, memory), requests and limits alike, as literals: Vertex AI documents no other form."""
    label = spec["components"][component]["executorLabel"]
    r = spec["deploymentSpec"]["executors"][label]["container"]["resources"]
    assert r["resourceCpuRequest"] == r["resourceCpuLimit"] and r["resourceMemoryRequest"] == r["resourceMemoryLimit"]
    assert "{{" not in r["resourceCpuLimit"] + r["resourceMemoryLimit"], "a placeholder, not a literal"
    return r["resourceCpuLimit"], r["resourceMemoryLimit"]


def walk(spec: dict[str, Any], dag: dict[str, Any], branch: str = "") -> list[tuple[str, str, dict[str, Any]]]:
    """Every container task under ``dag``: (display name, the condition of its branch, task)."""
    out = []
    for task in dag["tasks"].values():
        component = spec["components"][task["componentRef"]["name"]]
        condition = task.get("triggerPolicy", {}).get("condition", branch)
        if "dag" in component:
            out += walk(spec, component["dag"], condition)
        else:
            out.append((task["taskInfo"]["name"], condition, task))
    return out


def sized_steps(spec: dict[str, Any]) -> set[tuple[str, tuple[str, str]]]:
    """(step, its machine) with the machine's words taken off the display name."""
    steps = set()
    for name, _, task in walk(spec, spec["root"]["dag"]):
        machine = resources(spec, task["componentRef"]["name"])
        steps.add((name.removesuffix(f" ({machine[0]} CPU, {machine[1]})"), machine))
    return steps


def taken(condition: str, rung: str) -> bool:
    """Whether a branch's trigger condition holds when the sizing step outputs ``rung``."""
    if not condition:
        return True
    assert RUNG in condition, f"a branch taken on something other than the sizing step's output: {condition}"
    python = condition.replace(RUNG, "rung").replace("!(", "not (").replace("&&", "and")
    return bool(eval(python, {}, {"rung": rung}))  # the compiler's own condition text, nothing else


def runs_on(spec: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """For each machine the sized steps may run on (named, as the sizing step names it, by its
    memory): the machine the sized steps of the branch taken on that name get."""
    tasks = [(n, c, resources(spec, t["componentRef"]["name"])) for n, c, t in walk(spec, spec["root"]["dag"])]
    out = {}
    for rung in {machine[1] for n, _, machine in tasks if n.startswith(SIZED)}:
        on = [(n.split(" (")[0], machine) for n, c, machine in tasks if n.startswith(SIZED) and taken(c, rung)]
        assert sorted(n for n, _ in on) == sorted(SIZED), f"sizing output {rung!r} runs {on}"
        machines = {machine for _, machine in on}
        assert len(machines) == 1, f"sizing output {rung!r} runs the sized steps on {machines}"
        out[rung] = machines.pop()
    return out


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
            "--stack",
            "dev",
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    assert run.returncode == 0, run.stderr
    spec = yaml.safe_load(out.read_text())
    assert spec["pipelineInfo"]["name"] == "rerank-training"
    sized = sized_steps(spec)
    assert {name for name, _ in sized} == {
        "point-in-time dataset",
        "size the training steps from the data",
        "train pointwise LightGBM",
        "train LambdaRank baseline",
        "evaluate vs baseline and serving model",
        "register model",
        "deploy gate",
    }
    for ex in spec["deploymentSpec"]["executors"].values():
        container = ex["container"]
        assert container["image"] == "europe-west1-docker.pkg.dev/p/rerank/training:abc"
        # only kfp itself is installed at start; the image carries every dependency
        installs = [part for part in container["command"] if "pip install" in part]
        assert all("lightgbm" not in p and "pyarrow" not in p for p in installs)
    # Train, baseline and evaluate run on the machine the sizing step names, each from the stack's ladder.
    ladder = [StepSize("sized", 0.0, m) for m in allowed_machines(load_stack("dev").training.resources)]
    assert runs_on(spec) == {m.memory: (m.cpu, m.memory) for m in ladder}
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert {"offline_uri", "impressions_uri", "registry_uri", "hyperparameters", "features", "gate_margin"} <= set(
        params
    )
    # nothing in the cloud path needs the simulator's oracle: it is optional and off by default
    assert params["oracle_uri"]["defaultValue"] == "" and params["min_oracle_ratio"]["defaultValue"] == 0.0
    assert "gate_metric" not in params


def test_the_branches_follow_the_stacks_ladder(tmp_path: Path) -> None:
    """A ladder in the stack, not in code: each machine it allows is a branch, a larger one past
    ``max_memory_gb`` is not, and the sizing step is given the same ladder."""
    ladder = TrainingResourcesConfig(
        ladder=[
            MachineConfig(cpu=2, memory_gb=8),
            MachineConfig(cpu=8, memory_gb=64),
            MachineConfig(cpu=32, memory_gb=256),
        ],
        max_memory_gb=64,
    )
    spec = yaml.safe_load(compile_pipeline(tmp_path / "spec.yaml", "img:1", ladder).read_text())
    assert runs_on(spec) == {"8G": ("2", "8G"), "64G": ("8", "64G")}
    sizing = next(t for n, _, t in walk(spec, spec["root"]["dag"]) if n.startswith("size the training"))
    given = sizing["inputs"]["parameters"]["resources"]["runtimeValue"]["constant"]
    assert TrainingResourcesConfig.model_validate_json(given) == ladder
    # the branches run on what the sizing step outputs, and only after it
    root = spec["root"]["dag"]["tasks"]
    branches = next(t for t in root.values() if t["componentRef"]["name"].startswith("comp-condition-branches"))
    assert "size-training" in branches["dependentTasks"]
    assert branches["inputs"]["parameters"]["pipelinechannel--size-training-Output"]["taskOutputParameter"] == {
        "outputParameterKey": "Output",
        "producerTask": "size-training",
    }


def test_a_one_machine_ladder_needs_no_branch(tmp_path: Path) -> None:
    ladder = TrainingResourcesConfig(ladder=[MachineConfig(cpu=16, memory_gb=64)], max_memory_gb=64)
    spec = yaml.safe_load(compile_pipeline(tmp_path / "spec.yaml", "img:1", ladder).read_text())
    assert not any(c for _, c, _ in walk(spec, spec["root"]["dag"]))
    assert runs_on(spec) == {"64G": ("16", "64G")}


def test_the_program_publishes_the_spec_of_its_stacks_ladder() -> None:
    """A larger machine for prod is a stack setting: the spec `pulumi up` publishes branches on it."""
    from infra.plan import plan_stack

    prod = load_stack("prod")
    bigger = TrainingResourcesConfig(
        ladder=[*prod.training.resources.ladder, MachineConfig(cpu=96, memory_gb=624)], max_memory_gb=624
    )
    settings = prod.model_copy(update={"training": prod.training.model_copy(update={"resources": bigger})})
    published = next(
        r.inputs["content"]
        for r in plan_stack(settings).resources
        if r.type == "gcp:storage/bucketObject:BucketObject" and "deploymentSpec:" in str(r.inputs.get("content"))
    )
    assert runs_on(yaml.safe_load(published)) == {
        m.memory: (m.cpu, m.memory) for m in (StepSize("sized", 0.0, m) for m in allowed_machines(bigger))
    }
