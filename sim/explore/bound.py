"""The analytic bottleneck bound: the load at which some pool or link saturates.

Each request puts a mean amount of work on every pool and link it visits:
a stage's mean service time on the pool's part (``cost / speed``), counted
for the fraction of requests that reach the stage (prefilters let only
``pass_probability`` through), and per item at the largest batch the
batcher may form (the cheapest a batched item can be); a hop's bytes over
the link's bandwidth plus its per-message overhead. Work per request over
the servers that share it is the utilisation each request per second adds.
A resource saturates at utilisation 1, or earlier at the scenario's
``utilisation_max`` budget for it.

The least load at which any resource reaches its limit bounds capacity from
above: no steady state exists beyond it. Every approximation here errs
towards less work (cheapest batch, fastest of parallel links), so the bound
stays an upper bound; the capacity search checks it anyway by simulation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sim.plan import Plan
from sim.scenario.schema import CLIENT


@dataclass(frozen=True)
class Demand:
    """Utilisation of one pool or link per request per second, and where it saturates."""

    name: str
    per_request: float
    limit: float

    @property
    def saturation_rate(self) -> float:
        return self.limit / self.per_request if self.per_request > 0 else math.inf


def demands(plan: Plan) -> list[Demand]:
    """Every pool's and link's utilisation per request per second (those with work only)."""
    work: dict[str, float] = {}
    reach = _reach(plan)
    for stage in plan.stages:
        pools = [plan.pools[p] for p in stage.pools]
        capacity = sum(p.count * p.servers * p.speed for p in pools)
        for pool in pools:
            per_item = _per_item(stage.costs.get(pool.kind), stage.batching)
            if per_item is not None and capacity > 0:
                work[pool.name] = work.get(pool.name, 0.0) + reach[stage.index] * per_item / capacity
    for link_name, seconds in _link_work(plan, reach).items():
        work[link_name] = work.get(link_name, 0.0) + seconds
    limits = _limits(plan)
    return [Demand(name, w, limits.get(name, 1.0)) for name, w in work.items() if w > 0]


def saturation(plan: Plan) -> tuple[float, str]:
    """Requests per second at which the first resource reaches its limit, and its name."""
    found = demands(plan)
    if not found:
        return math.inf, ""
    first = min(found, key=lambda d: d.saturation_rate)
    return first.saturation_rate, first.name


def _reach(plan: Plan) -> dict[int, float]:
    """Fraction of requests that reach each stage (the least over its predecessors)."""
    reach: dict[int, float] = {}
    for stage in plan.stages:
        reach[stage.index] = min((reach[p] * plan.stages[p].pass_probability for p in stage.preds), default=1.0)
    return reach


def _per_item(cost, batching) -> float | None:
    """Mean service time of one item at the reference part, at the largest batch allowed."""
    mean = getattr(cost, "mean", None)
    if cost is None or not callable(mean):
        return None  # no model to take a mean of: leave it out (the bound only grows)
    batch = batching.max_batch if batching.kind != "none" else 1
    try:
        return float(mean(batch)) / batch
    except TypeError:
        return float(mean()) / batch


def _limits(plan: Plan) -> dict[str, float]:
    slo = plan.scenario.slo
    limits: dict[str, float] = {}
    for budgets in [slo, *slo.classes.values()]:
        for name, value in budgets.utilisation_max.items():
            limits[name] = min(limits.get(name, 1.0), value)
    return limits


def _link_work(plan: Plan, reach: dict[int, float]) -> dict[str, float]:
    """Busy seconds per request on each link, in its busier direction."""
    sources = plan.scenario.workload.sources
    payload = sum(getattr(s, "payload", 0.0) for s in sources) / len(sources)
    sizes: dict[int, float] = {}
    for stage in plan.stages:
        received = payload if not stage.preds else max(sizes[p] for p in stage.preds)
        sizes[stage.index] = stage.output if stage.output is not None else received
    hops: list[tuple[str, str, float, float]] = []  # from, to, bytes, fraction of requests
    for stage in plan.stages:
        if not stage.preds:
            hops += [(CLIENT, pool, payload, 1.0) for pool in stage.pools]
        for p in stage.preds:
            pred = plan.stages[p]
            share = reach[p] * pred.pass_probability
            hops += [(a, b, sizes[p], share / len(pred.pools)) for a in pred.pools for b in stage.pools]
        if not stage.succs:
            reply = plan.reply_bytes if plan.reply_bytes is not None else sizes[stage.index]
            hops += [(pool, CLIENT, reply, reach[stage.index] * stage.pass_probability) for pool in stage.pools]
    busy: dict[tuple[str, str, str], float] = {}
    for a, b, size, share in hops:
        links = plan.links_between(a, b)
        if a == b or not links:
            continue
        link = max(links, key=lambda l: l.bandwidth)  # the fastest: least work, so the bound stays a bound
        copies = 1
        if link.sharing == "per-pair":
            copies = math.prod(plan.pools[e].count for e in link.ends if e in plan.pools)
        seconds = size / link.bandwidth + (link.overhead if link.contention == "fifo" else 0.0)
        key = (link.name, a, b)
        busy[key] = busy.get(key, 0.0) + share * seconds / copies
    out: dict[str, float] = {}
    for (name, _, _), seconds in busy.items():
        out[name] = max(out.get(name, 0.0), seconds)
    return out
