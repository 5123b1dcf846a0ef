"""One submission per trigger id, in two steps: claim the id, submit, then commit it.

- ``claim`` takes a short lease on the id (a create-only marker): two deliveries of one trigger
  at the same moment cannot both submit. It answers ``committed`` when the id was submitted
  before, ``busy`` while another holder's lease runs, ``claimed`` otherwise.
- ``commit`` records the submission for good (another create-only marker, with the job).
- ``release`` drops the lease after a failed submit, so the redelivery submits again: a submit
  that fails is retried, never lost. A holder that died leaves a lease that expires after
  ``lease_s``; the next delivery takes it over.

Locally files created with O_EXCL; on GCP objects written with ``if_generation_match=0`` (Cloud
Storage refuses the write when the object exists), taken over with ``if_generation_match=<gen>``.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

Claim = Literal["claimed", "committed", "busy"]
LEASE_S = 900.0  # longer than a submit takes (Vertex answers in seconds), shorter than a retry schedule


class FileLedger:
    def __init__(self, root: Path, lease_s: float = LEASE_S) -> None:
        self.root, self.lease_s = Path(root), lease_s

    def _done(self, trigger_id: str) -> Path:
        return self.root / f"{trigger_id}.json"

    def _lease(self, trigger_id: str) -> Path:
        return self.root / f"{trigger_id}.claim"

    def claim(self, trigger_id: str, record: dict[str, Any]) -> Claim:
        self.root.mkdir(parents=True, exist_ok=True)
        if self._done(trigger_id).exists():
            return "committed"
        lease = self._lease(trigger_id)
        for _ in range(2):
            try:
                fd = os.open(lease, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    age = datetime.now(UTC).timestamp() - lease.stat().st_mtime
                except FileNotFoundError:
                    continue  # released meanwhile: try again
                if age < self.lease_s:
                    return "busy"
                lease.unlink(missing_ok=True)  # its holder died: take over
                continue
            with os.fdopen(fd, "w") as f:
                json.dump({**record, "claimed_at": datetime.now(UTC).isoformat()}, f)
            return "committed" if self._done(trigger_id).exists() else "claimed"
        return "busy"

    def commit(self, trigger_id: str, record: dict[str, Any]) -> None:
        try:
            fd = os.open(self._done(trigger_id), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return
        with os.fdopen(fd, "w") as f:
            json.dump({**record, "committed_at": datetime.now(UTC).isoformat()}, f)
        self._lease(trigger_id).unlink(missing_ok=True)

    def release(self, trigger_id: str) -> None:
        self._lease(trigger_id).unlink(missing_ok=True)


class GcsLedger:
    def __init__(self, bucket: Any, prefix: str = "triggers/", lease_s: float = LEASE_S) -> None:
        """``bucket`` is a ``google.cloud.storage.Bucket``."""
        self.bucket, self.prefix, self.lease_s = bucket, prefix, lease_s

    def claim(self, trigger_id: str, record: dict[str, Any]) -> Claim:
        from google.api_core.exceptions import PreconditionFailed

        if self.bucket.blob(f"{self.prefix}{trigger_id}.json").exists():
            return "committed"
        lease = self.bucket.blob(f"{self.prefix}{trigger_id}.claim")
        body = json.dumps({**record, "claimed_at": datetime.now(UTC).isoformat()})
        try:
            lease.upload_from_string(body, if_generation_match=0)
            return "claimed"
        except PreconditionFailed:
            pass
        lease.reload()
        age = (datetime.now(UTC) - lease.updated).total_seconds() if lease.updated else 0.0
        if age < self.lease_s:
            return "busy"
        try:  # take over a dead holder's lease, unless someone else just did
            lease.upload_from_string(body, if_generation_match=lease.generation)
        except PreconditionFailed:
            return "busy"
        return "claimed"

    def commit(self, trigger_id: str, record: dict[str, Any]) -> None:
        from google.api_core.exceptions import NotFound, PreconditionFailed

        try:
            self.bucket.blob(f"{self.prefix}{trigger_id}.json").upload_from_string(
                json.dumps(record), if_generation_match=0
            )
        except PreconditionFailed:
            pass
        try:
            self.bucket.blob(f"{self.prefix}{trigger_id}.claim").delete()
        except NotFound:
            pass

    def release(self, trigger_id: str) -> None:
        from google.api_core.exceptions import NotFound

        try:
            self.bucket.blob(f"{self.prefix}{trigger_id}.claim").delete()
        except NotFound:
            pass
