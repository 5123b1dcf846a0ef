#!/usr/bin/env bash
# Build and push a cloud stack's images (app, ingest) for its image_tag, unless they are there.
# Usage: scripts/build-images.sh STACK   (needs gcloud, authenticated; Cloud Build does the build)
set -euo pipefail
cd "$(dirname "$0")/.."
stack=${1:?usage: scripts/build-images.sh STACK}
read -r project prefix tag < <(.venv/bin/python - "$stack" <<'PY'
import sys
from app.naming import Names
from app.settings import load_stack
s = load_stack(sys.argv[1])
print(s.gcp.project, Names.of(s).image_prefix(s.gcp.region, s.gcp.project), s.image_tag)
PY
)
repository=${prefix#*/*/}
location=${prefix%%-docker.pkg.dev*}
if ! gcloud artifacts repositories describe "$repository" --project "$project" --location "$location" >/dev/null 2>&1; then
  echo "build-images: no repository $prefix yet; the first 'pulumi up' creates it, then run this again" >&2
  exit 0
fi
if gcloud artifacts docker images describe "$prefix/app:$tag" >/dev/null 2>&1 \
   && gcloud artifacts docker images describe "$prefix/ingest:$tag" >/dev/null 2>&1; then
  echo "build-images: $prefix/{app,ingest}:$tag already exist" >&2
  exit 0
fi
gcloud builds submit --project "$project" --config cloudbuild.yaml \
  --substitutions "_IMAGE_PREFIX=$prefix,_TAG=$tag" .
