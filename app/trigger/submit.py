"""Submitters: Vertex AI Pipelines in the cloud, the local kfp runner on a laptop."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.trigger.admission import StackPipeline, verified_spec
from app.trigger.payload import TriggerPayload


def gcs_reader(client: Any) -> Callable[[str], bytes]:
    """``gs://bucket/name`` -> the object's bytes, through a ``google.cloud.storage.Client``."""

    def read(uri: str) -> bytes:
        bucket, _, name = uri.removeprefix("gs://").partition("/")
        return bytes(client.bucket(bucket).blob(name).download_as_bytes())

    return read


class VertexSubmitter:
    """Submits a PipelineJob under the pipeline service account from the stack's spec, read once and
    checked against the digest the program published, so a rewritten object never runs (the
    PipelineJob itself is not exercised here: no Vertex AI)."""

    def __init__(
        self,
        project: str,
        region: str,
        service_account: str,
        pipeline_root: str,
        pipeline: StackPipeline,
        read: Callable[[str], bytes],
    ) -> None:
        self.project, self.region = project, region
        self.service_account, self.pipeline_root = service_account, pipeline_root
        self.pipeline, self.read = pipeline, read

    def submit(self, p: TriggerPayload) -> str:
        spec = verified_spec(self.pipeline.template_uri, self.pipeline.spec_sha256, self.read)
        from google.cloud import aiplatform

        # The checked bytes, not the URI: the object could be rewritten between check and read.
        with tempfile.TemporaryDirectory() as tmp:
            template = Path(tmp) / "rerank-training.yaml"
            template.write_bytes(spec)
            job = aiplatform.PipelineJob(
                display_name=f"rerank-training-{p.trigger_id}",
                template_path=str(template),
                job_id=f"rerank-{p.trigger_id}",
                pipeline_root=self.pipeline_root,
                parameter_values=p.parameters,
                labels=p.labels(),
                project=self.project,
                location=self.region,
                enable_caching=False,
            )
        job.submit(service_account=self.service_account)
        return str(job.resource_name)


class LocalSubmitter:
    """Runs the training pipeline in this process (kfp.local) with the payload's parameters."""

    def __init__(self, run: Callable[[TriggerPayload], dict[str, Any]]) -> None:
        self.run = run
        self.runs: list[dict[str, Any]] = []

    def submit(self, p: TriggerPayload) -> str:
        result = self.run(p)
        self.runs.append(result)
        return f"local:{result.get('model_id', p.trigger_id)}"
