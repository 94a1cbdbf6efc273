"""One run's metrics, and their estimates across replications.

``summarise`` turns a per-request table and the resource usage of one run
into named metrics. Only requests that arrived inside the measurement
window count (warm-up removed). Latency is measured on served requests
(completed or deadline-missed); rates are fractions of arrived requests,
except the miss rate, which is a fraction of served ones.

``estimate`` combines the replications: the mean and a 95% confidence
interval from Student's t over independent replications (none with one).

Metric names are dotted: ``latency.p99``, ``throughput``, ``rate.filter``,
``utilisation.gpu``, ``batch.infer``, ``class.video.latency.p99``, and so on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from sim.metrics.records import SERVED, stage_names
from sim.metrics.usage import ResourceUsage

PERCENTILES = {"p50": 50, "p90": 90, "p95": 95, "p99": 99, "p999": 99.9}


def summarise(frame: pd.DataFrame, usage: ResourceUsage, warmup: float, end: float) -> dict[str, float]:
    window = frame[(frame["arrival"] >= warmup) & (frame["arrival"] < end)]
    length = end - warmup
    metrics = _request_metrics(window, length, prefix="")
    for klass in window["class"].cat.categories:
        metrics.update(_request_metrics(window[window["class"] == klass], length, prefix=f"class.{klass}."))
    for stage in stage_names(frame):
        started = window[f"{stage}.start"].to_numpy()
        mask = ~np.isnan(started)
        if mask.any():
            enqueued = window[f"{stage}.enqueued"].to_numpy()[mask]
            metrics[f"stage.{stage}.wait"] = float(np.mean(started[mask] - enqueued))
            metrics[f"stage.{stage}.service"] = float(np.mean(window[f"{stage}.end"].to_numpy()[mask] - started[mask]))
    for name, value in usage.pool_utilisation.items():
        metrics[f"utilisation.{name}"] = value
    for name, value in usage.link_utilisation.items():
        metrics[f"utilisation.{name}"] = value
    for name, value in usage.pool_queue.items():
        metrics[f"queue.{name}"] = value
    for name, value in usage.link_throughput.items():
        metrics[f"link_bytes_per_s.{name}"] = value
    for name, value in usage.stage_batch.items():
        metrics[f"batch.{name}"] = value
    return metrics


def _request_metrics(rows: pd.DataFrame, length: float, prefix: str) -> dict[str, float]:
    outcome = rows["outcome"]
    arrived = len(rows)
    counts = {name: int((outcome == name).sum()) for name in outcome.cat.categories}
    served = counts["completed"] + counts["deadline_missed"]
    latency = rows["latency"].to_numpy()[outcome.isin(SERVED).to_numpy()]
    out = {f"{prefix}requests.{name}": float(count) for name, count in counts.items()}
    out[f"{prefix}requests.arrived"] = float(arrived)
    out[f"{prefix}throughput"] = (served + counts["filtered"]) / length
    out[f"{prefix}goodput"] = (counts["completed"] + counts["filtered"]) / length
    out[f"{prefix}replies"] = served / length
    nan = math.nan
    out[f"{prefix}rate.filter"] = counts["filtered"] / arrived if arrived else nan
    out[f"{prefix}rate.drop"] = counts["dropped"] / arrived if arrived else nan
    out[f"{prefix}rate.unfinished"] = counts["unfinished"] / arrived if arrived else nan
    out[f"{prefix}rate.fail"] = counts["failed"] / arrived if arrived else nan
    out[f"{prefix}rate.miss"] = counts["deadline_missed"] / served if served else nan
    if len(latency):
        out[f"{prefix}latency.mean"] = float(np.mean(latency))
        for name, q in PERCENTILES.items():
            out[f"{prefix}latency.{name}"] = float(np.percentile(latency, q))
        out[f"{prefix}latency.max"] = float(np.max(latency))
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
    half = float(stats.t.ppf(0.5 + confidence / 2, len(finite) - 1) * np.std(finite, ddof=1) / math.sqrt(len(finite)))
    return Estimate(mean, mean - half, mean + half, tuple(values))


def combine(runs: Sequence[Mapping[str, float]]) -> dict[str, Estimate]:
    """Per-metric estimates over replications (a metric missing in a run counts as NaN)."""
    names = sorted({name for run in runs for name in run})
    return {name: estimate([run.get(name, math.nan) for run in runs]) for name in names}
