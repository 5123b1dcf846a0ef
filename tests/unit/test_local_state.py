"""`state.json` is not trusted (app/local/services.py): a pid whose process is not the one started is
never signalled, whatever the file says, and a damaged file is one line for `local status|down|up`.
The unrelated processes here are real ones, each the leader of its own process group."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.cli import main
from app.local.services import ProcessIdentity, Service, ours

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="process identities come from /proc")

BOUNDED = settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)


@pytest.fixture()
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    """A process that is not a service of ours, in a session of its own like the services."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


def _write_state(state_dir: Path, services: dict[str, dict[str, object]]) -> Path:
    stack_dir = state_dir / "local"
    stack_dir.mkdir(parents=True, exist_ok=True)
    doc = {"stack": "local", "project": "rerank-local", "dir": str(stack_dir), "services": services}
    (stack_dir / "state.json").write_text(json.dumps(doc))
    return stack_dir / "state.json"


def _service(name: str, pid: int, identity: ProcessIdentity | None) -> dict[str, object]:
    return asdict(Service(name, pid, 6379, "/dev/null", identity))


def test_an_identity_tells_a_process_from_another_with_its_pid(bystander: subprocess.Popen[bytes]) -> None:
    me = ProcessIdentity.of(bystander.pid)
    assert me is not None and me.command[-1].endswith("time.sleep(120)")
    assert ours(Service("redis", bystander.pid, 1, "", me))
    reused = ProcessIdentity(me.boot_id, me.start_ticks + 1, me.command)  # a later process, same pid
    assert not ours(Service("redis", bystander.pid, 1, "", reused))
    assert not ours(Service("redis", bystander.pid, 1, "", None))  # recorded without one: never ours


@pytest.mark.parametrize("recorded", ["none", "reused pid", "edited command"])
def test_down_never_stops_a_process_that_is_not_the_one_started(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bystander: subprocess.Popen[bytes], recorded: str
) -> None:
    real = ProcessIdentity.of(bystander.pid)
    assert real is not None
    identity = {
        "none": None,
        "reused pid": ProcessIdentity(real.boot_id, real.start_ticks - 1, real.command),
        "edited command": ProcessIdentity(real.boot_id, real.start_ticks, ("redis-server", "127.0.0.1:6379")),
    }[recorded]
    offline = tmp_path / "elsewhere" / "offline"
    offline.mkdir(parents=True)
    (offline / "keep").write_text("x")
    state = _write_state(tmp_path, {"redis": _service("redis", bystander.pid, identity)})
    doc = json.loads(state.read_text())
    state.write_text(json.dumps({**doc, "dir": str(tmp_path / "elsewhere")}))  # an edited dir is not followed either

    assert main(["local", "down", "--json", "--state-dir", str(tmp_path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["stopped"] == [] and out["left_alone"] == [f"redis (pid {bystander.pid})"]
    assert bystander.poll() is None, "the unrelated process still runs"
    assert (offline / "keep").exists()
    assert not state.exists()


def test_status_of_a_reused_pid_is_not_healthy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bystander: subprocess.Popen[bytes]
) -> None:
    _write_state(tmp_path, {"redis": _service("redis", bystander.pid, None)})
    assert main(["local", "status", "--json", "--state-dir", str(tmp_path)]) == 1
    report = json.loads(capsys.readouterr().out)["services"]["redis"]
    assert report["alive"] is False and report["healthy"] is False
    assert bystander.poll() is None


damaged = st.one_of(
    st.binary(max_size=200),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
        lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids, max_size=3),
        max_leaves=12,
    ).map(lambda doc: json.dumps(doc).encode()),
    st.fixed_dictionaries(
        {"stack": st.just("local"), "project": st.just("p"), "dir": st.just("/"), "services": st.just({"redis": 1})}
    ).map(lambda doc: json.dumps(doc).encode()),
)


@BOUNDED
@given(data=damaged, action=st.sampled_from(["status", "down", "up"]))
def test_a_damaged_state_file_is_one_line(
    tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str], data: bytes, action: str
) -> None:
    state_dir = tmp_path_factory.mktemp("s")
    (state_dir / "local").mkdir()
    (state_dir / "local" / "state.json").write_bytes(data)
    code = main(["local", action, "--state-dir", str(state_dir)])
    err = capsys.readouterr().err
    # No document drawn here is a state file this module wrote: each is refused, nothing started.
    assert code == 1 and len(err.strip().splitlines()) == 1 and "is damaged" in err, err
    assert (state_dir / "local" / "state.json").read_bytes() == data


def test_a_state_of_a_start_that_failed_half_way_is_not_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_state(tmp_path, {})  # what a failed `up` leaves: no service recorded
    assert main(["local", "status", "--json", "--state-dir", str(tmp_path)]) == 1
    out = capsys.readouterr()
    assert not out.err and json.loads(out.out)["healthy"] is False
    assert main(["dlq", "list", "--state-dir", str(tmp_path)]) == 1
    assert "are not running; start them with `rerank local up`" in capsys.readouterr().err
