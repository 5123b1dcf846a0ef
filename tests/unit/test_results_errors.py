"""DynamoDB's errors on a results write, told apart: the table or the network at fault holds the
batch (retried in place, as before); an item DynamoDB refuses for good dead-letters its request at
once (``result_rejected``); any other client error retries only its request, then dead-letters it.
The requests batched with a refused one are written and acked either way."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from hypothesis import given, settings
from hypothesis import strategies as st

from app.serving.aws_federation import FederationError
from app.serving.messages import RerankRequest
from app.serving.observability import THROTTLING_CODES, WorkerMetrics
from app.serving.results import RankedResult
from app.serving.worker import (
    DEPENDENCY_CODES,
    HOLD,
    REFUSED,
    UNFORESEEN,
    BatchHandler,
    DependencyDown,
    Settling,
    results_error_class,
)
from tests.unit.test_worker_isolation import FakeMessage, FakeModel, FakeScorer, Future, dead_letters, make_worker


def client_error(code: str, status: int = 400, message: str = "refused") -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutItem"
    )


TOO_LONG = client_error(
    "ValidationException",
    message="One or more parameter values were invalid: Aggregated size of all range keys has exceeded the size limit",
)


@pytest.mark.parametrize(
    "exc, kind",
    [
        (client_error("ProvisionedThroughputExceededException"), HOLD),
        (client_error("ThrottlingException"), HOLD),
        (client_error("InternalServerError", 500), HOLD),
        (client_error("ServiceUnavailable", 503), HOLD),
        (client_error("ResourceNotFoundException"), HOLD),  # the table is being created (an apply) or gone
        (client_error("AccessDeniedException"), HOLD),
        (client_error("ExpiredTokenException"), HOLD),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), HOLD),
        (ReadTimeoutError(endpoint_url="http://127.0.0.1:1"), HOLD),
        (FederationError("STS refused the token"), HOLD),
        (ConnectionResetError("reset"), HOLD),
        (TOO_LONG, REFUSED),
        (client_error("ValidationException", message="Item size has exceeded the maximum allowed size"), REFUSED),
        (client_error("SomethingNewException"), UNFORESEEN),
    ],
)
def test_each_kind_of_results_error_is_classed(exc: BaseException, kind: str) -> None:
    assert results_error_class(exc) == kind


@settings(max_examples=40, deadline=None)
@given(code=st.text(max_size=40), status=st.one_of(st.none(), st.integers(100, 599)))
def test_only_the_table_or_the_network_at_fault_holds_a_batch(code: str, status: int | None) -> None:
    """Any code and status DynamoDB could answer: a batch is held only for the known dependency
    codes and 5xx; every other answer settles its own request, so no code can block a lease for ever."""
    response: dict = {"Error": {"Code": code, "Message": "m"}}
    if status is not None:
        response["ResponseMetadata"] = {"HTTPStatusCode": status}
    kind = results_error_class(ClientError(response, "PutItem"))
    server_side = (status or 0) >= 500 or code.startswith("InternalServer")
    assert (kind == HOLD) == (code in DEPENDENCY_CODES or server_side)
    assert kind != REFUSED or code == "ValidationException"


class SelectiveResults:
    """Raises ``errors[surface]`` for a request on that surface, stores the rest."""

    def __init__(self, errors: dict[str, BaseException]) -> None:
        self.errors, self.stored = errors, []

    def put_if_newer(self, r: RankedResult) -> bool:
        if r.surface in self.errors:
            raise self.errors[r.surface]
        self.stored.append(r.request_id)
        return True


def _handler(errors: dict[str, BaseException]) -> tuple[BatchHandler, SelectiveResults, list, WorkerMetrics]:
    worker, published = make_worker(attempts=3)
    results, metrics = SelectiveResults(errors), WorkerMetrics("primary")

    def publish(topic: str, data: bytes, attrs: dict[str, str]) -> Future:
        published.append((topic, data, attrs))
        return Future()

    handler = BatchHandler(worker.cfg, FakeScorer(), FakeModel(), results, publish, metrics)  # type: ignore[arg-type]
    return handler, results, published, metrics


def _message(rid: str, surface: str, attempt: int = 1) -> FakeMessage:
    data = RerankRequest(rid, f"user-{rid}", surface, ("a", "b", "c"), datetime.now(UTC)).to_json()
    return FakeMessage(data, {"arm": "primary"}, attempt)


def test_an_item_dynamodb_refuses_is_dead_lettered_and_its_batch_is_written() -> None:
    handler, results, published, metrics = _handler({"huge": TOO_LONG})
    good, refused, other = _message("g1", "discover"), _message("bad", "huge"), _message("g2", "discover")
    handler.handle([Settling(good), Settling(refused), Settling(other)])
    assert results.stored == ["g1", "g2"] and good.settlements == other.settlements == ["ack"]
    assert refused.settlements == ["ack"], "dead-lettered at its first delivery: no retry changes it"
    attrs = dead_letters(published)[refused.data]
    assert attrs["reason"] == "result_rejected" and attrs["delivery_attempts"] == "1"
    assert "ValidationException" in attrs["detail"] and "range keys" in attrs["detail"]
    assert sum(t == "predictions" for t, _, _ in published) == 2, "no prediction record for an unserved request"
    rejected = metrics.registry.get_sample_value(
        "rerank_errors_total", {"variant": "primary", "kind": "result_rejected"}
    )
    assert rejected == 1


def test_an_unforeseen_client_error_retries_only_its_request_then_dead_letters_it() -> None:
    handler, results, published, _ = _handler({"odd": client_error("SomethingNewException")})
    first, good = _message("o1", "odd"), _message("g1", "discover")
    handler.handle([Settling(first), Settling(good)])
    assert first.settlements == ["nack"] and good.settlements == ["ack"] and results.stored == ["g1"]
    last = _message("o1", "odd", attempt=3)
    handler.handle([Settling(last)])
    assert last.settlements == ["ack"] and dead_letters(published)[last.data]["reason"] == "result_write_error"


def test_a_throttled_write_holds_the_batch_but_a_refused_item_beside_it_is_settled() -> None:
    throttled = client_error(next(iter(THROTTLING_CODES)))
    handler, _, published, _ = _handler({"slow": throttled, "huge": TOO_LONG})
    held, refused = _message("s1", "slow"), _message("bad", "huge")
    good = _message("g1", "discover")
    with pytest.raises(DependencyDown):
        handler.handle([Settling(held), Settling(refused), Settling(good)])
    assert held.settlements == [] and good.settlements == [], "held: retried in place, as while DynamoDB is down"
    assert refused.settlements == ["ack"] and dead_letters(published)[refused.data]["reason"] == "result_rejected"
