"""`rerank models list|show`: what the registry holds, the evaluations, who serves what since when."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.cli import main
from app.ranking.registry import ModelRegistry


@pytest.fixture()
def reg(tmp_path: Path) -> ModelRegistry:
    reg = ModelRegistry(tmp_path / "registry")
    (tmp_path / "m.txt").write_text("tree")
    metrics = {"model_ndcg_at_10": 0.61, "baseline_ndcg_at_10": 0.52}
    first = reg.register(tmp_path / "m.txt", {"task": "t", "env": "local", "approved": True, "metrics": metrics})
    reg.deploy("primary", first, "beats the baseline; the variant serves no model yet")
    second = reg.register(
        tmp_path / "m.txt",
        {
            "task": "t",
            "env": "local",
            "approved": False,
            "approval_reason": "does not beat the serving model",
            "metrics": {**metrics, "serving_ndcg_at_10": 0.61, "model_minus_serving_ndcg_at_10": 0.0},
            "evaluation": {"serving_model_id": first},
        },
    )
    reg.deploy("shadow", first, "mirrors")
    assert second
    return reg


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_list_shows_models_evaluations_and_who_serves_what(reg: ModelRegistry, capsys: pytest.CaptureFixture) -> None:
    code, out, _ = cli(capsys, "models", "list", "--registry", str(reg.root), "--json")
    doc = json.loads(out)
    first, second = (m["model_id"] for m in reg.models())
    assert code == 0 and [m["model_id"] for m in doc["models"]] == [first, second]
    assert doc["models"][0]["serves"] == ["primary", "shadow"] and doc["models"][1]["serves"] == []
    assert doc["models"][1]["evaluated_against"] == first and doc["models"][1]["serving_ndcg_at_10"] == 0.61
    assert doc["serving"]["primary"]["model_id"] == first and doc["serving"]["primary"]["since"]
    code, text, _ = cli(capsys, "models", "list", "--registry", str(reg.root))
    assert code == 0 and f"primary serves {first} since" in text and "0.6100 / 0.5200 / 0.6100" in text


def test_show_has_the_metadata_and_the_deployment_history(reg: ModelRegistry, capsys: pytest.CaptureFixture) -> None:
    first = reg.models()[0]["model_id"]
    code, out, _ = cli(capsys, "models", "show", first, "--registry", str(reg.root), "--json")
    doc = json.loads(out)
    assert code == 0 and doc["model"]["model_id"] == first and doc["serves"] == ["primary", "shadow"]
    assert [h["variant"] for h in doc["deployments"]] == ["primary", "shadow"]
    code, text, _ = cli(capsys, "models", "show", first, "--registry", str(reg.root))
    assert code == 0 and "deployed to primary at" in text and "NDCG@10" in text


def test_bad_input_is_one_line(reg: ModelRegistry, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, _, err = cli(capsys, "models", "show", "nope", "--registry", str(reg.root))
    assert code == 2 and err.strip() == f"rerank models: no model 'nope' in {reg.root}"
    code, _, err = cli(capsys, "models", "show", "--registry", str(reg.root))
    assert code == 2 and "show needs a model id" in err
    code, _, err = cli(capsys, "models", "list", "--registry", str(tmp_path / "none"))
    assert code == 2 and "no model registry there" in err
    code, _, err = cli(capsys, "models", "list", "--stack", "dev")
    assert code == 2 and "pass --registry" in err
