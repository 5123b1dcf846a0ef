"""What a stack file may cost (app/settings.py ``read_yaml``): aliases that expand past the budget are
refused on the composed nodes, before anything is built or validated, under any key; and no error
line echoes more than a bounded part of a value. The bombs here would take minutes and gigabytes
if they were expanded (``versions: *i`` was 64 s and 11 GB)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.settings import MAX_EXPANDED_NODES, STACKS_DIR, StackConfigError, load_stack, read_yaml
from infra.config import review_settings

BOUNDED = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
LOCAL = (STACKS_DIR / "Pulumi.local.yaml").read_text()


def bomb(levels: int, fanout: int) -> str:
    """Anchors ``l0 .. l<levels>``, each a list of ``fanout`` aliases of the one before: fanout**levels values."""
    lines = [f"x-l0: &l0 [{', '.join(['x'] * fanout)}]"]
    for i in range(1, levels + 1):
        lines.append(f"x-l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * fanout)}]")
    return "\n".join(lines) + "\n"


def with_bomb_under(key_line: str, levels: int = 9, fanout: int = 9) -> str:
    """The local stack file with a bomb defined first and used at ``key_line`` (a validated key)."""
    head = "\n".join(f"  {line}" for line in bomb(levels, fanout).splitlines())
    text = LOCAL.replace("config:\n", "config:\n" + head.replace("x-l", "rerank-platform:x-l") + "\n", 1)
    return text.replace(key_line, key_line.split(":")[0] + f": *l{levels}", 1)


@pytest.mark.parametrize(
    "key_line", ["        versions: [v1, v2]", "    max_delivery_attempts: 5", "    region: europe-west1"]
)
def test_a_bomb_under_a_validated_key_is_refused_in_one_short_line(tmp_path: Path, key_line: str) -> None:
    (tmp_path / "Pulumi.bomb.yaml").write_text(with_bomb_under(key_line))
    with pytest.raises(StackConfigError) as caught:
        load_stack("bomb", tmp_path)
    assert len(str(caught.value).splitlines()) == 1 and len(str(caught.value)) < 400
    assert f"expands to more than {MAX_EXPANDED_NODES} values" in str(caught.value)


@BOUNDED
@given(levels=st.integers(0, 12), fanout=st.integers(1, 12))
def test_expansion_is_counted_exactly_and_refused_past_the_budget(levels: int, fanout: int) -> None:
    doc = bomb(levels, fanout) + f"top: *l{levels}\n"
    # The document's own nodes and the values its last alias expands to, as PyYAML would build them.
    expanded = 1 + sum(1 + 2 * (1 + sum(fanout**j for j in range(1, i + 2))) for i in range(levels + 1))
    budget = 5_000
    if expanded <= budget:
        assert read_yaml(doc) == yaml.safe_load(doc)
    else:
        with pytest.raises(ValueError, match=f"expands to more than {budget} values"):
            read_yaml(doc, budget)


def test_an_alias_holding_itself_is_refused() -> None:
    with pytest.raises(ValueError, match="refers to a node that holds it"):
        read_yaml("a: &a [1, *a]\n")


def test_every_stack_file_is_far_inside_the_budget() -> None:
    for path in STACKS_DIR.glob("Pulumi.*.yaml"):
        assert read_yaml(path.read_text()) == yaml.safe_load(path.read_text())


@settings(BOUNDED, max_examples=8)
@given(size=st.integers(1_000, 50_000), key=st.sampled_from(["gcp.project", "env"]))
def test_an_error_echoes_a_bounded_part_of_a_long_value(tmp_path: Path, size: int, key: str) -> None:
    value = "Z" * size
    text = LOCAL.replace("    project: rerank-local", f"    project: {value}") if key == "gcp.project" else LOCAL
    if key == "env":
        text = text.replace("rerank-platform:env: local", f"rerank-platform:env: [{', '.join(['q'] * (size // 100))}]")
    (tmp_path / "Pulumi.long.yaml").write_text(text)
    with pytest.raises(StackConfigError) as caught:
        load_stack("long", tmp_path)
    assert len(str(caught.value)) < 2_000


def test_a_review_stack_reads_dev_through_the_same_budget(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import infra.config

    bad = tmp_path / "Pulumi.dev.yaml"
    bad.write_text(bomb(9, 9) + "config: *l9\n")
    monkeypatch.setattr(infra.config, "stack_file", lambda _stack: bad)
    with pytest.raises(StackConfigError, match="expands to more than"):
        review_settings({}, "pr-7", "stack pr-7 (pulumi config)")
