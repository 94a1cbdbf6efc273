"""Which device instance serves a job.

Candidates are the instances of the pools a stage is placed on, in the
placement's order of preference (``tier``). A router returns the index of
its choice.

- ``RoundRobin``: take turns.
- ``JoinShortestQueue``: the instance with the fewest jobs (waiting plus in
  service), ties to the first. ``IndexedShortestQueue`` makes the same choice
  among many candidates in O(log D) per decision from a heap the caller keeps
  current (the simulator does so from ``INDEX_FROM`` candidates up).
- ``PowerOfTwoChoices``: sample two at random, take the less loaded.
- ``RandomRouting``: uniformly at random.
- ``LocalFirst``: the least-loaded instance of the most preferred tier whose
  load is under ``spill_at``; when every tier is at or over it, the least
  loaded of the last tier (cloud fallback).

``ROUTING`` maps each scenario kind to the factory that builds its router
(given the scenario's routing section and the stage's random stream).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

import numpy as np

from sim.policies.views import InstanceView, JobView
from sim.registry import Registry


class RoutingPolicy(Protocol):
    def choose(self, candidates: Sequence[InstanceView], job: JobView) -> int: ...


def _load(instance: InstanceView) -> int:
    return instance.queue_length + instance.busy


def _least_loaded(candidates: Sequence[InstanceView], indices: Sequence[int]) -> int:
    return min(indices, key=lambda i: (_load(candidates[i]) / candidates[i].servers, i))


@dataclass
class RoundRobin:
    _next: int = 0

    def choose(self, candidates: Sequence[InstanceView], job: JobView) -> int:
        choice = self._next % len(candidates)
        self._next = choice + 1
        return choice


@dataclass(frozen=True)
class JoinShortestQueue:
    def choose(self, candidates: Sequence[InstanceView], job: JobView) -> int:
        best, least = 0, None
        for i, c in enumerate(candidates):  # _least_loaded over all, without a key tuple per candidate
            load = (c.queue_length + c.busy) / c.servers
            if least is None or load < least:
                best, least = i, load
        return best


class IndexedShortestQueue:
    """Join-shortest-queue over one fixed list of many candidates, without scanning them per decision.

    The same choice as ``JoinShortestQueue`` (least load per server, ties to the
    first), from a heap of (load per server, index) that the caller keeps current
    by calling ``refresh(i)`` whenever candidate ``i``'s load may have changed
    (O(log D) each, entries made stale by a refresh are dropped when they reach
    the top). Any other list of candidates (a subset: healthy instances, a
    node's own) is scanned as ``JoinShortestQueue`` does.
    """

    def __init__(self, candidates: Sequence[InstanceView]):
        self.candidates = candidates
        self._scan = JoinShortestQueue()
        self._load = [(c.queue_length + c.busy) / c.servers for c in candidates]
        self._stamp = [0] * len(candidates)
        self._rebuild()

    def _rebuild(self) -> None:
        self._heap = [(load, i, self._stamp[i]) for i, load in enumerate(self._load)]
        heapq.heapify(self._heap)

    def refresh(self, i: int) -> None:
        c = self.candidates[i]
        load = (c.queue_length + c.busy) / c.servers
        if load == self._load[i]:
            return
        self._load[i] = load
        self._stamp[i] = stamp = self._stamp[i] + 1
        heapq.heappush(self._heap, (load, i, stamp))
        if len(self._heap) > 4 * len(self._load) + 64:
            self._rebuild()

    def choose(self, candidates: Sequence[InstanceView], job: JobView) -> int:
        if candidates is not self.candidates:
            return self._scan.choose(candidates, job)
        heap, stamp = self._heap, self._stamp
        while heap[0][2] != stamp[heap[0][1]]:
            heapq.heappop(heap)
        return heap[0][1]


INDEX_FROM = 16
"""Candidates from which the simulator keeps a load index for join-shortest-queue (below: a scan is cheaper)."""


@dataclass(frozen=True)
class PowerOfTwoChoices:
    rng: np.random.Generator = field(compare=False)

    def choose(self, candidates: Sequence[InstanceView], job: JobView) -> int:
        if len(candidates) == 1:
            return 0
        first, second = self.rng.choice(len(candidates), size=2, replace=False)
        return _least_loaded(candidates, (int(first), int(second)))


@dataclass(frozen=True)
class RandomRouting:
    rng: np.random.Generator = field(compare=False)

    def choose(self, candidates: Sequence[InstanceView], job: JobView) -> int:
        return int(self.rng.integers(len(candidates)))


@dataclass(frozen=True)
class LocalFirst:
    spill_at: int

    def choose(self, candidates: Sequence[InstanceView], job: JobView) -> int:
        tiers = sorted({c.tier for c in candidates})
        for tier in tiers:
            members = [i for i, c in enumerate(candidates) if c.tier == tier]
            best = _least_loaded(candidates, members)
            if _load(candidates[best]) < self.spill_at * candidates[best].servers:
                return best
        return best


class RoutingSettings(Protocol):
    """The scenario's routing section (``sim.scenario.schema.RoutingSpec``)."""

    kind: str
    spill_at: int


ROUTING: Registry[Callable[[RoutingSettings, np.random.Generator], RoutingPolicy]] = Registry("routing policy")
ROUTING.register("round-robin")(lambda spec, rng: RoundRobin())
ROUTING.register("shortest-queue")(lambda spec, rng: JoinShortestQueue())
ROUTING.register("power-of-two")(lambda spec, rng: PowerOfTwoChoices(rng))
ROUTING.register("random")(lambda spec, rng: RandomRouting(rng))
ROUTING.register("local-first")(lambda spec, rng: LocalFirst(spec.spill_at))
