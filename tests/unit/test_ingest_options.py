"""Ingest job options: what the Dataflow flex template declares is what the pipeline parses."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions, StandardOptions

from app.featurestore.pipeline import IngestConfigError, IngestOptions, parse_options, parse_ttls, stack_args
from app.settings import REPO_ROOT, StackSettings

TEMPLATE = REPO_ROOT / "app/featurestore/flex_template"
CLOUD = [
    "--subscription=projects/p/subscriptions/rerank-dev-feature-events-ingest",
    "--dead_letter_topic=projects/p/topics/rerank-dev-feature-events-dead-letter",
    "--redis_url=redis://10.0.0.3:6379/0",
    "--redis_prefix=rerank:dev",
    "--online_ttl_seconds=user_profile=2592000,user_activity=604800",
    "--bigquery_dataset=my-project.rerank_dev_features",
]


def test_template_parameters_are_the_pipelines_options() -> None:
    declared = {p["name"] for p in json.loads((TEMPLATE / "metadata.json").read_text())["parameters"]}
    parser_args = {a.dest for a in _parser()._actions if a.dest != "help"}
    assert declared <= parser_args
    assert declared == {
        "subscription",
        "dead_letter_topic",
        "redis_url",
        "redis_prefix",
        "online_ttl_seconds",
        "input_limits",
        "bigquery_dataset",
    }


def _parser():  # type: ignore[no-untyped-def]
    import argparse

    parser = argparse.ArgumentParser()
    IngestOptions._add_argparse_args(parser)
    return parser


def test_template_regexes_accept_the_cloud_values() -> None:
    values = dict(arg.removeprefix("--").split("=", 1) for arg in CLOUD)
    for param in json.loads((TEMPLATE / "metadata.json").read_text())["parameters"]:
        for regex in param.get("regexes", []):
            assert re.match(regex, values[param["name"]]), param["name"]


def test_dataflow_streaming_options_parse() -> None:
    opts = parse_options(
        [*CLOUD, "--runner=DataflowRunner", "--project=p", "--region=europe-west1", "--temp_location=gs://b/tmp"]
    )
    assert opts.view_as(StandardOptions).streaming is True
    assert opts.view_as(StandardOptions).runner == "DataflowRunner"
    assert opts.view_as(GoogleCloudOptions).region == "europe-west1"
    assert parse_ttls(opts.online_ttl_seconds) == {"user_profile": 2592000, "user_activity": 604800}


def test_stack_args_carry_the_stacks_prefix_and_ttls(settings: StackSettings) -> None:
    opts = PipelineOptions(stack_args(settings)).view_as(IngestOptions)
    assert opts.redis_prefix == "rerank:local"
    assert parse_ttls(opts.online_ttl_seconds) == {"user_profile": 30 * 86400, "user_activity": 7 * 86400}


@pytest.mark.parametrize(
    ("drop", "extra", "needle"),
    [
        ("--subscription", [], "give exactly one source"),
        ("--dead_letter_topic", [], "needs --dead_letter_topic"),
        ("--redis_url", [], "--redis_url is required"),
        ("--bigquery_dataset", [], "give exactly one offline store"),
        (None, ["--offline_path=/tmp/x"], "give exactly one offline store"),
        ("--online_ttl_seconds", ["--online_ttl_seconds=user_profile=soon"], "is not ENTITY=SECONDS"),
    ],
)
def test_bad_options_are_named(drop: str | None, extra: list[str], needle: str) -> None:
    argv = [a for a in CLOUD if not drop or not a.startswith(drop + "=")] + extra
    with pytest.raises(IngestConfigError, match=re.escape(needle)):
        parse_options(argv)


@pytest.mark.parametrize(
    "requirements",
    [TEMPLATE / "requirements.txt", REPO_ROOT / "app/trigger/requirements.txt"],
    ids=["ingest", "trigger"],
)
def test_deployed_requirements_match_the_project_pins(requirements: Path) -> None:
    pins = {}
    for dep in tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]:
        name, _, version = dep.partition("==")
        pins[name.split("[")[0].lower()] = version
    for line in requirements.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert pins.get(name.lower()) == version, name


def test_flex_template_spec_points_at_the_image_and_carries_the_parameters() -> None:
    from app.featurestore.template_spec import render_spec

    spec = render_spec("europe-west1-docker.pkg.dev/p/rerank/ingest:abc123")
    assert spec["image"].endswith("ingest:abc123") and spec["sdkInfo"] == {"language": "PYTHON"}
    assert spec["metadata"]["streaming"] is True
    assert {p["name"] for p in spec["metadata"]["parameters"]} >= {"subscription", "redis_url"}
    with pytest.raises(ValueError, match="needs a tag or digest"):
        render_spec("europe-west1-docker.pkg.dev/p/rerank/ingest")


def test_the_cloud_graph_dead_letters_what_bigquery_refuses(registry: object) -> None:
    """Built, not run: BigQuery's refused rows feed the dead-letter topic, and one such row maps
    back to the event it was (its payload and attributes), ready for a replay."""
    import base64

    import apache_beam as beam

    from app.featurestore.beam_transforms import bigquery_refused
    from app.featurestore.pipeline import build

    # The graph only (a Dataflow runner would check its GCS paths); Beam wants a 6+ letter project.
    opts = parse_options([a.replace("projects/p/", "projects/my-project/") for a in CLOUD])
    p = beam.Pipeline(options=opts)
    build(p, opts)
    labels = {t.full_label for t in p.transforms_stack[0].parts}
    assert {"WriteStores", "WriteOffline", "AllDead", "PublishDead"} <= labels
    letter = bigquery_refused(
        "user_profile",
        "v1",
        (
            "p:d.user_profile_v1",
            {"event_time": "2026-03-01T00:00:00+00:00", "payload": base64.b64encode(b"\x08\x01").decode()},
            [{"message": "no such field: x"}],
        ),
    )
    assert (letter.reason, letter.raw, letter.entity, letter.version) == (
        "store_conflict",
        b"\x08\x01",
        "user_profile",
        "v1",
    )
    assert "no such field: x" in letter.detail and letter.attributes()["event_time"] == "2026-03-01T00:00:00+00:00"


def _pardo_steps(p: object) -> list[str]:
    """The ParDo leaves of a built graph, by label: what the DirectRunner runs once per bundle."""
    import apache_beam as beam

    found: list[str] = []

    def walk(node: object) -> None:
        parts = getattr(node, "parts", [])
        if not parts and isinstance(getattr(node, "transform", None), beam.ParDo):
            found.append(node.full_label)  # type: ignore[attr-defined]
        for part in parts:
            walk(part)

    walk(p.transforms_stack[0])  # type: ignore[attr-defined]
    return found


def test_the_local_streaming_graph_passes_each_bundle_through_few_steps() -> None:
    """Built, not run. The DirectRunner runs every ParDo once per bundle of 10 pulled events, empty
    or not, at a fixed cost each, so the local streaming ingest's rate is set by the steps a bundle
    passes: the decoder (which reads the Pub/Sub message itself), one step writing both stores, and
    the dead-letter sink's two steps once per input of its Flatten (the decoder's and the stores'
    dead letters, already Pub/Sub messages: no conversion step). A conversion step per producer and
    a writer step per store made it 13 steps per bundle and halved the demo's ingest rate."""
    import apache_beam as beam
    from apache_beam.runners.direct.direct_runner import _get_transform_overrides

    from app.featurestore.pipeline import build

    local = [a for a in CLOUD if not a.startswith("--bigquery_dataset")] + ["--offline_path=/tmp/offline"]
    opts = parse_options([a.replace("projects/p/", "projects/my-project/") for a in local])
    p = beam.Pipeline(options=opts)
    build(p, opts)
    p.replace_all(_get_transform_overrides(opts))  # the graph as the DirectRunner runs it
    steps = _pardo_steps(p)
    dead_inputs = next(t for t in p.transforms_stack[0].parts if t.full_label == "AllDead").main_inputs
    sink_steps = [s for s in steps if s.startswith("PublishDead/")]
    per_bundle = len(steps) - len(sink_steps) + len(sink_steps) * len(dead_inputs)
    assert [s for s in steps if not s.startswith("PublishDead/")] == [
        "Decode/Process/ParDo(ProcessEventFn)",
        "WriteStores/ParDo(WriteStoresFn)",
    ]
    assert (len(dead_inputs), per_bundle) == (2, 6)
