"""Progress of long work: ingest counters a launcher reads, and rows-done lines for any long step.

``Progress`` is the one helper every long step (ingest, the dataset join, training, evaluation)
reports through::

    with Progress("join", total=rows) as p:
        for batch in batches:
            ...
            p.advance(len(batch))

On a terminal it redraws one line (a bar, rows done, rate, time left); in a log (Vertex, kfp.local,
a pipe) it prints a plain line at most every ``every_s`` seconds and one at the end.

``RunCounter`` / ``tally``: each ingest count goes to a Beam counter (what Dataflow shows) and to
a tally in this process, keyed by the run's id. The tally exists because the DirectRunner's
streaming mode stops updating its metrics after the first bundle, so a local streaming run could
not report progress or know when it has gone idle. The DirectRunner runs DoFns in this process, so
the tally sees every count.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter, defaultdict
from typing import Any, TextIO

NAMESPACE = "ingest"
_lock = threading.Lock()
_tallies: defaultdict[str, Counter[str]] = defaultdict(Counter)


class RunCounter:
    def __init__(self, run_id: str, name: str) -> None:
        from apache_beam.metrics import Metrics  # only ingest needs Beam; training imports this module too

        self.run_id, self.name = run_id, name
        self._beam = Metrics.counter(NAMESPACE, name)

    def inc(self, n: int = 1) -> None:
        self._beam.inc(n)
        with _lock:
            _tallies[self.run_id][self.name] += n


def tally(run_id: str) -> dict[str, int]:
    with _lock:
        return dict(_tallies[run_id])


def _duration(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class Progress:
    """Rows done of ``total`` (None: unknown) for the step ``what``; see the module's docstring."""

    def __init__(
        self,
        what: str,
        total: int | None = None,
        unit: str = "rows",
        out: TextIO | None = None,
        every_s: float = 10.0,
        clock: Any = time.monotonic,
    ) -> None:
        self.what, self.total, self.unit = what, total, unit
        self.out = out if out is not None else sys.stderr
        self.every_s, self.clock = every_s, clock
        self.done = 0
        self.started = self._shown = clock()
        self.tty = bool(getattr(self.out, "isatty", lambda: False)())

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()

    def rate(self) -> float:
        elapsed = self.clock() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        """``join: 1,200,000/10,000,000 rows (12%), 95,000 rows/s, 1m32s left``."""
        rate, elapsed = self.rate(), self.clock() - self.started
        if self.total:
            share = min(self.done / self.total, 1.0)
            left = (self.total - self.done) / rate if rate > 0 else float("nan")
            eta = _duration(left) if left == left else "?"
            bar = ("#" * int(share * 20)).ljust(20, ".") + " " if self.tty else ""
            return (
                f"{self.what}: {bar}{self.done:,}/{self.total:,} {self.unit} ({share:.0%}), "
                f"{rate:,.0f} {self.unit}/s, {eta} left"
            )
        return f"{self.what}: {self.done:,} {self.unit}, {rate:,.0f} {self.unit}/s, {_duration(elapsed)} so far"

    def advance(self, n: int) -> None:
        self.done += n
        now = self.clock()
        if self.tty:
            self.out.write("\r" + self.line())
            self.out.flush()
        elif now - self._shown >= self.every_s:
            self._shown = now
            print(self.line(), file=self.out, flush=True)

    def finish(self) -> None:
        """The last line: rows done, rate and the time it took."""
        finished(self.what, self.done, self.clock() - self.started, self.unit, self.out, self.tty)


def finished(
    what: str, done: int, seconds: float, unit: str = "rows", out: TextIO | None = None, tty: bool = False
) -> None:
    """The line for work done in one go (e.g. one engine query): rows, the time it took, the rate."""
    rate = done / seconds if seconds > 0 else 0.0
    end = f"{what}: {done:,} {unit} in {_duration(seconds)}, {rate:,.0f} {unit}/s"
    print(("\r" if tty else "") + end + (" " * 20 if tty else ""), file=out or sys.stderr, flush=True)
