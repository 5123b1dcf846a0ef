"""The reaper's find step (``scripts/find-stale-review-stacks.sh``, what reap-review-stacks.yml
runs) against a self-managed file backend the test lays out, in both of its layouts: with projects
(``.pulumi/meta.yaml`` version 1, stacks under ``.pulumi/stacks/<project>/``, listed by ``--all``
as ``organization/<project>/<stack>``) and without (``.pulumi/stacks/<stack>.json``, listed as
``<stack>``).

The Pulumi CLI cannot be installed here, so ``pulumi`` on PATH is a stand-in that reads the
backend directory and prints what ``pulumi stack ls --all --json`` prints for it (name, current,
lastUpdate, updateInProgress, resourceCount, url), and fails as the CLI does when the backend is
not there; ``gh`` is a stand-in answering ``gh pr view`` from a table. The script itself runs for
real, under bash with ``set -euo pipefail``, with the real jq and date.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.settings import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts/find-stale-review-stacks.sh"

FAKE_PULUMI = r"""#!/usr/bin/env python3
import json, os, sys
from pathlib import Path
args = sys.argv[1:]
state = Path(os.environ["FAKE_STATE"])
if args[:1] == ["login"]:
    url = args[1]
    root = Path(url.removeprefix("file://"))
    if not url.startswith("file://") or not (root / ".pulumi").is_dir():
        sys.exit(f"error: problem logging in: no backend at {url}")
    (state / "backend").write_text(str(root))
    print(f"Logged in to {os.uname().nodename} as tester ({url})")
    sys.exit(0)
if args[:2] == ["stack", "ls"] and "--json" in args:
    if not (state / "backend").exists():
        sys.exit("error: PULUMI_ACCESS_TOKEN must be set for login during non-interactive CLI sessions")
    root = Path((state / "backend").read_text()) / ".pulumi"
    projects = (root / "meta.yaml").exists() and "version: 1" in (root / "meta.yaml").read_text()
    out = []
    for f in sorted((root / "stacks").rglob("*.json")):
        rel = f.relative_to(root / "stacks")
        if projects:
            if len(rel.parts) != 2:
                continue
            name = f"organization/{rel.parts[0]}/{f.stem}"
        else:
            if len(rel.parts) != 1:
                continue
            name = f.stem
        latest = json.loads(f.read_text())["checkpoint"].get("latest") or {}
        item = {"name": name, "current": False, "updateInProgress": False, "url": f"file://{f}"}
        if latest:
            item["lastUpdate"] = latest["manifest"]["time"]
            item["resourceCount"] = len(latest.get("resources") or [])
        out.append(item)
    print(json.dumps(out, indent=4))
    sys.exit(0)
sys.exit(f"fake pulumi: unexpected arguments {args}")
"""

FAKE_GH = r"""#!/usr/bin/env python3
import json, os, sys
args = sys.argv[1:]
assert args[:2] == ["pr", "view"] and "--repo" in args and "--jq" in args, args
prs = json.loads(open(os.environ["FAKE_PRS"]).read())
pr = prs.get(args[2])
if pr == "network":
    sys.exit("error connecting to api.github.com")
if pr is None:
    sys.exit(f"GraphQL: Could not resolve to a PullRequest with the number of {args[2]}. (repository.pullRequest)")
