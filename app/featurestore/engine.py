"""A DuckDB connection with bounded memory: what the local engine runs big queries in.

DuckDB keeps its working set under ``memory_limit`` and spills the rest (sorts, hash joins and
aggregates, tables of a file-backed database) to ``temp_directory``, so a query's peak memory depends
on the limit, not on the number of rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb


@dataclass(frozen=True)
class EngineLimits:
    work_dir: Path  # the database file and the spill folder live here
    memory_limit: str = "1GB"
    threads: int = 2

    def connect(self) -> duckdb.DuckDBPyConnection:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        spill = self.work_dir / "spill"
        spill.mkdir(exist_ok=True)
        con = duckdb.connect(str(self.work_dir / "work.duckdb"))
        con.execute(f"SET memory_limit = '{self.memory_limit}'")
        con.execute(f"SET temp_directory = '{spill}'")
        con.execute(f"SET threads = {int(self.threads)}")
        # Order is asked for where it matters (inside a shard); elsewhere it would cost memory.
        con.execute("SET preserve_insertion_order = false")
        con.execute("SET TimeZone = 'UTC'")
        return con


def memory_budget(share: float = 0.5) -> str:
    """``share`` of the memory this process may use (its cgroup's limit, else the machine's), as a
    DuckDB memory_limit: what a step gives the engine when it is not told."""
    limit = None
    try:
        text = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        limit = int(text) if text.isdigit() else None
    except OSError:
        pass
    if limit is None:
        import os

        limit = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return f"{max(256, int(limit * share / 2**20))}MB"
