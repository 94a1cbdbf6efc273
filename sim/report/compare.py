"""Two results folders side by side: which differences are real.

For every variant both folders hold and every metric both have, the
difference B - A of the means with a 95% confidence interval:

- paired (a t interval on the per-replication differences) when both are
  simulations with the same seed and the same replications: replication
  ``r`` of both then saw the same arrivals and service draws (common
  random numbers), so most of the noise cancels;
- Welch's unequal-variance interval otherwise (measured runs, other seeds,
  other replication counts).

A difference is significant when its interval excludes zero (a two-sided
test at 5%). With one replication on a side there is no interval, and the
row says so. ``scipy.stats`` does the statistics.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from scipy import stats

from sim.metrics.summary import Estimate
from sim.results import SummaryFile

CONFIDENCE = 0.95
DEFAULT_METRICS = ("throughput", "goodput", "replies", "latency.*", "rate.*", "utilisation.*", "*")
SKIPPED = ("requests.*", "class.*")  # counts, and per-class copies: only when asked for by --metric


@dataclass(frozen=True)
class Difference:
    variant: str
    metric: str
    a: float
    b: float
    diff: float  # mean of B - mean of A
    low: float
    high: float
    method: str  # "paired", "welch" or "none"
    n: int  # replications used (pairs for paired)

    @property
    def significant(self) -> bool:
        return not math.isnan(self.low) and (self.low > 0 or self.high < 0)

    @property
    def relative(self) -> float:
        return self.diff / self.a if self.a else math.nan

    @property
    def verdict(self) -> str:
        if self.method == "none":
            return "no interval (one replication)"
        if not self.significant:
            return "no significant difference"
        return "B higher" if self.diff > 0 else "B lower"


@dataclass(frozen=True)
class Comparison:
    a: SummaryFile
    b: SummaryFile
    paired: dict[str, bool]  # per variant
    rows: list[Difference]
    only_a: list[str]  # variants only in A
    only_b: list[str]
    notes: list[str]


def _finite(values: Sequence[float]) -> np.ndarray:
    return np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)


def paired_difference(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float, int]:
    """Mean of b[r] - a[r] with its t interval, over replications both have a number for."""
    pairs = [(x, y) for x, y in zip(a, b) if not (math.isnan(x) or math.isnan(y))]
    d = np.asarray([y - x for x, y in pairs], dtype=float)
    if len(d) < 2:
        return (float(d.mean()) if len(d) else math.nan), math.nan, math.nan, len(d)
    mean = float(d.mean())
    if np.all(d == d[0]):  # no spread: the interval is the point
        return mean, mean, mean, len(d)
    low, high = stats.ttest_1samp(d, 0.0).confidence_interval(CONFIDENCE)
    return mean, float(low), float(high), len(d)


def welch_difference(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float, int]:
    """Mean of b minus mean of a with Welch's interval."""
    x, y = _finite(a), _finite(b)
    if not len(x) or not len(y):
        return math.nan, math.nan, math.nan, 0
    mean = float(y.mean() - x.mean())
    if len(x) < 2 or len(y) < 2:
        return mean, math.nan, math.nan, min(len(x), len(y))
    if np.var(x) == 0 and np.var(y) == 0:
        return mean, mean, mean, min(len(x), len(y))
    low, high = stats.ttest_ind(y, x, equal_var=False).confidence_interval(CONFIDENCE)
    return mean, float(low), float(high), min(len(x), len(y))


def can_pair(a: SummaryFile, b: SummaryFile, ea: Estimate, eb: Estimate) -> bool:
    return (a.source == b.source == "simulation" and a.seed == b.seed and len(ea.values) == len(eb.values))


def compare(a: SummaryFile, b: SummaryFile, patterns: Sequence[str] = DEFAULT_METRICS) -> Comparison:
    rows: list[Difference] = []
    paired: dict[str, bool] = {}
    notes: list[str] = []
    if a.scenario != b.scenario:
        notes.append(f"A ran scenario '{a.scenario}', B ran '{b.scenario}': variants are paired by name")
    if a.source != b.source:
        notes.append(f"A is a {a.source}, B a {b.source}: no common random numbers, Welch intervals")
    elif a.source == "simulation" and a.seed != b.seed:
        notes.append(f"seeds differ (A {a.seed}, B {b.seed}): no common random numbers, Welch intervals")
    for variant in [v for v in a.variants if v in b.variants]:
        ma, mb = a.variants[variant], b.variants[variant]
        names = [m for m in ma if m in mb and any(fnmatch.fnmatchcase(m, p) for p in patterns)
                 and (patterns is not DEFAULT_METRICS or not any(fnmatch.fnmatchcase(m, p) for p in SKIPPED))]
        reps = {len(ma[m].values) for m in names} | {len(mb[m].values) for m in names}
        paired[variant] = bool(names) and all(can_pair(a, b, ma[m], mb[m]) for m in names)
        if a.source == b.source == "simulation" and a.seed == b.seed and not paired[variant] and names:
            notes.append(f"{variant}: replication counts differ ({sorted(reps)}): Welch intervals")
        for metric in sorted(names, key=lambda m: _order(m, patterns)):
            ea, eb = ma[metric], mb[metric]
            if paired[variant]:
                diff, low, high, n = paired_difference(ea.values, eb.values)
                method = "paired"
            else:
                diff, low, high, n = welch_difference(ea.values, eb.values)
                method = "welch"
            if math.isnan(low):
                method = "none"
            rows.append(Difference(variant, metric, ea.mean, eb.mean, diff, low, high, method, n))
    return Comparison(a, b, paired, rows, [v for v in a.variants if v not in b.variants],
                      [v for v in b.variants if v not in a.variants], notes)


