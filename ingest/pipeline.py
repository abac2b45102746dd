"""The batching loop between the MQTT client and the database.

Modelled on Telegraf's agent flush loop and PostgreSQL output:

* messages are buffered as they arrive and flushed when the batch is full,
  when its oldest message is ``batch_max_age_ms`` old, and on shutdown;
* a message is acknowledged only after the transaction holding its rows (or
  its dead-letter row) has committed, so a crash anywhere loses nothing;
* errors are classified by SQLSTATE as Telegraf's PostgreSQL output does
  (:mod:`core.dberrors`). While the database is *unavailable* (no connection,
  shutting down) the batch is kept and retried with backoff, without bound:
  acks stop, and since the broker never has more than Receive Maximum
  messages unacknowledged with us, memory stays bounded and the broker holds
  the rest. Other *transient* errors (deadlock, insufficient resources, ...)
  are retried ``CITYDASH_DB_RETRY_MAX`` times with backoff and then treated
  as permanent for that batch;
* permanent errors are isolated by bisecting the batch: only the entries
  that fail alone are dead-lettered, with the database's reason (and, past
  the retry bound, how long it was retried);
* a flush that has not committed after ``CITYDASH_FLUSH_STUCK_WARN_S`` is
  logged as a warning, and again at that interval, as Telegraf's agent logs
  a flush that "did not complete within its flush interval".
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from datetime import datetime, timedelta, timezone
from typing import Callable

from core.dberrors import PERMANENT, TRANSIENT, UNAVAILABLE, classify, describe
from core.settings import Settings
from ingest import metrics
from ingest.decoders.base import DecodeError
from ingest.writer import BatchWriter, Entry, WriteResult

log = logging.getLogger(__name__)

LAST_SEEN_EVERY_S = 10.0
DB_PING_EVERY_S = 10.0  # when idle, the connection is checked this often (citydash_ingest_db_up)
LAG_SAMPLE = 200  # messages per batch whose lag is observed


class Pipeline:
    """Batches, writes, retries and acks; sizes and bounds come from ``settings``
    (``batch_size``, ``batch_max_age_ms``, ``db_retry_max``, ``flush_stuck_warn_s``)."""

    def __init__(self, writer: BatchWriter, decode: Callable, ack: Callable[[list[Entry]], None],
                 settings: Settings, backoff: tuple[float, float] = (0.2, 15.0)):
        self.writer = writer
        self.decode = decode  # decode(entry) -> None; sets entry.decoded or entry.reason
        self.ack = ack
        self.batch_size = settings.batch_size
        self.max_age_s = settings.batch_max_age_ms / 1000
        self.retry_max = settings.db_retry_max
        self.stuck_warn_s = settings.flush_stuck_warn_s
        self.backoff_min, self.backoff_max = backoff
        self._buf: deque[tuple[float, Entry]] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._newest: dict[int, datetime] = {}
        self._last_seen_at = time.monotonic()
        self._db_seen_at = float("-inf")  # last time the database answered
        self._flush_started: float | None = None  # monotonic start of the flush in progress
        self._flush_size = 0
        self._watch_thread: threading.Thread | None = None
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
        self._watch_thread = threading.Thread(target=self._watch_flush, name="citydash-flush-watch",
                                              daemon=True)
        self._watch_thread.start()

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
        self._ping()
        while True:
            batch = self._take()
            if batch is None:
                break
            if not batch:
                self._housekeeping(idle=True)
                continue
            for entry in batch:
                if entry.decoded is None and entry.reason is None:
                    self.decode(entry)
            _count(batch, "received", lambda e: True)
            _count(batch, "decoded", lambda e: e.reason is None)
            self._flush_size, self._flush_started = len(batch), time.monotonic()
            try:
                if not self._commit(batch):
                    break  # stopping while the database is down: leave them unacknowledged
            finally:
                self._flush_started = None
            self._housekeeping()
        self._housekeeping(force=True)

    def _watch_flush(self) -> None:
        """Warn while a flush is stuck (Telegraf: "did not complete within its flush interval")."""
        warned_at = float("-inf")
        while self._thread is not None and self._thread.is_alive():
            time.sleep(min(1.0, self.stuck_warn_s / 4))
            started = self._flush_started
            now = time.monotonic()
            if started is None or now - started < self.stuck_warn_s:
                warned_at = float("-inf")
                continue
            if now - warned_at >= self.stuck_warn_s:
                warned_at = now
                metrics.STUCK_FLUSHES.inc()
                log.warning("flush of %d messages did not complete within %.0f s (running for "
                            "%.0f s, %d more buffered, acks held back); last database error: %s",
                            self._flush_size, self.stuck_warn_s, now - started, self.depth(),
                            self.last_error or "none (still waiting for the database)")

    def _ping(self) -> None:
        """Check the connection (sets citydash_ingest_db_up); failures only count as down."""
        try:
            self.writer.ping()
            self._db_seen_at = time.monotonic()
        except Exception as exc:  # the next write retries and reports
            log.debug("database ping failed: %s", exc)

    def _housekeeping(self, force: bool = False, idle: bool = False) -> None:
        now = time.monotonic()
        if idle and now - self._db_seen_at >= DB_PING_EVERY_S:
            self._ping()
        if self._newest and (force or now - self._last_seen_at >= LAST_SEEN_EVERY_S):
            try:
                self.writer.update_last_seen(self._newest)
                self._newest = {}
            except Exception as exc:  # the next round tries again
                log.warning("could not update sensors.last_seen: %s", exc)
            self._last_seen_at = now

    def _commit(self, batch: list[Entry], exhausted: tuple[int, float] | None = None) -> bool:
        """Write ``batch`` durably and ack it; False when given up because stopping.

        Transient errors are retried ``retry_max`` times before the batch is bisected;
        ``exhausted`` (retries, seconds) marks a part of a batch that used them up: it is
        not retried again, only bisected further."""
        delay = self.backoff_min
        attempts = 0
        first_failure = None
        while True:
            started = time.perf_counter()
            try:
                result = self.writer.write(batch)
            except Exception as exc:
                kind = classify(exc)
                metrics.DB_ERRORS.labels(kind=kind).inc()
                self.db_ok = False
                self.last_error = describe(exc)[:500]
                first_failure = first_failure or time.monotonic()
                if kind == PERMANENT and len(batch) == 1 and batch[0].decoded is None:
                    # Even its dead letter is refused: keep it (unacknowledged) and retry.
                    log.error("cannot store the dead letter of a message on %s (%s); retrying",
                              _topic(batch[0]), self.last_error)
                    kind = UNAVAILABLE
                retry = exhausted is None and attempts < self.retry_max
                if kind == UNAVAILABLE or (kind == TRANSIENT and retry):
                    if kind == UNAVAILABLE:
                        log.warning("database unavailable, batch of %d kept for retry in %.1f s: "
                                    "%s", len(batch), delay, self.last_error)
                        self.writer.close()
                        metrics.DB_UP.set(0)
                    else:
                        attempts += 1
                        log.warning("transient database error, batch of %d kept for retry %d of "
                                    "%d in %.1f s: %s", len(batch), attempts, self.retry_max,
                                    delay, self.last_error)
                    if self._pause(delay):
                        log.warning("stopping with %d messages unacknowledged; the broker "
                                    "keeps them for the next start", len(batch) + self.depth())
                        return False
                    delay = min(delay * 2, self.backoff_max)
                    continue
                if kind == TRANSIENT and exhausted is None:
                    exhausted = (attempts, time.monotonic() - first_failure)
                    log.warning("transient database error persisted after %d retries over %.0f "
                                "s; bisecting the batch of %d to dead-letter only what still "
                                "fails: %s", exhausted[0], exhausted[1], len(batch),
                                self.last_error)
                return self._isolate(batch, exc, exhausted if kind == TRANSIENT else None)
            self._committed(batch, result, time.perf_counter() - started)
            return True

    def _pause(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless stopping; True when stopping."""
        with self._cond:
            self._cond.wait_for(lambda: self._stopping, seconds)
            return self._stopping

    def _isolate(self, batch: list[Entry], exc: Exception,
                 gave_up: tuple[int, float] | None = None) -> bool:
        """Bisect ``batch`` until the entries that fail alone are found; dead-letter those."""
        if len(batch) == 1:
            entry = batch[0]
            if gave_up is None:
                entry.reason = f"database refused the message: {describe(exc)}"
            else:
                attempts, seconds = gave_up
                entry.reason = (f"database error persisted after {attempts} retries over "
                                f"{seconds:.0f} s (CITYDASH_DB_RETRY_MAX): {describe(exc)}")
            entry.decoded = None
            log.warning("dead-lettering message on %s (%d bytes): %s", _topic(entry),
                        len(entry.message.payload), entry.reason)
            return self._commit(batch)
        half = len(batch) // 2
        return self._commit(batch[:half], gave_up) and self._commit(batch[half:], gave_up)

    def _committed(self, batch: list[Entry], result: WriteResult, seconds: float) -> None:
        self.db_ok = True
        self.last_error = None
        self._db_seen_at = time.monotonic()
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


def _topic(entry: Entry) -> str:
    return entry.message.topic


def oldest_allowed(retention_days: int) -> datetime:
    return datetime.now(timezone.utc) - timedelta(days=retention_days)


__all__ = ["Pipeline", "DecodeError", "oldest_allowed"]
