from __future__ import annotations

from app.naming import Names
from app.settings import StackSettings
from app.topology import arm_filter, build_topology


def test_names_are_prefixed_by_stack(settings: StackSettings) -> None:
    n = Names.of(settings)
    assert n.feature_events_topic == "rerank-local-feature-events"
    assert n.variant_subscription("b") == "rerank-local-rerank-requests-b"
    assert n.bigquery_dataset == "rerank_local_features"
    assert n.redis_prefix == "rerank:local"
    ephemeral = Names(prefix="rerank", stack="pr-42")
    assert ephemeral.feature_events_topic != n.feature_events_topic
    assert ephemeral.bigquery_dataset == "rerank_pr_42_features"


def test_every_subscription_points_at_a_topic_of_the_topology(settings: StackSettings) -> None:
    topo = build_topology(settings)
    topics = {t.name for t in topo.topics}
    for s in topo.subscriptions:
        assert s.topic in topics, s.name
        assert s.dead_letter_topic is None or s.dead_letter_topic in topics


def test_variants_each_get_a_subscription_arms_filtered_shadow_not(settings: StackSettings) -> None:
    topo = build_topology(settings)
    n = Names.of(settings)
    by_name = {s.name: s for s in topo.subscriptions}
    # The primary takes all but the other arms' requests: missing and unknown arms reach its worker.
    assert by_name[n.variant_subscription("primary")].filter == f"NOT {arm_filter('b')}"
    assert by_name[n.variant_subscription("b")].filter == 'attributes.arm = "b"'
    assert by_name[n.variant_subscription("shadow")].filter is None
    for v in settings.serving.variants:
        s = by_name[n.variant_subscription(v.name)]
        assert s.dead_letter_topic == n.requests_dead_letter_topic
        assert s.max_delivery_attempts == settings.serving.max_delivery_attempts


def test_ingest_subscription_dead_letters_and_every_dead_letter_topic_is_kept(settings: StackSettings) -> None:
    topo = build_topology(settings)
    n = Names.of(settings)
    ingest = next(s for s in topo.subscriptions if s.name == n.feature_ingest_subscription)
    assert ingest.dead_letter_topic == n.feature_dead_letter_topic
    assert ingest.max_delivery_attempts == settings.feature_store.max_delivery_attempts
    # A topic without a subscription drops what is published to it: dead letters would vanish.
    subscribed = {s.topic for s in topo.subscriptions}
    assert {n.feature_dead_letter_topic, n.requests_dead_letter_topic, n.predictions_dead_letter_topic} <= subscribed
    sink = next(s for s in topo.subscriptions if s.name == n.predictions_subscription)
    assert sink.dead_letter_topic == n.predictions_dead_letter_topic


def test_offline_tables_cover_every_configured_version(settings: StackSettings) -> None:
    tables = {(o.entity, o.version) for o in build_topology(settings).offline_tables}
    assert tables == {("user_profile", "v1"), ("user_profile", "v2"), ("user_activity", "v1")}
