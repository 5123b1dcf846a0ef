from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.ranking.evaluation import approved
from app.ranking.manifest import worker_deployment_patch
from app.ranking.model import split_params
from app.ranking.registry import ModelRegistry, RegistryError, gate


@pytest.fixture()
def reg(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "registry")


def model_file(tmp_path: Path, text: str = "tree") -> Path:
    f = tmp_path / f"m-{text}.txt"
    f.write_text(text)
    return f


def test_gate_accepts_a_better_model_and_refuses_a_worse_or_equal_one(reg: ModelRegistry, tmp_path: Path) -> None:
    ok, why = gate(reg.deployment("primary"), "model_ndcg_at_10", 0.60)
    assert ok and "serves no model yet" in why
    first = reg.register(model_file(tmp_path, "a"), {"task": "t", "env": "local", "approved": True})
    reg.deploy("primary", first, "model_ndcg_at_10", 0.60)
    assert gate(reg.deployment("primary"), "model_ndcg_at_10", 0.61)[0]
    ok, why = gate(reg.deployment("primary"), "model_ndcg_at_10", 0.59)
    assert not ok and "does not beat the deployed" in why
    assert not gate(reg.deployment("primary"), "model_ndcg_at_10", 0.60)[0]
    assert not gate(reg.deployment("primary"), "model_auc", 0.99)[0], "metrics are not compared across kinds"


def test_deployment_record_is_per_variant(reg: ModelRegistry, tmp_path: Path) -> None:
    a = reg.register(model_file(tmp_path, "a"), {"task": "t", "env": "local"})
    reg.deploy("b", a, "model_ndcg_at_10", 0.5)
    assert reg.deployment("primary") is None
    d = reg.deployment("b")
    assert d is not None and d.model_id == a and Path(d.model_uri).read_text() == "a"


def test_latest_approved_model_skips_unapproved_and_other_envs(reg: ModelRegistry, tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="no approved 't' model for env 'local'"):
        reg.latest_approved("t", "local")
    good = reg.register(model_file(tmp_path, "a"), {"task": "t", "env": "local", "approved": True})
    reg.register(model_file(tmp_path, "b"), {"task": "t", "env": "local", "approved": False})
    reg.register(model_file(tmp_path, "c"), {"task": "t", "env": "prod", "approved": True})
    assert reg.latest_approved("t", "local")["model_id"] == good
    meta = reg.metadata(good)
    assert meta["task"] == "t" and "registered_at" in meta


def test_approval_needs_the_baseline_beaten_and_the_oracle_near() -> None:
    m = {"model_ndcg_at_10": 0.60, "baseline_ndcg_at_10": 0.55, "model_vs_oracle_ndcg_at_10": 0.95}
    assert approved(m, 0.9)[0]
    assert "does not beat the LambdaRank baseline" in approved({**m, "baseline_ndcg_at_10": 0.61}, 0.9)[1]
    assert "of the oracle's" in approved({**m, "model_vs_oracle_ndcg_at_10": 0.85}, 0.9)[1]


def test_unknown_hyperparameters_are_named() -> None:
    with pytest.raises(ValueError, match=r"unknown hyper-parameter\(s\) \['num_trees'\]"):
        split_params({"num_trees": 5})


def test_worker_manifest_patch_names_the_model() -> None:
    import yaml

    patch = yaml.safe_load(
        worker_deployment_patch("rerank-dev-worker-b", "m-1", "/gcs/b/registry/models/m-1/model.txt")
    )
    assert patch["metadata"]["name"] == "rerank-dev-worker-b"
    env = {e["name"]: e["value"] for e in patch["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env == {"MODEL_ID": "m-1", "MODEL_URI": "/gcs/b/registry/models/m-1/model.txt"}
    assert json.dumps(patch)  # plain data, nothing Python-specific
