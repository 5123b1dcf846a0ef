"""Ingest counters that the launching process can read while a local run is going.

Each count goes to a Beam counter (what Dataflow shows) and to a tally in this process, keyed
by the run's id. The tally exists because the DirectRunner's streaming mode stops updating its
metrics after the first bundle, so a local streaming run could not report progress or know when
it has gone idle. The DirectRunner runs DoFns in this process, so the tally sees every count.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict

from apache_beam.metrics import Metrics

NAMESPACE = "ingest"
_lock = threading.Lock()
_tallies: defaultdict[str, Counter[str]] = defaultdict(Counter)


class RunCounter:
    def __init__(self, run_id: str, name: str) -> None:
        self.run_id, self.name = run_id, name
        self._beam = Metrics.counter(NAMESPACE, name)

    def inc(self, n: int = 1) -> None:
        self._beam.inc(n)
        with _lock:
            _tallies[self.run_id][self.name] += n


def tally(run_id: str) -> dict[str, int]:
    with _lock:
        return dict(_tallies[run_id])
