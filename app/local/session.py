"""Use the local stack for the length of one command, starting it only if it is not running."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from app.local.apply import apply_topology
from app.local.services import LocalServiceError, LocalState, service_status, start_services, stop_services
from app.settings import StackSettings


@contextmanager
def local_stack(settings: StackSettings, state_dir: Path, keep: bool = False) -> Iterator[LocalState]:
    """Yield the running stack; stop at the end only the services this call started (unless ``keep``)."""
    state, started = start_services(settings.stack, settings.gcp.project, state_dir)
    try:
        apply_topology(state, settings)
        yield state
    finally:
        if started and not keep:
            stop_services(settings.stack, state_dir)


def running_state(stack: str, state_dir: Path) -> LocalState:
    state, report = service_status(stack, state_dir)
    if state is None or not all(s["healthy"] for s in report.values()):
        raise LocalServiceError(
            f"the local services of stack {stack} are not running; start them with `rerank local up`"
        )
    return state
