"""The table ``dgsim run`` prints: variants side by side, metrics as rows.

Each cell is the mean over replications with its 95% confidence half-width;
the row label carries the unit (latencies in milliseconds, rates and
utilisation in percent). A budget column shows the
scenario's SLO where it sets one for that metric.
"""

from __future__ import annotations

import math
from typing import Mapping

from rich.table import Table

from sim.experiment import ExperimentResult
from sim.metrics.summary import Estimate
from sim.scenario.schema import Slo


def _cell(e: Estimate | None, scale: float, digits: int) -> str:
    if e is None or math.isnan(e.mean):
        return "-"
    text = f"{e.mean * scale:.{digits}f}"
    if not math.isnan(e.half_width):
        text += f" ±{e.half_width * scale:.{digits}f}"
    return text


def _rows(names: list[str]) -> list[tuple[str, str, float, int]]:
    """(label with unit, metric, scale, digits) for every metric worth a row."""
    rows = [("throughput /s", "throughput", 1.0, 1), ("goodput /s", "goodput", 1.0, 1),
            ("replies /s", "replies", 1.0, 1)]
    for p, label in (("mean", "mean"), ("p50", "p50"), ("p90", "p90"), ("p95", "p95"), ("p99", "p99"), ("p999", "p99.9")):
        rows.append((f"latency {label} ms", f"latency.{p}", 1e3, 2))
    for rate in ("filter", "drop", "miss", "unfinished", "fail"):
        rows.append((f"{rate} %", f"rate.{rate}", 100.0, 1))
    for prefix, label, scale, digits in (
        ("utilisation.", "util % ", 100.0, 1),
        ("batch.", "batch ", 1.0, 2),
        ("queue.", "queue ", 1.0, 2),
    ):
        for name in names:
            if name.startswith(prefix):
                rows.append((f"{label}{name.removeprefix(prefix)}", name, scale, digits))
    return rows


def _budget(slo: Slo, metric: str) -> str:
    if metric.startswith("latency."):
        key = metric.removeprefix("latency.")
        value = getattr(slo.latency, key, None)
        return f"<= {value * 1e3:g} ms" if value else ""
    simple = {"throughput": ("throughput_min", ">= ", 1.0, "/s"), "rate.drop": ("drop_rate_max", "<= ", 100.0, " %"),
              "rate.miss": ("miss_rate_max", "<= ", 100.0, " %"), "rate.filter": ("filter_rate_max", "<= ", 100.0, " %")}
    if metric in simple:
        field, sign, scale, unit = simple[metric]
        value = getattr(slo, field)
        return f"{sign}{value * scale:g}{unit}" if value is not None else ""
    if metric.startswith("utilisation."):
        value = slo.utilisation_max.get(metric.removeprefix("utilisation."))
        return f"<= {value * 100:g} %" if value is not None else ""
    return ""


def estimates_table(title: str, variants: Mapping[str, Mapping[str, Estimate]], slo: Slo | None = None) -> Table:
    names = sorted({m for metrics in variants.values() for m in metrics})
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    for variant in variants:
        table.add_column(variant, justify="right")
    if slo is not None:
        table.add_column("budget", justify="right")
    for label, metric, scale, digits in _rows(names):
        if not any(metric in m for m in variants.values()):
            continue
        found = [m[metric] for m in variants.values() if metric in m]
        if metric.startswith("batch.") and all(e.mean <= 1.0 for e in found):
            continue  # a stage that never batched: nothing to see
        if metric == "rate.fail" and all(not e.mean for e in found):
            continue  # only measured runs can fail
        cells = [_cell(m.get(metric), scale, digits) for m in variants.values()]
        table.add_row(label, *cells, *([_budget(slo, metric)] if slo is not None else []))
    return table


def comparison_table(result: ExperimentResult) -> Table:
    first = next(iter(result.variants.values())).scenario
    reps = first.run.replications
    title = (f"{result.scenario}: {result.source}, seed {result.seed}, {reps} replication(s) of "
             f"{first.run.duration:g} s ({first.run.warmup:g} s warm-up); mean ± 95% CI")
    return estimates_table(title, {n: v.estimates for n, v in result.variants.items()}, first.slo)
