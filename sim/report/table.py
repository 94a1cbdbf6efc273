"""The table ``dgsim run`` prints: variants side by side, metrics as rows.

Each cell is the mean over replications with its 95% confidence half-width;
the row label carries the unit its metric key fixes (latencies in
milliseconds, rates and utilisation in percent). A budget column shows the
scenario's SLO where it sets one for that metric. A percentile computed
from fewer served requests than it needs (``sim.check.evidence``) is
flagged with ``!`` and explained in a line under the table.

A topology's nodes repeat the same pools and links (``srv[0].gpu``,
``srv[1].gpu``, ...). Up to ``INSTANCE_ROWS_MAX`` instances of one get a row
each, in numeric order; more (a city of 160 servers would print a thousand
rows) share one row, ``srv[*].gpu``, showing the mean over the instances and
their range; summary.json keeps each instance's figures.
"""

from __future__ import annotations

import math
import re
from typing import Mapping, Optional, Sequence

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from sim.check.evidence import samples_needed, served
from sim.contract.metric_keys import ALL, LATENCY_STATISTICS, Kind, MetricKey, Namespace, Subject
from sim.experiment import ExperimentResult
from sim.metrics.summary import Estimate
from sim.scenario.schema import Slo

_REQUEST_ROWS = (
    [MetricKey(Kind.THROUGHPUT), MetricKey(Kind.GOODPUT), MetricKey(Kind.REPLIES)]
    + [MetricKey(Kind.LATENCY, ALL, s) for s in LATENCY_STATISTICS if s != "max"]
    + [MetricKey(Kind.RATE, ALL, r) for r in ("filter", "drop", "miss", "unfinished", "fail")]
)
_RESOURCE_KINDS = (Kind.UTILISATION, Kind.BATCH, Kind.QUEUE)
_DIGITS = {"ms": 2, "%": 1, "/s": 1, "jobs": 2}
INSTANCE_ROWS_MAX = 8  # more instances of one node's pool or link than this: one row for them all
_INSTANCE = re.compile(r"\[\d+\]")  # a node instance's index in a name: srv[12].gpu


def _cell(e: Estimate | None, key: MetricKey, flagged: bool) -> str:
    if e is None or math.isnan(e.mean):
        return "-"
    scale, digits = key.unit.scale, _DIGITS.get(key.unit.symbol, 2)
    text = f"{e.mean * scale:.{digits}f}"
    if not math.isnan(e.half_width):
        text += f" ±{e.half_width * scale:.{digits}f}"
    return text + (" !" if flagged else "")


def _label(key: MetricKey) -> str:
    """The row label, with the unit: 'latency p99.9 ms', 'drop %', 'util % pool gpu'."""
    symbol = key.unit.symbol
    if key.kind is Kind.LATENCY:
        return f"latency {key.statistic.replace('p999', 'p99.9')} {symbol}"
    if key.kind is Kind.RATE:
        return f"{key.statistic} {symbol}"
    if key.kind is Kind.UTILISATION:
        return f"util {symbol} {key.subject.namespace.value} {key.subject.name}"
    if key.subject.namespace is not Namespace.ALL:
        return f"{key.kind.word} {key.subject.name}"
    return f"{key.kind.word} {symbol}"


def _rows(names: list[str]) -> list[MetricKey]:
    """Every metric worth a row: the request metrics, then utilisation, batch and queue per resource."""
    keys = []
    for name in names:
        try:
            keys.append(MetricKey.parse(name))
        except ValueError:
            continue  # a name this version does not know (an older results folder): not shown
    order = {Namespace.POOL: 0, Namespace.LINK: 1, Namespace.STAGE: 2}
    resources = [k for kind in _RESOURCE_KINDS
                 for k in sorted((k for k in keys if k.kind is kind),
                                 key=lambda k: (order[k.subject.namespace], _natural(k.subject.name)))]
    return [*_REQUEST_ROWS, *resources]


