"""Progress lines: rows done, rate and time left, plain lines in logs at most every few seconds."""

from __future__ import annotations

import io

from app.featurestore.progress import Progress, finished


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_a_log_gets_a_line_per_interval_with_rate_and_time_left() -> None:
    out, clock = io.StringIO(), Clock()
    p = Progress("join", total=1000, out=out, every_s=10, clock=clock)
    clock.t += 5
    p.advance(100)
    assert out.getvalue() == "", "not yet: at most a line per interval"
    clock.t += 5
    p.advance(100)
    assert out.getvalue() == "join: 200/1,000 rows (20%), 20 rows/s, 0m40s left\n"
    clock.t += 40
    p.advance(800)
    p.finish()
    assert out.getvalue().splitlines()[-1] == "join: 1,000 rows in 0m50s, 20 rows/s"


def test_without_a_total_it_says_rows_and_rate_so_far() -> None:
    out, clock = io.StringIO(), Clock()
    p = Progress("ingest", unit="events", out=out, every_s=1, clock=clock)
    clock.t += 4000
    p.advance(8000)
    assert out.getvalue() == "ingest: 8,000 events, 2 events/s, 1h06m so far\n"


def test_a_terminal_gets_one_redrawn_bar() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out, clock = Tty(), Clock()
    p = Progress("train", total=10, out=out, clock=clock)
    clock.t += 1
    p.advance(5)
    assert out.getvalue() == "\rtrain: ##########.......... 5/10 rows (50%), 5 rows/s, 0m01s left"
    finished("shards", 30, 3.0, out=(plain := io.StringIO()))
    assert plain.getvalue() == "shards: 30 rows in 0m03s, 10 rows/s\n"
