"""`rerank infra plan|cost --stack NAME [--json] [--diff GIT_REF]`: the program under Pulumi's mocks.

No credentials and no Pulumi CLI: what the stack would contain (type, name, key settings, what
each resource waits for), and with ``--diff`` what this tree adds, removes or alters compared with
another commit, for review beside ``pulumi preview`` (which needs the cloud). ``cost`` prices the
same inventory from ``infra/prices.toml`` and the stack's usage assumptions, saying of each price
how it was obtained. ``rerank infra prices refresh [--region R]`` re-reads that table's prices
from Google's Cloud Billing Catalog and AWS's Price List (credentials needed; one line if not).
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from app.commands.base import RunFailed, UsageError, emit
from app.settings import (
    DEFAULT_STACK,
    EPHEMERAL_BASE,
    REPO_ROOT,
    StackConfigError,
    StackSettings,
    load_stack,
)


def run(args: argparse.Namespace) -> int:
    if args.action == "prices":
        return prices(args)
    if args.what:
        raise UsageError(f"infra {args.action} takes no {args.what!r}")
    if args.region is not None or args.keep_unread:
        raise UsageError(f"infra {args.action}: --region and --keep-unread are for infra prices refresh")
    if args.stack == DEFAULT_STACK:
        raise UsageError("the local stack has no cloud resources; give --stack dev, prod or pr-<n>")
    settings = load_stack(args.stack)
    if args.action == "cost":
        return cost(args, settings)
    from infra.plan import plan_stack
    from infra.policy.rules import violations
    from infra.quotas import increases

    plan = plan_stack(settings)
    current = plan.to_json()
    # The policy pack's rules over the same inventory: guardrails a PR can see without credentials.
    found = violations([r for r in plan.resources if r.custom])
    dev = load_stack(EPHEMERAL_BASE) if settings.env == "ephemeral" else None
    quotas = increases(current["inventory"], settings, dev)
    if args.diff:
        result = {
            **diff_inventories(plan_at(args.diff, args.stack), current),
            "stack": args.stack,
            "base": args.diff,
            "violations": found,
            "quota_increases": quotas,
        }
        emit(args, result, lambda: diff_text(result))
    else:
        current["violations"] = found
        current["quota_increases"] = quotas
        emit(args, current, lambda: inventory_text(current))
    if found:
        raise RunFailed(f"{len(found)} policy violation(s); see above")
    return 0


def inventory_text(plan: dict[str, Any]) -> str:
    lines = [f"stack {plan['stack']}: {plan['resources']} resources, {len(plan['violations'])} policy violations"]
    lines += violation_lines(plan["violations"])
    lines += quota_lines(plan["quota_increases"])
    lines += [f"  {count:3d}  {t}" for t, count in plan["by_type"].items()]
    lines.append("")
    for r in plan["inventory"]:
        lock = " [protected]" if r["protect"] else ""
        settings = ", ".join(f"{k}={v}" for k, v in r["settings"].items())
        lines.append(f"{r['type']}  {r['name']}{lock}  {settings}")
    return "\n".join(lines)


def violation_lines(found: list[str]) -> list[str]:
    return [f"  ! {v}" for v in found]


def quota_lines(increases: list[dict[str, Any]]) -> list[str]:
    """The quota increases to request before the first deploy (infra/quotas.py)."""
    if not increases:
        return []
    lines = ["quota increases to request before the first deploy (at the stack's maxima):"]
    for q in increases:
        stacks = f", {q['stacks']} review stacks at once" if q["stacks"] > 1 else ""
        lines.append(
            f"  ^ {q['metric']} in {q['project']} ({q['region']}): {q['needed']} needed{stacks}, "
            f"default {q['default']} ({q['source']})"
        )
    return lines


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
    code, out, err = _plan_of_commit(sha, stack)
    # Exit 1 with an inventory is a base that breaks a guardrail (this change may mend it): still a plan.
    if code not in (0, 1) or not out.strip():
        raise RunFailed(f"--diff: the program at {ref} did not plan: {err.strip().splitlines()[-1:]}")
    return json.loads(out)


@functools.cache
def _plan_of_commit(sha: str, stack: str) -> tuple[int, str, str]:
    """`rerank infra plan --json` as commit ``sha`` runs it for ``stack`` (exit code, stdout, stderr),
    once per process: a commit's program does not change, and `plan` and `cost` both ask for it."""
    with tempfile.TemporaryDirectory(prefix="rerank-plan-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(tree), sha], cwd=REPO_ROOT, check=True)
        try:
            if not (tree / "infra/program.py").exists():
                empty = {"stack": stack, "resources": 0, "by_type": {}, "inventory": [], "outputs": {}}
                return 0, json.dumps(empty), ""
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
    return done.returncode, done.stdout, done.stderr


def diff_inventories(base: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    def index(plan: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
        return {(r["type"], r["name"]): r for r in plan["inventory"]}

    before, after = index(base), index(current)
    changed = []
    for key in sorted(before.keys() & after.keys()):
        old, new = before[key], after[key]
        fields = dict(leaf_changes(old["inputs"], new["inputs"]))
        for option in ("protect", "retain_on_delete", "ignore_changes"):
            # Engine options a destroy or an update obeys; a base from before they were listed has none.
            if option in old and option in new and old[option] != new[option]:
                fields[f"({option})"] = {"before": old[option], "after": new[option]}
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


_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def leaf_path(path: str, key: str | int) -> str:
    """``path`` extended by a key (``."accounts.google.com:oaud"`` when it needs quotes) or an index."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    part = key if _PLAIN_KEY.match(key) else json.dumps(key)
    return f"{path}.{part}" if path else part


def leaf_changes(before: Any, after: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Each leaf that differs between two inputs, by its path (``assumeRolePolicy.Statement[0]
    .Condition.StringEquals."accounts.google.com:oaud"``): mappings key by key, lists of one length
    item by item; anything else that differs is shown whole."""
    if isinstance(before, dict) and isinstance(after, dict):
        for k in sorted(before.keys() | after.keys()):
            yield from leaf_changes(before.get(k), after.get(k), leaf_path(path, k))
    elif isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        for i, (b, a) in enumerate(zip(before, after, strict=True)):
            yield from leaf_changes(b, a, leaf_path(path, i))
    elif before != after:
        yield path, {"before": before, "after": after}


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def diff_text(d: dict[str, Any]) -> str:
    lines = [
        f"stack {d['stack']} against {d['base']}: "
        f"{len(d['added'])} to add, {len(d['removed'])} to remove, {len(d['changed'])} to change"
    ]
    lines += violation_lines(d["violations"])
    lines += quota_lines(d.get("quota_increases", []))
    lines += [f"+ {r['type']}  {r['name']}" for r in d["added"]]
    lines += [f"- {r['type']}  {r['name']}" for r in d["removed"]]
    for r in d["changed"]:
        lines.append(f"~ {r['type']}  {r['name']}")
        lines += [f"    {k}: {_short(v['before'])} -> {_short(v['after'])}" for k, v in r["changes"].items()]
    return "\n".join(lines)


def cost(args: argparse.Namespace, settings: StackSettings) -> int:
    """The stack's monthly estimate; with ``--diff`` also the other commit's and the change."""
    from infra.cost import PriceTableError, estimate, load_prices
    from infra.plan import plan_stack

    try:
        prices = load_prices()
    except PriceTableError as exc:
        raise RunFailed(str(exc)) from None
    # The other commit first: a bad ref is refused before this tree is planned.
    base_inventory = plan_at(args.diff, args.stack)["inventory"] if args.diff else None
    current = estimate(plan_stack(settings).to_json()["inventory"], settings, prices).to_json()
    if base_inventory is None:
        emit(args, current, lambda: cost_text(current))
        return 0
    base_settings, note = settings_at(args.diff, args.stack, settings)
    base = estimate(base_inventory, base_settings, prices).to_json()
    result = {**cost_diff(base, current), "stack": args.stack, "base": args.diff, "base_assumptions": note}
    emit(args, result, lambda: cost_diff_text(result))
    return 0


def settings_at(ref: str, stack: str, fallback: StackSettings) -> tuple[StackSettings, str]:
    """The stack's settings as ``ref`` had them (its usage assumptions price its plan), or this
    tree's when that file does not load with today's settings model (said in the note)."""
    with tempfile.TemporaryDirectory(prefix="rerank-cost-") as tmp:
        for name in {stack, EPHEMERAL_BASE}:
            shown = subprocess.run(
                ["git", "show", f"{ref}:stacks/Pulumi.{name}.yaml"],
                cwd=REPO_ROOT,
                capture_output=True,
                text=True,
                check=False,
            )
            if shown.returncode == 0:
                (Path(tmp) / f"Pulumi.{name}.yaml").write_text(shown.stdout)
        try:
            return load_stack(stack, Path(tmp)), f"the stack's settings at {ref}"
        except StackConfigError as exc:
            first = exc.problems[0] if exc.problems else str(exc)
            return fallback, f"this tree's settings (the stack file at {ref} does not load here: {first})"


def cost_diff(base: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """Per resource and in total, what this tree's estimate changes against the base's. Free lines
    are left out; a line unpriced on either side changes by "unpriced"."""

    def index(estimate: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
        return {(r["type"], r["name"]): r for r in estimate["resources"] if r["pricing"] != "free"}

    before, after = index(base), index(current)
    changes = []
    for key in sorted(before.keys() | after.keys()):
        old, new = before.get(key), after.get(key)
        was = old["usd_per_month"] if old else None
        now = new["usd_per_month"] if new else None
        if old and new and was == now:
            continue
        priced = all(isinstance(v, float | int) or v is None for v in (was, now))
        delta = round((now or 0.0) - (was or 0.0), 2) if priced else "unpriced"
        changes.append(
            {
                "type": key[0],
                "name": key[1],
                "before": was if old else "absent",
                "after": now if new else "absent",
                "delta_usd_per_month": delta,
                "basis": (new or old or {}).get("basis", ""),
                "unverified": (new or old or {}).get("unverified", []),
            }
        )
    delta_total = round(current["total_usd_per_month"] - base["total_usd_per_month"], 2)
    return {
        "total_usd_per_month": current["total_usd_per_month"],
        "total_usd_per_day": current["total_usd_per_day"],
        "base_total_usd_per_month": base["total_usd_per_month"],
        "delta_usd_per_month": delta_total,
        "delta_usd_per_day": round(current["total_usd_per_day"] - base["total_usd_per_day"], 2),
        "unpriced": current["unpriced"],
        "base_unpriced": base["unpriced"],
        "unverified": current["unverified"],
        "unverified_usd_per_month": current["unverified_usd_per_month"],
        "changes": changes,
        "prices": current["prices"],
        "assumptions": current["assumptions"],
        "resources": current["resources"],
    }


def usd(value: Any, signed: bool = False) -> str:
    if not isinstance(value, float | int):
        return str(value)
    sign = ("+" if value >= 0 else "-") if signed else ("-" if value < 0 else "")
    return f"{sign}${abs(value):,.2f}"


def _unpriced_note(names: list[str]) -> str:
    return f", plus {len(names)} unpriced" if names else ""


def prices_line(p: dict[str, Any]) -> str:
    """Which table an estimate used: its date, whether it was refreshed, how its prices were obtained."""
    counts = p.get("provenance") or {}
    refreshed = f"refreshed {p['refreshed']}" if p.get("refreshed") else "not refreshed (the committed table)"
    if p.get("kept"):
        refreshed += f" but for {len(p['kept'])} kept as committed"
    made = ", ".join(f"{n} {kind}" for kind, n in counts.items())
    return f"prices: {p['table']} dated {p['dated']}, {refreshed}; {made}"


def _unverified_note(e: dict[str, Any]) -> str:
    lines = e.get("unverified") or []
    if not lines:
        return "every price used was read from a catalog or a page"
    return (
        f"{len(lines)} line(s) use unverified prices: {usd(e['unverified_usd_per_month'])}/month of the total "
        "(marked [unverified] below)"
    )


def cost_text(e: dict[str, Any]) -> str:
    lines_by = {p: [r for r in e["resources"] if r["pricing"] == p] for p in ("priced", "free", "unpriced")}
    lines = [
        f"stack {e['stack']}: {usd(e['total_usd_per_month'])}/month ({usd(e['total_usd_per_day'])}/day)"
        f"{_unpriced_note(e['unpriced'])}; {len(lines_by['priced'])} priced, {len(lines_by['free'])} free, "
        f"{len(lines_by['unpriced'])} unpriced resources",
        prices_line(e["prices"]),
        _unverified_note(e),
    ]
    for r in sorted(lines_by["priced"], key=lambda r: -r["usd_per_month"]):
        mark = f" [unverified: {', '.join(r['unverified'])}]" if r.get("unverified") else ""
        lines.append(f"{usd(r['usd_per_month']):>11}  {r['type']}  {r['name']}{mark}: {r['basis']}")
    for r in lines_by["unpriced"]:
        lines.append(f"{'unpriced':>11}  {r['type']}  {r['name']}: {r['basis']}")
    return "\n".join(lines)


def cost_diff_text(d: dict[str, Any]) -> str:
    lines = [
        f"stack {d['stack']} against {d['base']}: {usd(d['base_total_usd_per_month'])}/month -> "
        f"{usd(d['total_usd_per_month'])}/month ({usd(d['delta_usd_per_month'], signed=True)}/month, "
        f"{usd(d['delta_usd_per_day'], signed=True)}/day){_unpriced_note(d['unpriced'])}",
        f"base priced with {d['base_assumptions']}",
        prices_line(d["prices"]),
        _unverified_note(d),
    ]
    for c in d["changes"]:
        mark = "+" if c["before"] == "absent" else "-" if c["after"] == "absent" else "~"
        unverified = " [unverified]" if c.get("unverified") else ""
        lines.append(
            f"{mark} {usd(c['delta_usd_per_month'], signed=True):>11}  {c['type']}  {c['name']}{unverified}: "
            f"{usd(c['before'])} -> {usd(c['after'])}"
        )
    return "\n".join(lines)


def prices(args: argparse.Namespace) -> int:
    """``rerank infra prices refresh [--region R] [--keep-unread]``: each price with a catalog query
    re-read from the catalogs this machine can reach; the table is written only when something was
    read. ``--keep-unread`` keeps a price its catalog cannot price as committed, one line each."""
    from infra.prices import refresh as catalogs
    from infra.prices import table as price_table
    from infra.prices.gcp import CatalogError

    if args.what != "refresh":
        raise UsageError("infra prices: say what to do: refresh")
    if args.region is not None and not re.fullmatch(r"[a-z]+-[a-z]+[0-9]", args.region):
        raise UsageError(f"--region: {args.region!r} is not a GCP region (like europe-west1)")
    path = price_table.PRICE_TABLE
    try:
        table = price_table.load_prices(path)
    except price_table.PriceTableError as exc:
        raise RunFailed(str(exc)) from None
    readers: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for kind, make in (("gcp", catalogs.gcp_catalog), ("aws", catalogs.aws_price_list)):
        try:
            readers[kind] = make()
        except catalogs.NotRefreshed as exc:
            skipped[kind] = str(exc)
    shown = table.summary()["table"]
    if not readers:
        why = "; ".join(f"{kind}: {reason}" for kind, reason in skipped.items())
        raise RunFailed(f"prices not refreshed ({why}); {shown} dated {table.dated} is used as committed")
    try:
        done = catalogs.refresh(
            table.raw,
            readers.get("gcp"),
            readers.get("aws"),
            args.region,
            skipped=skipped,
            keep_unread=args.keep_unread,
        )
        fresh = price_table.table_from(done.doc, path)
    except (CatalogError, price_table.PriceTableError) as exc:
        raise RunFailed(f"prices not refreshed: {exc}") from None
    if done.kept and not any(done.read.values()):
        first = next(iter(done.kept.values()))
        raise RunFailed(f"prices not refreshed: the catalogs priced none of {len(done.kept)} queries ({first})")
    if any(done.read.values()):
        path.write_text(price_table.dump_table(done.doc))
    result = {**fresh.summary(), "read": done.read, "not_refreshed": done.skipped, "kept_because": done.kept}

    def text() -> str:
        read = ", ".join(f"{n} from {kind}" for kind, n in done.read.items())
        missed = "".join(f"; {kind} not refreshed: {why}" for kind, why in done.skipped.items())
        kept = f"; {len(done.kept)} kept as committed (their catalog could not price them)" if done.kept else ""
        return "\n".join([f"{shown} dated {fresh.dated}: {read}{missed}{kept}", *done.kept.values()])

    emit(args, result, text)
    return 0
