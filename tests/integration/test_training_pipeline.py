"""The training pipeline end to end with kfp.local, on a small market ingested through the feature store."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import kfp.local
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml
from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Metrics, Model

from app.featurestore.events import FeatureRow, event_attributes, from_pubsub, process_event
from app.featurestore.offline import ParquetOfflineStore
from app.featurestore.pipeline import run_bounded, stack_args
from app.featurestore.registry import Registry
from app.local.services import LocalState
from app.market.simulate import MarketConfig, simulate
from app.market.writer import IMPRESSIONS_DIR, ORACLE_FILE, write_market
from app.ranking.dataset import DatasetError, join_features
from app.ranking.features import UnknownFeatureError, parse_entities
from app.ranking.impressions import ImpressionsError, read_impressions
from app.ranking.registry import ModelRegistry
from app.settings import REPO_ROOT, StackSettings
from pipelines.components.dataset import make_dataset
from pipelines.components.deploy import deploy_model
from pipelines.components.train import train_model
from pipelines.local_run import TrainingFailed, TrainingRequest, run_training
from pipelines.training import build_lookup_pipeline

ENTITIES = "user_profile:v1,user_activity:v1"  # what the local stack serves


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, local_stack: LocalState, settings: StackSettings) -> dict:
    root = tmp_path_factory.mktemp("training")
    market = root / "market"
    write_market(simulate(MarketConfig(users=500, days=10, seed=11)), market)
    _add_bad_rows(market / IMPRESSIONS_DIR)
    offline = root / "offline"
    redis_url = local_stack.redis_url.rsplit("/", 1)[0] + "/3"  # a database of its own
    summary = run_bounded(
        [
            "--input",
            str(market / "feature-events.pb"),
            "--redis_url",
            redis_url,
            "--offline_path",
            str(offline),
            *stack_args(settings),
        ]
    )
    assert summary.rejected_total == 0
    return {"root": root, "market": market, "offline": offline, "registry": root / "registry"}


def _add_bad_rows(folder: Path) -> None:
    """A file of the kind a core service may send too: repeats, impossible outcomes, unknown users."""
    first = pq.read_table(sorted(folder.glob("*.parquet"))[0])
    repeats = first.slice(0, 5)
    late = first.slice(100, 3)
    late = late.set_column(
        late.schema.get_field_index("outcome_time"),
        "outcome_time",
        pc.subtract(late.column("impression_time"), pa.scalar(timedelta(seconds=5))),
    )
    late = late.set_column(0, "session_id", pa.array(["late-1"] * 3))
    ghosts = first.slice(200, 2)
    ghosts = ghosts.set_column(0, "session_id", pa.array(["ghost-1"] * 2))
    ghosts = ghosts.set_column(1, "viewer_id", pa.array(["nobody-we-know"] * 2))
    pq.write_table(pa.concat_tables([repeats, late, ghosts]), folder / "zz-resent.parquet")


def request(world: dict, variant: str = "primary", **arguments: object) -> TrainingRequest:
    return TrainingRequest(
        offline_uri=str(world["offline"]),
        impressions_uri=str(world["market"] / IMPRESSIONS_DIR),
        registry_uri=str(world["registry"]),
        pipeline_root=str(world["root"] / "pipeline-root"),
        env="local",
        worker_deployment=f"rerank-local-worker-{variant}",
        variant=variant,
        arguments={"entities": ENTITIES, **arguments},
    )


def test_pipeline_trains_on_contract_impressions_alone_registers_and_deploys(world: dict) -> None:
    out = run_training(request(world, code_version="test"))
    m = out["metrics"]
    assert out["approved"] is True and out["deployed"] is True, out["deploy_reason"]
    assert out["serving_model_id"] == "" and "serves no model yet" in out["deploy_reason"]
    assert out["dataset"]["rejected"] == {"duplicate": 5, "outcome_before_shown": 3, "unknown_id": 2}
    assert m["model_ndcg_at_10"] > m["baseline_ndcg_at_10"], m
    assert m["model_minus_baseline_ndcg_at_10_ci_low"] <= m["model_minus_baseline_ndcg_at_10"]
    assert 0 < m["model_ndcg_at_10"] <= 1 and m["model_auc"] > 0.7 and m["sessions_with_a_match"] > 50
    assert not [k for k in m if "oracle" in k], "no oracle file, no oracle figures"

    registry = ModelRegistry(world["registry"])
    meta = registry.metadata(out["model_id"])
    assert meta["task"] == "rerank-pointwise" and meta["env"] == "local" and meta["code_version"] == "test"
    assert meta["objective"] == "pointwise" and meta["hyperparameters"] == {}
    assert set(meta["data_window"]) == {"start", "train_end", "valid_end", "end"}
    assert meta["metrics"]["model_ndcg_at_10"] == m["model_ndcg_at_10"]
    assert meta["evaluation"]["serving_model_id"] is None and meta["approval_reason"] in out["deploy_reason"]
    deployed = registry.deployment("primary")
    assert deployed is not None and deployed.model_id == out["model_id"]
    assert Path(deployed.model_uri).is_file()

    evaluation = next(Path(world["root"], "pipeline-root").glob("*/evaluate-models*/executor_output.json"))
    roc = json.loads(evaluation.read_text())["artifacts"]["roc"]["artifacts"][0]["metadata"]["confidenceMetrics"]
    assert 2 <= len(roc) <= 300


def test_a_retrain_is_judged_against_the_serving_model_on_the_same_days(world: dict) -> None:
    """Champion vs challenger: the same data and parameters give the same model, which is not better
    than the one serving; a weak model is refused too; the oracle adds figures only when given."""
    registry = ModelRegistry(world["registry"])
    if registry.deployment("b") is None:
        first = run_training(request(world, "b"))
        assert first["deployed"], first["deploy_reason"]
    serving = registry.deployment("b").model_id
    again = run_training(request(world, "b", oracle_uri=str(world["market"] / ORACLE_FILE)))
    m = again["metrics"]
    assert again["serving_model_id"] == serving and again["approved"] is False and again["deployed"] is False
    assert m["model_minus_serving_ndcg_at_10"] == 0.0 and m["model_ndcg_at_10"] == m["serving_ndcg_at_10"]
    assert f"does not beat the serving model {serving}" in again["deploy_reason"]
    assert m["oracle_ndcg_at_10"] >= m["model_ndcg_at_10"] and 0 < m["model_vs_oracle_ndcg_at_10"] <= 1
    assert registry.deployment("b").model_id == serving, "the refused model is not deployed"
    meta = registry.metadata(again["model_id"])
    assert meta["approved"] is False and meta["evaluation"]["serving_model_id"] == serving
    assert meta["metrics"]["serving_ndcg_at_10"] == m["serving_ndcg_at_10"]


def test_deploy_refuses_when_the_variant_changed_since_evaluation(world: dict, tmp_path: Path) -> None:
    registry = ModelRegistry(world["registry"])
    candidate = registry.register(next(registry.root.glob("models/*/model.txt")), {"task": "t", "env": "local"})
    registry.deploy("c", candidate, "set up")

    def deploy(approved: bool, evaluated_against: str) -> tuple[bool, str]:
        result = deploy_model(
            candidate,
            approved,
            "the evaluation's reason",
            evaluated_against,
            str(world["registry"]),
            "c",
            "rerank-local-worker-c",
            Artifact(uri=str(tmp_path / f"manifest-{approved}-{evaluated_against}.yaml")),
        )
        return result.deployed, result.reason

    assert deploy(False, candidate) == (False, "not deployed: the evaluation's reason")
    assert deploy(True, "m-older") == (False, f"not deployed: evaluated against m-older, but c now serves {candidate}")
    assert deploy(True, candidate) == (True, "deployed to c: the evaluation's reason")
    assert "MODEL_ID" in (tmp_path / f"manifest-True-{candidate}.yaml").read_text()


def test_a_deploy_reaches_the_variants_that_follow_the_trained_one(world: dict, tmp_path: Path) -> None:
    registry = ModelRegistry(world["registry"])
    (tmp_path / "model.txt").write_text("a model file: the deploy step reads only the registry's records")
    candidate = registry.register(tmp_path / "model.txt", {"task": "t", "env": "local"})
    manifest = tmp_path / "manifest.yaml"
    result = deploy_model(
        candidate,
        True,
        "better",
        "",
        str(world["registry"]),
        "d",
        "rerank-local-worker-d",
        Artifact(uri=str(manifest)),
        followers='{"d-shadow": "rerank-local-worker-d-shadow"}',
    )
    assert (result.deployed, result.reason) == (True, "deployed to d, d-shadow: better")
    follower = registry.deployment("d-shadow")
    assert follower is not None and follower.model_id == candidate
    patches = list(yaml.safe_load_all(manifest.read_text()))
    assert [p["metadata"]["name"] for p in patches] == ["rerank-local-worker-d", "rerank-local-worker-d-shadow"]


def test_steps_read_sharded_artifacts_and_a_sampled_model_is_corrected_wherever_it_is_scored(
    world: dict, registry: Registry, tmp_path: Path
) -> None:
    """The train and evaluate steps on the dataset step's folder-of-shards form (the pipeline runs
    above use the one-file form); a model trained on 30% of the negatives records the rate, and
    evaluation, the worker's model handle and the drift check correct its scores by it: on the same
    test days it stays within reach of the unsampled model, and calibrated."""
    import lightgbm as lgb

    from app.ranking.dataset import columns
    from app.ranking.features import feature_matrix
    from app.ranking.sampling import RATE_KEY, correct
    from app.serving.model_handle import DeployedModel
    from app.settings import DriftConfig
    from app.trigger.drift import check_drift
    from pipelines.components.evaluate import evaluate_models
    from tests.unit.shards import write_shards

    parts = {n: Dataset(uri=str(tmp_path / f"{n}.parquet")) for n in ("train", "valid", "test", "rejected")}
    make_dataset(str(world["offline"]), str(world["market"] / IMPRESSIONS_DIR), "", "", 2, 2, ENTITIES, *parts.values())
    shards = {}
    for n in ("train", "valid", "test"):
        shards[n] = Dataset(uri=str(write_shards(pq.read_table(parts[n].path), tmp_path / n, shards=3)))
        shards[n].metadata.update(parts[n].metadata)

    def train(name: str, rate: float = 1.0) -> Model:
        model = Model(uri=str(tmp_path / f"{name}.txt"))
        params = '{"num_boost_round": 40}'
        train_model(shards["train"], shards["valid"], params, "", ENTITIES, "pointwise", "t", "local", model, rate)
        return model

    def evaluate(test: Dataset, model: Model, baseline: Model) -> dict:
        out = evaluate_models(
            test, model, baseline, str(tmp_path / "registry"), "none", "", 0.005, 0.0,
            Metrics(uri=str(tmp_path / "metrics")), ClassificationMetrics(uri=str(tmp_path / "roc")),
        )  # fmt: skip
        return json.loads(out.metrics_json)

    full, sampled = train("full"), train("sampled", rate=0.3)
    baseline = full  # any booster will do as the baseline here: the figures compared are the model's
    unsampled = evaluate(shards["test"], full, baseline)
    assert evaluate(parts["test"], full, baseline) == pytest.approx(unsampled, rel=1e-9), "both forms, same figures"
    assert sampled.metadata[RATE_KEY] == 0.3 and full.metadata[RATE_KEY] == 1.0
    assert sampled.metadata["learnt_positives"] == full.metadata["learnt_positives"]
    assert sampled.metadata["learnt_rows"] < 0.5 * full.metadata["learnt_rows"]
    m = evaluate(shards["test"], sampled, baseline)
    assert abs(m["model_ndcg_at_10"] - unsampled["model_ndcg_at_10"]) < 0.03, (m, unsampled)
    assert m["model_calibration_gap"] < 0.01 and m["model_ece"] < 0.02, m
    test = columns(pq.read_table(parts["test"].path))
    booster = lgb.Booster(model_file=sampled.path)
    raw = booster.predict(feature_matrix(test, booster.feature_name()))
    assert raw.mean() - test["match"].mean() > 0.03, "uncorrected, the sampled model over-predicts matches"

    served = ModelRegistry(tmp_path / "served")
    served.deploy("primary", served.register(Path(sampled.path), dict(sampled.metadata)), "sampled")
    handle = DeployedModel(served, "primary").current()
    assert handle is not None
    assert np.allclose(handle[1].predict(feature_matrix(test, booster.feature_name())), correct(raw, 0.3))

    impressions = read_impressions(world["market"] / IMPRESSIONS_DIR).table
    store = ParquetOfflineStore(world["offline"], registry)
    drift = check_drift(
        store, registry, impressions, sampled.path, dict(sampled.metadata), DriftConfig(), parse_entities(ENTITIES)
    )
    assert drift.ground_truth["source"] == "rescored" and drift.calibration_gap < 0.02, drift.to_dict()


def test_latest_approved_model_reaches_another_pipeline_through_an_importer(world: dict) -> None:
    if not ModelRegistry(world["registry"]).models():
        run_training(request(world))
    kfp.local.init(runner=kfp.local.SubprocessRunner(use_venv=False), pipeline_root=str(world["root"] / "lookup"))
    task = build_lookup_pipeline()(registry_uri=str(world["registry"]), task="rerank-pointwise", env="local")
    latest = ModelRegistry(world["registry"]).latest_approved("rerank-pointwise", "local")
    assert task.output.uri == str(ModelRegistry(world["registry"]).model_path(latest["model_id"]))


def test_a_feature_changed_after_the_impression_is_not_seen(world: dict, registry: Registry, tmp_path: Path) -> None:
    imp = read_impressions(world["market"] / IMPRESSIONS_DIR).table.slice(5000, 1)
    viewer, t = imp.column("viewer_id")[0].as_py(), imp.column("impression_time")[0].as_py()
    offline = ParquetOfflineStore(tmp_path / "offline", registry)
    for part in Path(world["offline"]).glob("*/*/event_date=*/*.parquet"):
        dest = tmp_path / "offline" / part.relative_to(world["offline"])
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(part.read_bytes())
    before = join_features(offline, imp, registry, parse_entities(ENTITIES)).column("viewer_age")[0].as_py()

    def profile_event(age: int, at: object) -> FeatureRow:
        from app.featurestore.samples import profile_v1

        msg = profile_v1(viewer, random.Random(0), t - timedelta(days=400))
        msg.age = age
        row = process_event(
            from_pubsub(msg.SerializeToString(), event_attributes("user_profile", "v1", at), "m"), registry
        )
        assert isinstance(row, FeatureRow)
        return row

    offline.write_rows([profile_event(99, t + timedelta(seconds=1))])
    after_late_change = join_features(offline, imp, registry, parse_entities(ENTITIES))
    assert after_late_change.column("viewer_age")[0].as_py() == before != 99
    assert after_late_change.column("viewer_user_profile_event_time")[0].as_py() <= t
    offline.write_rows([profile_event(98, t - timedelta(seconds=1))])
    assert join_features(offline, imp, registry, parse_entities(ENTITIES)).column("viewer_age")[0].as_py() == 98


def test_bad_parameters_fail_the_run_with_a_clear_message(world: dict, tmp_path: Path) -> None:
    outs = [Dataset(uri=str(tmp_path / n)) for n in ("train", "valid", "test", "rejected")]
    impressions = str(world["market"] / IMPRESSIONS_DIR)
    with pytest.raises(DatasetError, match="no impressions between 2030-01-01"):
        make_dataset(str(world["offline"]), impressions, "2030-01-01T00:00:00Z", "", 4, 4, ENTITIES, *outs)
    with pytest.raises(DatasetError, match=r"10 day\(s\) of impressions leave no training days"):
        make_dataset(str(world["offline"]), impressions, "", "", 5, 5, ENTITIES, *outs)
    ok_outs = [Dataset(uri=str(tmp_path / f"ok-{n}")) for n in ("train", "valid", "test", "rejected")]
    make_dataset(str(world["offline"]), impressions, "", "", 2, 2, ENTITIES, *ok_outs)
    with pytest.raises(UnknownFeatureError, match=r"unknown feature\(s\) \['viewer_height'\]"):
        train_model(
            ok_outs[0],
            ok_outs[1],
            "{}",
            "viewer_age,viewer_height",
            ENTITIES,
            "pointwise",
            "t",
            "local",
            Dataset(uri=str(tmp_path / "model")),
        )
    with pytest.raises(TrainingFailed, match="DatasetError: no impressions between 2030-01-01"):
        run_training(request(world, window_start="2030-01-01T00:00:00Z"))
    broken = tmp_path / "broken"
    broken.mkdir()
    pq.write_table(pq.read_table(impressions).drop_columns(["match"]), broken / "day.parquet")
    with pytest.raises(ImpressionsError, match=r"day.parquet: required column 'match' is missing"):
        make_dataset(str(world["offline"]), str(broken), "", "", 2, 2, ENTITIES, *outs)


def test_cli_refuses_bad_parameters_before_running(world: dict, tmp_path: Path) -> None:
    def train(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "app.cli",
                "train",
                "--market",
                str(world["market"]),
                *args,
                "--state-dir",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
        )

    out = train("--features", "viewer_age,candidate_height")
    assert out.returncode == 2 and "unknown feature(s) ['candidate_height']" in out.stderr
    out = train("--hyperparameters", '{"num_trees": 3}')
    assert out.returncode == 2 and "unknown hyper-parameter(s) ['num_trees']" in out.stderr
    out = train("--window-start", "last week")
    assert out.returncode == 2 and "is not an RFC 3339 time" in out.stderr
    out = train("--variant", "c")
    assert out.returncode == 2 and "variant 'c' is not in stack local" in out.stderr
    out = train("--min-oracle-ratio", "0.9")
    assert out.returncode == 2 and "--min-oracle-ratio needs --oracle FILE" in out.stderr


def test_market_impressions_cover_the_days(world: dict) -> None:
    files = sorted(p.name for p in (world["market"] / IMPRESSIONS_DIR).glob("2026-*.parquet"))
    assert files == [f"2026-03-{d:02d}.parquet" for d in range(1, 11)]
