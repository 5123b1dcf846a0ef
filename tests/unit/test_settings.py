from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from app.settings import StackConfigError, load_stack, settings_from_mapping

LOCAL = yaml.safe_load(Path(__file__).resolve().parents[2].joinpath("stacks/Pulumi.local.yaml").read_text())["config"]


def load(config: dict, stack: str = "t") -> object:
    return settings_from_mapping(config, stack=stack, source=f"stacks/Pulumi.{stack}.yaml")


def problems(config: dict) -> list[str]:
    with pytest.raises(StackConfigError) as err:
        load(config)
    return err.value.problems


def test_local_stack_loads_with_its_topology() -> None:
    s = load_stack("local")
    assert s.stack == "local" and s.env == "local"
    assert [e.name for e in s.feature_store.entities] == ["user_profile", "user_activity"]
    assert s.feature_store.entity("user_profile").served == "v1"
    assert s.feature_store.entity("user_activity").served == "v1"
    assert {v.name: v.kind for v in s.serving.variants} == {"primary": "primary", "b": "arm", "shadow": "shadow"}


def test_other_namespaces_belong_to_providers() -> None:
    s = load({**LOCAL, "gcp:project": "whatever", "aws:region": "us-east-1"})
    assert s.gcp.project == "rerank-local"


def test_unknown_key_is_named() -> None:
    assert problems({**LOCAL, "rerank-platform:feature_stor": {}}) == ["rerank-platform:feature_stor: unknown key"]


def test_nested_unknown_key_is_named_with_its_path() -> None:
    fs = {**LOCAL["rerank-platform:feature_store"], "ttl": 3}
    assert problems({**LOCAL, "rerank-platform:feature_store": fs}) == [
        "rerank-platform:feature_store.ttl: unknown key"
    ]


def test_wrong_type_names_key_and_value() -> None:
    fs = LOCAL["rerank-platform:feature_store"]
    entities = [{**fs["entities"][0], "ttl_days": "a month"}, *fs["entities"][1:]]
    found = problems({**LOCAL, "rerank-platform:feature_store": {**fs, "entities": entities}})
    assert len(found) == 1
    assert found[0].startswith("rerank-platform:feature_store.entities[0].ttl_days: Input should be a valid integer")
    assert "'a month'" in found[0]


def test_missing_required_value() -> None:
    config = {k: v for k, v in LOCAL.items() if k != "rerank-platform:gcp"}
    assert problems(config) == ["rerank-platform:gcp: missing required value"]


def test_every_problem_is_reported_at_once_one_line_each() -> None:
    config = {k: v for k, v in LOCAL.items() if k != "rerank-platform:aws"}
    config["rerank-platform:env"] = "staging"
    config["rerank-platform:surprise"] = 1
    found = problems(config)
    assert len(found) == 3
    assert all("\n" not in p for p in found)
    with pytest.raises(StackConfigError) as err:
        load(config)
    assert str(err.value).count("stacks/Pulumi.t.yaml: ") == 3


@pytest.mark.parametrize(
    ("variants", "needle"),
    [
        ([{"name": "primary", "kind": "primary", "traffic_share": 0.5}], "must add up to 1"),
        ([{"name": "a", "kind": "arm", "traffic_share": 1.0}], "exactly one variant must be kind 'primary'"),
        (
            [
                {"name": "p", "kind": "primary", "traffic_share": 1.0},
                {"name": "s", "kind": "shadow", "traffic_share": 0.1},
            ],
            "take no traffic_share",
        ),
        ([{"name": "p", "kind": "primary", "traffic_share": 1.0}, {"name": "p", "kind": "shadow"}], "repeat"),
        ([{"name": "p", "kind": "canary", "traffic_share": 1.0}], "kind: Input should be 'primary', 'arm' or 'shadow'"),
    ],
)
def test_variant_rules(variants: list[dict], needle: str) -> None:
    serving = {**LOCAL["rerank-platform:serving"], "variants": variants}
    found = problems({**LOCAL, "rerank-platform:serving": serving})
    assert any(needle in p for p in found), found


@pytest.mark.parametrize(
    ("entity", "needle"),
    [
        ({"name": "user_profile", "versions": ["1"], "ttl_days": 1}, "versions must look like v1"),
        ({"name": "user_profile", "versions": ["v1"], "serving_version": "v2", "ttl_days": 1}, "serving_version 'v2'"),
        ({"name": "user_profile", "versions": ["v1"], "ttl_days": 0}, "greater than 0"),
        ({"name": "UserProfile", "versions": ["v1"], "ttl_days": 1}, "should match pattern"),
    ],
)
def test_entity_rules(entity: dict, needle: str) -> None:
    fs = {**LOCAL["rerank-platform:feature_store"], "entities": [entity]}
    found = problems({**LOCAL, "rerank-platform:feature_store": fs})
    assert any(needle in p for p in found), found


def test_stack_name_comes_from_the_file_not_the_config() -> None:
    assert problems({**LOCAL, "rerank-platform:stack": "prod"})[0].startswith("rerank-platform:stack: unknown key")


def test_missing_stack_file_lists_known_stacks(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.dev.yaml").write_text("config: {}\n")
    with pytest.raises(StackConfigError, match=r"no such stack file \(stacks here: dev\)"):
        load_stack("qa", tmp_path)


def test_invalid_yaml_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.bad.yaml").write_text("config: [unclosed\n")
    with pytest.raises(StackConfigError, match="not valid YAML") as err:
        load_stack("bad", tmp_path)
    assert len(err.value.problems) == 1


@pytest.mark.parametrize(
    ("entity", "line"),
    [
        (
            {"name": "user_photos", "versions": ["v1"], "ttl_days": 1},
            "rerank-platform:feature_store.entities[0].name: no schema for entity 'user_photos' "
            "(known: user_activity, user_profile)",
        ),
        (
            {"name": "user_activity", "versions": ["v1", "v2"], "ttl_days": 1},
            "rerank-platform:feature_store.entities[0].versions: user_activity has no schema for v2 (known: v1)",
        ),
    ],
)
def test_an_entity_or_version_without_a_schema_stops_the_stack_at_load(entity: dict, line: str) -> None:
    fs = {**LOCAL["rerank-platform:feature_store"], "entities": [entity]}
    assert problems({**LOCAL, "rerank-platform:feature_store": fs}) == [line]
