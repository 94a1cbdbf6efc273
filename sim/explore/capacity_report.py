"""Capacity results as data (capacity.json), as a console table and as a page with plots."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Mapping, Sequence

from sim.contract.metric_keys import Kind, MetricKey
from sim.explore.capacity import Capacity, resource_label, resource_of
from sim.explore.pareto import pareto_front
from sim.check.budgets import show
from sim.metrics.summary import Estimate


def _num(value: float):
    return None if value is None or (isinstance(value, float) and not math.isfinite(value)) else value


def _estimate(e: Estimate) -> dict:
    return {"mean": _num(e.mean), "low": _num(e.low), "high": _num(e.high)}


def capacity_document(scenario: str, seed: int, tolerance: float, results: Sequence[Capacity]) -> dict:
    """Everything capacity.json holds, as plain data (sorted keys, no timestamps: same run, same bytes)."""
    front = pareto_front([(c.value, c.cost.usd_per_hour) for c in results], maximise=[True, False])
    variants = {}
    for c, on_front in zip(results, front):
        s, binding, cost = c.search, c.binding, c.cost.usd_per_hour
        variants[c.variant] = {
            "capacity": {
                "value": c.value, "low": s.low.value if s.low else None, "high": s.high.value if s.high else None,
                "unit": c.axis.unit, "factor": c.axis.factor(c.value), "scenario_load": c.axis.base,
                "high_verdict": s.high.verdict.value if s.high else None, "status": s.status,
                "high_at_bound": s.high.at_bound if s.high else None,
                "replications_at_low": s.low.replications if s.low else None,
            },
            "binding_budget": None if binding is None else {
                "label": binding.budget.label, "metric": binding.budget.metric, "bound": binding.budget.bound,
                "budget": binding.budget.text, "verdict_at_high": binding.verdict.value,
                "estimate_at_high": _estimate(binding.estimate)},
            "bottleneck": None if c.bottleneck is None else {
                "resource": resource_label(c.bottleneck), "kind": c.bottleneck.namespace.value,
                "name": c.bottleneck.name, "utilisation": _estimate(c.utilisation[c.bottleneck])},
            "utilisation": {resource_label(k): _estimate(e) for k, e in c.utilisation.items()},
            "analytic_bound": {"value": _num(c.bound),
                               "resource": resource_label(c.bound_resource) if c.bound_resource else None},
            "cost_per_hour": _num(cost),
            "cost_pools": [{"pool": p.pool, "usd_per_hour": _num(p.usd_per_hour), "basis": p.basis}
                           for p in c.cost.pools],
            "cost_per_unit": _num(cost / c.value) if c.value else None,
            "capacity_per_cost": _num(c.value / cost) if cost else None,
            "pareto": on_front,
            "ignored_budgets": list(c.ignored),
            "probes": [{
                "value": p.value, "factor": c.axis.factor(p.value), "verdict": p.verdict.value,
                "replications": p.replications, "at_bound": p.at_bound,
                "budgets": [{"label": o.budget.label, "metric": o.budget.metric, "verdict": o.verdict.value,
                             **_estimate(o.estimate)} for o in p.outcomes],
                "metrics": {k: _estimate(p.estimates[k]) for k in sorted(p.estimates) if _plotted(k)},
            } for p in s.probes],
        }
    return {"scenario": scenario, "seed": seed, "tolerance": tolerance, "variants": variants}


_PLOTTED = (Kind.LATENCY, Kind.UTILISATION, Kind.THROUGHPUT)


def _plotted(metric: str) -> bool:
    """Whether a probe's metric goes into capacity.json: overall latencies, throughput, miss and drop rates,
    every pool's and link's utilisation."""
    key = MetricKey.parse(metric)
    if key.kind is Kind.RATE:
        return key.subject.name == "" and key.statistic in ("miss", "drop")
    return key.kind in _PLOTTED and (key.kind is Kind.UTILISATION or key.subject.name == "")


def write_capacity(folder: Path, document: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "capacity.json"
    path.write_text(json.dumps(document, indent=2, sort_keys=True, allow_nan=False) + "\n")
    return path


def capacity_lines(document: Mapping) -> list[str]:
    """A plain-text summary, one block per variant."""
    out = []
    for name, v in document["variants"].items():
        c = v["capacity"]
        unit = c["unit"]
        if c["status"] == "below":
            head = f"{name}: below {c['high']:g} {unit}: no load tried met every budget"
            if any(b["verdict"] == "INVALID" for p in v["probes"] for b in p["budgets"]):
                head += ("; some budgets were INVALID (too few requests per replication for a percentile at low "
                         "load): lengthen run.duration")
        elif c["status"] == "above":
            head = f"{name}: at least {c['value']:g} {unit}: every load tried met the budgets"
        else:
            head = (f"{name}: {c['value']:g} {unit} ({c['factor']:.2f}x the scenario's {c['scenario_load']:g}); "
                    f"passes at {c['low']:g}, {c['high_verdict']} at {c['high']:g}"
                    + (" (at the analytic bound)" if c.get("high_at_bound") else ""))
        out.append(head)
        b = v["binding_budget"]
        if b:
            e = b["estimate_at_high"]
            out.append(f"  binding budget: {b['label']} {b['budget']} ({b['verdict_at_high']} at {c['high']:g}: "
                       f"{_show(b['metric'], e['mean'])} [{_show(b['metric'], e['low'])}, {_show(b['metric'], e['high'])}])")
        if v["utilisation"]:
            busy = ", ".join(f"{_spoken(k)} {u['mean']:.0%}" for k, u in sorted(v["utilisation"].items(),
                                                                       key=lambda kv: -(kv[1]["mean"] or 0)))
            out.append(f"  bottleneck at capacity: {_spoken(v['bottleneck']['resource'])}; utilisation: {busy}")
        bound = v["analytic_bound"]
        if bound["value"] is not None:
            out.append(f"  analytic bound: {bound['value']:.4g} {unit} ({_spoken(bound['resource'])} saturates)")
        cost = v["cost_per_hour"]
        if cost is not None:
            per = f"; ${v['cost_per_unit']:.4g}/h per {unit.rstrip('s') if unit == 'streams' else unit}" \
                if v["cost_per_unit"] else ""
            out.append(f"  cost: ${cost:.3f}/h{per}{'; on the Pareto front' if v['pareto'] else ''}")
        else:
            unpriced = [p["pool"] for p in v["cost_pools"] if p["usd_per_hour"] is None]
            out.append(f"  cost: unknown (no price for {', '.join(unpriced)}; set cost.per_hour)")
        for ignored in v["ignored_budgets"]:
            out.append(f"  not a limit on capacity (easier at higher load): {ignored}")
    return out


def _spoken(resource: str) -> str:
    """'pool.gpu' -> 'pool gpu'."""
    subject = resource_of(resource)
    return f"{subject.namespace.value} {subject.name}"


def _show(metric: str, value) -> str:
    """A value in the unit people read it in (ms for latencies, % for rates and utilisation)."""
    if value is None or not math.isfinite(value):
        return "-"
    return show(MetricKey.parse(metric), value)
