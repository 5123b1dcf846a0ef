"""Properties of the impressions check over generated files: no row is lost or kept twice, and what
is kept satisfies the contract. (hypothesis: a dev dependency, bounded examples.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow.compute as pc
from hypothesis import given, settings
from hypothesis import strategies as st

from app.ranking.impressions import COLUMNS, KEY, conform, validate

T0 = datetime(2026, 3, 1, tzinfo=UTC)
REASONS = {
    "missing_value",
    "viewer_is_candidate",
    "negative_position",
    "outcome_before_shown",
    "match_without_both_likes",
    "duplicate",
}

row = st.fixed_dictionaries(
    {
        "session_id": st.sampled_from(["s1", "s2", "s3", "", None]),
        "viewer_id": st.sampled_from(["u1", "u2", None]),
        "candidate_id": st.sampled_from(["u1", "c1", "c2", "c3", " "]),
        "position": st.integers(-1, 5),
        "surface": st.sampled_from(["discover", ""]),
        "impression_time": st.integers(0, 100).map(lambda m: T0 + timedelta(minutes=m)),
        "viewer_like": st.booleans(),
        "candidate_like": st.sampled_from([True, False, None]),
        "match": st.booleans(),
        "outcome_time": st.one_of(st.none(), st.integers(0, 100).map(lambda m: T0 + timedelta(minutes=m))),
    }
)


@settings(max_examples=60, deadline=None)
@given(st.lists(row, min_size=1, max_size=40))
def test_every_row_is_either_kept_or_set_aside_with_a_known_reason(rows: list[dict]) -> None:
    import pyarrow as pa

    given_columns = [c for c in COLUMNS if c.name in rows[0]]  # optional ones left out come back as nulls
    table = conform(pa.table({c.name: pa.array([r[c.name] for r in rows], c.type) for c in given_columns}), "g")
    valid, rejected = validate(table)
    assert valid.num_rows + rejected.num_rows == len(rows)
    assert set(rejected.column("reason").to_pylist()) <= REASONS
    keys = list(zip(*(valid.column(k).to_pylist() for k in KEY), strict=True))
    assert len(keys) == len(set(keys)), "no pair twice in a session"
    for c in COLUMNS:
        if c.required:
            assert valid.column(c.name).null_count == 0, c.name
    assert not pc.any(pc.less(valid.column("outcome_time"), valid.column("impression_time"))).as_py()
    likes = zip(*(valid.column(n).to_pylist() for n in ("match", "viewer_like", "candidate_like")), strict=True)
    assert all(v and cl is not False for m, v, cl in likes if m), "a kept match has both likes"
