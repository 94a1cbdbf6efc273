"""Load generation, after MLPerf LoadGen's scenarios.

- ``single-stream``: closed loop; the next request is issued when the
  previous one has left the pipeline (completed, filtered, dropped, failed).
  Closed-loop request i carries the source, class, priority, payload and
  relative deadline of the scenario's i-th arrival (cycled), so every
  class is exercised in the scenario's proportions (``Mix``).
- ``server``: Poisson arrivals at ``--rate``, drawn by ``sim.workload`` from
  the run's seed: the same sequence the simulator draws for a scenario whose
  only source is that Poisson source (it keeps the first source's name,
  class, deadline and payload, and the resolved scenario written with the
  results says so).
- ``offline``: maximum throughput. LoadGen issues every sample in one query;
  here a backlog of ``window`` outstanding requests is kept full, which is
  the same load with bounded memory. Latencies are queueing times of the
  backlog, not service latencies: read the throughput.
- ``scenario``: the scenario's own sources (periodic cameras with jitter,
  Poisson, MMPP, traces), drawn by ``sim.workload`` as in simulation.
  ``--scale F`` scales them down for a smaller machine by rewriting the
  sources: periodic ``streams`` (rounded, at least 1), Poisson/gamma
  ``rate``, MMPP ``rates`` multiplied by F, a trace replayed F times as
  fast. The rewritten workload is part of the resolved scenario, so
  ``dgsim run`` on it draws exactly the arrivals that were measured.

A run lasts until both the duration and ``--min-requests`` measured
requests (arriving after the warm-up) are reached: scheduled modes lengthen
the duration before drawing; closed-loop modes keep issuing until both hold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from sim.registry import Registry
from sim.scenario.schema import Scenario, Workload
from sim.units import format_rate
from sim.workload import Arrivals, generate_arrivals

MODES = ("single-stream", "server", "offline", "scenario")
SCHEDULED = ("server", "scenario")

Issue = tuple  # (id, arrival, source, class, priority, size, deadline): one request to issue


def prepare(scenario: Scenario, mode: str, rate: Optional[float], scale: float, min_requests: int,
            base_dir: Path) -> tuple[Scenario, list[str]]:
    """The scenario as it will be measured in ``mode``, and notes on what changed."""
    notes: list[str] = []
    sources = list(scenario.workload.sources)
    if mode == "server":
        first = sources[0].model_dump(by_alias=True)
        poisson = {k: first[k] for k in ("name", "class", "priority", "deadline", "payload")}
        sources = [_poisson(poisson, rate)]
        notes.append(f"server: Poisson arrivals at {rate:g}/s (source '{poisson['name']}')")
    elif mode == "scenario" and scale != 1.0:
        sources = [_scaled(s, scale, notes) for s in sources]
    elif mode in ("single-stream", "offline"):
        notes.append(f"{mode}: closed loop; request i takes the source, class, priority, payload and relative "
                     f"deadline of the scenario's i-th arrival (cycled)")
    scenario = scenario.model_copy(update={"workload": Workload(sources=sources)})
    if mode in SCHEDULED:
        scenario = _long_enough(scenario, min_requests, base_dir, notes)
    return scenario, notes


def _poisson(fields: dict, rate: float):
    from sim.scenario.schema import PoissonSource

    return PoissonSource.model_validate({**{k: v for k, v in fields.items() if v is not None}, "kind": "poisson",
                                         "rate": format_rate(rate)})


SCALERS: Registry = Registry("workload source kind")
"""How ``--scale F`` rewrites each kind of source: (source, F, notes) -> the scaled source."""


@SCALERS.register("periodic")
def _scale_periodic(source, f: float, notes: list[str]):
    streams = max(1, round(source.streams * f))
    notes.append(f"scale {f:g}: source '{source.name}' {source.streams} -> {streams} streams")
    return source.model_copy(update={"streams": streams})


@SCALERS.register("poisson")
@SCALERS.register("gamma")
def _scale_rate(source, f: float, notes: list[str]):
    notes.append(f"scale {f:g}: source '{source.name}' rate {source.rate:g}/s -> {source.rate * f:g}/s")
    return source.model_copy(update={"rate": source.rate * f})


@SCALERS.register("mmpp")
def _scale_mmpp(source, f: float, notes: list[str]):
    notes.append(f"scale {f:g}: source '{source.name}' rates x {f:g}")
    return source.model_copy(update={"rates": [r * f for r in source.rates]})


@SCALERS.register("trace")
def _scale_trace(source, f: float, notes: list[str]):
    notes.append(f"scale {f:g}: trace '{source.name}' replayed at speed x {source.speedup * f:g}")
    return source.model_copy(update={"speedup": source.speedup * f})


def _scaled(source, f: float, notes: list[str]):
    return SCALERS[source.kind](source, f, notes)


def _long_enough(scenario: Scenario, min_requests: int, base_dir: Path, notes: list[str]) -> Scenario:
    """Lengthen run.duration until every replication has ``min_requests`` arrivals after the warm-up."""
    run = scenario.run
    duration = run.duration
    for _ in range(30):
        counts = [_measured(scenario.workload, duration, run, r, base_dir) for r in range(run.replications)]
        if min(counts) >= min_requests:
            break
        longer = run.warmup + (duration - run.warmup) * max(1.25, 1.05 * min_requests / max(min(counts), 1))
        duration = math.ceil(longer * 10) / 10  # tenths: written and read back exactly in the resolved scenario
    if duration != run.duration:
        notes.append(f"duration {run.duration:g} s -> {duration:.1f} s to reach {min_requests} measured requests")
        scenario = scenario.model_copy(update={"run": run.model_copy(update={"duration": duration})})
    return scenario


def _measured(workload: Workload, duration: float, run, replication: int, base_dir: Path) -> int:
    arrivals = generate_arrivals(workload, duration, run.seed, replication, base_dir)
    return int(np.count_nonzero(arrivals.time >= run.warmup))


@dataclass
class Scheduled:
    """Requests at times drawn before the run (server and scenario modes)."""

    arrivals: Arrivals
    duration: float
    next: int = 0
    end: Optional[float] = None  # set when issuing stops

    def due(self, now: float, outstanding: int) -> list[Issue]:
        a, out = self.arrivals, []
        while self.next < len(a) and a.time[self.next] <= now:
            i = self.next
            source, klass, priority, time, deadline, size = a.request(i)
            out.append((i, time, source, klass, priority, size, deadline))
            self.next += 1
        if self.next == len(a) and now >= self.duration and self.end is None:
            self.end = self.duration
        return out

    def next_time(self) -> float:
        return float(self.arrivals.time[self.next]) if self.next < len(self.arrivals) else self.duration

    def stop(self, now: float) -> None:
        self.next, self.end = len(self.arrivals), min(now, self.duration)


@dataclass(frozen=True)
class Mix:
    """What closed-loop requests carry: request i takes the i-th (cycled) of these, which are the
    scenario's own arrivals in order, so every class is issued in the scenario's proportions."""

    source: np.ndarray
    klass: np.ndarray
    priority: np.ndarray
    size: np.ndarray
    deadline: np.ndarray  # relative; inf where the source sets none

    @classmethod
    def of(cls, arrivals: Arrivals, first) -> "Mix":
        if len(arrivals) == 0:  # no arrival drawn (a very short run): the first source's fields
            deadline = first.deadline if first.deadline is not None else math.inf
            return cls(np.zeros(1, np.int64), np.zeros(1, np.int64), np.array([first.priority]),
                       np.array([float(first.payload)]), np.array([deadline]))
        return cls(arrivals.source, arrivals.klass, arrivals.priority, arrivals.size,
                   arrivals.deadline - arrivals.time)

    def __call__(self, i: int, now: float) -> Issue:
        k = i % len(self.source)
        return (i, now, int(self.source[k]), int(self.klass[k]), int(self.priority[k]), float(self.size[k]),
                now + float(self.deadline[k]))


@dataclass
class ClosedLoop:
    """Keep ``window`` requests outstanding (1: single-stream; more: offline)."""

    window: int
    duration: float
    warmup: float
    min_requests: int
    mix: Mix
    issued: int = 0
    measured: int = 0
    end: Optional[float] = None

    def due(self, now: float, outstanding: int) -> list[Issue]:
        if self.end is not None:
            return []
        if now >= self.duration and self.measured >= self.min_requests:
            self.end = now
            return []
        out = []
        for i in range(self.issued, self.issued + max(0, self.window - outstanding)):
            out.append(self.mix(i, now))
            self.measured += int(now >= self.warmup)
        self.issued += len(out)
        return out

    def next_time(self) -> float:
        return math.inf

    def stop(self, now: float) -> None:
        if self.end is None:
            self.end = now


def make_load(scenario: Scenario, mode: str, replication: int, min_requests: int, window: int, base_dir: Path):
    """The load generator of one replication (picklable: it travels to the front process)."""
    run = scenario.run
    arrivals = generate_arrivals(scenario.workload, run.duration, run.seed, replication, base_dir)
    if mode in SCHEDULED:
        return Scheduled(arrivals, run.duration)
    return ClosedLoop(1 if mode == "single-stream" else window, run.duration, run.warmup, min_requests,
                      Mix.of(arrivals, scenario.workload.sources[0]))
