"""`rerank infra plan --stack NAME [--json] [--diff GIT_REF]`: the program under Pulumi's mocks.

No credentials and no Pulumi CLI: what the stack would contain (type, name, key settings), and
with ``--diff`` what this tree adds, removes or alters compared with another commit, for review
beside ``pulumi preview`` (which needs the cloud).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from app.commands.base import RunFailed, UsageError, emit
from app.settings import DEFAULT_STACK, REPO_ROOT, load_stack


def run(args: argparse.Namespace) -> int:
    if args.stack == DEFAULT_STACK:
        raise UsageError("the local stack has no cloud resources; give --stack dev, prod or pr-<n>")
    settings = load_stack(args.stack)
    from infra.plan import plan_stack
    from infra.policy.rules import violations

    plan = plan_stack(settings)
    current = plan.to_json()
    # The policy pack's rules over the same inventory: guardrails a PR can see without credentials.
    found = violations([(r.type, r.inputs) for r in plan.resources if r.custom])
    if args.diff:
        result = {
            **diff_inventories(plan_at(args.diff, args.stack), current),
            "stack": args.stack,
            "base": args.diff,
            "violations": found,
        }
        emit(args, result, lambda: diff_text(result))
    else:
        current["violations"] = found
        emit(args, current, lambda: inventory_text(current))
    if found:
        raise RunFailed(f"{len(found)} policy violation(s); see above")
    return 0


def inventory_text(plan: dict[str, Any]) -> str:
    lines = [f"stack {plan['stack']}: {plan['resources']} resources, {len(plan['violations'])} policy violations"]
    lines += violation_lines(plan["violations"])
    lines += [f"  {count:3d}  {t}" for t, count in plan["by_type"].items()]
    lines.append("")
    for r in plan["inventory"]:
        lock = " [protected]" if r["protect"] else ""
        settings = ", ".join(f"{k}={v}" for k, v in r["settings"].items())
        lines.append(f"{r['type']}  {r['name']}{lock}  {settings}")
    return "\n".join(lines)


def violation_lines(found: list[str]) -> list[str]:
    return [f"  ! {v}" for v in found]


def plan_at(ref: str, stack: str) -> dict[str, Any]:
    """The inventory the program at ``ref`` declares for ``stack`` (a temporary worktree, this venv)."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--verify", f"{ref}^{{commit}}"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except subprocess.CalledProcessError:
        raise UsageError(f"--diff: {ref!r} is not a commit in this repository") from None
    with tempfile.TemporaryDirectory(prefix="rerank-plan-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(tree), sha], cwd=REPO_ROOT, check=True)
        try:
            if not (tree / "infra/program.py").exists():
                return {"stack": stack, "resources": 0, "by_type": {}, "inventory": [], "outputs": {}}
            done = subprocess.run(
                [sys.executable, "-m", "app.cli", "infra", "plan", "--stack", stack, "--json"],
                cwd=tree,
                env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO_ROOT, check=False)
    # Exit 1 with an inventory is a base that breaks a guardrail (this change may mend it): still a plan.
    if done.returncode not in (0, 1) or not done.stdout.strip():
        raise RunFailed(f"--diff: the program at {ref} did not plan: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout)


def diff_inventories(base: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    def index(plan: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
        return {(r["type"], r["name"]): r for r in plan["inventory"]}

    before, after = index(base), index(current)
    changed = []
    for key in sorted(before.keys() & after.keys()):
        old, new = before[key], after[key]
        fields = {
            k: {"before": old["inputs"].get(k), "after": new["inputs"].get(k)}
            for k in sorted(old["inputs"].keys() | new["inputs"].keys())
            if old["inputs"].get(k) != new["inputs"].get(k)
        }
        if old["protect"] != new["protect"]:
            fields["(protect)"] = {"before": old["protect"], "after": new["protect"]}
        # A base from before dependencies were listed has none to compare. Each side shows only
        # what it alone has, so a dropped depends_on is readable in one line.
        if {"dependencies"} <= old.keys() & new.keys() and old["dependencies"] != new["dependencies"]:
            was, now = set(old["dependencies"]), set(new["dependencies"])
            fields["(dependencies)"] = {"before": sorted(was - now), "after": sorted(now - was)}
        if fields:
            changed.append({"type": key[0], "name": key[1], "changes": fields})
    return {
        "added": [{"type": t, "name": n} for t, n in sorted(after.keys() - before.keys())],
        "removed": [{"type": t, "name": n} for t, n in sorted(before.keys() - after.keys())],
        "changed": changed,
    }


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def diff_text(d: dict[str, Any]) -> str:
    lines = [
        f"stack {d['stack']} against {d['base']}: "
        f"{len(d['added'])} to add, {len(d['removed'])} to remove, {len(d['changed'])} to change"
    ]
    lines += violation_lines(d["violations"])
    lines += [f"+ {r['type']}  {r['name']}" for r in d["added"]]
    lines += [f"- {r['type']}  {r['name']}" for r in d["removed"]]
    for r in d["changed"]:
        lines.append(f"~ {r['type']}  {r['name']}")
        lines += [f"    {k}: {_short(v['before'])} -> {_short(v['after'])}" for k, v in r["changes"].items()]
    return "\n".join(lines)
