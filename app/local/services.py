"""Start, stop and check the local services of a stack: Redis, the Pub/Sub emulator, moto (DynamoDB).

Each runs as its own process group on a free loopback port. What was started is recorded in
``<state_dir>/<stack>/state.json`` (pids, ports, logs and each process's identity: its start time
and command line as seen once it was ready) so ``down`` stops exactly those and ``status`` can
check them. ``up`` on a healthy stack reuses it. The file is not trusted: a pid whose process is
not the one recorded (edited file, pid reused after a reboot or a crash) is never signalled.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import redis

from app.settings import REPO_ROOT

DEFAULT_STATE_DIR = REPO_ROOT / ".rerank" / "local"
EMULATOR_CANDIDATES = (
    Path("/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator"),
    Path("/usr/share/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator"),
)
INSTALL_EMULATOR = (
    "Google's Pub/Sub emulator was not found. Install it with `gcloud components install pubsub-emulator` "
    "or `sudo apt-get install google-cloud-cli-pubsub-emulator` (it needs Java 11+), "
    "or point PUBSUB_EMULATOR_BIN at its cloud-pubsub-emulator script."
)
INSTALL_REDIS = (
    "redis-server was not found. Install it with `sudo apt-get install redis-server` (or `brew install redis`)."
)
STARTUP_TIMEOUT_S = 30.0


class LocalServiceError(RuntimeError):
    pass


@dataclass
class Service:
    name: str
    pid: int
    port: int
    log: str
    identity: ProcessIdentity | None = None  # None: recorded before identities were: never signalled


@dataclass(frozen=True)
class ProcessIdentity:
    """What tells a process from a later one with the same pid: the boot, the start time in clock
    ticks since boot (``/proc/<pid>/stat``) and the command line."""

    boot_id: str
    start_ticks: int
    command: tuple[str, ...]

    @classmethod
    def of(cls, pid: int) -> ProcessIdentity | None:
        """The identity of the live process ``pid`` now; None when there is none (or no /proc)."""
        try:
            with open("/proc/sys/kernel/random/boot_id") as f:
                boot = f.read().strip()
            with open(f"/proc/{pid}/stat") as f:
                after_name = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                command = tuple(a.decode(errors="replace") for a in f.read().split(b"\0") if a)
        except (OSError, IndexError):
            return None
        if after_name[0] == "Z":  # exited, not reaped yet
            return None
        return cls(boot, int(after_name[19]), command)  # field 22 of stat: starttime


def ours(service: Service) -> bool:
    """Whether ``service.pid`` is still the process this module started and recorded: the same
    identity, and the leader of its own process group (what ``down`` signals)."""
    if service.identity is None or ProcessIdentity.of(service.pid) != service.identity:
        return False
    try:
        return os.getpgid(service.pid) == service.pid
    except OSError:
        return False


@dataclass
class LocalState:
    stack: str
    project: str
    dir: str
    services: dict[str, Service] = field(default_factory=dict)

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.services['redis'].port}/0"

    @property
    def pubsub_host(self) -> str:
        return f"127.0.0.1:{self.services['pubsub'].port}"

    @property
    def dynamodb_url(self) -> str:
        return f"http://127.0.0.1:{self.services['dynamodb'].port}"

    @property
    def offline_dir(self) -> Path:
        return Path(self.dir) / "offline"

    @property
    def dead_letter_dir(self) -> Path:
        return Path(self.dir) / "dead-letters"

    def endpoints(self) -> dict[str, str]:
        """The endpoints of the services recorded (a start that failed half way records fewer)."""
        found = {
            "redis": lambda: self.redis_url,
            "pubsub": lambda: self.pubsub_host,
            "dynamodb": lambda: self.dynamodb_url,
        }
        return {**{k: url() for k, url in found.items() if k in self.services}, "offline": str(self.offline_dir)}

    def save(self) -> None:
        path = Path(self.dir) / "state.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(path)

    @classmethod
    def load(cls, stack_dir: Path) -> LocalState | None:
        """The recorded state; a file this module did not write is one line, naming it."""
        path = stack_dir / "state.json"
        if not path.exists():
            return None
        try:
            return _state_from(json.loads(path.read_bytes()), stack_dir)
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
            raise LocalServiceError(
                f"{path} is damaged ({_why(exc)}); nothing was signalled. Stop the stack's services by hand "
                "if any run (their logs are beside it), then delete the file"
            ) from None


def _why(exc: Exception) -> str:
    text = f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError) else str(exc)
    line = " ".join(text.split())
    return line if len(line) <= 200 else line[:180] + "..."


def _int(doc: dict[str, object], key: str, low: int, high: int) -> int:
    value = doc[key]
    if type(value) is not int or not low <= value <= high:
        raise ValueError(f"{key} {str(value)[:40]!r} is not a number in {low}..{high}")
    return value


def _state_from(doc: object, stack_dir: Path) -> LocalState:
    if not isinstance(doc, dict) or not isinstance(doc.get("services"), dict):
        raise ValueError("not a mapping with services")
    services: dict[str, Service] = {}
    for key, v in doc["services"].items():
        if key not in SERVICES or not isinstance(v, dict) or v.get("name") != key:
            raise ValueError(f"service {str(key)[:40]!r} is not one of {', '.join(SERVICES)}")
        ident = v.get("identity")
        identity = None
        if ident is not None:
            if not isinstance(ident, dict) or not isinstance(ident.get("boot_id"), str):
                raise ValueError(f"{key}: identity is not a recorded one")
            command = ident["command"]
            if not isinstance(command, list) or not all(isinstance(a, str) for a in command):
                raise ValueError(f"{key}: identity command is not a list of strings")
            identity = ProcessIdentity(ident["boot_id"], _int(ident, "start_ticks", 0, 2**63), tuple(command))
        if not isinstance(v.get("log"), str):
            raise ValueError(f"{key}: log is not a path")
        services[key] = Service(key, _int(v, "pid", 1, 2**22), _int(v, "port", 1, 65535), v["log"], identity)
    for key in ("stack", "project", "dir"):
        if not isinstance(doc.get(key), str):
            raise ValueError(f"{key} is not text")
    return LocalState(doc["stack"], doc["project"], str(stack_dir), services)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) still answers kill(0).
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return True


def emulator_command(port: int) -> list[str]:
    override = os.environ.get("PUBSUB_EMULATOR_BIN")
    candidates = [Path(override)] if override else list(EMULATOR_CANDIDATES)
    gcloud = shutil.which("gcloud")
    if gcloud and not override:
        sdk = Path(os.path.realpath(gcloud)).parent.parent
        candidates.append(sdk / "platform/pubsub-emulator/bin/cloud-pubsub-emulator")
    binary = next((c for c in candidates if c.is_file()), None)
    if binary is None:
        raise LocalServiceError(INSTALL_EMULATOR)
    if not shutil.which("java"):
        raise LocalServiceError("the Pub/Sub emulator needs Java 11+: `sudo apt-get install openjdk-17-jre-headless`")
    # Started directly, not via `gcloud beta emulators`: killing gcloud would leave the JVM running.
    return [str(binary), "--host=127.0.0.1", f"--port={port}"]


def redis_command(port: int) -> list[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise LocalServiceError(INSTALL_REDIS)
    return [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no"]


def moto_command(port: int) -> list[str]:
    return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]


def _redis_ready(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_connect_timeout=0.5, socket_timeout=0.5).ping())
    except redis.RedisError:
        return False


def _http_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as resp:
            return bool(resp.status < 500)
    except OSError:
        return False


def _pubsub_ready(port: int) -> bool:
    return _http_ready(f"http://127.0.0.1:{port}/v1/projects/health/topics")


def _moto_ready(port: int) -> bool:
    return _http_ready(f"http://127.0.0.1:{port}/moto-api/data.json")


SERVICES: dict[str, tuple[Callable[[int], list[str]], Callable[[int], bool]]] = {
    "redis": (redis_command, _redis_ready),
    "pubsub": (emulator_command, _pubsub_ready),
    "dynamodb": (moto_command, _moto_ready),
}


def healthy(service: Service) -> bool:
    return ours(service) and SERVICES[service.name][1](service.port)


def _stop(service: Service, timeout: float = 10.0) -> bool:
    """Stop the service's process group if its leader is still the process started; False when
    ``service.pid`` is some other process (or none), which is then left alone."""
    if not ours(service):
        return False
    try:
        os.killpg(service.pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while ours(service) and time.monotonic() < deadline:
        time.sleep(0.05)
    if ours(service):  # checked again: a SIGKILL reaches only the group we started
        os.killpg(service.pid, signal.SIGKILL)
    return True


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        # As the servers themselves do: connections of a killed server lingering in TIME_WAIT
        # must not make its port look taken.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _start(name: str, logs: Path, port: int | None = None) -> Service:
    """Start ``name`` on ``port`` when given and free (a restart keeps its endpoint), else a free one."""
    command, ready = SERVICES[name]
    port = port if port and _port_free(port) else free_port()
    log = logs / f"{name}.log"
    with open(log, "ab") as out:
        # A new session: the service outlives this command and `down` can stop its whole group.
        proc = subprocess.Popen(
            command(port),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=logs,
        )
    service = Service(name, proc.pid, port, str(log), ProcessIdentity.of(proc.pid))
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            raise LocalServiceError(f"{name} exited with code {proc.returncode} at start: {' | '.join(tail)}")
        if ready(port):
            # As it is once serving (Redis renames itself, a launcher script may exec): what ours() checks.
            service.identity = ProcessIdentity.of(proc.pid)
            return service
        time.sleep(0.1)
    _stop(service)
    raise LocalServiceError(f"{name} did not become ready on 127.0.0.1:{port} within {STARTUP_TIMEOUT_S:.0f}s ({log})")


def start_services(stack: str, project: str, state_dir: Path = DEFAULT_STATE_DIR) -> tuple[LocalState, list[str]]:
    """Start whatever of the stack's services is not running healthy; returns the state and what was started."""
    stack_dir = state_dir / stack
    logs = stack_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    state = LocalState.load(stack_dir) or LocalState(stack, project, str(stack_dir))
    started: list[str] = []
    try:
        for name in SERVICES:
            current = state.services.get(name)
            if current and healthy(current):
                continue
            if current:
                _stop(current)
            state.services[name] = _start(name, logs, current.port if current else None)
            started.append(name)
            state.save()
    except LocalServiceError:
        for name in started:
            _stop(state.services.pop(name))
        state.save()
        raise
    state.save()
    return state, started


