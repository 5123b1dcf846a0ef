"""The online store: Redis, one key per entity instance and version (docs/specs/online-store.md).

Key ``<prefix>:<entity>:<version>:<entity_id>`` holds one string:
  bytes 0-16   event time, microseconds since the Unix epoch, 17 zero-padded decimal digits;
  bytes 17-28  layout id: the first 12 hex digits of sha1 over the feature names joined by ``,``;
  bytes 29-    the online feature vector, little-endian float32, in that layout's order.
``<prefix>:layout:<id>`` holds the JSON list of names of each layout ever written, so a reader
can decode vectors written before an additive schema change.

A plain string (not a hash) lets a read of N entities be a single ``MGET``: one command, one
round trip. Writes go through a Lua script per key (an atomic compare-and-set on the time
prefix): an event only replaces an older one; an equal or older event is dropped as stale.
The TTL is per entity type and counts from the write, as in Feast.

A stored value not in this layout (damaged, or written by something else) never costs its
neighbours: a write replaces it (counted as ``repaired``), a reader treats it as missing and
reports it through ``on_damaged`` (the worker's ``rerank_damaged_values`` counter).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import redis

from app.featurestore.events import FeatureRow
from app.featurestore.registry import Registry
from app.naming import Names
from app.settings import StackSettings

# Returns 0 (stale: the stored event is as new or newer), 1 (written), 2 (written over a value
# not in the layout) or -1 (the key holds another type, e.g. a hash: left alone, a conflict). The
# stored value is checked before its time is compared, so no stored bytes can make the script fail.
_WRITE_IF_NEWER = """
local current = redis.pcall('GET', KEYS[1])
if type(current) == 'table' and current.err then
  return -1
end
local valid = current and #current >= 29 and (#current - 29) % 4 == 0
  and string.find(string.sub(current, 1, 29), '^' .. string.rep('%d', 17) .. string.rep('[0-9a-f]', 12) .. '$')
if valid and tonumber(string.sub(current, 1, 17)) >= tonumber(string.sub(ARGV[1], 1, 17)) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if current and not valid then
  return 2
