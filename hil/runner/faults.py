"""Faults injected for real, and how the GPU side's health is known.

A scenario declares faults two ways, both resolved here into ``Fault``s on
the run's clock:

- ``failures:`` entries the harness can reproduce: a ``gpu`` pool or one of
  its devices down at ``at`` for ``for`` is the GPU-side worker process
  killed (SIGKILL, then a fresh worker started after ``for``) or hung
  (SIGSTOP, then SIGCONT after ``for``), as ``hil.gpu_failure`` says; a
  link between a front pool and a gpu pool down is every message between
  the two processes dropped for that time;
- ``hil.faults``: harness-only kinds: ``kill`` and ``hang`` as above,
  ``drop`` (lose messages in one direction or both, with a probability),
  ``delay`` (hold each message back before sending it), ``raise`` (a
  stage's op raises instead of running).

Random failures (MTBF/MTTR), failures of the front's own pools and links
the processes do not use are refused up front: the harness has one process
per side and the front must survive to measure.

Process faults are the parent's to do (``Injector``, from the supervision
loop); message and raise faults are checked by the workers themselves
(``WorkerFaults``) when they send or run a batch. Nobody tells the front
that a fault was injected: it learns that the GPU side is down the way a
DPU would, from the process's death or from its heartbeat going silent
for ``HEARTBEAT_TIMEOUT`` (``Health``), and that it is back when the
heartbeat returns.
"""

from __future__ import annotations

import math
import os
import signal
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

HEARTBEAT = 0.05  # s between the GPU side's heartbeats
HEARTBEAT_TIMEOUT = 0.5  # s of silence after which the GPU side counts as down (a batch never takes this long here)
PROCESS_KINDS = ("kill", "hang")
DIRECTIONS = {"to-gpu": ("to-gpu",), "to-front": ("to-front",), "both": ("to-gpu", "to-front")}


@dataclass(frozen=True)
class Fault:
    """One fault on the run's clock: active in [at, until)."""

    kind: str  # kill, hang, drop, delay, raise
    at: float
    until: float  # inf: never recovers in this run
    source: str  # where it was declared: "failures[0]" or "hil.faults[1]"
    target: str = "gpu"  # what it hits, in words (results: outages)
    directions: tuple[str, ...] = ()
    probability: float = 1.0
    delay: float = 0.0
    stage: int = -1

    def active(self, now: float) -> bool:
        return self.at <= now < self.until


def resolve_faults(scenario, plan, stage_index: dict[str, int], side_of_pool: dict[str, str],
                   problem: Callable[[str, str], None]) -> tuple[Fault, ...]:
    """The scenario's failures and hil.faults as ``Fault``s; every one it cannot inject is a problem."""
    settings = scenario.hil
    faults: list[Fault] = []
    for i, failure in enumerate(scenario.failures):
        path = f"failures[{i}]"
        if failure.at is None:
            problem(f"{path}.mtbf", "the harness injects scheduled failures only (at/for); simulate MTBF/MTTR "
                                    "failures with 'dgsim run'")
            continue
        until = failure.at + failure.for_
        target = failure.target
        pool = target.split("[")[0]
        if pool in plan.pools:
            if side_of_pool.get(pool) != "gpu":
                problem(f"{path}.target", f"'{target}' is on the front process, which must survive to measure; "
                                          "the harness fails gpu pools, their devices and the links to them")
                continue
            kind = settings.gpu_failure if settings is not None else "kill"
            faults.append(Fault(kind, failure.at, until, path, target))
            continue
        link = next((link for link in plan.links if link.name == target), None)
        if link is not None:
            sides = {side_of_pool.get(end) for end in link.ends}
            if sides != {"front", "gpu"}:
                problem(f"{path}.target", f"link '{target}' does not join the front and the GPU side; the harness "
                                          "drops messages between its two processes only")
                continue
            faults.append(Fault("drop", failure.at, until, path, target, DIRECTIONS["both"]))
            continue
        problem(f"{path}.target", f"unknown pool, device or link '{target}'")
    for i, spec in enumerate(settings.faults if settings is not None else ()):
        path = f"hil.faults[{i}]"
        until = math.inf if spec.for_ is None else spec.at + spec.for_
        stage = -1
        if spec.kind == "raise":
            if spec.stage not in stage_index:
                problem(f"{path}.stage", f"unknown stage '{spec.stage}'; expected one of: {', '.join(stage_index)}")
                continue
            stage = stage_index[spec.stage]
        target = {"raise": f"stage {spec.stage}", "drop": "messages", "delay": "messages"}.get(spec.kind, "gpu")
        faults.append(Fault(spec.kind, spec.at, until, path, target, DIRECTIONS[spec.direction], spec.probability,
                            spec.delay or 0.0, stage))
    process = sorted((f for f in faults if f.kind in PROCESS_KINDS), key=lambda f: f.at)
    for a, b in zip(process, process[1:]):
        if b.at < a.until:
            problem(b.source, f"overlaps {a.source}: the GPU-side worker can be killed or hung by one fault at a time")
    return tuple(faults)


