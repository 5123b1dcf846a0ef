"""Submitters: Vertex AI Pipelines in the cloud, the local kfp runner on a laptop."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.trigger.payload import TriggerPayload


class VertexSubmitter:
    """Submits a PipelineJob under the pipeline service account (not exercised here: no Vertex AI)."""

    def __init__(self, project: str, region: str, service_account: str, pipeline_root: str) -> None:
        self.project, self.region = project, region
        self.service_account, self.pipeline_root = service_account, pipeline_root

    def submit(self, p: TriggerPayload) -> str:
        import json
        import tempfile

        from google.cloud import aiplatform

        template = p.template_uri
        if p.pipeline_spec is not None:
            with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
                json.dump(p.pipeline_spec, f)
                template = f.name
        job = aiplatform.PipelineJob(
            display_name=f"rerank-training-{p.trigger_id}",
            template_path=template,
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
