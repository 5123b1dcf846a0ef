"""The Dataflow flex template spec file of the ingest job.

``gcloud dataflow flex-template build`` writes this JSON to Cloud Storage; rendering it here lets
the Pulumi program upload it beside the image it built, with the same parameters the pipeline
parses (``flex_template/metadata.json``, kept in step with ``IngestOptions`` by a test).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from app.naming import Names
from app.settings import StackSettings

TEMPLATE_DIR = Path(__file__).parent / "flex_template"


def render_spec(image: str) -> dict[str, Any]:
    """The spec for ``image`` (``REGION-docker.pkg.dev/PROJECT/REPO/ingest:TAG``)."""
    if not image or (":" not in image.rsplit("/", 1)[-1] and "@" not in image):
        raise ValueError(f"flex template image {image!r} needs a tag or digest")
    metadata = json.loads((TEMPLATE_DIR / "metadata.json").read_text())
    return {"image": image, "sdkInfo": {"language": "PYTHON"}, "metadata": metadata}


def stack_parameters(settings: StackSettings) -> dict[str, str]:
    """The options a stack fixes for its ingest job, locally and on Dataflow (template parameters) alike."""
    ttls = ",".join(f"{e.name}={e.ttl_days * 86400}" for e in settings.feature_store.entities)
    return {
        "redis_prefix": Names.of(settings).redis_prefix,
        "online_ttl_seconds": ttls,
        "input_limits": settings.limits.model_dump_json(),
    }
