"""Import rules between the product's packages, read from the source with ``ast`` (imports inside
functions count too), and no literal variant name outside the stack files and the tests."""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from app.settings import REPO_ROOT, STACKS_DIR

APP = REPO_ROOT / "app"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources(*roots: str) -> Iterator[Path]:
    for root in roots:
        yield from sorted(p for p in (REPO_ROOT / root).rglob("*.py") if "_pb2" not in p.name)


def imports(path: Path, top_level_only: bool = False) -> set[str]:
    """Every module ``path`` imports, absolute (``from . import x`` resolved against its package);
    ``top_level_only``: those that run when the module is imported (not inside a function)."""
    tree, found = ast.parse(path.read_text(), str(path)), set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in tree.body if top_level_only else ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return found


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def edges(importer: str, imported: str) -> list[str]:
    """``module -> import`` for each module under package ``importer`` importing under ``imported``."""
    out = []
    for path in sources("app"):
        me = module_name(path)
        if within(me, importer):
            out += [f"{me} -> {i}" for i in sorted(imports(path)) if within(i, imported) and not within(i, me)]
    return out


def test_the_demo_uses_no_command_module() -> None:
    # The streaming ingest the demo runs lives in app.featurestore.local_stream, not in a command.
    assert edges("app.demo", "app.commands") == []


def test_no_command_reaches_into_the_demo_but_the_one_that_runs_it() -> None:
    # `rerank demo` (app/commands/demo.py) runs the demo's entry; no other command depends on it.
    assert [e for e in edges("app.commands", "app.demo") if not e.startswith("app.commands.demo ->")] == []
    assert {e.split(" -> ")[1] for e in edges("app.commands.demo", "app.demo")} <= {
        "app.demo.run",
        "app.demo.run.DemoOptions",
        "app.demo.run.DemoStepFailed",
        "app.demo.run.run_demo",
    }


def test_naming_imports_no_settings_so_settings_may_check_names() -> None:
    assert edges("app.naming", "app") == []
    assert "app.naming" in " ".join(edges("app.settings", "app.naming"))


def test_the_product_imports_no_test_bed() -> None:
    """The served-market set-up (a market online with a quick model on every variant) is the serving
    tests' and benchmark's test bed, in bench/; the product never imports tests, and bench only
    from the command that runs the benchmarks."""
    assert importlib.util.find_spec("bench.served_market") is not None
    assert importlib.util.find_spec("app.market.serving_setup") is None
    assert edges("app", "tests") == []
    assert [e for e in edges("app", "bench") if not e.startswith("app.commands.bench ->")] == []


def test_the_trigger_function_ships_every_module_it_imports() -> None:
    """The function's source is only ``infra.training.FUNCTION_FILES``: what they import from ``app``
    when loaded must be among them (``from app.x import Y`` records app.x and app.x.Y)."""
    from infra.training import FUNCTION_FILES

    shipped = {module_name(REPO_ROOT / f) for f in FUNCTION_FILES} - {"app"}
    needed = {i for f in FUNCTION_FILES for i in imports(REPO_ROOT / f, top_level_only=True) if within(i, "app")}
    assert {i for i in needed - {"app"} if not any(within(i, m) for m in shipped)} == set()


def variant_names() -> set[str]:
    names = set()
    for path in STACKS_DIR.glob("Pulumi.*.yaml"):
        serving = (yaml.safe_load(path.read_text())["config"] or {}).get("rerank-platform:serving", {})
        names |= {v["name"] for v in serving.get("variants", [])}
    return names


def _kind_or_label(node: ast.Constant, parents: dict[ast.AST, ast.AST]) -> bool:
    """A variant *kind* (``kind == "shadow"``, ``Literal["primary", ...]``) or a metric's outcome label."""
    up = parents.get(node)
    if isinstance(up, ast.Compare):
        return any(
            isinstance(x, ast.Name | ast.Attribute) and "kind" in ast.unparse(x) for x in [up.left, *up.comparators]
        )
    if isinstance(up, ast.Tuple):
        up = parents.get(up)
    if isinstance(up, ast.Subscript) and ast.unparse(up.value) == "Literal":
        return True
    return isinstance(up, ast.Call) and ast.unparse(up.func).endswith(".outcome")


@pytest.mark.parametrize("root", ["app", "infra", "pipelines", "bench"])
def test_no_literal_variant_name_outside_stacks_and_tests(root: str) -> None:
    """Defaults come from the stack (its variant of kind primary), never from a spelled-out name."""
    names, found = variant_names(), []
    assert {"primary", "b", "shadow"} <= names  # what the stack files name today
    for path in sources(root):
        tree = ast.parse(path.read_text())
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        found += [
            f"{path.relative_to(REPO_ROOT)}:{n.lineno}: {n.value!r}"
            for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and n.value in names and not _kind_or_label(n, parents)
        ]
    assert found == []
