"""How much data a verdict needs, and how much a metric has.

A check may pass or fail only on evidence. Its metric has evidence when,
in every replication behind it:

1. the metric has a value: a metric missing from the results, or null
   (NaN) in a replication, is no data;
2. at least one request was served (completed or deadline-missed; of the
   class, for a class metric): a design that answers nothing has no
   latency, and its utilisation, rates or throughput say nothing about
   meeting the SLO;
3. a latency percentile ``q`` rests on at least
   ``n_min(q) = ceil(ln(0.025) / ln(q))`` served requests: 6 for p50, 36
   for p90, 72 for p95, 368 for p99, 3688 for p99.9. With fewer, even the
   largest of ``n`` observations is below the true q-quantile with
   probability ``q**n`` > 2.5 %, so the data cannot bound the percentile
   from above at 97.5 % confidence (the distribution-free confidence bound
   on a quantile from order statistics: Conover, *Practical Nonparametric
   Statistics*, 3rd ed., 1999, section 3.2; Hahn, Meeker and Escobar,
   *Statistical Intervals*, 2nd ed., 2017, chapter 5). MLPerf LoadGen
   asks far more (270,336 queries for a p99 at 99 % confidence and a
   0.05 % margin) because it reports one run's percentile as the result;
   dgsim's verdict rests on the interval over replications, so it asks
   each replication only to have a percentile at all.

A check that lacks evidence is INVALID, and INVALID fails. ``samples`` is
the fewest served requests in any replication, what reports show as ``n``
beside the number of replications.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

from sim.contract.metric_keys import ALL, Kind, MetricKey, Namespace, Subject
from sim.contract.outcomes import SERVED_LABELS
from sim.metrics.summary import Estimate

TAIL_ALPHA = 0.025  # chance that every observation falls below the percentile, at most


def samples_needed(key: MetricKey) -> int:
    """Served requests a replication needs for ``key``: n_min(q) for a latency percentile, else 1."""
    if key.percent is None:
        return 1
    return math.ceil(math.log(TAIL_ALPHA) / math.log(key.percent / 100))


def served(estimates: Mapping[str, Estimate], subject: Subject) -> Optional[tuple[float, ...]]:
    """Served requests per replication, of one class or (any other subject) of the workload; None if not recorded."""
    counted = subject if subject.namespace is Namespace.CLASS else ALL
    parts = [estimates.get(MetricKey(Kind.REQUESTS, counted, label).name) for label in SERVED_LABELS]
    if any(p is None for p in parts):
        return None
    return tuple(sum(values) for values in zip(*(p.values for p in parts)))


@dataclass(frozen=True)
class Evidence:
    replications: int  # replications with a value for the metric
    samples: Optional[int]  # fewest served requests in a replication; None when not recorded
    problem: Optional[str]  # why the data cannot decide; None when it can


def evidence(key: MetricKey, estimates: Mapping[str, Estimate]) -> Evidence:
    """Whether ``estimates`` hold enough data to judge ``key`` (the rules above)."""
    e = estimates.get(key.name)
    counts = served(estimates, key.subject)
    fewest = None if not counts or any(_missing(c) for c in counts) else int(min(counts))
    have = 0 if e is None else sum(not _missing(v) for v in e.values)
    whose = f" of class '{key.subject.name}'" if key.subject.namespace is Namespace.CLASS else ""
    idle = [r + 1 for r, n in enumerate(counts or ()) if not _missing(n) and n < 1]
    if idle:  # the root cause of any missing value: say it first
        return Evidence(have, fewest, f"no data: no request{whose} served in replication(s) {_list(idle)}")
    if e is None or not e.values:
        return Evidence(0, fewest, f"no data: no metric '{key.name}' in the results")
    empty = [r + 1 for r, v in enumerate(e.values) if _missing(v)]
    if empty:
        return Evidence(have, fewest, f"no data: '{key.name}' is null in replication(s) {_list(empty)}")
    if counts is None:
        return Evidence(have, None, f"cannot count the samples: no served-request counts "
                                    f"({', '.join(MetricKey(Kind.REQUESTS, ALL, s).name for s in SERVED_LABELS)}) "
                                    f"in the results")
    if fewest is None:
        return Evidence(have, None, "cannot count the samples: served-request counts are null")
    needed = samples_needed(key)
    short = [r + 1 for r, n in enumerate(counts) if n < needed]
    if short:
        return Evidence(have, fewest, f"too few samples: a {key.statistic.replace('p999', 'p99.9')} needs at least "
                                      f"{needed} served requests{whose} per replication (docs/ci.md), replication "
                                      f"{short[0]} had {int(counts[short[0] - 1])}")
    return Evidence(have, fewest, None)


def _missing(value: Optional[float]) -> bool:
    return value is None or math.isnan(value)


def _list(replications: Sequence[int]) -> str:
    shown = ", ".join(map(str, replications[:5]))
    return shown + (f" and {len(replications) - 5} more" if len(replications) > 5 else "")
