"""One run's metrics, and their estimates across replications.

``summarise`` turns a per-request table (a frame, or the compact
``sim.metrics.columns.RequestColumns`` a streamed run keeps) and the
resource usage of one run into named metrics. Only requests that arrived inside the measurement
window count (warm-up removed). Latency is measured on served requests
(completed or deadline-missed); rates are fractions of arrived requests,
except the miss rate, which is a fraction of served ones.

``estimate`` combines the replications: the mean and a 95% confidence
interval from Student's t over independent replications (none with one).

Metrics are built as ``sim.contract.metric_keys.MetricKey`` and returned
under their names (``latency.p99``, ``class.video.latency.p99``,
``utilisation.pool.gpu``, ``utilisation.link.pcie``, ...), the strings that
summary.json, baselines and reports hold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from sim.contract.metric_keys import ALL, ARRIVED, LATENCY_STATISTICS, RATES, Kind, MetricKey, Subject
from sim.contract.outcomes import ENDINGS, Outcome
from sim.metrics.columns import RequestColumns
from sim.metrics.resilience import resilience_metrics
from sim.metrics.usage import ResourceUsage


def summarise(frame: pd.DataFrame | RequestColumns, usage: ResourceUsage, warmup: float,
              end: float) -> dict[str, float]:
    """Named metrics of one run from its per-request table (or the same columns as ``RequestColumns``)."""
    columns = frame if isinstance(frame, RequestColumns) else RequestColumns.of_frame(frame)
    window = columns.window(warmup, end)
    length = end - warmup
    metrics = _request_metrics(window.outcome, window.latency, length, ALL)
    for code, klass in enumerate(window.class_names):
        mine = window.klass == code
        metrics.update(_request_metrics(window.outcome[mine], window.latency[mine], length, Subject.of_class(klass)))
    for j, stage in enumerate(window.stages):
        if len(window.wait[j]):  # the rows that started the stage (packed: a view, no copy)
            subject = Subject.stage(stage)
            metrics[MetricKey(Kind.WAIT, subject)] = float(np.mean(window.wait[j]))
            metrics[MetricKey(Kind.SERVICE, subject)] = float(np.mean(window.service[j]))
    resources = (
        (Kind.UTILISATION, Subject.pool, usage.pool_utilisation),
        (Kind.UTILISATION, Subject.link, usage.link_utilisation),
        (Kind.QUEUE, Subject.pool, usage.pool_queue),
        (Kind.BYTES_PER_S, Subject.link, usage.link_throughput),
        (Kind.BATCH, Subject.stage, usage.stage_batch),
    )
    for kind, subject, values in resources:
        for name, value in values.items():
            metrics[MetricKey(kind, subject(name))] = value
    named = {key.name: value for key, value in metrics.items()}
    if usage.resilience is None:
        return named
    return named | resilience_metrics(window, usage.resilience, warmup, end)


def _request_metrics(outcome: np.ndarray, latency: np.ndarray, length: float,
                     subject: Subject) -> dict[MetricKey, float]:
    def key(kind: Kind, statistic: str | None = None) -> MetricKey:
        return MetricKey(kind, subject, statistic)

    arrived = len(outcome)
    counts = {o: int(np.count_nonzero(outcome == o.value)) for o in ENDINGS}
    served = counts[Outcome.COMPLETED] + counts[Outcome.DEADLINE_MISSED]
    out = {key(Kind.REQUESTS, o.label): float(count) for o, count in counts.items()}
    out[key(Kind.REQUESTS, ARRIVED)] = float(arrived)
    out[key(Kind.THROUGHPUT)] = (served + counts[Outcome.FILTERED]) / length
    out[key(Kind.GOODPUT)] = (counts[Outcome.COMPLETED] + counts[Outcome.FILTERED]) / length
    out[key(Kind.REPLIES)] = served / length
    for rate, counted in RATES.items():
        of = served if counted is Outcome.DEADLINE_MISSED else arrived
        out[key(Kind.RATE, rate)] = counts[counted] / of if of else math.nan
    is_served = (outcome == Outcome.COMPLETED.value) | (outcome == Outcome.DEADLINE_MISSED.value)
    for statistic, value in latency_statistics(latency[is_served]).items():
        out[key(Kind.LATENCY, statistic)] = value
    return out


def latency_statistics(latency: np.ndarray) -> dict[str, float]:
    """Mean, percentiles and max of a latency sample (nothing when it is empty)."""
    out: dict[str, float] = {}
    if len(latency):
        for statistic, percent in LATENCY_STATISTICS.items():
            if percent is not None:
                value = np.percentile(latency, percent)
            else:
                value = np.mean(latency) if statistic == "mean" else np.max(latency)
            out[statistic] = float(value)
    return out


@dataclass(frozen=True)
class Estimate:
    """A metric over replications: mean and 95% confidence interval."""

    mean: float
    low: float
    high: float
    values: tuple[float, ...]

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def estimate(values: Sequence[float], confidence: float = 0.95) -> Estimate:
    finite = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if len(finite) == 0:
        return Estimate(math.nan, math.nan, math.nan, tuple(values))
    mean = float(np.mean(finite))
    if len(finite) < 2:
        return Estimate(mean, math.nan, math.nan, tuple(values))
    # Student's t quantile: scipy.stats.t.ppf's own kernel, imported here (scipy.stats costs ~1 s to import)
    from scipy.special import stdtrit

    half = float(stdtrit(len(finite) - 1, 0.5 + confidence / 2) * np.std(finite, ddof=1) / math.sqrt(len(finite)))
    return Estimate(mean, mean - half, mean + half, tuple(values))


def combine(runs: Sequence[Mapping[str, float]]) -> dict[str, Estimate]:
    """Per-metric estimates over replications (a metric missing in a run counts as NaN)."""
    names = sorted({name for run in runs for name in run})
    return {name: estimate([run.get(name, math.nan) for run in runs]) for name in names}
