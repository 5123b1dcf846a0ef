"""One submission per trigger id: a create-only marker per id.

Locally a file created with O_EXCL; on GCP an object written with ``if_generation_match=0``
(Cloud Storage refuses it when it exists). Either way the first claim wins, atomically, so a
redelivered message or a retried HTTP call submits nothing twice.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


class FileLedger:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def claim(self, trigger_id: str, record: dict[str, Any]) -> bool:
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.root / f"{trigger_id}.json", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            json.dump({**record, "claimed_at": datetime.now(UTC).isoformat()}, f)
        return True


class GcsLedger:
    def __init__(self, bucket: Any, prefix: str = "triggers/") -> None:
        """``bucket`` is a ``google.cloud.storage.Bucket``."""
        self.bucket, self.prefix = bucket, prefix

    def claim(self, trigger_id: str, record: dict[str, Any]) -> bool:
        from google.api_core.exceptions import PreconditionFailed

        blob = self.bucket.blob(f"{self.prefix}{trigger_id}.json")
        try:
            blob.upload_from_string(json.dumps(record), if_generation_match=0)
        except PreconditionFailed:
            return False
        return True
