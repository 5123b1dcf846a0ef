"""What every command shares: its two failure kinds and how it prints a result."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class UsageError(Exception):
    """Bad input: exit code 2."""


class RunFailed(Exception):
    """The command ran but did not succeed: exit code 1."""


def emit(args: argparse.Namespace, payload: dict[str, Any], text: Callable[[], str]) -> None:
    """One JSON object with ``--json``, else the human text."""
    print(json.dumps(payload, default=str) if getattr(args, "json", False) else text())


def one_line(text: object, limit: int = 2000) -> str:
    """``text`` on one line of at most ``limit`` characters: the contract, whatever a library's message holds."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else f"{line[: limit - 30]}... ({len(line)} characters)"


@contextmanager
def google_calls(what: str) -> Iterator[None]:
    """Google's client errors (no credentials, no permission, no such dataset) as one line, exit 1."""
    from google.api_core.exceptions import GoogleAPIError
    from google.auth.exceptions import GoogleAuthError

    try:
        yield
    except GoogleAuthError as exc:
        raise RunFailed(
            f"{what}: no usable Google credentials ({one_line(exc, 300)}); run `gcloud auth application-default login`"
        ) from None
    except GoogleAPIError as exc:
        raise RunFailed(f"{what}: {one_line(exc, 500)}") from None
