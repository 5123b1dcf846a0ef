#!/usr/bin/env bash
# Build and push a stack's images (app, ingest) with Cloud Build, as the stack's build account,
# unless they are already there; print their registry digests as JSON ({"app": "sha256:..", ...}).
# `pulumi up` runs this (infra/images.py) after the repository exists and before anything that
# runs the images is deployed. Needs gcloud, authenticated as someone who may act as the account.
# Usage: scripts/build-images.sh --project P --prefix REGION-docker.pkg.dev/P/REPO --tag TAG \
#          --service-account projects/P/serviceAccounts/EMAIL --staging gs://BUCKET/source
set -euo pipefail
cd "$(dirname "$0")/.."
while [ $# -gt 0 ]; do
  case "$1" in
    --project) project=$2 ;;
    --prefix) prefix=$2 ;;
    --tag) tag=$2 ;;
    --service-account) account=$2 ;;
    --staging) staging=$2 ;;
    *) echo "build-images: unknown argument $1" >&2; exit 2 ;;
  esac
  shift 2
done
: "${project:?--project is required}" "${prefix:?--prefix is required}" "${tag:?--tag is required}"
: "${account:?--service-account is required}" "${staging:?--staging is required}"

digest() { gcloud artifacts docker images describe "$prefix/$1:$tag" --format='value(image_summary.digest)' 2>/dev/null; }

if [ -z "$(digest app)" ] || [ -z "$(digest ingest)" ]; then
  echo "build-images: building $prefix/{app,ingest}:$tag as $account" >&2
  gcloud builds submit --project "$project" --config cloudbuild.yaml \
    --service-account "$account" --gcs-source-staging-dir "$staging" \
    --substitutions "_IMAGE_PREFIX=$prefix,_TAG=$tag" . >&2
fi
printf '{"app": "%s", "ingest": "%s"}\n' "$(digest app)" "$(digest ingest)"
