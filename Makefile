# Developers and CI run the same targets. Each one sets up what it needs first.
PY := .venv/bin/python
# The suite on one worker per core, at most two (each worker starts its own local services;
# tests/conftest.py says what workers must not share); the served-market tests share one worker.
PYTEST := $(PY) -m pytest -n auto --maxprocesses 2 --dist loadgroup

.PHONY: setup lint test unit integration demo bench docs compile

setup:
	@./scripts/bootstrap.sh

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m app.cli schema docs --verify

unit: setup
	$(PYTEST) tests/unit

integration: setup
	$(PYTEST) tests/integration

# The README's test command: lint, generated files up to date, every test.
test: lint
	$(PYTEST)

# The README's main job: the whole loop on the local stack.
demo: setup
	.venv/bin/rerank demo

bench: setup
	.venv/bin/rerank bench ingest

docs: setup
	.venv/bin/rerank schema docs

compile: setup
	.venv/bin/rerank pipeline compile
