"""The shared decode transform on the DirectRunner: every event comes out as a row or a dead letter."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import apache_beam as beam
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from app.featurestore.beam_transforms import DEAD, DecodeFeatureEvents
from app.featurestore.events import event_attributes, from_json_line, from_pubsub
from app.featurestore.samples import profile_v1

AT = datetime(2026, 3, 1, tzinfo=UTC)


def test_rows_and_dead_letters_are_split_and_nothing_is_lost() -> None:
    rng = random.Random(5)
    good = [
        from_pubsub(
            profile_v1(f"u{i}", rng, AT - timedelta(days=9)).SerializeToString(),
            event_attributes("user_profile", "v1", AT),
            f"m{i}",
        )
        for i in range(5)
    ]
    bad = [
        from_pubsub(b"\xff", event_attributes("user_profile", "v1", AT), "x1"),
        from_pubsub(b"", event_attributes("nope", "v1", AT), "x2"),
        from_json_line("][", "f:3"),
    ]
    with test_pipeline.TestPipeline() as p:
        out = p | beam.Create(good + bad) | DecodeFeatureEvents()
        assert_that(
            out.rows | "Ids" >> beam.Map(lambda r: r.entity_id), equal_to([f"u{i}" for i in range(5)]), label="rows"
        )
        assert_that(
            out[DEAD] | "Reasons" >> beam.Map(lambda d: (d.source, d.reason)),
            equal_to([("pubsub:x1", "undecodable"), ("pubsub:x2", "unknown_entity"), ("f:3", "undecodable")]),
            label="dead",
        )
