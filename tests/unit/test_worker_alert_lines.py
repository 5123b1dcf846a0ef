"""What the cloud's alerts count on a worker: a failed results write (throttled, refused
credentials or any other error) and a failed AWS credential exchange each log their marker once,
count in the worker's metrics, and leave the batch unsettled to be retried, never dead-lettered."""

from __future__ import annotations

import logging
import socket

import pytest
from botocore.exceptions import ClientError

from app.serving.aws_federation import FederationError, assume_role_with_google
from app.serving.observability import AWS_CREDENTIALS_FAILED, RESULTS_WRITE_FAILED, WorkerMetrics
from app.serving.results import RankedResult
from app.serving.worker import BatchHandler, DependencyDown, Settling
from tests.unit.test_worker_isolation import FakeMessage, FakeModel, FakeScorer, Future, make_worker, request


class FailingResults:
    def __init__(self, error: BaseException) -> None:
        self.error = error

    def put_if_newer(self, r: RankedResult) -> bool:
        raise self.error


def _handler(error: BaseException) -> tuple[BatchHandler, WorkerMetrics]:
    worker, _ = make_worker()
    metrics = WorkerMetrics("primary")
    handler = BatchHandler(
        worker.cfg,
        FakeScorer(),
        FakeModel(),  # type: ignore[arg-type]
        FailingResults(error),  # type: ignore[arg-type]
        lambda *a: Future(),
        metrics,
    )
    return handler, metrics


def _errors(metrics: WorkerMetrics, kind: str) -> float:
    return metrics.registry.get_sample_value("rerank_errors_total", {"variant": "primary", "kind": kind}) or 0.0


THROTTLED = ClientError(
    {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}, "PutItem"
)
DENIED = ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "PutItem")


@pytest.mark.parametrize(
    "error, kind",
    [
        (THROTTLED, "results_throttled"),
        (DENIED, "results_write"),
        (FederationError("STS refused the Google token"), "results_credentials"),
    ],
)
def test_a_failed_results_write_logs_its_marker_and_leaves_the_batch_to_retry(
    error: BaseException, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    handler, metrics = _handler(error)
    message = FakeMessage(request("u1"), {"arm": "primary"})
    with caplog.at_level(logging.ERROR, logger="rerank.worker"), pytest.raises(DependencyDown):
        handler.handle([Settling(message)])
    assert message.settlements == [], "nothing settled: the batch is retried, not dead-lettered"
    marked = [r.getMessage() for r in caplog.records if RESULTS_WRITE_FAILED in r.getMessage()]
    assert len(marked) == 1 and f"kind={kind}" in marked[0] and "variant=primary" in marked[0]
    assert _errors(metrics, kind) == 1


def test_a_refused_credential_exchange_logs_its_marker(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:  # a loopback port nobody listens on: the metadata server is away
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    role = "arn:aws:iam::111111111111:role/rerank-dev-results-writer"
    with caplog.at_level(logging.ERROR, logger="rerank.aws"), pytest.raises(FederationError):
        assume_role_with_google(role, "s", "eu-west-1", metadata_url=f"http://127.0.0.1:{port}/identity")
    (line,) = [r.getMessage() for r in caplog.records if AWS_CREDENTIALS_FAILED in r.getMessage()]
    assert f"role={role}" in line and "no Google ID token" in line
