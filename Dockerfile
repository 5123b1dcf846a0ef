# The app image: re-rank workers (`rerank serve --endpoints env`, the worker Deployments) and the
# training pipeline's steps (the components' base image). The ingest job has its own image
# (app/featurestore/flex_template/Dockerfile). Build from the repository root:
#   docker build -t REGION-docker.pkg.dev/PROJECT/REPO/app:TAG .
FROM python:3.11-slim

RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /srv/rerank
COPY pyproject.toml README.md ./
COPY app ./app
COPY bench ./bench
# No infra/: the Pulumi program never runs in a pod, and an image's tag follows what it copies.
COPY pipelines ./pipelines
# Workers read their stack's settings (names, variants, TTLs) from the same files as everyone.
COPY stacks ./stacks
RUN pip install --no-cache-dir . && useradd --uid 10001 --no-create-home rerank
USER 10001
ENTRYPOINT ["rerank"]
