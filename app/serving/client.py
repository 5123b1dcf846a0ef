"""The core service's side: publish a re-rank request (ids only), read the result on the next access.

A stored result re-ranks a request only if it answers that request (its request id): the table
keeps one result per (user, surface), the newest request's. When there is no result yet, or the
stored one answers another request (older: not served yet; newer: this one was superseded, and
its order ranks other candidates), the caller's own order is returned and the answer says it fell
back and why, so the product never waits on the re-ranker and never counts a fallback as served
(docs/specs/serving-messages.md).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from app.serving.experiments import assign_arm
from app.serving.messages import RerankRequest
from app.serving.results import RankedResult, ResultStore
from app.settings import VariantConfig

NO_RESULT = "no result yet"
OLDER_RESULT = "the stored result answers an older request"
NEWER_RESULT = "the stored result answers a newer request"
RERANKED = "re-ranked"


@dataclass(frozen=True)
class Ordering:
    ids: tuple[str, ...]
    fell_back: bool
    reason: str
    result: RankedResult | None = None


class CoreServiceClient:
    def __init__(
        self,
        publisher: Any,
        requests_topic: str,
        results: ResultStore,
        variants: list[VariantConfig],
        salt: str = "rerank",
    ) -> None:
        self.publisher, self.topic, self.results = publisher, requests_topic, results
        self.variants, self.salt = variants, salt

    def arm(self, user_id: str) -> str:
        return assign_arm(user_id, self.variants, self.salt)

    def request(
        self,
        user_id: str,
        surface: str,
        candidate_ids: Sequence[str],
        now: datetime | None = None,
        request_id: str | None = None,
    ) -> RerankRequest:
        """Publish a request; ``request_id`` is the id the impressions will carry as ``session_id``
        (docs/specs/impressions.md), so served predictions join with outcomes."""
        req = RerankRequest(
            request_id or uuid.uuid4().hex, user_id, surface, tuple(candidate_ids), now or datetime.now(UTC)
        )
        self.publisher.publish(self.topic, req.to_json(), arm=self.arm(user_id)).result(timeout=30)
        return req

    def ordering(self, req: RerankRequest) -> Ordering:
        """The re-ranked order for ``req``, or the caller's order when no stored result answers it."""
        result = self.results.get(req.user_id, req.surface)
        if result is None:
            return Ordering(req.candidate_ids, True, NO_RESULT)
        if result.request_id != req.request_id:
            # Another request's order: older is not yet ours; newer ranked its own candidates (a
            # superseded request is never served, whatever its candidates had in common).
            reason = OLDER_RESULT if result.requested_at < req.requested_at else NEWER_RESULT
            return Ordering(req.candidate_ids, True, reason, result)
        # Keep exactly the caller's candidates: ranked ones first, any the result lacks after, in caller order.
        wanted = set(req.candidate_ids)
        ranked = [i for i in result.ordered_ids if i in wanted]
        rest = [i for i in req.candidate_ids if i not in set(ranked)]
        return Ordering(tuple(ranked + rest), False, RERANKED, result)
