"""The README's main job, small: `rerank demo` on a stack of its own, leaving nothing running."""

from __future__ import annotations

import json
from pathlib import Path

from app.featurestore.events import REASONS
from app.local.services import LocalState
from tests.integration.conftest import rerank


def test_demo_runs_the_feature_store_loop_and_stops_what_it_started(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    out = rerank("demo", "--users", "30", "--json", state_dir=state_dir)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["ingest"]["accepted"] == 30 * 4 and res["ingest"]["rejected"] == 6
    assert {d.split(":")[0] for d in res["dead_letters"]} == set(REASONS)
    assert res["online"]["found"] == 30
    assert res["offline_rows"] == {"user_activity/v1": 60, "user_profile/v1": 30, "user_profile/v2": 30}
    for row in res["point_in_time_join"]:
        used = row["viewer_user_profile_event_time"]
        assert used is None or used <= row["impression_time"]
    assert res["kept_running"] is False
    assert LocalState.load(state_dir / "local") is None, "the demo stopped the services it started"
