"""Scoring a micro-batch of requests: one online-store round trip and one model call per batch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from app.featurestore.online import RedisOnlineStore
from app.featurestore.registry import Registry
from app.ranking.features import SIDES, Entities, entity_features, feature_matrix
from app.ranking.sampling import Booster
from app.serving.messages import PoisonMessage, RerankRequest


@dataclass(frozen=True)
class Scored:
    request: RerankRequest
    scores: np.ndarray  # one per candidate, in the request's candidate order

    def ordered(self) -> tuple[tuple[str, ...], tuple[float, ...]]:
        order = np.argsort(-self.scores, kind="stable")
        return tuple(self.request.candidate_ids[i] for i in order), tuple(float(self.scores[i]) for i in order)


class Scorer:
    def __init__(self, store: RedisOnlineStore, registry: Registry, entities: Entities) -> None:
        """``entities``: the (entity, version) pairs to read, the identity (profile) first."""
        self.store, self.entities = store, entities
        self.views = entity_features(registry, entities)

    def score(self, model: Booster, requests: Sequence[RerankRequest]) -> list[Scored | PoisonMessage]:
        """Scores per request, or the reason a request cannot be scored (a viewer the store does not know).
        ``model``: the deployed ``CalibratedModel`` (scores corrected for negative sampling) or a booster.

        Candidates with no profile in the online store are left out of the scored request: a model
        would rank an all-missing row anywhere (often first); the client shows them after the ranked
        ones, in its own order. A request none of whose candidates is known cannot be scored yet.
        """
        ids = sorted({r.user_id for r in requests} | {c for r in requests for c in r.candidate_ids})
        row = {entity_id: i for i, entity_id in enumerate(ids)}
        wanted = [(e, v, ids, feats) for (e, v), feats in self.views.items()]
        matrices = dict(zip(self.views, self.store.read_matrices(wanted), strict=True))
        found = matrices[self.entities[0]].found
        out: list[Scored | PoisonMessage | None] = []
        ok: list[RerankRequest] = []
        for r in requests:
            if not found[row[r.user_id]]:
                out.append(PoisonMessage("unknown_user", f"user {r.user_id!r} has no profile in the online store"))
                continue
            known = tuple(c for c in r.candidate_ids if found[row[c]])
            if not known:
                out.append(
                    PoisonMessage("unknown_candidates", f"none of the {len(r.candidate_ids)} candidates has a profile")
                )
                continue
            ok.append(replace(r, candidate_ids=known) if len(known) < len(r.candidate_ids) else r)
            out.append(None)
        probs = self._predict(model, matrices, row, ok) if ok else np.empty(0)
        scored: list[Scored | PoisonMessage] = []
        start, pending = 0, iter(ok)
        for o in out:
            if o is not None:
                scored.append(o)
                continue
            r = next(pending)
            scored.append(Scored(r, probs[start : start + len(r.candidate_ids)]))
            start += len(r.candidate_ids)
        return scored

    def _predict(
        self, model: Booster, matrices: dict, row: dict[str, int], requests: list[RerankRequest]
    ) -> np.ndarray:
        viewer_rows = np.array([row[r.user_id] for r in requests for _ in r.candidate_ids])
        cand_rows = np.array([row[c] for r in requests for c in r.candidate_ids])
        cols: dict[str, np.ndarray] = {}
        for side, rows in zip(SIDES, (viewer_rows, cand_rows), strict=True):
            for view, feats in self.views.items():
                values = matrices[view].values[rows]
                for j, f in enumerate(feats):
                    cols[f"{side}_{f}"] = values[:, j]
        return model.predict(feature_matrix(cols, model.feature_name()))


class NaiveScorer(Scorer):
    """One online read per entity, one model call per request: the baseline ``rerank bench serving``
    compares the batched ``Scorer`` with."""

    def score(self, model: Booster, requests: Sequence[RerankRequest]) -> list[Scored | PoisonMessage]:
        out: list[Scored | PoisonMessage] = []
        for r in requests:
            cols: dict[str, list[float]] = {}
            for side, ids in (("viewer", [r.user_id] * len(r.candidate_ids)), ("candidate", list(r.candidate_ids))):
                for (entity, version), feats in self.views.items():
                    rows = [self.store.read_matrix_naive(entity, version, [i], feats).values[0] for i in ids]
                    for j, f in enumerate(feats):
                        cols[f"{side}_{f}"] = [row[j] for row in rows]
            arrays = {k: np.asarray(v) for k, v in cols.items()}
            out.append(Scored(r, model.predict(feature_matrix(arrays, model.feature_name()))))
        return out
