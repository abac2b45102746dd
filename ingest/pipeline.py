"""The batching loop between the MQTT client and the database.

Modelled on Telegraf's agent flush loop and PostgreSQL output:

* messages are buffered as they arrive and flushed when the batch is full,
  when its oldest message is ``batch_max_age_ms`` old, and on shutdown;
* a message is acknowledged only after the transaction holding its rows (or
  its dead-letter row) has committed, so a crash anywhere loses nothing;
* transient database errors keep the batch and retry it with backoff; acks
  stop, and since the broker never has more than Receive Maximum messages
  unacknowledged with us, memory stays bounded and the broker holds the rest;
* permanent errors are isolated by bisecting the batch: only the entries
  that fail alone are dead-lettered, with the database's reason.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from datetime import datetime, timedelta, timezone
from typing import Callable

from ingest import metrics
from core.dberrors import is_transient
from ingest.decoders.base import DecodeError
from ingest.writer import BatchWriter, Entry, WriteResult

log = logging.getLogger(__name__)

LAST_SEEN_EVERY_S = 10.0
LAG_SAMPLE = 200  # messages per batch whose lag is observed


class Pipeline:
    def __init__(self, writer: BatchWriter, decode: Callable, ack: Callable[[list[Entry]], None],
                 batch_size: int = 5000, max_age_s: float = 0.25,
                 backoff: tuple[float, float] = (0.2, 15.0)):
        self.writer = writer
        self.decode = decode  # decode(entry) -> None; sets entry.decoded or entry.reason
        self.ack = ack
        self.batch_size = batch_size
        self.max_age_s = max_age_s
        self.backoff_min, self.backoff_max = backoff
        self._buf: deque[tuple[float, Entry]] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._newest: dict[int, datetime] = {}
        self._last_seen_at = time.monotonic()
        self.db_ok = False
        self.last_error: str | None = None
        self.totals = WriteResult()

    # -- producer side (MQTT network thread) -------------------------------
    def submit(self, entry: Entry) -> None:
        with self._cond:
            self._buf.append((time.monotonic(), entry))
            if len(self._buf) >= self.batch_size:
                self._cond.notify()

    def submit_many(self, entries: list[Entry]) -> None:
        now = time.monotonic()
        with self._cond:
            self._buf.extend((now, e) for e in entries)
            metrics.BUFFER_DEPTH.set(len(self._buf))
            if len(self._buf) >= self.batch_size:
                self._cond.notify()

    def depth(self) -> int:
        return len(self._buf)

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="citydash-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        """Flush what is buffered (while the database answers), then return."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    # -- consumer side -----------------------------------------------------
    def _take(self) -> list[Entry] | None:
        with self._cond:
            while True:
                if self._buf:
                    if self._stopping or len(self._buf) >= self.batch_size:
                        break
                    wait = self._buf[0][0] + self.max_age_s - time.monotonic()
                    if wait <= 0:
                        break
                    self._cond.wait(wait)
                elif self._stopping:
                    return None
                else:
                    self._cond.wait(1.0)
                    if not self._buf:
                        return []  # idle: time for housekeeping
            n = min(self.batch_size, len(self._buf))
            batch = [self._buf.popleft()[1] for _ in range(n)]
            metrics.BUFFER_DEPTH.set(len(self._buf))
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                break
            if not batch:
                self._housekeeping()
                continue
            for entry in batch:
                if entry.decoded is None and entry.reason is None:
                    self.decode(entry)
            _count(batch, "received", lambda e: True)
            _count(batch, "decoded", lambda e: e.reason is None)
            if not self._commit(batch):
                break  # stopping while the database is down: leave them unacknowledged
            self._housekeeping()
        self._housekeeping(force=True)

    def _housekeeping(self, force: bool = False) -> None:
        now = time.monotonic()
        if self._newest and (force or now - self._last_seen_at >= LAST_SEEN_EVERY_S):
            try:
                self.writer.update_last_seen(self._newest)
                self._newest = {}
            except Exception as exc:  # the next round tries again
                log.warning("could not update sensors.last_seen: %s", exc)
            self._last_seen_at = now

    def _commit(self, batch: list[Entry]) -> bool:
        """Write ``batch`` durably and ack it; False when given up because stopping."""
        delay = self.backoff_min
        while True:
            started = time.perf_counter()
            try:
                result = self.writer.write(batch)
            except Exception as exc:
                if is_transient(exc):
                    self._transient(exc)
                    if self._stopping:
                        log.warning("stopping with %d messages unacknowledged; the broker "
                                    "keeps them for the next start", len(batch) + self.depth())
                        return False
                    time.sleep(delay)
                    delay = min(delay * 2, self.backoff_max)
                    continue
                return self._isolate(batch, exc)
            self._committed(batch, result, time.perf_counter() - started)
            return True

    def _transient(self, exc: Exception) -> None:
        self.db_ok = False
        self.last_error = f"{type(exc).__name__}: {exc}".strip()[:500]
        metrics.DB_ERRORS.labels(kind="transient").inc()
        log.warning("database unavailable, batch kept for retry: %s", self.last_error)
        self.writer.close()

    def _isolate(self, batch: list[Entry], exc: Exception) -> bool:
        metrics.DB_ERRORS.labels(kind="permanent").inc()
        if len(batch) == 1:
            entry = batch[0]
            entry.reason = f"database refused the message: {getattr(exc, 'sqlstate', '') or ''} " \
                           f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}".strip()
            entry.decoded = None
            log.warning("dead-lettering message on %s: %s", entry.message.topic, entry.reason)
            return self._commit(batch)
        half = len(batch) // 2
        return self._commit(batch[:half]) and self._commit(batch[half:])

    def _committed(self, batch: list[Entry], result: WriteResult, seconds: float) -> None:
        self.db_ok = True
        self.last_error = None
        metrics.COMMIT_SECONDS.observe(seconds)
        metrics.BATCH_SIZE.observe(len(batch))
        metrics.ROWS_WRITTEN.labels(table="readings").inc(result.readings)
        metrics.ROWS_WRITTEN.labels(table="vehicle_positions").inc(result.vehicles)
        metrics.DUPLICATES.inc(result.duplicates)
        self.totals.readings += result.readings
        self.totals.duplicates += result.duplicates
        self.totals.vehicles += result.vehicles
        self.totals.dead_letters += result.dead_letters
        for sid, t in result.newest.items():
            seen = self._newest.get(sid)
            if seen is None or t > seen:
                self._newest[sid] = t
        _count(batch, "written", lambda e: e.reason is None)
        _count(batch, "rejected", lambda e: e.reason is not None)
        self.ack(batch)
        self._observe_lag(batch)

    @staticmethod
    def _observe_lag(batch: list[Entry]) -> None:
        """Payload time to commit, for up to LAG_SAMPLE messages spread over the batch."""
        now = datetime.now(timezone.utc)
        step = max(1, len(batch) // LAG_SAMPLE)
        for entry in batch[::step]:
            decoded = entry.decoded
            if entry.reason is not None or decoded is None:
                continue
            times = [r.time for r in decoded.readings if not r.flags] or \
                [v.time for v in decoded.vehicles]
            if times:
                metrics.LAG_SECONDS.observe(max((now - max(times)).total_seconds(), 0.0))


def _count(batch: list[Entry], outcome: str, which: Callable[[Entry], bool]) -> None:
    """Add the entries of ``batch`` that ``which`` selects to the per-decoder message counter."""
    by_decoder: dict[str, int] = {}
    for entry in batch:
        if which(entry):
            key = entry.decoder or "none"
            by_decoder[key] = by_decoder.get(key, 0) + 1
    for decoder, n in by_decoder.items():
        metrics.MESSAGES.labels(decoder=decoder, outcome=outcome).inc(n)


def oldest_allowed(retention_days: int) -> datetime:
    return datetime.now(timezone.utc) - timedelta(days=retention_days)


__all__ = ["Pipeline", "DecodeError", "oldest_allowed"]