end
return 1
"""
_TIME_DIGITS = 17
_LAYOUT_LEN = 12
_HEADER = _TIME_DIGITS + _LAYOUT_LEN
_WRITE_CHUNK = 1000


def layout_id(features: Sequence[str]) -> str:
    return hashlib.sha1(",".join(features).encode()).hexdigest()[:_LAYOUT_LEN]


def epoch_us(row: FeatureRow) -> int:
    ts = row.event_time
    return int(ts.timestamp()) * 1_000_000 + ts.microsecond


def encode_value(event_time_us: int, layout: str, vector: Sequence[float]) -> bytes:
    """The stored string (docs/specs/online-store.md); pinned by a golden test."""
    return f"{event_time_us:0{_TIME_DIGITS}d}{layout}".encode() + np.asarray(vector, "<f4").tobytes()


@dataclass(frozen=True)
class WriteResult:
    written: int
    stale: int
    repaired: int = 0  # of ``written``: replaced a stored value that was not in the layout
    conflicts: tuple[FeatureRow, ...] = ()  # not written: the key holds something not a string


class StoreWriteError(RuntimeError):
    """Some rows were not written (the rest were): ``failed`` are the refused rows, to retry or dead-letter."""

    def __init__(self, done: WriteResult, failed: list[FeatureRow], cause: BaseException) -> None:
        super().__init__(
            f"online store refused {len(failed)} of {len(failed) + done.written + done.stale} rows: {cause}"
        )
        self.done, self.failed, self.cause = done, failed, cause


_HEADER_RE = re.compile(rb"[0-9]{17}[0-9a-f]{12}")
_LAYOUT_RE = re.compile(rb"[0-9a-f]{12}")


def header_in_layout(reply: bytes) -> bool:
    """A value of the documented layout: 17 digits, 12 lowercase hex digits, whole float32s."""
    return (len(reply) - _HEADER) % 4 == 0 and _HEADER_RE.match(reply) is not None


@dataclass(frozen=True)
class FeatureMatrix:
    """Features of N entities: ``values[i, j]`` is feature ``features[j]`` of ``ids[i]`` (NaN if absent)."""

    ids: list[str]
    features: tuple[str, ...]
    values: np.ndarray
    found: np.ndarray
    event_time_us: np.ndarray


class RedisOnlineStore:
    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        ttl_seconds: dict[str, int],
        vector_layouts: dict[tuple[str, str], tuple[str, ...]],
    ) -> None:
        """``vector_layouts[(entity, version)]`` names the features of the vectors that rows carry."""
        self._r = client
        self._prefix = prefix
        self._ttl_ms = {entity: seconds * 1000 for entity, seconds in ttl_seconds.items()}
        self._vector_layouts = vector_layouts
        self._script = client.register_script(_WRITE_IF_NEWER)
        self._layouts: dict[str, tuple[str, ...]] = {}
        # Called with (entity key prefix, count) when a read met values it could not decode.
        self.on_damaged: Callable[[str, int], None] = lambda where, n: None

    def key(self, entity: str, version: str, entity_id: str) -> str:
        return f"{self._prefix}:{entity}:{version}:{entity_id}"

    def _layout_key(self, lid: str) -> str:
        return f"{self._prefix}:layout:{lid}"

    def _remember_layout(self, features: tuple[str, ...]) -> str:
        lid = layout_id(features)
        if lid not in self._layouts:
            self._r.set(self._layout_key(lid), json.dumps(list(features)), nx=True)
            self._layouts[lid] = features
        return lid

    def write_rows(self, rows: Sequence[FeatureRow]) -> WriteResult:
        """Write rows in pipelined chunks; per key, only an event newer than the stored one lands.

        Raises ``StoreWriteError`` naming the rows not written if Redis refused any (out of memory,
        down): the others are written, and rewriting a written row is harmless (it is then stale).
        """
        written = stale = repaired = 0
        failed: list[FeatureRow] = []
        conflicts: list[FeatureRow] = []
        cause: BaseException | None = None
        for start in range(0, len(rows), _WRITE_CHUNK):
            chunk = rows[start : start + _WRITE_CHUNK]
            try:
                pipe = self._r.pipeline(transaction=False)
                for row in chunk:
                    lid = self._remember_layout(self._vector_layouts[(row.entity, row.version)])
                    value = encode_value(epoch_us(row), lid, row.vector)
                    self._script(
                        keys=[self.key(row.entity, row.version, row.entity_id)],
                        args=[value, self._ttl_ms[row.entity]],
                        client=pipe,
                    )
                results = pipe.execute(raise_on_error=False)
            except redis.RedisError as exc:  # the whole chunk's fate is unknown: all of it again
                failed += chunk[:]
                cause = exc
                continue
            for row, res in zip(chunk, results, strict=True):
                if isinstance(res, Exception):
                    failed.append(row)
                    cause = res
                elif res < 0:
                    conflicts.append(row)
                else:
                    written += res > 0
                    stale += res == 0
                    repaired += res == 2
        done = WriteResult(written, stale, repaired, tuple(conflicts))
        if cause is not None:
            raise StoreWriteError(done, failed, cause)
        return done

    def _names(self, lid: str) -> tuple[str, ...] | None:
        """The feature names of layout ``lid``, or None if no readable layout entry exists."""
        if lid not in self._layouts:
            raw = self._r.get(self._layout_key(lid))
            try:
                names = json.loads(raw) if raw is not None else None
            except ValueError:
                names = None
            if not isinstance(names, list) or not all(isinstance(x, str) for x in names):
                return None
            self._layouts[lid] = tuple(names)
        return self._layouts[lid]

    def _value_length(self, lid: bytes) -> int | None:
        """The length of a stored value of layout ``lid``, or None if ``lid`` names no readable layout."""
        if _LAYOUT_RE.fullmatch(lid) is None:
            return None
        names = self._names(lid.decode())
        return None if names is None else _HEADER + 4 * len(names)

    def _matrix(
        self, where: str, ids: list[str], features: Sequence[str], replies: Sequence[bytes | None]
    ) -> FeatureMatrix:
        n = len(ids)
        values = np.full((n, len(features)), np.nan, dtype=np.float32)
        times = np.zeros(n, dtype=np.int64)
        by_layout: dict[bytes, list[int]] = {}
        lengths: dict[bytes, int | None] = {}  # layout id -> the length of its values (None: no such layout)
        damaged = 0
        for i, reply in enumerate(replies):
            if reply is None:
                continue
            lid, at = reply[_TIME_DIGITS:_HEADER], reply[:_TIME_DIGITS]
            if lid not in lengths:
                lengths[lid] = self._value_length(lid)
            if len(reply) != lengths[lid] or not at.isdigit():
                damaged += 1  # not in the layout: read as missing
                continue
            times[i] = int(at)
            by_layout.setdefault(lid, []).append(i)
        found = np.zeros(n, dtype=bool)
        for rows in by_layout.values():
            found[rows] = True
        if damaged:
            self.on_damaged(where, damaged)
        # One vectorised copy per layout: rows of a layout have equal length.
        for lid, rows in by_layout.items():
            index = {name: k for k, name in enumerate(self._layouts[lid.decode()])}
            pos = np.array([index.get(name, -1) for name in features], dtype=np.int64)
            present = np.flatnonzero(pos >= 0)
            block = np.frombuffer(b"".join(replies[i][_HEADER:] for i in rows), dtype="<f4")  # type: ignore[index]
            block = block.reshape(len(rows), -1)
            values[np.ix_(rows, present)] = block[:, pos[present]]
        return FeatureMatrix(ids, tuple(features), values, found, times)

    def read_matrix(self, entity: str, version: str, ids: Sequence[str], features: Sequence[str]) -> FeatureMatrix:
        """N entities with one MGET (one round trip); the serving hot path."""
        return self.read_matrices([(entity, version, ids, features)])[0]

    def read_matrices(self, wanted: Sequence[tuple[str, str, Sequence[str], Sequence[str]]]) -> list[FeatureMatrix]:
        """Several (entity, version, ids, features) reads: one MGET each, all in one round trip."""
        pipe = self._r.pipeline(transaction=False)
        for entity, version, ids, _ in wanted:
            pipe.mget([self.key(entity, version, i) for i in ids]) if ids else pipe.echo(b"")
        replies = pipe.execute()
        return [
            self._matrix(f"{entity}:{version}", list(ids), features, reply if ids else [])
            for (entity, version, ids, features), reply in zip(wanted, replies, strict=True)
        ]

    def read_matrix_naive(
        self, entity: str, version: str, ids: Sequence[str], features: Sequence[str]
    ) -> FeatureMatrix:
        """One GET (one round trip) per entity: the baseline the benchmark compares ``read_matrix`` with."""
        ids = list(ids)
        replies = [self._r.get(self.key(entity, version, i)) for i in ids]
        return self._matrix(f"{entity}:{version}", ids, features, replies)


def registry_online_store(
    client: redis.Redis, prefix: str, ttl_seconds: dict[str, int], registry: Registry
) -> RedisOnlineStore:
    """An online store whose vectors follow the registry's online features."""
    return RedisOnlineStore(
        client, prefix, ttl_seconds, {(s.entity, s.version): s.online_features for s in registry.specs()}
    )


def online_store(client: redis.Redis, settings: StackSettings, registry: Registry) -> RedisOnlineStore:
    """The online store a stack describes: its key prefix and per-entity TTLs."""
    ttls = {e.name: e.ttl_days * 86400 for e in settings.feature_store.entities}
    return registry_online_store(client, Names.of(settings).redis_prefix, ttls, registry)
