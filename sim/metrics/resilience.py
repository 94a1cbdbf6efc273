"""What failures cost, and what the reactions saved: the resilience metrics.

Computed over the requests that arrived in the measurement window, for
the whole workload and per class, only for runs that declare failures or
reactions (``ResourceUsage.resilience`` is set), so the summaries of other
runs do not change:

- ``availability``: answered / arrived, where answered is completed,
  deadline-missed, degraded or filtered (the client got an answer);
- ``degraded_rate``, ``timeout_rate``: degraded / arrived, timed out / arrived;
- ``degraded_latency.<statistic>``: latency of degraded answers alone
  (the ``latency.*`` metrics describe full answers only);
- ``retries_per_request``: retries / arrived;
- ``fallbacks.<reason>``: requests that fell back, by why the main path
  failed first (failed, unhealthy, timed_out, breaker_open);
- ``recovery_time``: per outage that started in the window, from its
  start to the arrival of the last request it hurt (failed, timed out,
  dropped or degraded) before the next outage started; 0 if it hurt none.
  The mean over outages; absent with none.

The harness fills ``retries``/``fallback`` where it records them; without
a ``ResilienceRecord`` only the outcome-based metrics are computed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import numpy as np

from sim.contract.metric_keys import ALL, Kind, MetricKey, Subject
from sim.contract.outcomes import ENDINGS, Outcome
from sim.policies.resilience import REASONS

if TYPE_CHECKING:
    from sim.metrics.columns import RequestColumns

HURT = (Outcome.FAILED, Outcome.TIMED_OUT, Outcome.DROPPED, Outcome.DEGRADED)
ANSWERED = tuple(o for o in ENDINGS if o.answered)


@dataclass(frozen=True)
class ResilienceRecord:
    """What a run with failures recorded beyond the request table (indexed by request id)."""

    outages: tuple[tuple[str, float, float], ...]  # (target, start, end); end inf if never repaired
    retries: Optional[np.ndarray] = None  # retries per request id
    fallback: Optional[np.ndarray] = None  # sim.policies.resilience.Reason code per request id (0: none)


def resilience_metrics(window: "RequestColumns", record: Optional[ResilienceRecord], warmup: float,
                       end: float) -> dict[str, float]:
    """The metrics above by name, from the window's columns; {} when ``record`` is None (no failures)."""
    if record is None:
        return {}
    ids = window.ids
    metrics = _request_metrics(window.outcome, window.latency, ids, record, ALL)
    for code, klass in enumerate(window.class_names):
        mine = window.klass == code
        metrics.update(_request_metrics(window.outcome[mine], window.latency[mine], ids[mine], record,
                                        Subject.of_class(klass)))
    recovery = recovery_times(window, record.outages, warmup, end)
    if recovery:
        metrics[MetricKey(Kind.RECOVERY)] = float(np.mean(recovery))
    return {key.name: value for key, value in metrics.items()}


def _is(outcome: np.ndarray, outcomes) -> np.ndarray:
    return np.isin(outcome, [o.value for o in outcomes])


def _request_metrics(outcome: np.ndarray, latency: np.ndarray, ids: np.ndarray, record: ResilienceRecord,
                     subject: Subject) -> dict[MetricKey, float]:
    def key(kind: Kind, statistic: Optional[str] = None) -> MetricKey:
        return MetricKey(kind, subject, statistic)

    arrived = len(outcome)
    share = (lambda n: n / arrived) if arrived else (lambda n: math.nan)
    degraded = outcome == Outcome.DEGRADED.value
    out = {
        key(Kind.AVAILABILITY): share(int(_is(outcome, ANSWERED).sum())),
        key(Kind.DEGRADED_RATE): share(int(degraded.sum())),
        key(Kind.TIMEOUT_RATE): share(int((outcome == Outcome.TIMED_OUT.value).sum())),
    }
    if record.retries is not None:
        out[key(Kind.RETRIES)] = share(int(record.retries[ids].sum()))
    if record.fallback is not None:
        reasons = record.fallback[ids]
        for reason in REASONS:
            out[key(Kind.FALLBACKS, reason.label)] = float((reasons == int(reason)).sum())
    from sim.metrics.summary import latency_statistics  # here: summary imports this module

    for statistic, value in latency_statistics(latency[degraded]).items():
        out[key(Kind.DEGRADED_LATENCY, statistic)] = value
    return out


def recovery_times(window: "RequestColumns", outages, warmup: float, end: float) -> list[float]:
    """Per outage starting in [warmup, end): seconds from its start to the last request it hurt."""
    starts = sorted(start for _, start, _ in outages)
    arrival = window.arrival
    hurt = _is(window.outcome, HURT)
    times = []
    for i, start in enumerate(starts):
        if not warmup <= start < end:
            continue
        until = starts[i + 1] if i + 1 < len(starts) else math.inf
        mask = hurt & (arrival >= start) & (arrival < until)
        times.append(float(arrival[mask].max() - start) if mask.any() else 0.0)
    return times
