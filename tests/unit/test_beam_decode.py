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


def test_hostile_events_in_a_bundle_cost_none_of_the_good_ones() -> None:
    """Inputs that used to raise inside the DoFn (and so fail the bundle): wrong JSON types, dates
    beyond the representable range, deep nesting, a year before 1653, a year 2100."""
    rng = random.Random(6)
    now = datetime.now(UTC)
    good = [
        from_pubsub(
            profile_v1(f"g{i}", rng, now - timedelta(days=9)).SerializeToString(),
            event_attributes("user_profile", "v1", now - timedelta(hours=1)),
            f"m{i}",
        )
        for i in range(4)
    ]
    payload = good[0].payload or b""
    attrs = event_attributes("user_profile", "v1", now)
    hostile = [
        from_json_line('{"entity": 5, "version": "v1", "event_time": "2026-03-01T00:00:00Z", "data": {}}', "h:1"),
        from_json_line('{"entity": "user_profile", "version": "v1", "event_time": [1], "data": {}}', "h:2"),
        from_json_line('{"data": ' + "[" * 50_000 + "]" * 50_000 + "}", "h:3"),
        from_pubsub(payload, {**attrs, "event_time": "0001-01-01T00:00:00+05:00"}, "h4"),
        from_pubsub(payload, {**attrs, "event_time": "1500-01-01T00:00:00Z"}, "h5"),
        from_pubsub(payload, {**attrs, "event_time": "2100-01-01T00:00:00Z"}, "h6"),
    ]
    with test_pipeline.TestPipeline() as p:
        out = p | beam.Create(hostile[:3] + good + hostile[3:]) | DecodeFeatureEvents()
        assert_that(out.rows | "Ids" >> beam.Map(lambda r: r.entity_id), equal_to([f"g{i}" for i in range(4)]))
        assert_that(
            out[DEAD] | "Reasons" >> beam.Map(lambda d: d.reason),
            equal_to(
                ["undecodable", "undecodable", "undecodable", "bad_event_time", "bad_event_time", "bad_event_time"]
            ),
            label="dead",
        )
