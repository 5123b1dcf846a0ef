from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.ranking.evaluation import Gate, decide, evaluate
from app.ranking.manifest import worker_deployment_patch
from app.ranking.model import split_params
from app.ranking.registry import ModelRegistry, RegistryError


@pytest.fixture()
def reg(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "registry")


def model_file(tmp_path: Path, text: str = "tree") -> Path:
    f = tmp_path / f"m-{text}.txt"
    f.write_text(text)
    return f


def test_deployments_are_recorded_per_variant_with_history(reg: ModelRegistry, tmp_path: Path) -> None:
    a = reg.register(model_file(tmp_path, "a"), {"task": "t", "env": "local"})
    b = reg.register(model_file(tmp_path, "b"), {"task": "t", "env": "local"})
    reg.deploy("b", a, "first")
    assert reg.deployment("primary") is None
    d = reg.deployment("b")
    assert d is not None and d.model_id == a and Path(d.model_uri).read_text() == "a" and d.previous_model_id is None
    reg.deploy("primary", a, "first")
    reg.deploy("b", b, "better")
    assert reg.deployment("b").previous_model_id == a and reg.deployment("b").reason == "better"
    assert {v: x.model_id for v, x in reg.deployments().items()} == {"b": b, "primary": a}
    assert [(x.variant, x.model_id) for x in reg.history()] == [("b", a), ("primary", a), ("b", b)]
    with pytest.raises(RegistryError, match="no model 'nope'"):
        reg.deploy("b", "nope")


def test_an_old_deployment_record_still_loads(reg: ModelRegistry, tmp_path: Path) -> None:
    a = reg.register(model_file(tmp_path, "a"), {"task": "t", "env": "local"})
    old = {"variant": "b", "model_id": a, "model_uri": "x", "metric": "model_ndcg_at_10", "value": 0.5,
           "deployed_at": "2026-01-01T00:00:00+00:00"}  # fmt: skip
    (reg.root / "deployments").mkdir(parents=True)
    (reg.root / "deployments" / "b.json").write_text(json.dumps(old))
    assert reg.deployment("b").model_id == a


def test_latest_approved_model_skips_unapproved_and_other_envs(reg: ModelRegistry, tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="no approved 't' model for env 'local'"):
        reg.latest_approved("t", "local")
    good = reg.register(model_file(tmp_path, "a"), {"task": "t", "env": "local", "approved": True})
    reg.register(model_file(tmp_path, "b"), {"task": "t", "env": "local", "approved": False})
    reg.register(model_file(tmp_path, "c"), {"task": "t", "env": "prod", "approved": True})
    assert reg.latest_approved("t", "local")["model_id"] == good
    meta = reg.metadata(good)
    assert meta["task"] == "t" and "registered_at" in meta


def _sessions(n: int = 400, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``n`` sessions of 10 candidates; a hidden quality decides the matches."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n), 10).astype(float)
    quality = rng.normal(size=n * 10)
    match = (rng.random(n * 10) < 1 / (1 + np.exp(-(quality * 2 - 2)))).astype(float)
    return {"session_id": groups, "match": match}, quality


def test_champion_and_challenger_are_judged_on_the_same_sessions() -> None:
    cols, quality = _sessions()
    noise = np.random.default_rng(1).normal(size=len(quality))
    good, worse = 1 / (1 + np.exp(-quality)), 1 / (1 + np.exp(-(quality + 2 * noise)))
    m, roc = evaluate(cols, {"model": good, "baseline": noise, "serving": worse})
    assert m["model_ndcg_at_10"] > m["serving_ndcg_at_10"] > m["baseline_ndcg_at_10"]
    d = m["model_minus_serving_ndcg_at_10"]
    assert d == pytest.approx(m["model_ndcg_at_10"] - m["serving_ndcg_at_10"])
    assert m["model_minus_serving_ndcg_at_10_ci_low"] < d < m["model_minus_serving_ndcg_at_10_ci_high"]
    assert "oracle_ndcg_at_10" not in m and "model_vs_oracle_ndcg_at_10" not in m, "no oracle, no oracle figures"
    assert 2 <= len(roc["fpr"]) <= 300
    ok, why = decide(m, Gate(margin=0.005), "m-old")
    assert ok and "beats the serving model m-old" in why and "95% interval" in why
    ok, why = decide(m, Gate(margin=d + 0.001), "m-old")
    assert not ok and f"does not beat the serving model m-old ({m['serving_ndcg_at_10']:.4f}) by the margin" in why
    # the serving model judged against itself: never better by any margin
    same, _ = evaluate(cols, {"model": worse, "baseline": noise, "serving": worse})
    assert same["model_minus_serving_ndcg_at_10"] == 0.0
    assert not decide(same, Gate(margin=0.0), "m-old")[0]


def test_the_baseline_must_be_beaten_and_the_oracle_gate_is_opt_in() -> None:
    cols, quality = _sessions()
    noise = np.random.default_rng(2).normal(size=len(quality))
    m, _ = evaluate(cols, {"model": noise, "baseline": quality})
    ok, why = decide(m, Gate(), None)
    assert not ok and "does not beat the LambdaRank baseline" in why
    m, _ = evaluate(cols, {"model": 1 / (1 + np.exp(-quality)), "baseline": noise})
    ok, why = decide(m, Gate(), None)
    assert ok and "serves no model yet" in why
    ok, why = decide(m, Gate(min_oracle_ratio=0.9), None)
    assert not ok and "needs an oracle file" in why
    truth = 1 / (1 + np.exp(-(quality * 2 - 2)))
    with_oracle, _ = evaluate(cols, {"model": 1 / (1 + np.exp(-quality)), "baseline": noise}, truth)
    assert with_oracle["model_vs_oracle_ndcg_at_10"] == pytest.approx(
        with_oracle["model_ndcg_at_10"] / with_oracle["oracle_ndcg_at_10"]
    )
    assert decide(with_oracle, Gate(min_oracle_ratio=0.5), None)[0]
    ok, why = decide(with_oracle, Gate(min_oracle_ratio=1.01), None)
    assert not ok and "of the oracle's, below the opt-in 1.01" in why


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
