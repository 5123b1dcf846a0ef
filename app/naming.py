"""Resource names for one stack: the only place a topic, table or key prefix is spelled.

Both ``infra/`` and the local runtime name things through here, so a laptop runs the same
topology, under the same names, as a cloud stack. Names start with ``<prefix>-<stack>`` so that
stacks sharing a project (ephemeral ``pr-<n>`` stacks beside ``dev``) never collide.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.settings import StackSettings


@dataclass(frozen=True)
class Names:
    prefix: str
    stack: str

    @classmethod
    def of(cls, settings: StackSettings) -> Names:
        return cls(prefix=settings.name_prefix, stack=settings.stack)

    @property
    def base(self) -> str:
        return f"{self.prefix}-{self.stack}"

    # Feature store
    @property
    def feature_events_topic(self) -> str:
        return f"{self.base}-feature-events"

    @property
    def feature_ingest_subscription(self) -> str:
        return f"{self.base}-feature-events-ingest"

    @property
    def feature_dead_letter_topic(self) -> str:
        return f"{self.base}-feature-events-dead-letter"

    @property
    def feature_dead_letter_subscription(self) -> str:
        return f"{self.base}-feature-events-dead-letter-inspect"

    @property
    def bigquery_dataset(self) -> str:
        return f"{self.prefix}_{self.stack}_features".replace("-", "_")

    @staticmethod
    def offline_table(entity: str, version: str) -> str:
        return f"{entity}_{version}"

    @property
    def redis_prefix(self) -> str:
        return f"{self.prefix}:{self.stack}"

    # Serving
    @property
    def requests_topic(self) -> str:
        return f"{self.base}-rerank-requests"

    def variant_subscription(self, variant: str) -> str:
        return f"{self.base}-rerank-requests-{variant}"

    @property
    def requests_dead_letter_topic(self) -> str:
        return f"{self.base}-rerank-requests-dead-letter"

    @property
    def requests_dead_letter_subscription(self) -> str:
        return f"{self.base}-rerank-requests-dead-letter-inspect"

    @property
    def predictions_topic(self) -> str:
        return f"{self.base}-predictions"

    @property
    def predictions_subscription(self) -> str:
        return f"{self.base}-predictions-sink"

    @property
    def training_triggers_topic(self) -> str:
        return f"{self.base}-training-triggers"

    @property
    def training_triggers_subscription(self) -> str:
        return f"{self.base}-training-triggers-function"

    def schedule_job(self, schedule: str) -> str:
        return f"{self.base}-train-{schedule}"

    def worker_deployment(self, variant: str) -> str:
        return f"{self.base}-worker-{variant}"

    @property
    def results_table(self) -> str:
        return f"{self.base}-rerank-results"
