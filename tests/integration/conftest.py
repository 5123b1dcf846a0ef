"""Real local services on loopback, started once per test session through the same code as `rerank local up`."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis

from app.local import clients
from app.local.apply import apply_topology
from app.local.services import LocalState, start_services, stop_services
from app.settings import REPO_ROOT, StackSettings

if TYPE_CHECKING:
    from tests.integration.serving_world import ServedMarket


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups off the items
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in str(item.path):
            item.add_marker(pytest.mark.integration)
        # Under `pytest -n` (--dist loadgroup) the tests on the served market share one worker, so
        # the market is simulated, trained and put online once rather than once per worker.
        if "served_world" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("served_world"))


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state folder of the tests' own, so a developer's running `local` stack is left alone."""
    return tmp_path_factory.mktemp("state")


@pytest.fixture(scope="session")
def local_stack(state_dir: Path, settings: StackSettings) -> Iterator[LocalState]:
    state, _ = start_services(settings.stack, settings.gcp.project, state_dir)
    apply_topology(state, settings)
    yield state
    stop_services(settings.stack, state_dir)


def rerank(
    *args: str, state_dir: Path, timeout: float = 180, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real `rerank` command line against the tests' state folder."""
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args, "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=timeout,
        env=env,
    )


@pytest.fixture(scope="session")
def served_world(
    local_stack: LocalState, settings: StackSettings, tmp_path_factory: pytest.TempPathFactory
) -> ServedMarket:
    """A market ready to serve (its features online, a model deployed to every variant), built once."""
    from app.featurestore.registry import default_registry
    from tests.integration.serving_world import prepare_served_market

    return prepare_served_market(local_stack, settings, default_registry(), tmp_path_factory.mktemp("served"))


@pytest.fixture()
def served(served_world: ServedMarket) -> ServedMarket:
    """The served market with its features online and no leftovers on the serving subscriptions."""
    from app.naming import Names

    world = served_world
    names, project = Names.of(world.settings), world.settings.gcp.project
    for sub in [names.variant_subscription(v.name) for v in world.settings.serving.variants] + [
        names.requests_dead_letter_subscription,
        names.predictions_subscription,
    ]:
        clients.drain(world.state.pubsub_host, f"projects/{project}/subscriptions/{sub}")
    world.load_online()
    return world


@pytest.fixture()
def redis_db(local_stack: LocalState) -> Iterator[redis.Redis]:
    client = clients.redis_client(local_stack.redis_url)
    client.flushdb()
    yield client
    client.close()


@dataclass
class Channel:
    """A topic with its own pull subscription, and a dead-letter topic with one: fresh per test."""

    project: str
    topic: str
    subscription: str
    dead_letter_topic: str
    dead_letter_subscription: str


@pytest.fixture()
def channel(local_stack: LocalState, settings: StackSettings) -> Iterator[Channel]:
    tag = uuid.uuid4().hex[:8]
    project = settings.gcp.project
    pub = clients.publisher(local_stack.pubsub_host)
    sub = clients.subscriber(local_stack.pubsub_host)
    ch = Channel(
        project,
        pub.topic_path(project, f"t-{tag}"),
        sub.subscription_path(project, f"s-{tag}"),
        pub.topic_path(project, f"dlq-{tag}"),
        sub.subscription_path(project, f"dlq-s-{tag}"),
    )
    pub.create_topic(name=ch.topic)
    pub.create_topic(name=ch.dead_letter_topic)
    sub.create_subscription(name=ch.subscription, topic=ch.topic)
    sub.create_subscription(name=ch.dead_letter_subscription, topic=ch.dead_letter_topic)
    yield ch
    sub.close()


def pull_all(host: str, subscription: str, want: int, timeout: float = 30.0) -> list:
    """Pull (and ack) until ``want`` messages arrived or ``timeout`` passed."""
    import time

    sub = clients.subscriber(host)
    got: list = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < want and time.monotonic() < deadline:
            resp = sub.pull(subscription=subscription, max_messages=100, timeout=5)
            if resp.received_messages:
                sub.acknowledge(subscription=subscription, ack_ids=[m.ack_id for m in resp.received_messages])
                got += [m.message for m in resp.received_messages]
    finally:
        sub.close()
    return got


def wait_until(check: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} not met within {timeout}s")
