"""The trigger function's boundary: HTTP body, CloudEvent, payload; and the claim/commit ledger.

Arbitrary bytes, arbitrary JSON and near-valid payloads get a 4xx with a reason, never an
exception (a 500 that Eventarc would retry forever); a submit that fails is retried, not lost.
"""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.settings import REPO_ROOT
from app.trigger.ledger import FileLedger
from app.trigger.main import MAX_BODY_BYTES, event_payload, read_body, trigger_pipeline
from app.trigger.payload import PayloadError, TriggerPayload

GOOD = {
    "trigger_id": "nightly-2026-03-12",
    "reason": "schedule: nightly",
    "stack": "dev",
    "schedule": "nightly",
    "template_uri": "gs://b/p.yaml",
}
BOUNDED = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


class Recording:
    def __init__(self, failures: int = 0) -> None:
        self.failures, self.runs = failures, []

    def submit(self, p: TriggerPayload) -> str:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("Vertex AI unavailable")
        self.runs.append(p.trigger_id)
        return f"job-{p.trigger_id}"


@BOUNDED
@given(json_values)
def test_arbitrary_json_payloads_answer_400_or_submit(tmp_path: Path, doc: Any) -> None:
    sub = Recording()
    result = trigger_pipeline(doc, sub, FileLedger(tmp_path))
    assert result.status in (200, 400)
    assert (result.status == 400) == (sub.runs == [])


@BOUNDED
@given(st.sampled_from(sorted(GOOD)), json_values)
def test_a_payload_with_one_field_mutated(tmp_path: Path, field: str, value: Any) -> None:
    result = trigger_pipeline({**GOOD, field: value}, Recording(), FileLedger(tmp_path / str(time.monotonic_ns())))
    assert result.status in (200, 400)
    if result.status == 400:
        assert result.body["error"]


@BOUNDED
@given(st.binary(max_size=300) | json_values.map(lambda d: json.dumps(d).encode()))
def test_arbitrary_bodies_parse_or_are_refused_with_a_reason(data: bytes) -> None:
    try:
        read_body(data)
    except PayloadError as exc:
        assert exc.status in (400, 413) and str(exc)


@BOUNDED
@given(
    json_values
    | st.fixed_dictionaries({"message": json_values})
    | st.fixed_dictionaries({"message": st.fixed_dictionaries({"data": st.text(max_size=40)})})
)
def test_arbitrary_cloud_events_are_refused_with_a_reason(data: Any) -> None:
    try:
        event_payload(data)
    except PayloadError as exc:
        assert exc.status in (400, 413)


def test_a_failed_submit_is_released_and_the_retry_submits_once(tmp_path: Path) -> None:
    sub, ledger = Recording(failures=1), FileLedger(tmp_path)
    first = trigger_pipeline(GOOD, sub, ledger)
    assert first.status == 503 and "Vertex AI unavailable" in first.body["error"]
    results = [trigger_pipeline(GOOD, sub, ledger) for _ in range(3)]
    assert [r.body.get("submitted") for r in results] == [True, False, False]
    assert sub.runs == [GOOD["trigger_id"]]


def test_a_held_claim_is_busy_and_a_dead_holders_claim_is_taken_over(tmp_path: Path) -> None:
    ledger = FileLedger(tmp_path, lease_s=60)
    assert ledger.claim("t1", {}) == "claimed"
    assert trigger_pipeline({**GOOD, "trigger_id": "t1"}, Recording(), ledger).status == 409
    old = time.time() - 120
    os.utime(tmp_path / "t1.claim", (old, old))  # its holder died two minutes ago
    sub = Recording()
    assert trigger_pipeline({**GOOD, "trigger_id": "t1"}, sub, ledger).body["submitted"] is True
    assert sub.runs == ["t1"] and ledger.claim("t1", {}) == "committed"


@pytest.fixture(scope="module")
def http_app() -> Any:
    import functions_framework

    return functions_framework.create_app("http_trigger", str(REPO_ROOT / "app/trigger/main.py")).test_client()


@pytest.fixture(scope="module")
def event_app() -> Any:
    import functions_framework

    app = functions_framework.create_app("pubsub_trigger", str(REPO_ROOT / "app/trigger/main.py"), "cloudevent")
    return app.test_client()


def test_http_refuses_an_oversized_body_and_deep_nesting(http_app: Any) -> None:
    resp = http_app.post("/", data=b"{" + b" " * (20 * 1024 * 1024), content_type="application/json")
    assert resp.status_code == 413 and str(MAX_BODY_BYTES) in resp.get_json()["error"]
    resp = http_app.post("/", data=b"[" * 50_000 + b"]" * 50_000, content_type="application/json")
    assert resp.status_code == 400 and "nested" in resp.get_json()["error"]


def _event(data: Any) -> dict[str, str]:
    """Binary-mode CloudEvent headers of a Pub/Sub message (the body is ``data``)."""
    return {
        "ce-id": "1",
        "ce-source": "//pubsub.googleapis.com/projects/p/topics/t",
        "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
        "ce-specversion": "1.0",
        "Content-Type": "application/json",
    }


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"message": None},
        {"message": {"attributes": {}}},
        {"message": {"data": base64.b64encode(b"[" * 5000 + b"]" * 5000).decode()}},
        {"message": {"data": "not base64 !"}},
        {"message": {"data": base64.b64encode(json.dumps({**GOOD, "stack": 5}).encode()).decode()}},
    ],
)
def test_a_cloud_event_without_a_usable_message_answers_4xx(event_app: Any, data: Any) -> None:
    resp = event_app.post("/", headers=_event(data), data=json.dumps(data))
    assert 400 <= resp.status_code < 500, resp.status_code
    assert b"CloudEvent failed" not in resp.data, "refused by the function with its reason, not by the framework"
