"""Devices and links that fail and recover, in simulated time.

Each ``failures`` entry of a scenario (resolved into a
``sim.plan.FailurePlan``) becomes SimPy processes that take their target
down and bring it back:

- scheduled: down at ``at``, up ``duration`` later;
- random: up for a draw of mean ``mtbf``, down for a draw of mean ``mttr``
  (exponential, or fixed), over and over until the run ends. A pool's
  devices fail each on their own clock (``each``) or all together; each
  clock draws from its own named stream, so designs compared in one
  scenario see the same failures.

The processes only say *that* something went down or came back; what
happens to the work on it is the system's business (``Hooks``). Every
outage is logged (target, start, end) for the metrics. Two entries that
overlap on one target keep it down until both have ended: the hooks are
told only of the first going down and the last coming back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import numpy as np
import simpy

from sim.contract import streams
from sim.plan import FailurePlan


class Hooks(Protocol):
    """What the system does when a target goes down or comes back."""

    def device_down(self, name: str, failure: FailurePlan) -> None: ...

    def device_up(self, name: str) -> None: ...

    def link_down(self, name: str) -> None: ...

    def link_up(self, name: str) -> None: ...


@dataclass
class Outage:
    """One target down from ``start`` to ``end`` (inf: still down when the run ended)."""

    target: str
    start: float
    end: float = math.inf


class Failures:
    """The failure processes of one run, and the outages they caused."""

    def __init__(self, env: simpy.Environment, plans: Sequence[FailurePlan], hooks: Hooks,
                 rng: Callable[[str], np.random.Generator]):
        self.env = env
        self.hooks = hooks
        self.outages: list[Outage] = []
        self._down: dict[str, int] = {}  # target -> how many entries hold it down
        for plan in plans:
            each = plan.mtbf is not None and plan.each and len(plan.devices) > 1
            for devices, name in ([((d,), d) for d in plan.devices] if each else [(plan.devices, plan.target)]):
                if plan.mtbf is None:
                    env.process(self._scheduled(plan, devices, name))
                else:
                    env.process(self._random(plan, devices, name, rng(streams.failure(name))))

    def _scheduled(self, plan: FailurePlan, devices: tuple[str, ...], name: str):
        yield self.env.timeout(plan.at)
        outage = self._fail(plan, devices, name)
        yield self.env.timeout(plan.duration)
        self._repair(plan, devices, outage)

    def _random(self, plan: FailurePlan, devices: tuple[str, ...], name: str, rng: np.random.Generator):
        draw = (lambda mean: float(rng.exponential(mean))) if plan.distribution == "exponential" else (
            lambda mean: mean)
        while True:
            yield self.env.timeout(draw(plan.mtbf))
            outage = self._fail(plan, devices, name)
            yield self.env.timeout(draw(plan.mttr))
            self._repair(plan, devices, outage)

    def _fail(self, plan: FailurePlan, devices: tuple[str, ...], name: str) -> Outage:
        outage = Outage(name, self.env.now)
        self.outages.append(outage)
        for target in devices or (plan.link,):
            self._down[target] = self._down.get(target, 0) + 1
            if self._down[target] == 1:
                if devices:
                    self.hooks.device_down(target, plan)
                else:
                    self.hooks.link_down(target)
        return outage

    def _repair(self, plan: FailurePlan, devices: tuple[str, ...], outage: Outage) -> None:
        outage.end = self.env.now
        for target in devices or (plan.link,):
            self._down[target] -= 1
            if self._down[target] == 0:
                if devices:
                    self.hooks.device_up(target)
                else:
                    self.hooks.link_up(target)
