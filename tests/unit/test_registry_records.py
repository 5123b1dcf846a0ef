"""Registry records as a boundary (app/ranking/registry.py ``read_record``): a record that is damaged,
empty, list-shaped or incomplete is one line for `rerank models list|show` and `drift`, and a running
worker keeps serving the model it holds."""

from __future__ import annotations

import json
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.cli import main
from app.ranking.registry import DamagedRecord, ModelRegistry
from app.serving.model_handle import DeployedModel

BOUNDED = settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.sampled_from(["model_id", "x", "metrics"]), kids),
    max_leaves=8,
)
damaged_bytes = st.one_of(
    st.just(b""),
    st.binary(max_size=60),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.sampled_from([b"[]", b'{"model_id": 5}', b'{"registered_at": "2026"}', b'{"model_id": "x"']),
)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 2)), rng.integers(0, 2, 60)
    path = tmp_path_factory.mktemp("model") / "model.txt"
    lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 3}, lgb.Dataset(x, y), 2).save_model(str(path))
    return path


def _registry(root: Path, model_file: Path) -> tuple[ModelRegistry, str]:
    reg = ModelRegistry(root)
    model_id = reg.register(model_file, {"task": "t", "env": "local", "approved": True, "metrics": {}})
    reg.deploy("primary", model_id, "first")
    return reg, model_id


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "internal error" not in err, err
    return err


@BOUNDED
@given(data=damaged_bytes, which=st.sampled_from(["metadata", "deployment", "history"]))
def test_a_damaged_record_is_one_line_for_models(
    tmp_path_factory: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture[str],
    model_file: Path,
    data: bytes,
    which: str,
) -> None:
    reg, model_id = _registry(tmp_path_factory.mktemp("r") / "registry", model_file)
    path = {
        "metadata": reg.root / "models" / model_id / "metadata.json",
        "deployment": reg.root / "deployments" / "primary.json",
        "history": reg.root / "deployments" / "history.jsonl",
    }[which]
    before = path.read_bytes()
    path.write_bytes(data)
    try:
        readable = {
            "metadata": lambda: reg.metadata(model_id),
            "deployment": lambda: reg.deployment("primary"),
            "history": lambda: reg.history(),
        }[which]()
    except DamagedRecord:
        readable = None
    for action in (["list"], ["show", model_id]):
        code = main(["models", *action, "--registry", str(reg.root)])
        if readable is None and not (which == "history" and action == ["list"]):  # list reads no history
            assert code == 1 and str(path) in _one_line(capsys)
        else:
            assert code == 0, capsys.readouterr().err
    path.write_bytes(before)
    assert main(["models", "show", model_id, "--registry", str(reg.root)]) == 0
    capsys.readouterr()


def test_list_names_a_damaged_model_and_still_lists_the_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], model_file: Path
) -> None:
    reg, model_id = _registry(tmp_path / "registry", model_file)
    broken = reg.root / "models" / "t-broken" / "metadata.json"
    broken.parent.mkdir()
    broken.write_text("[1, 2]")
    code = main(["models", "list", "--registry", str(reg.root), "--json"])
    out = capsys.readouterr()
    doc = json.loads(out.out)
    assert code == 1 and [m["model_id"] for m in doc["models"]] == [model_id]
    assert doc["damaged"] == [f"{broken}: damaged record (a JSON list, not an object)"]
    assert "1 model record(s) could not be read" in out.err
    assert reg.latest_approved("t", "local")["model_id"] == model_id  # what another pipeline imports


def test_show_of_an_id_outside_the_registry_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], model_file: Path
) -> None:
    reg, _ = _registry(tmp_path / "registry", model_file)
    (tmp_path / "metadata.json").write_text(json.dumps({"model_id": "x", "registered_at": "now"}))
    assert main(["models", "show", "../..", "--registry", str(reg.root)]) == 2
    assert "no model" in _one_line(capsys)


@BOUNDED
@given(data=damaged_bytes)
def test_a_worker_keeps_serving_its_model_when_the_record_is_damaged(
    tmp_path_factory: pytest.TempPathFactory, model_file: Path, data: bytes
) -> None:
    reg, model_id = _registry(tmp_path_factory.mktemp("w") / "registry", model_file)
    handle = DeployedModel(reg, "primary", check_every_s=0.0)
    held = handle.current()
    assert held is not None and held[0] == model_id
    (reg.root / "deployments" / "primary.json").write_bytes(data)
    again = handle.current()
    assert again is not None and again[0] == model_id and again[1] is held[1]


def test_a_worker_keeps_its_model_when_a_new_record_names_a_damaged_file(tmp_path: Path, model_file: Path) -> None:
    reg, model_id = _registry(tmp_path / "registry", model_file)
    handle = DeployedModel(reg, "primary", check_every_s=0.0)
    assert handle.current() is not None
    bad = tmp_path / "bad.txt"
    bad.write_text("not a model")
    second = reg.register(bad, {"task": "t", "env": "local"})
    reg.deploy("primary", second, "a broken model file")
    assert handle.current()[0] == model_id  # type: ignore[index]