print(f"{pr['state']} {pr['createdAt']}")
"""


def _checkpoint(stack: str) -> dict:
    return {
        "version": 3,
        "checkpoint": {
            "stack": stack,
            "latest": {"manifest": {"time": "2026-12-01T10:00:00.000Z", "version": "v3.200.0"}, "resources": [{}]},
        },
    }


def backend(root: Path, stacks: list[str], projects: bool) -> Path:
    """A file backend holding ``stacks`` (``project/stack`` names with projects, else ``stack``)."""
    meta = root / ".pulumi"
    (meta / "stacks").mkdir(parents=True)
    if projects:
        (meta / "meta.yaml").write_text("version: 1\n")
    for s in stacks:
        f = meta / "stacks" / f"{s}.json"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(_checkpoint(f"organization/{s}" if projects else s)))
    return root


def run(tmp: Path, backend_url: str, prs: dict[str, object]) -> tuple[subprocess.CompletedProcess[str], str]:
    bin_dir, state = tmp / "bin", tmp / "state"
    bin_dir.mkdir(exist_ok=True)
    state.mkdir(exist_ok=True)
    for name, text in (("pulumi", FAKE_PULUMI), ("gh", FAKE_GH)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    (tmp / "prs.json").write_text(json.dumps(prs))
    output = tmp / "github_output"
    output.write_text("")
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(tmp),
        "PULUMI_BACKEND_URL": backend_url,
        "GITHUB_REPOSITORY": "acme/rerank-platform",
        "GITHUB_OUTPUT": str(output),
        "MAX_AGE_DAYS": "7",
        "FAKE_STATE": str(state),
        "FAKE_PRS": str(tmp / "prs.json"),
    }
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=False)
    return done, output.read_text()


def _ago(days: int) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_the_script_is_strict_bash() -> None:
    assert "set -euo pipefail" in SCRIPT.read_text() and os.access(SCRIPT, os.X_OK)


def test_a_backend_with_projects_reaps_closed_and_old_review_stacks_of_this_project_only(tmp_path: Path) -> None:
    root = backend(
        tmp_path / "state-bucket",
        ["rerank-platform/dev", "rerank-platform/prod", "rerank-platform/pr-7", "rerank-platform/pr-8",
         "rerank-platform/pr-10", "rerank-platform/pr-12", "other-app/pr-11"],
        projects=True,
    )  # fmt: skip
    prs = {
        "7": {"state": "OPEN", "createdAt": _ago(1)},
        "8": {"state": "CLOSED", "createdAt": _ago(2)},
        "10": {"state": "OPEN", "createdAt": _ago(30)},
        "11": {"state": "CLOSED", "createdAt": _ago(2)},
        "12": {"state": "MERGED", "createdAt": _ago(3)},
    }
    done, output = run(tmp_path, f"file://{root}", prs)
    assert done.returncode == 0, done.stderr
    assert output == 'stacks=["pr-10","pr-12","pr-8"]\n'
    assert "reaping pr-8 (PR #8: CLOSED" in done.stderr and "pr-7" not in output


def test_a_backend_without_projects_names_stacks_bare_and_a_missing_pr_is_reaped(tmp_path: Path) -> None:
    root = backend(tmp_path / "state-bucket", ["dev", "pr-9", "pr-13"], projects=False)
    done, output = run(tmp_path, f"file://{root}", {"13": {"state": "OPEN", "createdAt": _ago(0)}})
    assert done.returncode == 0, done.stderr
    assert output == 'stacks=["pr-9"]\n'
    assert "reaping pr-9 (PR #9: MISSING" in done.stderr


def test_nothing_to_reap_is_an_empty_list(tmp_path: Path) -> None:
    root = backend(tmp_path / "state-bucket", ["rerank-platform/dev"], projects=True)
    done, output = run(tmp_path, f"file://{root}", {})
    assert done.returncode == 0, done.stderr
    assert output == "stacks=[]\n"


@pytest.mark.parametrize("case", ["no backend", "gh fails"])
def test_a_failed_lookup_fails_the_step_and_outputs_nothing(tmp_path: Path, case: str) -> None:
    """What the old inline script swallowed: a `pulumi stack ls` (or `gh`) error inside the loop's
    command substitution, which then printed an empty list every day."""
    if case == "no backend":
        done, output = run(tmp_path, f"file://{tmp_path / 'missing'}", {})
        assert "no backend at" in done.stderr
    else:
        root = backend(tmp_path / "state-bucket", ["rerank-platform/pr-7"], projects=True)
        done, output = run(tmp_path, f"file://{root}", {"7": "network"})
        assert "gh pr view 7 failed: error connecting" in done.stderr
    assert done.returncode != 0 and output == ""