def _order(metric: str, patterns: Sequence[str]) -> tuple:
    rank = next((k for k, p in enumerate(patterns) if fnmatch.fnmatchcase(metric, p)), len(patterns))
    percent = {"mean": 0, "p50": 1, "p90": 2, "p95": 3, "p99": 4, "p999": 5, "max": 6}
    return rank, percent.get(metric.rsplit(".", 1)[-1], 9), metric


def show(metric: str, value: float, signed: bool = False) -> str:
    from sim.report.html import show as show_metric

    return show_metric(metric, value, signed)


def console_table(comparison: Comparison):
    """A rich table per variant."""
    from rich.table import Table
    from rich.text import Text

    tables = []
    for variant in comparison.paired:
        mode = "paired on common random numbers" if comparison.paired[variant] else "Welch (unpaired)"
        table = Table(title=f"{variant}: B - A, 95% CI, {mode}", title_justify="left")
        for name, justify in (("metric", "left"), ("A", "right"), ("B", "right"), ("B - A", "right"),
                              ("95% CI", "right"), ("change", "right"), ("", "left")):
            table.add_column(name, justify=justify)
        for row in (r for r in comparison.rows if r.variant == variant):
            ci = "-" if math.isnan(row.low) else f"[{show(row.metric, row.low, True)}, {show(row.metric, row.high, True)}]"
            change = "-" if math.isnan(row.relative) else f"{row.relative:+.1%}"
            style = "bold" if row.significant else "dim"
            table.add_row(row.metric, show(row.metric, row.a), show(row.metric, row.b), show(row.metric, row.diff, True),
                          ci, change, Text(row.verdict, style=style))
        tables.append(table)
    return tables


def text_lines(comparison: Comparison) -> list[str]:
    """Headline lines: what differs significantly."""
    c = comparison
    lines = [f"A: {c.a.path.parent} ({c.a.source}, seed {c.a.seed})",
             f"B: {c.b.path.parent} ({c.b.source}, seed {c.b.seed})"]
    lines += [f"note: {n}" for n in c.notes]
    if c.only_a:
        lines.append(f"only in A (not compared): {', '.join(c.only_a)}")
    if c.only_b:
        lines.append(f"only in B (not compared): {', '.join(c.only_b)}")
    for variant in c.paired:
        rows = [r for r in c.rows if r.variant == variant]
        significant = [r for r in rows if r.significant]
        lines.append(f"{variant}: {len(significant)} of {len(rows)} metrics differ significantly"
                     + (": " + ", ".join(f"{r.metric} {show(r.metric, r.diff, True)}" for r in significant[:8])
                        if significant else ""))
    return lines


def html_page(comparison: Comparison) -> str:
    from html import escape

    from sim.report.html import page, section

    c = comparison
    parts = [f"<ul>{''.join(f'<li>{escape(line)}</li>' for line in text_lines(c))}</ul>"]
    for variant in c.paired:
        mode = "paired on common random numbers" if c.paired[variant] else "Welch (unpaired)"
        rows = []
        for r in (r for r in c.rows if r.variant == variant):
            ci = "-" if math.isnan(r.low) else f"[{show(r.metric, r.low, True)}, {show(r.metric, r.high, True)}]"
            change = "-" if math.isnan(r.relative) else f"{r.relative:+.1%}"
            klass = ("up" if r.diff > 0 else "down") if r.significant else "same"
            rows.append(f"<tr class='{klass}'><td>{escape(r.metric)}</td><td>{escape(show(r.metric, r.a))}</td>"
                        f"<td>{escape(show(r.metric, r.b))}</td><td>{escape(show(r.metric, r.diff, True))}</td>"
                        f"<td>{escape(ci)}</td><td>{change}</td><td>{escape(r.verdict)}</td></tr>")
        table = ("<table class='compare'><thead><tr><th>metric</th><th>A</th><th>B</th><th>B - A</th><th>95% CI</th>"
                 f"<th>change</th><th>verdict</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")
        parts.append(section(f"compare-{variant}", f"{variant} ({mode})", table))
    return page(f"dgsim compare: {c.a.scenario} vs {c.b.scenario}", "\n".join(parts))


def only_patterns(metrics: Optional[Sequence[str]]) -> Sequence[str]:
    return tuple(metrics) if metrics else DEFAULT_METRICS
