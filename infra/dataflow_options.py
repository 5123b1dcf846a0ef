"""The Dataflow service options that decide how a streaming job's Streaming Engine is billed.

A job's streaming mode is its billing: an at-least-once job is always billed per Streaming Engine
compute unit (resource-based billing), an exactly-once job per GiB processed unless it also asks
for resource-based billing (cloud.google.com/dataflow/docs/guides/streaming-modes, "Pricing";
/dataflow/docs/streaming-engine, "Use resource-based billing"). A flex template job passes service
options as ``additionalExperiments`` (/dataflow/docs/reference/service-options, "REST"); without a
mode option it runs the template metadata's ``defaultStreamingMode``, which a plan cannot see, so
the ingest job always states its mode.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

# The pd-standard disk each streaming worker gets when the job does not size it (a flex template job
# cannot): 30 GB with Streaming Engine, 400 GB without, as remembered from Dataflow's pipeline
# options page, not checked against it here. Dataflow bills it under its own SKU.
WORKER_DISK_GB = {True: 30, False: 400}  # keyed by enableStreamingEngine

AT_LEAST_ONCE = "streaming_mode_at_least_once"
EXACTLY_ONCE = "streaming_mode_exactly_once"
RESOURCE_BASED_BILLING = "enable_streaming_engine_resource_based_billing"
StreamingBilling = Literal["data_processed", "resource_based"]


def streaming_options(billing: StreamingBilling) -> list[str]:
    """The service options that make a job billed as ``billing`` says: per compute unit runs it
    at-least-once (the ingest template's mode), per GiB processed runs it exactly-once."""
    return [AT_LEAST_ONCE, RESOURCE_BASED_BILLING] if billing == "resource_based" else [EXACTLY_ONCE]


def billed_per_compute_unit(experiments: Iterable[str]) -> bool:
    stated = set(experiments)
    return AT_LEAST_ONCE in stated or RESOURCE_BASED_BILLING in stated
