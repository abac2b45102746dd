"""History in bulk, through the ingestor's own writer.

:func:`backfill` walks ``(start, end]`` in windows of simulated time, turns
the reports of :meth:`World.due` and the vehicle positions into decoded
entries and hands them to :class:`ingest.writer.BatchWriter` (binary COPY,
``INSERT ... ON CONFLICT DO NOTHING``, the rollup bookkeeping of every
batch), ``batch_rows`` rows per transaction.  Running it twice over the same
window adds nothing.  A tqdm bar shows rows and rows/s.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from queue import Full, Queue

from tqdm import tqdm

from ingest.decoders.base import Decoded, Message, Reading, SensorInfo, VehiclePosition
from ingest.writer import BatchWriter, Entry

UTC = timezone.utc
TOPIC = "simulate/backfill"


@dataclass(slots=True)
class BackfillResult:
    readings: int = 0  # rows inserted
    vehicles: int = 0
    duplicates: int = 0  # rows already there
    offered: int = 0  # reading rows handed to the writer
    seconds: float = 0.0

    @property
    def rows_per_s(self) -> float:
        return (self.offered + self.vehicles) / self.seconds if self.seconds else 0.0


def sensor_infos(world) -> list[SensorInfo]:
    c = world.city
    return [SensorInfo(c.ids[i], c.kinds[i], c.domains[i], None, float(c.lon[i]), float(c.lat[i]))
            for i in world.sensors.tolist()]


def _readings(world, batches, out: list) -> int:
    ids = world.city.ids
    metrics = world.city.metrics
    append = out.append
    n = 0
    for batch in batches:
        names = list(batch.values)
        columns = [batch.values[m].tolist() for m in names]
        stamps = {}
        for j, (i, t) in enumerate(zip(batch.idx.tolist(), batch.t.tolist())):
            when = stamps.get(t)
            if when is None:
                when = stamps[t] = datetime.fromtimestamp(round(t, 3), UTC)
            sensor, listed = ids[i], metrics[i]
            for m, col in zip(names, columns):
                if m in listed:
                    append(Reading(sensor, m, when, col[j]))
                    n += 1
    return n


def _vehicles(positions) -> list[VehiclePosition]:
    return [VehiclePosition(datetime.fromtimestamp(p.time, UTC), p.vehicle, p.lon, p.lat, p.route,
                            p.trip, p.speed_kmh, p.bearing, p.delay_s, p.occupancy_pct)
            for p in positions]


def chunks(world, start: float, end: float, window_s: float = 300.0, batch_rows: int = 50_000):
    """Yield (readings, vehicle positions) of ``(start, end]`` in chunks of about ``batch_rows``."""
    pending: list[Reading] = []
    vehicles: list[VehiclePosition] = []
    t0 = start
    while t0 < end:
        t1 = min(t0 + window_s, end)
        _readings(world, world.due(t0, t1), pending)
        vehicles.extend(_vehicles(world.vehicles_due(t0, t1)))
        if len(pending) + len(vehicles) >= batch_rows:
            yield pending, vehicles
            pending, vehicles = [], []
        t0 = t1
    if pending or vehicles:
        yield pending, vehicles


def backfill(world, url: str, start: float, end: float, *, window_s: float = 300.0,
             batch_rows: int = 50_000, progress: bool = True,
             writer: BatchWriter | None = None) -> BackfillResult:
    """Write the simulated history of ``(start, end]`` (UTC epoch seconds) to ``url``.

    A producer thread computes the next chunk while the database stores the
    previous one (the writer waits on the socket without holding the GIL)."""
    result = BackfillResult()
    if end <= start:
        return result
    own = writer is None
    writer = writer or BatchWriter(url)
    began = time.perf_counter()
    expected = int((end - start) * sum(len(world.city.metrics[i]) for i in world.sensors.tolist())
                   / world.interval)
    bar = tqdm(total=expected, unit="rows", unit_scale=True, disable=not progress,
               desc="backfill", mininterval=0.5)
    queue: Queue = Queue(maxsize=2)
    stop = threading.Event()

    def produce():
        try:
            for chunk in chunks(world, start, end, window_s, batch_rows):
                while not stop.is_set():
                    try:
                        queue.put(chunk, timeout=0.2)
                        break
                    except Full:
                        continue
                if stop.is_set():
                    return
            queue.put(None)
        except BaseException as exc:  # handed to the writing side
            queue.put(exc)

    producer = threading.Thread(target=produce, name="backfill-producer", daemon=True)
    producer.start()
    infos = sensor_infos(world)
    try:
        while True:
            item = queue.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            readings, vehicles = item
            entry = Entry(0, 0, 0, Message(TOPIC, b"", datetime.now(UTC)),
                          decoded=Decoded(readings=readings, vehicles=vehicles, sensors=infos))
            res = writer.write([entry])
            infos = []
            result.readings += res.readings
            result.duplicates += res.duplicates
            result.vehicles += res.vehicles
            result.offered += len(readings)
            bar.update(len(readings))
    finally:
        stop.set()
        producer.join(5)
        bar.close()
        if own:
            writer.close()
    result.seconds = time.perf_counter() - began
    return result