def stop_services(
    stack: str, state_dir: Path = DEFAULT_STATE_DIR, keep_data: bool = False
) -> tuple[list[str], list[str]]:
    """Stop what ``start_services`` recorded. Redis and the emulator keep their data in memory, so
    the stack's files (offline store, dead letters) go too unless ``keep_data``: a later ``up``
    then starts from one consistent, empty state. Returns what was stopped and the recorded pids
    left alone because their process is not the one started (reused or edited)."""
    stack_dir = state_dir / stack
    state = LocalState.load(stack_dir)
    if state is None:
        return [], []
    stopped, left = [], []
    for service in state.services.values():
        if _stop(service):
            stopped.append(service.name)
        elif alive(service.pid):
            left.append(f"{service.name} (pid {service.pid})")
    (stack_dir / "state.json").unlink()
    if not keep_data:
        for folder in (state.offline_dir, state.dead_letter_dir):
            shutil.rmtree(folder, ignore_errors=True)
    return stopped, left


def service_status(
    stack: str, state_dir: Path = DEFAULT_STATE_DIR
) -> tuple[LocalState | None, dict[str, dict[str, object]]]:
    """The recorded state and, for every service a stack runs, whether it is ours and healthy (one
    that was never recorded, after a start that failed half way, is reported as not running)."""
    state = LocalState.load(state_dir / stack)
    if state is None:
        return None, {}
    report: dict[str, dict[str, object]] = {}
    for name in SERVICES:
        s = state.services.get(name)
        report[name] = (
            {"pid": s.pid, "port": s.port, "alive": ours(s), "healthy": healthy(s), "log": s.log}
            if s
            else {"pid": None, "port": None, "alive": False, "healthy": False, "log": None}
        )
    return state, report
