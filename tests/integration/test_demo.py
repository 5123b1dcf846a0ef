"""The README's main job, small: `rerank demo` on a stack of its own, leaving nothing running."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.featurestore.samples import bad_events
from app.local.services import LocalState, stop_services
from app.settings import load_stack
from tests.integration.conftest import rerank


@pytest.fixture()
def demo_state(tmp_path: Path) -> Iterator[Path]:
    """The demo's state folder; a demo killed by its timeout cannot stop its services, so what it
    recorded is stopped here (after a demo that stopped them, there is nothing left to stop)."""
    state_dir = tmp_path / "state"
    yield state_dir
    stop_services("local", state_dir)


def test_demo_runs_the_whole_loop_reports_and_stops_what_it_started(tmp_path: Path, demo_state: Path) -> None:
    state_dir = demo_state
    report = tmp_path / "report.html"
    out = rerank(
        "demo",
        "--users",
        "300",
        "--days",
        "6",
        "--sessions",
        "40",
        "--report",
        str(report),
        "--json",
        state_dir=state_dir,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout)
    assert res["ingest"]["rejected"] == len(bad_events()) and res["ingest"]["accepted"] == sum(
        res["market"]["feature_events"].values()
    )
    assert res["dead_letters"]["feature_events"]["total"] == len(bad_events())
    assert set(res["dead_letters"]["feature_events"]["by_reason"]) == set(bad_events())  # one of each kind
    m = res["training"]["primary"]["metrics"]
    assert m["model_ndcg_at_10"] > 0 and m["oracle_ndcg_at_10"] >= m["model_ndcg_at_10"] * 0.8
    assert res["training"]["primary"]["deployed"] and res["training"]["b"]["deployed"]
    assert res["serving"]["sessions"] == 40 and res["serving"]["fallback_rate"] < 0.5
    arms = res["ab"]
    assert sum(a["sessions"] for a in arms.values()) == 40
    assert arms["primary"]["sessions"] > 0 and arms["primary"]["lift_ci_low"] <= arms["primary"]["lift"]
    assert arms["primary"]["lift"] <= arms["primary"]["lift_ci_high"]
    text = report.read_text()
    assert "<svg" in text and "NDCG@10" in text and "against the primary variant" in text and "latency" in text
    assert res["kept_running"] is False
    models = json.loads(rerank("models", "list", "--json", state_dir=state_dir).stdout)
    serving = {v: d["model_id"] for v, d in models["serving"].items()}
    assert serving == {
        "primary": res["training"]["primary"]["model_id"],
        "b": res["training"]["b"]["model_id"],
        "shadow": res["training"]["b"]["model_id"],
    }
    assert all(m["approved"] and m["model_ndcg_at_10"] > m["baseline_ndcg_at_10"] for m in models["models"])
    # The readout from what was served, after the stack stopped: the command the demo printed.
    command = shlex.split(res["experiment"]["command"])
    assert command[:3] == ["rerank", "experiment", "report"]
    out = rerank(*command[1:], "--json", "--html", str(tmp_path / "readout.html"), state_dir=state_dir)
    assert out.returncode == 0, out.stderr[-2000:]
    readout = json.loads(out.stdout)
    variants = load_stack("local").serving.variants
    assert set(readout["variants"]) == {v.name for v in variants}
    assert readout["primary"] == next(v.name for v in variants if v.kind == "primary")
    assert readout["sessions"]["total"] == 40
    arms = [readout["variants"][v.name] for v in variants if v.kind != "shadow"]
    assert sum(a["sessions"] for a in arms) + readout["sessions"]["unattributed"] == 40
    fallbacks = round(res["serving"]["fallback_rate"] * 40)
    assert readout["sessions"]["unattributed"] <= fallbacks, "a session shown in a served order has its arm"
    for v in variants:
        if v.kind == "shadow":
            assert readout["variants"][v.name]["agreement_with_primary"]["requests"] > 0
    assert readout["sample_ratio_mismatch"]["p_value"] is not None
    assert readout["variants"] == res["experiment"]["variants"], "the demo's report shows the same readout"
    assert "Experiment readout from served data" in text and "np.float64" not in text
    assert LocalState.load(state_dir / "local") is None, "the demo stopped the services it started"
    leftover = subprocess.run(["pgrep", "-f", f"--state-dir {state_dir}"], capture_output=True, text=True)
    assert leftover.stdout.strip() == "", "no worker process is left behind"


def test_demo_refuses_bad_sizes(tmp_path: Path) -> None:
    out = rerank("demo", "--days", "3", state_dir=tmp_path)
    assert out.returncode == 2 and "--days must be between 6 and 60" in out.stderr


def test_a_failed_step_exits_non_zero_with_its_reason(tmp_path: Path) -> None:
    env = {**os.environ, "PUBSUB_EMULATOR_BIN": str(tmp_path / "missing-emulator")}
    out = rerank("demo", state_dir=tmp_path / "s", timeout=120, env=env)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1].startswith("rerank demo: Google's Pub/Sub emulator was not found")
    assert LocalState.load(tmp_path / "s" / "local").services == {}
