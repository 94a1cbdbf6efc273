"""The analytic bottleneck bound: the load at which some pool or link saturates.

``sim.capacity`` works out, from the plan alone, how busy every pool and
link is at the scenario's own load (each stage's mean service per item at
its largest batch, for the requests that pass the prefilters upstream;
each hop's bytes over its link's bandwidth plus per-message overhead).
Utilisation grows in proportion to the arrival rate, so each resource's
utilisation per request per second is that over the scenario's rate, and
it saturates at utilisation 1, or earlier at the scenario's
``utilisation_max`` budget for it.

The least rate at which any resource reaches its limit bounds capacity
from above: no steady state exists beyond it. The capacity search brackets
its answer with it and then checks it by simulation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from sim.capacity import arrival_rate, offered_loads
from sim.contract.metric_keys import Namespace, Subject
from sim.plan import Plan


@dataclass(frozen=True)
class Demand:
    """Utilisation of one pool or link per request per second, and where it saturates."""

    resource: Subject  # a pool or a link (separate namespaces: a pool and a link may share a name)
    per_request: float
    limit: float

    @property
    def saturation_rate(self) -> float:
        return self.limit / self.per_request if self.per_request > 0 else math.inf


@dataclass(frozen=True)
class Saturation:
    """Requests per second at which the first pool or link reaches its limit (inf: none has work)."""

    rate: float
    resource: Optional[Subject]


def demands(plan: Plan) -> list[Demand]:
    """Every pool's and link's utilisation per request per second (those with work only)."""
    rate, _ = arrival_rate(plan)
    if rate <= 0:
        return []
    limits = _limits(plan)
    out = []
    for load in offered_loads(plan):
        if load.offered > 0:
            resource = Subject(Namespace(load.kind), load.name)
            out.append(Demand(resource, load.utilisation / rate, limits.get(load.name, 1.0)))
    return out


def saturation(plan: Plan) -> Saturation:
    """The least arrival rate at which a pool or link reaches its limit, and which one."""
    found = demands(plan)
    if not found:
        return Saturation(math.inf, None)
    first = min(found, key=lambda d: d.saturation_rate)
    return Saturation(first.saturation_rate, first.resource)


def _limits(plan: Plan) -> dict[str, float]:
    """``utilisation_max`` budgets by the name they give (a name both a pool and a link has limits both)."""
    slo = plan.scenario.slo
    limits: dict[str, float] = {}
    for budgets in [slo, *slo.classes.values()]:
        for name, value in budgets.utilisation_max.items():
            limits[name] = min(limits.get(name, 1.0), value)
    return limits
