"""Which device instance serves a job.

Candidates are the instances of the pools a stage is placed on, in the
placement's order of preference (``tier``). A router returns the index of
its choice.

- ``RoundRobin``: take turns.
- ``JoinShortestQueue``: the instance with the fewest jobs (waiting plus in
  service), ties to the first.
- ``PowerOfTwoChoices``: sample two at random, take the less loaded.
- ``RandomRouting``: uniformly at random.
- ``LocalFirst``: the least-loaded instance of the most preferred tier whose
  load is under ``spill_at``; when every tier is at or over it, the least
  loaded of the last tier (cloud fallback).

``ROUTING`` maps each scenario kind to the factory that builds its router
(given the scenario's routing section and the stage's random stream).
"""

from __future__ import annotations

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
        return _least_loaded(candidates, range(len(candidates)))


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
