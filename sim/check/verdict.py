"""Verdicts that respect noise, and the replications it takes to reach them.

A simulated p99 is a random number: run it again with other seeds and it
moves. So a budget is judged on the 95 % confidence interval over
replications, never on the mean alone:

- PASS when the whole interval is inside the budget (for a ceiling: the
  upper bound is at or under it);
- FAIL when the whole interval is outside (the lower bound is over it);
- otherwise the data cannot tell yet. ``replicate`` then adds replications,
  doubling their number up to a cap, and stops as soon as every budget is
  decided; one still undecided at the cap is INCONCLUSIVE, reported with
  its numbers. An INCONCLUSIVE check whose mean is over its budget counts
  as a failure, always; one whose mean is within counts as the user's
  policy says (``--inconclusive``);
- INVALID, before any of this, when the data cannot decide at all: no
  value, nothing served, or too few requests for the percentile
  (``evidence``). INVALID fails.

Replication ``r`` always uses the same seed material, so the same scenario
and seed give the same replications, the same intervals and the same
verdicts. Each look at the data is a 95 % interval; doubling keeps the
looks few (3 -> 6 -> 12 -> 20 with the defaults), so repeated looking adds
little to the chance of a wrong decision, and a wrong FAIL needs the whole
interval on the wrong side of the budget (a one-sided 2.5 % error per look).

A regression check compares with a baseline estimate instead of a fixed
number (``against``): its interval also carries the baseline's noise, so
that its decision is a one-sided t-test (paired on common random numbers
when the seeds match, Welch's otherwise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Callable, Mapping, Optional, Sequence

import numpy as np
from scipy import stats

from sim.check.budgets import MIN, Budget
from sim.check.evidence import evidence
from sim.metrics.summary import Estimate, combine, estimate

NO_DATA = Estimate(math.nan, math.nan, math.nan, ())


class Verdict(str, Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    INCONCLUSIVE = "INCONCLUSIVE"
    INVALID = "INVALID"


@dataclass(frozen=True)
class Outcome:
    budget: Budget
    verdict: Verdict
    estimate: Estimate  # as judged: for a regression check, as compared with the baseline (``against``)
    replications: int
    samples: Optional[int] = None  # fewest served requests in a replication (None: not recorded)
    reason: str = ""  # why INVALID

    @property
    def margin(self) -> float:
        """Headroom of the mean inside the bound, in the metric's unit; negative: over budget."""
        gap = self.budget.bound - self.estimate.mean
        return -gap if self.budget.direction == MIN else gap

    @property
    def word(self) -> str:
        return "REGRESSED" if self.verdict is Verdict.FAIL and self.budget.reference else self.verdict.value

    @property
    def over_budget(self) -> bool:
        """Whether the point estimate is beyond the bound (never true without one)."""
        return self.margin < 0

    def fails(self, inconclusive_fails: bool) -> bool:
        """FAIL and INVALID fail; INCONCLUSIVE fails when over budget, or by the user's policy."""
        if self.verdict is Verdict.INCONCLUSIVE:
            return inconclusive_fails or self.over_budget
        return self.verdict in (Verdict.FAIL, Verdict.INVALID)


def decide(estimate: Estimate, bound: float, direction: str) -> Verdict:
    """PASS, FAIL or INCONCLUSIVE from where the confidence interval lies."""
    low, high = estimate.low, estimate.high
    if math.isnan(low) or math.isnan(high):
        return Verdict.INCONCLUSIVE
    if direction == MIN:
        low, high, bound = -high, -low, -bound
    if high <= bound:
        return Verdict.PASS
    if low > bound:
        return Verdict.FAIL
    return Verdict.INCONCLUSIVE


def against(current: Estimate, reference: Estimate, factor: float, paired: bool = False,
            confidence: float = 0.95) -> Estimate:
    """``current`` with an interval for comparing it with ``factor`` x the reference's mean.

    The interval lies wholly beyond ``factor * reference.mean`` exactly when
    a one-sided t-test at (1 - confidence)/2 says the current mean is beyond
    it, with the noise of both runs counted:

    - ``paired`` (same seed, so replication ``r`` of both saw the same
      arrivals and service draws): the t interval of the differences
      ``current[r] - factor * reference[r]`` over the replications both
      have, placed around ``factor * reference.mean``. Common random numbers
      cancel most of the noise, so small changes are decided quickly;
    - otherwise Welch: ``current.mean +- t * se`` with ``se`` the Welch
      standard error of ``current - factor * reference`` and ``t`` its
      Welch-Satterthwaite quantile. A reference of one replication is
      taken as exact.
    """
    if paired:
        pairs = [(c, r) for c, r in zip(current.values, reference.values) if _ok(c) and _ok(r)]
        d = estimate([c - factor * r for c, r in pairs], confidence)
        centre = factor * reference.mean
        return Estimate(centre + d.mean, centre + d.low, centre + d.high, tuple(c for c, _ in pairs))
    c = _finite(current.values)
    r = _finite(reference.values)
    if len(c) < 2:
        return Estimate(current.mean, math.nan, math.nan, current.values)
    var_c = float(np.var(c, ddof=1)) / len(c)
    var_r = factor**2 * float(np.var(r, ddof=1)) / len(r) if len(r) >= 2 else 0.0
    se = math.sqrt(var_c + var_r)
    if se == 0:
        return Estimate(current.mean, current.mean, current.mean, current.values)
    df = (var_c + var_r) ** 2 / (var_c**2 / (len(c) - 1) + (var_r**2 / (len(r) - 1) if len(r) >= 2 else 0.0))
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
    return Estimate(current.mean, current.mean - half, current.mean + half, current.values)


def _ok(value: float) -> bool:
    return value is not None and not math.isnan(value)


def _finite(values: Sequence[float]) -> np.ndarray:
    return np.asarray([v for v in values if _ok(v)], dtype=float)


def judge(budget: Budget, estimates: Mapping[str, Estimate], replications: int) -> Outcome:
    e = estimates.get(budget.metric, NO_DATA)
    found = evidence(budget.key, estimates)
    if found.problem is not None:
        return Outcome(budget, Verdict.INVALID, e, replications, found.samples, found.problem)
    if budget.reference is not None:
        e = against(e, budget.reference, budget.factor, budget.paired)
        replications = min(replications, len(e.values))
    return Outcome(budget, decide(e, budget.bound, budget.direction), e, replications, found.samples)


def replicate(run: Callable[[range], Sequence[Mapping[str, float]]], budgets: Sequence[Budget],
              start: int, cap: int) -> tuple[list[Mapping[str, float]], list[Outcome]]:
    """Run ``start`` replications, then double them up to ``cap`` while a budget is undecided.

    ``run(range(a, b))`` returns the metrics of replications a..b-1. Returns
    every replication's metrics and the final outcome of each budget.
    """
    runs = list(run(range(start)))
    while True:
        n, estimates = len(runs), combine(runs)
        outcomes = [judge(b, estimates, n) for b in budgets]
        if n >= cap or all(o.verdict is not Verdict.INCONCLUSIVE for o in outcomes):
            return runs, outcomes
        runs += run(range(n, min(cap, 2 * n)))