def describe(fault: Fault) -> str:
    """One line: what is done, when."""
    back = not math.isinf(fault.until)
    span = f"from {fault.at:g} s to " + (f"{fault.until:g} s" if back else "the end")
    what = {
        "kill": f"SIGKILL the GPU-side worker at {fault.at:g} s, "
                + (f"start a fresh one at {fault.until:g} s" if back else "never restart it"),
        "hang": f"SIGSTOP the GPU-side worker at {fault.at:g} s, "
                + (f"SIGCONT at {fault.until:g} s" if back else "never continue it"),
        "drop": f"drop {fault.probability:.0%} of the messages {'/'.join(fault.directions)} {span}",
        "delay": f"delay the messages {'/'.join(fault.directions)} by {fault.delay * 1e3:g} ms {span}",
        "raise": f"make {fault.target}'s op raise {span}",
    }[fault.kind]
    return f"{fault.source}: {what}"


class WorkerFaults:
    """The faults a worker applies to itself: message drops and delays, raising ops."""

    def __init__(self, faults: tuple[Fault, ...], direction: str, seed: int, replication: int, generation: int):
        self.messages = [f for f in faults if f.kind in ("drop", "delay") and direction in f.directions]
        self.raising = [f for f in faults if f.kind == "raise"]
        self.rng = np.random.default_rng([seed, replication, generation, 13])

    def on_send(self, now: float) -> Optional[float]:
        """None: drop this message; else the seconds to hold it back first (0: send now)."""
        delay = 0.0
        for fault in self.messages:
            if not fault.active(now):
                continue
            if fault.kind == "drop" and (fault.probability >= 1 or self.rng.random() < fault.probability):
                return None
            delay += fault.delay
        return delay

    def check(self, stage: int, now: float) -> None:
        """Raise if a raise fault on ``stage`` is active."""
        for fault in self.raising:
            if fault.stage == stage and fault.active(now):
                raise InjectedFault(f"injected by {fault.source}")


class InjectedFault(RuntimeError):
    """An op made to raise by a ``raise`` fault."""


@dataclass
class Outage:
    """An injected process fault as it really happened (run clock)."""

    fault: Fault
    start: float
    end: float = math.inf


class Injector:
    """The parent's half: kills, stops and continues the GPU-side worker at the faults' times.

    An outage lasts from the injection until the GPU side is seen up again (``recovered``: its
    heartbeat is back), which for a kill includes starting a fresh worker.
    """

    def __init__(self, faults: tuple[Fault, ...]):
        self.pending = sorted((f for f in faults if f.kind in PROCESS_KINDS), key=lambda f: f.at)
        self.outages: list[Outage] = []
        self.current: Optional[Outage] = None  # injected, not yet undone
        self.resumed_at: Optional[float] = None  # a SIGCONT the worker has not been told about

    def step(self, now: float, pid: int, restart: Callable[[], None]) -> None:
        """Do what is due at ``now``."""
        if self.current is None and self.pending and now >= self.pending[0].at:
            fault = self.pending.pop(0)
            os.kill(pid, signal.SIGKILL if fault.kind == "kill" else signal.SIGSTOP)
            self.current = Outage(fault, now)
            self.outages.append(self.current)
        elif self.current is not None and now >= self.current.fault.until:
            fault, self.current = self.current.fault, None
            if fault.kind == "hang":
                os.kill(pid, signal.SIGCONT)
                self.resumed_at = now
            else:
                restart()

    def recovered(self, now: float) -> None:
        """The GPU side is up again: the last outage ends."""
        if self.outages and self.current is None and math.isinf(self.outages[-1].end):
            self.outages[-1].end = now


class Health:
    """Whether the GPU side is up, from what can be observed: its process and its heartbeat."""

    def __init__(self, timeout: float = HEARTBEAT_TIMEOUT):
        self.timeout = timeout
        self.up = True
        self.last = math.inf  # no beat yet: the first one arms the watch
        self.starting = False  # a fresh worker that has not beaten yet
        self.down_since: Optional[float] = None

    def beat(self, now: float) -> None:
        self.last, self.starting = now, False

    def judge(self, now: float, alive: bool) -> Optional[bool]:
        """The new state if it changed (False: went down, True: came back), else None."""
        silent = self.starting or (now - self.last > self.timeout if math.isfinite(self.last) else False)
        up = alive and not silent
        if up == self.up:
            return None
        self.up = up
        self.down_since = None if up else now
        return up

    def restarted(self) -> None:
        """A fresh worker: down until its first beat."""
        self.last, self.starting = math.inf, True
