#!/usr/bin/env bash
# The review stacks (pr-<n>) to destroy: those whose pull request is closed, merged or gone, or
# was opened more than MAX_AGE_DAYS ago. Prints `stacks=["pr-8", ...]` (JSON) to $GITHUB_OUTPUT,
# or to stdout outside Actions; what it reaps and why goes to stderr.
# reap-review-stacks.yml runs it after a checkout (Pulumi.yaml names the project). Any failure
# (login, `pulumi stack ls`, a `gh` error other than "no such PR") fails the run: an empty list
# must mean "nothing to reap", never "could not look".
# Needs: pulumi, gh, jq, GNU date; PULUMI_BACKEND_URL, GITHUB_REPOSITORY (GH_TOKEN for gh).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${PULUMI_BACKEND_URL:?PULUMI_BACKEND_URL is required}" "${GITHUB_REPOSITORY:?GITHUB_REPOSITORY is required}"
max_age_days=${MAX_AGE_DAYS:-7}
project=$(sed -n 's/^name: *//p' Pulumi.yaml)
[ -n "$project" ] || { echo "find-stale-review-stacks: no project name in Pulumi.yaml" >&2; exit 1; }

pulumi login "$PULUMI_BACKEND_URL" >&2
# --all lists every project's stacks: a self-managed backend names them organization/<project>/<stack>,
# a backend without projects (or Pulumi Cloud's current project) just <stack>. Only this project's
# pr-<n> count; never dev or prod.
listed=$(pulumi stack ls --all --json)
stacks=$(jq -r --arg re "^(([^/]+/)?${project}/)?pr-[0-9]+$" '.[].name | select(test($re)) | sub(".*/"; "")' \
  <<<"$listed" | sort -u)

cutoff=$(date -u -d "-${max_age_days} days" +%s)
reap=()
errors=$(mktemp)
trap 'rm -f "$errors"' EXIT
for stack in $stacks; do
  pr=${stack#pr-}
  if ! view=$(gh pr view "$pr" --repo "$GITHUB_REPOSITORY" --json state,createdAt \
    --jq '"\(.state) \(.createdAt)"' 2>"$errors"); then
    if grep -q "Could not resolve to a PullRequest" "$errors"; then
      view="MISSING 1970-01-01T00:00:00Z"
    else
      echo "find-stale-review-stacks: gh pr view $pr failed: $(head -c 300 "$errors")" >&2
      exit 1
    fi
  fi
  read -r state created <<<"$view"
  if [ "$state" != "OPEN" ] || [ "$(date -u -d "$created" +%s)" -lt "$cutoff" ]; then
    echo "reaping $stack (PR #$pr: $state, opened $created)" >&2
    reap+=("$stack")
  fi
done
line="stacks=$(jq -nc '$ARGS.positional' --args ${reap[@]+"${reap[@]}"})"
if [ -n "${GITHUB_OUTPUT:-}" ]; then echo "$line" >>"$GITHUB_OUTPUT"; else echo "$line"; fi
