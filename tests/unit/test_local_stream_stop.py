"""When the local streaming launcher stops: the DirectRunner acks Pub/Sub messages on pull, so a
stop while accepted events are still in the store step (a writer retrying a store that refuses)
would lose them. The run itself is faked here: only the launcher's decision is under test."""

from __future__ import annotations

import pytest

from app.featurestore import local_stream, pipeline
from app.featurestore.pipeline import IngestSummary


def test_the_launcher_waits_for_the_store_step_before_it_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ten events decoded at once; the store step finishes with them only on the 12th poll (a
    store refused them for a while). Nothing new is decoded meanwhile, which alone used to end the
    run after the idle window: the stop now comes only once all ten are settled."""
    polls: list[IngestSummary] = []
    stopped_after: list[IngestSummary] = []

    def summary_of(run_id: str, dead_letter_path: str | None = None) -> IngestSummary:
        polls.append(IngestSummary(accepted=10, online_written=10, stores_settled=10 if len(polls) >= 12 else 0))
        return polls[-1]

    monkeypatch.setattr(local_stream, "POLL_S", 0.01)
    monkeypatch.setattr(pipeline, "run_streaming", lambda argv: (object(), "run"))
    monkeypatch.setattr(pipeline, "stop_streaming", lambda result: stopped_after.append(polls[-1]))
    monkeypatch.setattr(pipeline, "summary_of", summary_of)
    summary = local_stream.stream_until_idle([], idle_exit=0.02)
    assert len(stopped_after) == 1 and stopped_after[0].stores_settled == 10, "stopped with events in the writers"
    assert len(polls) > 12 and summary.stores_settled == summary.accepted == 10


def test_a_quiet_settled_run_stops_after_the_idle_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_stream, "POLL_S", 0.01)
    monkeypatch.setattr(pipeline, "run_streaming", lambda argv: (object(), "run"))
    monkeypatch.setattr(pipeline, "stop_streaming", lambda result: None)
    settled = IngestSummary(accepted=3, rejected={"undecodable": 1}, stores_settled=3)
    monkeypatch.setattr(pipeline, "summary_of", lambda run_id, dead_letter_path=None: settled)
    assert local_stream.stream_until_idle([], idle_exit=0.05) is settled
