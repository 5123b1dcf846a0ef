# Developers and CI run the same targets. Each one sets up what it needs first.
PY := .venv/bin/python

.PHONY: setup lint test unit integration demo bench docs compile

setup:
	@./scripts/bootstrap.sh

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m app.cli schema docs --verify

unit: setup
	$(PY) -m pytest tests/unit

integration: setup
	$(PY) -m pytest tests/integration

# The README's test command: lint, generated files up to date, every test.
test: lint
	$(PY) -m pytest

# The README's main job: the whole loop on the local stack.
demo: setup
	.venv/bin/rerank demo

bench: setup
	.venv/bin/rerank bench ingest

docs: setup
	.venv/bin/rerank schema docs

compile: setup
	.venv/bin/rerank pipeline compile
