#!/usr/bin/env bash
# Build and push a stack's images with Cloud Build, as the stack's build account, each only if its
# tag is not there yet (a tag follows only what goes into its image: infra/images.py); print
# their registry digests as JSON ({"app": "sha256:..", "ingest": "sha256:.."}).
# `pulumi up` runs this (infra/images.py) after the repository exists and before anything that
# runs the images is deployed. Needs gcloud, authenticated as someone who may act as the account.
# Usage: scripts/build-images.sh --project P --prefix REGION-docker.pkg.dev/P/REPO \
#          --image app=Dockerfile=TAG --image ingest=app/featurestore/flex_template/Dockerfile=TAG \
#          --service-account projects/P/serviceAccounts/EMAIL --staging gs://BUCKET/source
set -euo pipefail
cd "$(dirname "$0")/.."
images=()
while [ $# -gt 0 ]; do
  case "$1" in
    --project) project=$2 ;;
    --prefix) prefix=$2 ;;
    --image) images+=("$2") ;;
    --service-account) account=$2 ;;
    --staging) staging=$2 ;;
    *) echo "build-images: unknown argument $1" >&2; exit 2 ;;
  esac
  shift 2
done
: "${project:?--project is required}" "${prefix:?--prefix is required}"
: "${account:?--service-account is required}" "${staging:?--staging is required}"
[ "${#images[@]}" -gt 0 ] || { echo "build-images: give at least one --image NAME=DOCKERFILE=TAG" >&2; exit 2; }

digest() { gcloud artifacts docker images describe "$prefix/$1:$2" --format='value(image_summary.digest)' 2>/dev/null; }

out="{}"
for spec in "${images[@]}"; do
  IFS== read -r name dockerfile tag <<<"$spec"
  if [ -z "$(digest "$name" "$tag")" ]; then
    echo "build-images: building $prefix/$name:$tag from $dockerfile as $account" >&2
    gcloud builds submit --project "$project" --config cloudbuild.yaml \
      --service-account "$account" --gcs-source-staging-dir "$staging" \
      --substitutions "_IMAGE_PREFIX=$prefix,_IMAGE=$name,_DOCKERFILE=$dockerfile,_TAG=$tag" . >&2
  fi
  out=$(jq -c --arg k "$name" --arg v "$(digest "$name" "$tag")" '. + {($k): $v}' <<<"$out")
done
echo "$out"
