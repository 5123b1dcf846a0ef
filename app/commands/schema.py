"""`rerank schema docs|check`."""

from __future__ import annotations

import argparse

from app.commands.base import RunFailed, UsageError, emit
from app.schemas.codegen import generate
from app.schemas.compat import check_against
from app.schemas.protoc import ProtocError


def run(args: argparse.Namespace) -> int:
    if args.action == "docs":
        stale = generate(args.repo, check=args.verify)
        if args.verify:
            emit(args, {"stale": stale}, lambda: "\n".join(stale) or "generated code and docs are up to date")
            if stale:
                raise RunFailed(f"{len(stale)} generated file(s) are stale; run `rerank schema docs`")
            return 0
        emit(args, {"written": stale}, lambda: "\n".join(f"wrote {p}" for p in stale) or "already up to date")
        return 0
    if not args.against:
        raise UsageError("schema check needs --against GIT_REF (e.g. origin/main)")
    try:
        violations, notes = check_against(args.repo, args.against)
    except ProtocError as exc:
        raise RunFailed(f"{exc} (protoc's messages are above)") from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    emit(
        args,
        {"against": args.against, "breaking": [str(v) for v in violations], "notes": notes},
        lambda: "\n".join([*(str(v) for v in violations), *(f"note: {n}" for n in notes)]) or "no breaking changes",
    )
    if violations:
        raise RunFailed(
            f"{len(violations)} breaking change(s) inside existing versions; ship them as a new version package instead"
        )
    return 0
