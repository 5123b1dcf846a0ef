"""The model a variant serves, reloaded when its deployment record changes (no restart).

The model comes with the negative sampling rate its registry record names, so its ``predict``
gives corrected probabilities (``app/ranking/sampling.CalibratedModel``): served scores, the
prediction records and everything computed from them (drift, readout) are calibrated.
"""

from __future__ import annotations

import logging
import threading
import time

import lightgbm as lgb

from app.ranking.registry import ModelRegistry, RegistryError
from app.ranking.sampling import CalibratedModel

log = logging.getLogger(__name__)


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
                try:
                    record = self.registry.deployment(self.variant)
                    if record is not None and record.model_id != self.model_id:
                        self.booster = CalibratedModel.load(record.model_uri, self.registry.metadata(record.model_id))
                        self.model_id = record.model_id
                except (RegistryError, lgb.basic.LightGBMError, OSError, ValueError) as exc:
                    # A damaged record or model file: keep serving the model held (or none yet).
                    log.warning("%s: not reloading, keeping %s: %s", self.variant, self.model_id, exc)
            if self.model_id is None or self.booster is None:
                return None
            return self.model_id, self.booster
