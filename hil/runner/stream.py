"""What the workers measured, written as they go, and the results built from it.

Each worker appends one JSON array per event to its own file
(``front.jsonl``, ``gpu.jsonl``) and flushes it a few times a second, so a
run that is interrupted, or whose worker dies, keeps everything measured up
to the last flush. Events (times in seconds since the run's start, on the
monotonic clock both processes share):

    ["a", id, arrival, source, class, priority, deadline, size]  a request issued
    ["s", id, stage, enqueued, start, end]                       one stage of one request
    ["b", stage, size, start, end]                               one batch
    ["h", id, transport, bytes, sent, received]                  one message between the processes
    ["d", id, time, outcome, reason]                             a request's end
    ["q", time, {stage: depth}]                                  queue depths (live metrics)

``assemble`` turns the events of one run into the simulator's per-request
table (``sim.metrics.records.request_frame``, the very same columns) and a
``ResourceUsage``: pool utilisation = batch busy time / window (one server
per process), mean queue = time-integral of waiting jobs / window, batch
size per stage, and per transport the bytes moved and the fraction of time
a message was in flight.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Optional

import numpy as np

from hil.runner.layout import Layout
from sim.metrics.usage import ResourceUsage


class EventLog:
    """Append-only JSON-lines file of one worker, flushed every ``period`` seconds."""

    def __init__(self, path: Path, period: float = 0.2):
        self.file = open(path, "w", encoding="utf-8")
        self.buffer: list[str] = []
        self.period = period
        self.flushed = -math.inf

    def add(self, *event) -> None:
        self.buffer.append(json.dumps(event))

    def due(self, now: float) -> bool:
        return now - self.flushed >= self.period

    def flush(self, now: float = 0.0) -> None:
        if self.buffer:
            self.file.write("\n".join(self.buffer) + "\n")
            self.file.flush()
            self.buffer.clear()
        self.flushed = now

    def close(self) -> None:
        self.flush()
        self.file.close()


def read_events(folder: Path) -> dict[str, list]:
    """Every event in ``folder``'s stream files by type (a torn last line is skipped)."""
    events: dict[str, list] = defaultdict(list)
    for path in sorted(folder.glob("*.jsonl")):
        with open(path, encoding="utf-8") as file:
            for line in file:
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    continue
                events[event[0]].append(event[1:])
    return events


def assemble(events: dict[str, list], layout: Layout, replication: int, end: float,
             lost: Optional[str] = None) -> tuple:
    """The request table, usage and failures of one run; ``lost``: why unanswered requests failed."""
    from sim.metrics.records import (
        request_frame,  # pandas: not needed by the workers, which log only
    )

    arrivals = sorted(events["a"])
    row = {a[0]: k for k, a in enumerate(arrivals)}
    n, width = len(arrivals), len(layout.stages)
    columns = np.array(arrivals, dtype=float).reshape(n, 7)
    times = {k: np.full((n, width), np.nan) for k in ("enqueued", "start", "end")}
    device = np.full((n, width), -1, np.int64)
    names = layout.device_names
    for rid, stage, enqueued, start, end_ in events["s"]:
        if rid in row:
            k = row[rid]
            times["enqueued"][k, stage], times["start"][k, stage], times["end"][k, stage] = enqueued, start, end_
            device[k, stage] = names.index(f"{layout.stages[stage].pool}[0]")
    done = np.full(n, np.nan)
    outcome = ["failed" if lost else "unfinished"] * n
    failures = []
    for rid, t, result, reason in events["d"]:
        if rid in row:
            done[row[rid]], outcome[row[rid]] = t, result
            if result == "failed":
                failures.append({"replication": replication, "id": rid, "reason": reason})
    if lost:
        failures += [{"replication": replication, "id": int(columns[k, 0]), "reason": lost}
                     for k in range(n) if np.isnan(done[k])]
    workload = layout.scenario.workload.sources
    frame = request_frame(
        replication=replication, ids=columns[:, 0].astype(np.int64), source=columns[:, 2].astype(np.int64),
        klass=columns[:, 3].astype(np.int64), priority=columns[:, 4], arrival=columns[:, 1],
        deadline=columns[:, 5], size=columns[:, 6], done=done, outcome=outcome,
        source_names=[s.name for s in workload], class_names=list(dict.fromkeys(s.class_ for s in workload)),
        stage_names=[s.name for s in layout.stages], enqueued=times["enqueued"], start=times["start"],
        end=times["end"], device=device, device_names=names,
    )
    return frame, usage(events, layout, layout.scenario.run.warmup, end), failures


def usage(events: dict[str, list], layout: Layout, start: float, end: float) -> ResourceUsage:
    window = max(end - start, 1e-9)

    def overlap(a: float, b: float) -> float:
        return max(0.0, min(b, end) - max(a, start))

    pools = {s.pool for s in layout.stages}
    busy = dict.fromkeys(pools, 0.0)
    queue = dict.fromkeys(pools, 0.0)
    batches: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for stage, size, t0, t1 in events["b"]:
        s = layout.stages[stage]
        busy[s.pool] += overlap(t0, t1)
        if start <= t0 < end:
            batches[s.name][0] += 1
            batches[s.name][1] += size
    for _, stage, enqueued, t0, _ in events["s"]:
        queue[layout.stages[stage].pool] += overlap(enqueued, t0)
    hops: dict[str, list] = defaultdict(list)
    for _, kind, nbytes, sent, received in events["h"]:
        hops[kind].append((sent, received, nbytes))
    return ResourceUsage(
        window=window,
        pool_utilisation={p: b / window for p, b in busy.items()},
        pool_queue={p: q / window for p, q in queue.items()},
        link_utilisation={k: _union(sorted((a, b) for a, b, _ in h), overlap) / window for k, h in hops.items()},
        link_throughput={k: sum(n for _, b, n in h if start <= b < end) / window for k, h in hops.items()},
        stage_batch={name: jobs / count for name, (count, jobs) in batches.items() if count},
    )


def _union(intervals: list[tuple[float, float]], overlap) -> float:
    """Time covered by the union of sorted intervals, inside the window."""
    total, lo, hi = 0.0, -math.inf, -math.inf
    for a, b in intervals:
        if a > hi:
            total += overlap(lo, hi) if hi > lo else 0.0
            lo, hi = a, b
        else:
            hi = max(hi, b)
    return total + (overlap(lo, hi) if hi > lo else 0.0)
