"""The impressions contract: files that break it fail with one line, rows that break it are set aside."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app.ranking.impressions import (
    COLUMNS,
    VERSION_KEY,
    ImpressionsError,
    contract_table,
    oracle_for,
    read_impressions,
    read_oracle,
)

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def rows(n: int = 6, **over: list) -> dict[str, list]:
    base = {
        "session_id": ["s1"] * 3 + ["s2"] * (n - 3),
        "viewer_id": ["u1"] * 3 + ["u2"] * (n - 3),
        "candidate_id": [f"c{i}" for i in range(n)],
        "position": [i % 3 for i in range(n)],
        "surface": ["discover"] * n,
        "impression_time": [T0 + timedelta(minutes=i) for i in range(n)],
        "viewer_like": [True, False] * (n // 2),
        "candidate_like": [True, True] * (n // 2),
        "match": [True, False] * (n // 2),
        "outcome_time": [T0 + timedelta(minutes=i, seconds=30) for i in range(n)],
    }
    return {**base, **over}


def write(path: Path, cols: dict[str, list], schema: pa.Schema | None = None) -> Path:
    pq.write_table(pa.table(cols, schema=schema) if schema else pa.table(cols), path)
    return path


def test_a_contract_file_reads_whole_in_session_order(tmp_path: Path) -> None:
    cols = rows()
    shuffled = {k: list(reversed(v)) for k, v in cols.items()}
    read = read_impressions(write(tmp_path / "a.parquet", shuffled))
    assert read.table.num_rows == 6 and read.rejected.num_rows == 0 and read.rejected_counts == {}
    assert read.table.column_names == [c.name for c in COLUMNS]
    assert read.table.column("candidate_id").to_pylist() == cols["candidate_id"], "ordered by session then position"
    assert read.table.column("served_variant").null_count == 6, "optional columns left out come back as nulls"


def test_a_folder_is_read_file_by_file_and_half_written_files_are_skipped(tmp_path: Path) -> None:
    write(tmp_path / "2026-03-01.parquet", rows())
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / "2026-03-02.parquet", rows(session_id=["s3"] * 3 + ["s4"] * 3))
    write(tmp_path / ".2026-03-03.parquet.tmp.parquet", rows(session_id=["s9"] * 6))
    read = read_impressions(tmp_path)
    assert read.files == 2 and sorted(set(read.table.column("session_id").to_pylist())) == ["s1", "s2", "s3", "s4"]


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda c: c.pop("match"), "required column 'match' is missing"),
        (lambda c: c.pop("session_id"), "required column 'session_id' is missing"),
        (
            lambda c: c.update(position=[str(p) for p in c["position"]]),
            "column 'position' is string, the contract says integer",
        ),
        (lambda c: c.update(viewer_like=[1] * 6), "column 'viewer_like' is int64, the contract says boolean"),
        (
            lambda c: c.update(impression_time=[t.replace(tzinfo=None) for t in c["impression_time"]]),
            "column 'impression_time' is timestamp[us], the contract says timestamp with time zone UTC",
        ),
        (
            lambda c: c.update(candidate_like=["yes"] * 6),
            "column 'candidate_like' is string, the contract says boolean",
        ),
    ],
)
def test_a_file_breaking_the_contract_fails_with_one_line_naming_file_and_column(
    tmp_path: Path, change: object, needle: str
) -> None:
    cols = rows()
    change(cols)  # type: ignore[operator]
    path = write(tmp_path / "bad.parquet", cols)
    with pytest.raises(ImpressionsError) as err:
        read_impressions(tmp_path)
    assert str(err.value) == f"{path}: {needle}" and "\n" not in str(err.value)


def test_an_unknown_contract_version_and_missing_inputs_are_refused(tmp_path: Path) -> None:
    table = pa.table(rows()).replace_schema_metadata({VERSION_KEY: b"2"})
    pq.write_table(table, tmp_path / "v2.parquet")
    with pytest.raises(ImpressionsError, match="contract version '2'; this code reads version 1"):
        read_impressions(tmp_path / "v2.parquet")
    with pytest.raises(ImpressionsError, match="no such file or folder"):
        read_impressions(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImpressionsError, match=r"no \*.parquet files"):
        read_impressions(tmp_path / "empty")
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(ImpressionsError, match="not a readable Parquet file"):
        read_impressions(tmp_path / "junk.parquet")


def test_bad_rows_are_set_aside_with_their_reason_and_the_rest_is_used(tmp_path: Path) -> None:
    n = 12
    cols = rows(
        n,
        session_id=[f"s{i // 3}" for i in range(n)],
        viewer_id=[f"u{i // 3}" for i in range(n)],
        candidate_id=[f"c{i}" for i in range(n)],
    )
    cols["viewer_id"][0] = None  # missing_value
    cols["candidate_id"][1] = "  "  # missing_value (empty id)
    cols["outcome_time"][2] = cols["impression_time"][2] - timedelta(seconds=1)  # outcome_before_shown
    cols["candidate_id"][4] = cols["viewer_id"][4]  # viewer_is_candidate
    cols["viewer_like"][6], cols["match"][6] = False, True  # match_without_both_likes
    cols["candidate_id"][8] = cols["candidate_id"][7]  # duplicate of row 7: the first is kept
    cols["position"][10] = -1  # negative_position
    read = read_impressions(write(tmp_path / "x.parquet", cols))
    assert read.rejected_counts == {
        "duplicate": 1,
        "match_without_both_likes": 1,
        "missing_value": 2,
        "negative_position": 1,
        "outcome_before_shown": 1,
        "viewer_is_candidate": 1,
    }
    assert read.table.num_rows == n - 7
    kept = set(
        zip(read.table.column("session_id").to_pylist(), read.table.column("candidate_id").to_pylist(), strict=True)
    )
    assert ("s2", "c7") in kept and len(kept) == read.table.num_rows
    assert read.summary() == {"files": 1, "rows": 5, "rejected": read.rejected_counts}


def test_columns_outside_the_contract_never_reach_the_reader(tmp_path: Path) -> None:
    cols = {**rows(), "p_match": [0.5] * 6, "secret": ["x"] * 6}
    read = read_impressions(write(tmp_path / "x.parquet", cols))
    assert "p_match" not in read.table.column_names and "secret" not in read.table.column_names


def test_the_oracle_is_joined_by_impression_key_and_must_cover_every_row(tmp_path: Path) -> None:
    table = contract_table(rows())
    assert table.schema.metadata[VERSION_KEY] == b"1"
    oracle = pa.table(
        {
            "session_id": list(reversed(rows()["session_id"])),
            "candidate_id": list(reversed(rows()["candidate_id"])),
            "p_viewer_likes": [0.5] * 6,
            "p_candidate_likes": [0.5] * 6,
            "p_match": [float(i) / 10 for i in range(6)],
        }
    )
    pq.write_table(oracle, tmp_path / "oracle.parquet")
    got = oracle_for(table, read_oracle(tmp_path / "oracle.parquet"))
    assert np.allclose(got, [0.5, 0.4, 0.3, 0.2, 0.1, 0.0])
    with pytest.raises(ImpressionsError, match=r"no p_match for 2 impression\(s\)"):
        oracle_for(table, read_oracle(tmp_path / "oracle.parquet").slice(2))
    pq.write_table(oracle.drop_columns(["p_match"]), tmp_path / "bad-oracle.parquet")
    with pytest.raises(ImpressionsError, match=r"lacks column\(s\) \['p_match'\]"):
        read_oracle(tmp_path / "bad-oracle.parquet")


def test_a_duplicate_across_files_is_caught_and_the_first_files_row_kept(tmp_path: Path) -> None:
    write(tmp_path / "2026-03-01.parquet", rows())
    later = rows(surface=["later"] * 6)
    write(tmp_path / "2026-03-02.parquet", {k: v[:1] for k, v in later.items()})  # s1/c0 again, in a later file
    read = read_impressions(tmp_path)
    assert read.rejected_counts == {"duplicate": 1} and read.rejected.column("surface").to_pylist() == ["later"]
    assert read.table.num_rows == 6 and "later" not in read.table.column("surface").to_pylist()
