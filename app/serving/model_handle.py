"""The model a variant serves, reloaded when its deployment record changes (no restart).

The model comes with the negative sampling rate its registry record names, so its ``predict``
gives corrected probabilities (``app/ranking/sampling.CalibratedModel``): served scores, the
prediction records and everything computed from them (drift, readout) are calibrated.
"""

from __future__ import annotations

import threading
import time

from app.ranking.registry import ModelRegistry
from app.ranking.sampling import CalibratedModel


class DeployedModel:
    def __init__(self, registry: ModelRegistry, variant: str, check_every_s: float = 1.0) -> None:
        self.registry, self.variant, self.check_every_s = registry, variant, check_every_s
        self._lock = threading.Lock()
        self._checked = float("-inf")
        self.model_id: str | None = None
        self.booster: CalibratedModel | None = None

    def current(self) -> tuple[str, CalibratedModel] | None:
        """The deployed (model_id, booster), checking the record at most every ``check_every_s``."""
        with self._lock:
            now = time.monotonic()
            if now - self._checked >= self.check_every_s:
                self._checked = now
                record = self.registry.deployment(self.variant)
                if record is not None and record.model_id != self.model_id:
                    self.booster = CalibratedModel.load(record.model_uri, self.registry.metadata(record.model_id))
                    self.model_id = record.model_id
            if self.model_id is None or self.booster is None:
                return None
            return self.model_id, self.booster
