"""What the workers measured, written as they go, and the results built from it.

Each worker appends one JSON array per event to its own file
(``front.jsonl``, ``gpu.jsonl``) and flushes it a few times a second, so a
run that is interrupted, or whose worker dies, keeps everything measured up
to the last flush. Events (times in seconds since the run's start, on the
monotonic clock both processes share):

    ["a", id, arrival, source, class, priority, deadline, size]  a request issued
    ["s", id, stage, enqueued, start, end(, pool)]               one stage of one request (pool: run by a fallback)
    ["b", stage, size, start, end(, pool)]                       one batch (stage n + k, pool: a fallback's)
    ["h", id, transport, bytes, sent, received]                  one message between the processes
    ["d", id, time, outcome, reason]                             a request's end
    ["q", time, {stage: depth}]                                  queue depths (live metrics)
    ["r", id, stage, time, delay]                                a retry decided (front)
    ["f", id, stage, time, reason]                               a fallback decided (front; reason: a Reason code)
    ["o", target, start, end, what]                              an injected process fault (parent, faults.jsonl)

A GPU-side worker started afresh after a kill writes ``gpu-<k>.jsonl``.

``assemble`` turns the events of one run into the simulator's per-request
table (``sim.metrics.records.request_frame``, the very same columns) and a
``ResourceUsage`` keyed as the simulator keys it: every pool of the
scenario (utilisation = batch busy time / window, one server per process;
mean queue = time-integral of waiting jobs / window; a pool no stage runs
on is idle), batch size per stage, and every link of the scenario by its
name. A message between the processes is the hop the simulator sends over
a link: the k-th message of a request is the k-th time its path (the
pipeline, or with branches and per-class entries the stages it visited) crosses between the two processes, the front standing in for the
client, and it goes over the scenario's link between those two pools (the
channel policy picks among several, as in the simulator). A link's
utilisation is the time its busiest direction had a message in flight, and
its throughput the bytes both directions delivered, per second of window.
Links the harness does not exercise (client links the front stands in for,
links between pools of one process) are not measured: NaN, written null.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Optional

import numpy as np

from hil.runner.layout import FRONT, Layout
from hil.runner.station import channel_policy
from sim.metrics.usage import ResourceUsage
from sim.scenario.schema import CLIENT


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


def log_name(side: str, generation: int = 0) -> str:
    """The event file (without .jsonl) of ``side``'s worker; a fresh GPU-side worker after a kill gets its own."""
    return side if generation == 0 else f"{side}-{generation}"


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
    for rid, stage, enqueued, start, end_, *pool in events["s"]:
        if rid in row:
            k = row[rid]
            times["enqueued"][k, stage], times["start"][k, stage], times["end"][k, stage] = enqueued, start, end_
            device[k, stage] = names.index(f"{pool[0] if pool else layout.stages[stage].pool}[0]")
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
    measured = usage(events, layout, layout.scenario.run.warmup, end)
    if layout.resilience is not None or layout.faults:
        measured = replace(measured, resilience=resilience_record(events, columns[:, 0].astype(np.int64), end))
    return frame, measured, failures


def resilience_record(events: dict[str, list], ids: np.ndarray, end: float):
    """Outages, retries and fallback reasons as the simulator records them (sim.metrics.resilience)."""
    from sim.metrics.resilience import ResilienceRecord

    size = int(ids.max()) + 1 if len(ids) else 0
    retries = np.zeros(size, np.int64)
    fallback = np.zeros(size, np.int64)
    for rid, *_ in events["r"]:
        if rid < size:
            retries[rid] += 1
    for rid, _, _, reason in events["f"]:
        if rid < size and fallback[rid] == 0:
            fallback[rid] = reason
    outages = tuple((target, start, math.inf if stop is None else stop) for target, start, stop, *_ in events["o"])
    return ResilienceRecord(outages, retries, fallback)


def usage(events: dict[str, list], layout: Layout, start: float, end: float) -> ResourceUsage:
    window = max(end - start, 1e-9)

    def overlap(a: float, b: float) -> float:
        return max(0.0, min(b, end) - max(a, start))

    pools = list(layout.plan.pools)  # every pool, as the simulator reports them
    busy = dict.fromkeys(pools, 0.0)
    queue = dict.fromkeys(pools, 0.0)
    batches: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for stage, size, t0, t1, *pool in events["b"]:
        if pool:  # a fallback's batch: its pool was busy
            busy[pool[0]] += overlap(t0, t1)
            continue
        s = layout.stages[stage]
        busy[s.pool] += overlap(t0, t1)
        if start <= t0 < end:
            batches[s.name][0] += 1
            batches[s.name][1] += size
    for _, stage, enqueued, t0, _, *pool in events["s"]:
        queue[pool[0] if pool else layout.stages[stage].pool] += overlap(enqueued, t0)
    crossings = _crossings(layout)
    paths: dict[int, list] = {}
    if layout.plan.branched:  # requests take different paths: each crosses where its own path does
        visits: dict[int, list] = defaultdict(list)
        for rid, stage, _, t0, _, *pool in events["s"]:
            visits[rid].append((t0, FRONT if pool else layout.stages[stage].side,
                                pool[0] if pool else layout.stages[stage].pool))
        paths = {rid: _crossings(layout, [(side, p) for _, side, p in sorted(v)]) for rid, v in visits.items()}
    measured = {link.name for path in [crossings, *paths.values()] for a, b in path
                for link in layout.plan.links_between(a, b)}
    messages: dict[int, list] = defaultdict(list)
    for rid, _, nbytes, sent, received in events["h"]:
        messages[rid].append((sent, received, nbytes))
    hops: dict[str, dict[tuple, list]] = {name: defaultdict(list) for name in measured}
    choose = channel_policy(layout).choose
    for rid in sorted(messages):
        path = paths.get(rid, crossings)
        for k, (sent, received, nbytes) in enumerate(sorted(messages[rid])):
            a, b = path[min(k, len(path) - 1)]
            links = layout.plan.links_between(a, b)
            if not links:
                continue  # a client hop with no client link declared: the simulator has none either
            kind = choose(nbytes, [link.kind for link in links]) if len(links) > 1 else links[0].kind
            name = next(link.name for link in links if link.kind == kind)
            hops[name][a, b].append((sent, received, nbytes))
    nan = math.nan
    return ResourceUsage(
        window=window,
        pool_utilisation={p: b / window for p, b in busy.items()},
        pool_queue={p: q / window for p, q in queue.items()},
        link_utilisation={link.name: max((_union(sorted((a, b) for a, b, _ in h), overlap)
                                          for h in hops[link.name].values()), default=0.0) / window
                          if link.name in measured else nan for link in layout.plan.links},
        link_throughput={link.name: sum(n for h in hops[link.name].values() for _, b, n in h if start <= b < end)
                         / window if link.name in measured else nan for link in layout.plan.links},
        stage_batch={name: jobs / count for name, (count, jobs) in batches.items() if count},
    )


def _crossings(layout: Layout, visited: Optional[list[tuple[str, str]]] = None) -> list[tuple[str, str]]:
    """(from pool, to pool) each time the pipeline (or one request's ``visited`` (side, pool) in order) passes
    between the processes, in order; the front is the client."""
    out, side, pool = [], FRONT, CLIENT
    for here, there in visited if visited is not None else [(s.side, s.pool) for s in layout.stages]:
        if here != side:
            out.append((pool, there))
        side, pool = here, there
    if side != FRONT:
        out.append((pool, CLIENT))
    return out or [(CLIENT, CLIENT)]


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
