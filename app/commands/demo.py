"""`rerank demo`: the main job on the local stack.

Today it runs the feature-store half of the loop: start the local services, publish a small
market's feature events (and one bad event of each kind) to the emulator, stream them through
the Beam ingest into Redis and Parquet, then show both stores, the dead letters and a
point-in-time join. Training, serving and the report join as their issues land.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa

from app.commands.base import RunFailed, UsageError, emit
from app.settings import StackSettings, load_stack


def step(args: argparse.Namespace, text: str) -> float:
    if not args.json:
        print(f"==> {text}", flush=True)
    return time.perf_counter()


def bad_events(settings: StackSettings) -> list[tuple[bytes, dict[str, str]]]:
    from app.featurestore.events import event_attributes
    from app.featurestore.samples import EPOCH, profile_v1

    good = profile_v1("demo-bad", random.Random(0), EPOCH - timedelta(days=5))
    young = profile_v1("demo-young", random.Random(0), EPOCH - timedelta(days=5))
    young.age = 15
    attrs = event_attributes("user_profile", "v1", EPOCH)
    return [
        (b"\x08\x96", attrs),  # a truncated protobuf
        (good.SerializeToString(), {**attrs, "entity": "user_photos"}),
        (good.SerializeToString(), {**attrs, "version": "v3"}),
        (good.SerializeToString(), {k: v for k, v in attrs.items() if k != "event_time"}),
        (good.SerializeToString(), {**attrs, "event_time": "next tuesday"}),
        (young.SerializeToString(), attrs),
    ]


def run(args: argparse.Namespace, state_dir: Path) -> int:
    settings = load_stack(args.stack)
    if settings.env != "local":
        raise UsageError("the demo runs on a local stack")
    if not 1 <= args.users <= 100_000:
        raise UsageError(f"--users must be between 1 and 100000, got {args.users}")
    from app.commands.ingest import stream_until_idle, streaming_args
    from app.featurestore.events import event_attributes
    from app.featurestore.offline import ParquetOfflineStore
    from app.featurestore.online import online_store
    from app.featurestore.pit import FeatureView
    from app.featurestore.registry import default_registry
    from app.featurestore.samples import EPOCH, sample_events
    from app.local import clients
    from app.local.services import LocalServiceError
    from app.local.session import local_stack
    from app.naming import Names

    names, project, registry = Names.of(settings), settings.gcp.project, default_registry()
    result: dict[str, Any] = {"stack": settings.stack}
    t0 = step(args, f"starting the local stack {settings.stack} (Redis, Pub/Sub emulator, DynamoDB on moto)")
    try:
        with local_stack(settings, state_dir, keep=args.keep) as state:
            result["endpoints"] = state.endpoints()
            result["start_s"] = round(time.perf_counter() - t0, 1)

            events = list(sample_events(args.users, seed=42))
            bad = bad_events(settings)
            t = step(
                args,
                f"publishing {len(events)} feature events of {args.users} users "
                f"(+{len(bad)} bad ones) to {names.feature_events_topic}",
            )
            pub = clients.publisher(state.pubsub_host)
            topic = pub.topic_path(project, names.feature_events_topic)
            futures = [
                pub.publish(topic, m.SerializeToString(), **event_attributes(e, v, at)) for e, v, at, m in events
            ]
            futures += [pub.publish(topic, data, **attrs) for data, attrs in bad]
            for f in futures:
                f.result(timeout=60)
            result["published"] = len(futures)

            t = step(args, "streaming them through the Beam ingest (DirectRunner on the emulator)")
            os.environ["PUBSUB_EMULATOR_HOST"] = state.pubsub_host
            summary = stream_until_idle(streaming_args(settings, state, ""), idle_exit=3.0)
            result["ingest"] = {**summary.to_dict(), "seconds": round(time.perf_counter() - t, 1)}
            if summary.accepted + summary.rejected_total < len(futures):
                raise RunFailed(f"ingest saw {summary.accepted + summary.rejected_total} of {len(futures)} events")

            step(args, "reading back: online store, offline store, dead letters")
            r = clients.redis_client(state.redis_url)
            store = online_store(r, settings, registry)
            ids = [f"u{i:06d}" for i in range(min(args.users, 100))]
            features = registry.get("user_profile", "v1").online_features
            store.read_matrix("user_profile", "v1", ids, features)  # warm the connection and layout cache
            t = time.perf_counter()
            matrix = store.read_matrix("user_profile", "v1", ids, features)
            result["online"] = {
                "batch_read_entities": len(ids),
                "found": int(matrix.found.sum()),
                "batch_read_ms": round((time.perf_counter() - t) * 1000, 3),
                "keys": r.dbsize(),
            }
            offline = ParquetOfflineStore(state.offline_dir, registry)
            result["offline_rows"] = {
                f"{s.entity}/{s.version}": offline.read_table(s.entity, s.version).num_rows for s in registry.specs()
            }
            sub = clients.subscriber(state.pubsub_host)
            dlq = sub.subscription_path(project, names.feature_dead_letter_subscription)
            dead = sub.pull(subscription=dlq, max_messages=100, timeout=10).received_messages
            if dead:
                sub.acknowledge(subscription=dlq, ack_ids=[m.ack_id for m in dead])
            sub.close()
            result["dead_letters"] = sorted(
                f"{m.message.attributes['reason']}: {m.message.attributes['detail']}" for m in dead
            )

            rng = random.Random(1)
            impressions = pa.table(
                {
                    "viewer_id": [f"u{rng.randrange(args.users):06d}" for _ in range(5)],
                    "candidate_id": [f"u{rng.randrange(args.users):06d}" for _ in range(5)],
                    "impression_time": [EPOCH + timedelta(hours=rng.randint(0, 48)) for _ in range(5)],
                }
            )
            joined = offline.point_in_time_join(
                impressions,
                [
                    FeatureView("user_profile", "v1", ("age", "photo_quality")),
                    FeatureView("user_activity", "v1", ("likes_received_7d", "reply_rate")),
                ],
            )
            result["point_in_time_join"] = joined.to_pylist()
    except LocalServiceError as exc:
        raise RunFailed(str(exc)) from None
    result["total_s"] = round(time.perf_counter() - t0, 1)
    result["kept_running"] = args.keep
    emit(args, result, lambda: _text(result))
    return 0


def _text(res: dict[str, Any]) -> str:
    ing = res["ingest"]
    lines = [
        "",
        f"ingest: {ing['accepted']} accepted, {ing['rejected']} dead-lettered in {ing['seconds']} s "
        f"(online {ing['online_written']} written / {ing['online_stale']} stale, "
        f"offline {ing['offline_written']} rows)",
        f"online store: {res['online']['keys']} keys; {res['online']['found']}/{res['online']['batch_read_entities']} "
        f"profiles read in one round trip in {res['online']['batch_read_ms']} ms",
        "offline store rows: " + ", ".join(f"{k} {v}" for k, v in res["offline_rows"].items()),
        "dead letters (reason: detail):",
        *(f"  {d[:150]}" for d in res["dead_letters"]),
        "point-in-time join (features as of each impression, never later):",
    ]
    for row in res["point_in_time_join"]:
        lines.append(
            f"  {row['viewer_id']} -> {row['candidate_id']} at {row['impression_time']:%Y-%m-%d %H:%M}: "
            f"viewer age {row['viewer_age']}, candidate likes received {row['candidate_likes_received_7d']} "
            f"(activity as of {row['candidate_user_activity_event_time']})"
        )
    lines.append(
        f"done in {res['total_s']} s; local services "
        + ("left running (`rerank local down` stops them)" if res["kept_running"] else "stopped")
    )
    return "\n".join(lines)
