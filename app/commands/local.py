"""`rerank local up|down|status`."""

from __future__ import annotations

import argparse
from pathlib import Path

from app.commands.base import RunFailed, UsageError, emit
from app.local.apply import apply_topology, topology_status
from app.local.services import LocalServiceError, service_status, start_services, stop_services
from app.settings import load_stack


def run(args: argparse.Namespace, state_dir: Path) -> int:
    if args.action == "down":
        stopped, left = stop_services(args.stack, state_dir, keep_data=args.keep_data)

        def text() -> str:
            lines = [f"stopped {', '.join(stopped)}" if stopped else f"nothing of stack {args.stack} was running"]
            if left:
                lines.append(f"left alone, not the processes started: {', '.join(left)}")
            return "\n".join(lines)

        emit(args, {"stack": args.stack, "stopped": stopped, "left_alone": left}, text)
        return 0
    settings = load_stack(args.stack)
    if settings.env != "local":
        raise UsageError(f"stack {args.stack} is a {settings.env} stack; `rerank local` runs only env: local stacks")
    if args.action == "up":
        try:
            state, started = start_services(args.stack, settings.gcp.project, state_dir)
        except LocalServiceError as exc:
            raise RunFailed(str(exc)) from None
        report = apply_topology(state, settings)
        payload = {
            "stack": args.stack,
            "started": started,
            "endpoints": state.endpoints(),
            "created": report.created,
            "existing": len(report.existing),
        }

        def text() -> str:
            lines = [f"stack {args.stack}: " + (f"started {', '.join(started)}" if started else "already running")]
            lines += [f"  {k:9} {v}" for k, v in state.endpoints().items()]
            lines.append(f"  topology: {len(report.created)} created, {len(report.existing)} already there")
            return "\n".join(lines)

        emit(args, payload, text)
        return 0
    state, report = service_status(args.stack, state_dir)
    if state is None:
        emit(
            args,
            {"stack": args.stack, "running": False, "services": {}},
            lambda: f"stack {args.stack}: not running (start it with `rerank local up`)",
        )
        return 1
    all_healthy = all(s["healthy"] for s in report.values())
    missing = topology_status(state, settings) if all_healthy else {}
    ok = all_healthy and not any(missing.values())
    payload = {
        "stack": args.stack,
        "running": True,
        "healthy": ok,
        "services": report,
        "endpoints": state.endpoints(),
        **missing,
    }

    def text() -> str:
        lines = [f"stack {args.stack}: {'healthy' if ok else 'NOT healthy'}"]
        for name, s in report.items():
            lines.append(
                f"  {name:9} pid {s['pid'] or '-'!s:<7} port {s['port'] or '-'!s:<6} {'ok' if s['healthy'] else 'DOWN'}"
            )
        lines += [f"  {k.replace('_', ' ')}: {', '.join(v)}" for k, v in missing.items() if v]
        return "\n".join(lines)

    emit(args, payload, text)
    return 0 if ok else 1