def _natural(name: str) -> tuple:
    """Sort key: numbers in a name compare as numbers (srv[9] before srv[10])."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name))


def _grouped(keys: Sequence[MetricKey]) -> list[tuple[MetricKey, list[MetricKey]]]:
    """(the row's key, the metrics it shows): one metric each, but the instances of one node's pool or
    link, when there are more than ``INSTANCE_ROWS_MAX``, share a row keyed ``<node>[*].<name>``."""
    family_of = [_family(key) for key in keys]
    families: dict[MetricKey, list[MetricKey]] = {}
    for key, family in zip(keys, family_of):
        families.setdefault(family, []).append(key)
    rows, shown = [], set()
    for key, family in zip(keys, family_of):
        members = families[family]
        if len(members) <= INSTANCE_ROWS_MAX:
            rows.append((key, [key]))
        elif family not in shown:
            shown.add(family)
            rows.append((family, members))
    return rows


def _family(key: MetricKey) -> MetricKey:
    if key.subject.namespace not in (Namespace.POOL, Namespace.LINK):
        return key  # (a name without an instance index is its own family)
    return key.with_subject(Subject(key.subject.namespace, _INSTANCE.sub("[*]", key.subject.name)))


def _shared_budget(slo: Slo, members: list[MetricKey]) -> str:
    """The budget the instances share (none if theirs differ)."""
    budgets = {_budget(slo, key) for key in members}
    return budgets.pop() if len(budgets) == 1 else ""


def _range_cell(found: list[Estimate], key: MetricKey) -> str:
    """The mean over instances, and their range."""
    means = [e.mean for e in found if not math.isnan(e.mean)]
    if not means:
        return "-"
    scale, digits = key.unit.scale, _DIGITS.get(key.unit.symbol, 2)
    return (f"{sum(means) / len(means) * scale:.{digits}f} "
            f"({min(means) * scale:.{digits}f}-{max(means) * scale:.{digits}f})")


def _budget(slo: Slo, key: MetricKey) -> str:
    if key.subject.namespace is not Namespace.ALL and key.kind is not Kind.UTILISATION:
        return ""
    if key.kind is Kind.LATENCY:
        value = getattr(slo.latency, key.statistic, None)
        return f"<= {value * 1e3:g} ms" if value else ""
    simple = {MetricKey(Kind.THROUGHPUT): ("throughput_min", ">= "),
              MetricKey(Kind.RATE, ALL, "drop"): ("drop_rate_max", "<= "),
              MetricKey(Kind.RATE, ALL, "miss"): ("miss_rate_max", "<= "),
              MetricKey(Kind.RATE, ALL, "filter"): ("filter_rate_max", "<= ")}
    if key in simple:
        field, sign = simple[key]
        value = getattr(slo, field)
        return f"{sign}{value * key.unit.scale:g}{' ' if key.unit.symbol == '%' else ''}{key.unit.symbol}" \
            if value is not None else ""
    if key.kind is Kind.UTILISATION:
        value = slo.utilisation_max.get(key.subject.name)
        return f"<= {value * 100:g} %" if value is not None else ""
    return ""


def _short(key: MetricKey, estimates: Mapping[str, Estimate]) -> Optional[int]:
    """For a percentile with fewer served requests than it needs in some replication: the fewest; else None."""
    if key.percent is None:
        return None
    counts = served(estimates, key.subject)
    if not counts:
        return None
    fewest = min(counts)
    return int(fewest) if fewest < samples_needed(key) else None


def estimates_table(title: str, variants: Mapping[str, Mapping[str, Estimate]], slo: Slo | None = None
                    ) -> RenderableType:
    """The table, followed by a line per percentile computed from too few requests."""
    names = sorted({m for metrics in variants.values() for m in metrics})
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    for variant in variants:
        table.add_column(variant, justify="right")
    if slo is not None:
        table.add_column("budget", justify="right")
    warnings, collapsed = [], 0
    for key, members in _grouped(_rows(names)):
        metric = key.name
        found = [m[k.name] for m in variants.values() for k in members if k.name in m]
        if not found:
            continue
        if key.kind is Kind.BATCH and all(e.mean <= 1.0 for e in found):
            continue  # a stage that never batched: nothing to see
        if len(members) > 1:
            collapsed += 1
            table.add_row(f"{_label(key)} ({len(members)})",
                          *(_range_cell([m[k.name] for k in members if k.name in m], key) for m in variants.values()),
                          *([_shared_budget(slo, members)] if slo is not None else []))
            continue
        if key == MetricKey(Kind.RATE, ALL, "fail") and all(not e.mean for e in found):
            continue  # only measured runs can fail
        cells = []
        for variant, m in variants.items():
            short = _short(key, m) if metric in m else None
            cells.append(_cell(m.get(metric), key, short is not None))
            if short is not None:
                warnings.append(f"! {variant}: {_label(key).rsplit(' ', 1)[0]} from {short} served request(s) in a "
                                f"replication; it needs at least {samples_needed(key)} to be bounded by the data "
                                f"(lengthen run.duration)")
        table.add_row(_label(key), *cells, *([_budget(slo, key)] if slo is not None else []))
    if collapsed:
        warnings.append("[*] rows: the mean over that many instances (the count after the name) and, in "
                        "brackets, the lowest and highest instance; summary.json has each")
    if warnings:
        return Group(table, *(Text(w) for w in warnings))
    return table


def comparison_table(result: ExperimentResult) -> RenderableType:
    first = next(iter(result.variants.values())).scenario
    reps = first.run.replications
    title = (f"{result.scenario}: {result.source}, seed {result.seed}, {reps} replication(s) of "
             f"{first.run.duration:g} s ({first.run.warmup:g} s warm-up); mean ± 95% CI")
    return estimates_table(title, {n: v.estimates for n, v in result.variants.items()}, first.slo)
