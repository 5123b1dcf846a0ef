"""The served-results table (DynamoDB): one item per (user, surface), newest request wins.

A put is conditional: it lands only if no item exists or the stored one answers an older
request, so redeliveries, duplicates and stale workers can never roll a result back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np


@dataclass(frozen=True)
class RankedResult:
    user_id: str
    surface: str
    request_id: str
    requested_at: datetime
    ordered_ids: tuple[str, ...]
    scores: tuple[float, ...]
    model_id: str
    variant: str
    written_at: datetime | None = None


class ResultStore:
    """Items: user_id (hash), surface (range), request_id, requested_at_us, ordered_ids ("\n"-joined),
    scores (float32, little-endian, in the same order), model_id, variant, written_at_us, expires_at (TTL)."""

    def __init__(self, client: Any, table: str, ttl: timedelta) -> None:
        """``client`` is a boto3 DynamoDB client."""
        self.client, self.table, self.ttl = client, table, ttl

    def put_if_newer(self, r: RankedResult) -> bool:
        """True if written; False if the table already holds an equal or newer request's result."""
        requested_us = int(r.requested_at.timestamp() * 1_000_000)
        item = {
            "user_id": {"S": r.user_id},
            "surface": {"S": r.surface},
            "request_id": {"S": r.request_id},
            "requested_at_us": {"N": str(requested_us)},
            # Compact on purpose: one string and one binary instead of 2 x 100 list elements makes
            # the item smaller and cheaper to write and read (ids never contain a newline).
            "ordered_ids": {"S": "\n".join(r.ordered_ids)},
            "scores": {"B": np.asarray(r.scores, dtype="<f4").tobytes()},
            "model_id": {"S": r.model_id},
            "variant": {"S": r.variant},
            "written_at_us": {"N": str(int(datetime.now(UTC).timestamp() * 1_000_000))},
            "expires_at": {"N": str(int((datetime.now(UTC) + self.ttl).timestamp()))},
        }
        try:
            self.client.put_item(
                TableName=self.table,
                Item=item,
                ConditionExpression="attribute_not_exists(user_id) OR requested_at_us < :r",
                ExpressionAttributeValues={":r": {"N": str(requested_us)}},
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def get(self, user_id: str, surface: str) -> RankedResult | None:
        resp = self.client.get_item(
            TableName=self.table, Key={"user_id": {"S": user_id}, "surface": {"S": surface}}, ConsistentRead=True
        )
        item = resp.get("Item")
        if not item:
            return None
        return RankedResult(
            user_id=user_id,
            surface=surface,
            request_id=item["request_id"]["S"],
            requested_at=datetime.fromtimestamp(int(item["requested_at_us"]["N"]) / 1e6, UTC),
            ordered_ids=tuple(item["ordered_ids"]["S"].split("\n")),
            scores=tuple(float(x) for x in np.frombuffer(item["scores"]["B"], dtype="<f4")),
            model_id=item["model_id"]["S"],
            variant=item["variant"]["S"],
            written_at=datetime.fromtimestamp(int(item["written_at_us"]["N"]) / 1e6, UTC),
        )
