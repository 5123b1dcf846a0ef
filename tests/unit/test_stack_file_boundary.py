"""The stack file boundary: whatever a stack file holds, loading it answers settings or a
``StackConfigError`` naming the problem, never another exception."""

from __future__ import annotations

from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.settings import STACKS_DIR, StackConfigError, load_stack

BOUNDED = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
LOCAL = yaml.safe_load((STACKS_DIR / "Pulumi.local.yaml").read_text())
yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=12,
)


def load(tmp_path: Path, text: bytes) -> None:
    (tmp_path / "Pulumi.fuzz.yaml").write_bytes(text)
    try:
        load_stack("fuzz", tmp_path)
    except StackConfigError as exc:
        assert exc.problems and all(p for p in exc.problems)


@BOUNDED
@given(st.binary(max_size=300))
def test_arbitrary_bytes(tmp_path: Path, data: bytes) -> None:
    load(tmp_path, data)


@BOUNDED
@given(yaml_values)
def test_arbitrary_yaml(tmp_path: Path, doc: object) -> None:
    load(tmp_path, yaml.safe_dump(doc).encode())


@BOUNDED
@given(st.sampled_from(sorted(LOCAL["config"])), yaml_values)
def test_the_local_stack_with_one_key_mutated(tmp_path: Path, key: str, value: object) -> None:
    load(tmp_path, yaml.safe_dump({"config": {**LOCAL["config"], key: value}}).encode())


def test_non_string_keys_and_deep_nesting_are_one_line_problems(tmp_path: Path) -> None:
    for text in (b"config: {1: 2}", b"config: " + b"[" * 5000 + b"]" * 5000, b"\xff\xfe"):
        (tmp_path / "Pulumi.fuzz.yaml").write_bytes(text)
        try:
            load_stack("fuzz", tmp_path)
        except StackConfigError as exc:
            assert len(exc.problems) == 1, exc.problems
        else:
            raise AssertionError(f"{text[:20]!r} was accepted")


DEV = yaml.safe_load((STACKS_DIR / "Pulumi.dev.yaml").read_text())


@BOUNDED
@given(
    st.sampled_from(["gcp_project", "concurrent_stacks", "disk_type", "disk_size_gb"]),
    yaml_values | st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", max_size=40),
)
def test_dev_with_a_review_project_or_node_disk_mutated(tmp_path: Path, key: str, value: object) -> None:
    """The keys this round added, in dev's file: settings (and a review stack from them) or a
    StackConfigError naming the key, nothing else."""
    config = {**DEV["config"]}
    if key in ("gcp_project", "concurrent_stacks"):
        config["rerank-platform:review"] = {**config["rerank-platform:review"], key: value}
    else:
        sv = config["rerank-platform:serving"]
        config["rerank-platform:serving"] = {**sv, "node_pool": {**sv["node_pool"], key: value}}
    (tmp_path / "Pulumi.dev.yaml").write_text(yaml.safe_dump({"config": config}))
    try:
        load_stack("dev", tmp_path)
        review = load_stack("pr-3", tmp_path)
    except StackConfigError as exc:
        assert exc.problems and any(key in p for p in exc.problems), exc.problems
    else:
        assert (
            review.gcp.project
            == config["rerank-platform:review"]["gcp_project"]
            != DEV["config"]["rerank-platform:gcp"]["project"]
        )
