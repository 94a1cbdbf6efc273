"""Capacity at the SLO: the largest load that meets every budget, found by bisection on verdicts.

The search works on one variant's load axis (``sim.explore.load``):

1. bracket: 10% past the analytic bottleneck bound (``sim.explore.bound``)
   is the first high probe (at the bound itself a queue is critical and its
   verdict slow to reach); should it pass after all, the load doubles until
   one does not. The first low probe is 0.8 of the high one (a bound is
   usually tight: the search then has a narrow bracket to bisect), then
   halved until one passes;
2. bisect between the highest load that passed and the lowest that did
   not, until the bracket is within the relative ``tolerance`` (or one
   stream apart on a whole-number axis).

Each probe is judged exactly as ``dgsim check`` judges a variant: the same
budgets (``sim.check.budgets``) and the same sequential replications and
verdicts (``sim.check.verdict.replicate``). A probe passes only when every
budget PASSes; a probe that stays INCONCLUSIVE at the replication cap is
kept and reported, and counts as "not shown to pass", never as a pass. So
``low`` is a load shown to meet every budget and ``high`` one that failed
one (or could not be shown to meet it). Every probe of every variant uses
the same seed: replication r always sees the same random streams (common
random numbers), so neighbouring probes and the variants differ by the
design and the load, not by luck.

Budgets that get easier as load grows (``throughput_min``) cannot limit
capacity and are left out of the search (and reported as such).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence

from sim.check.budgets import MIN, Budget, budgets_of
from sim.check.verdict import Outcome, Verdict, replicate
from sim.explore.bound import saturation
from sim.explore.cost import DesignCost, design_cost
from sim.explore.executors import Executor
from sim.explore.load import LoadAxis, load_axis
from sim.metrics.summary import Estimate, combine
from sim.plan import compile_plan
from sim.scenario.errors import Problem, ScenarioError
from sim.scenario.load import ScenarioFile, load_scenario_file

DEFAULT_TOLERANCE = 0.02
MAX_DOUBLINGS = 6  # beyond the bound: 64x it at most
OVER_BOUND = 1.1  # the first high probe: just past the bound, where queues grow for the whole run
FIRST_LOW = 0.8  # the first low probe, as a fraction of the high one; then halving
MIN_FRACTION = 1e-3  # a continuous axis stops halving at this fraction of the bound


@dataclass(frozen=True)
class Probe:
    """One load, judged on every budget."""

    value: float
    verdict: Verdict
    replications: int
    outcomes: tuple[Outcome, ...]
    estimates: Mapping[str, Estimate]


def probe_verdict(outcomes: Sequence[Outcome]) -> Verdict:
    """PASS when every budget passed; else FAIL, INVALID (data that cannot decide), INCONCLUSIVE, in that order."""
    for worst in ("FAIL", "INVALID"):
        found = [o.verdict for o in outcomes if o.verdict.value == worst]
        if found:
            return found[0]
    if all(o.verdict is Verdict.PASS for o in outcomes):
        return Verdict.PASS
    return Verdict.INCONCLUSIVE


@dataclass(frozen=True)
class Search:
    """The probes of one search and the bracket it ended with."""

    probes: tuple[Probe, ...]  # by load
    low: Optional[Probe]  # highest load shown to pass; None: none passed
    high: Optional[Probe]  # lowest load above ``low`` that did not pass; None: every probe passed
    status: str  # "bracketed", "below" (nothing passed), "above" (all passed up to the cap)


def bisect(measure: Callable[[float], Probe], axis: LoadAxis, start_high: float, tolerance: float) -> Search:
    """Bracket, then bisect the load axis on probe verdicts (see the module docstring)."""
    probes: dict[float, Probe] = {}

    def at(value: float) -> Probe:
        if value not in probes:
            probes[value] = measure(value)
        return probes[value]

    def done(status: str, lo: Optional[float], hi: Optional[float]) -> Search:
        ordered = tuple(probes[v] for v in sorted(probes))
        return Search(ordered, probes.get(lo) if lo is not None else None,
                      probes.get(hi) if hi is not None else None, status)

    hi = axis.snap(start_high, up=True)
    floor = 1.0 if axis.whole else hi * MIN_FRACTION
    for _ in range(MAX_DOUBLINGS):
        if at(hi).verdict is not Verdict.PASS:
            break
        hi = axis.snap(hi * 2, up=True)
    else:
        if at(hi).verdict is Verdict.PASS:
            return done("above", hi, None)
    lo = axis.snap(hi * FIRST_LOW)
    while at(lo).verdict is not Verdict.PASS:
        hi = lo
        if lo <= floor:
            return done("below", None, hi)
        lo = max(axis.snap(lo / 2), floor)
    while hi - lo > max(1.0 if axis.whole else 0.0, tolerance * lo):
        mid = axis.snap((lo + hi) / 2)
        if not lo < mid < hi:
            break
        if at(mid).verdict is Verdict.PASS:
            lo = mid
        else:
            hi = mid
    return done("bracketed", lo, hi)


@dataclass(frozen=True)
class Capacity:
    """A variant's capacity at its budgets, and the state of the design there."""

    variant: str
    axis: LoadAxis
    search: Search
    bound: float  # analytic bottleneck bound, in the axis' unit
    bound_resource: str
    cost: DesignCost
    ignored: tuple[str, ...]  # budgets that cannot limit capacity

    @property
    def value(self) -> float:
        return self.search.low.value if self.search.low else 0.0

    @property
    def binding(self) -> Optional[Outcome]:
        """The budget the ``high`` probe broke (or could not show met), the furthest over."""
        if self.search.high is None:
            return None
        broken = [o for o in self.search.high.outcomes if o.verdict is not Verdict.PASS]
        failed = [o for o in broken if o.verdict is Verdict.FAIL] or broken
        return min(failed, key=_relative_margin, default=None)

    @property
    def utilisation(self) -> dict[str, Estimate]:
        """Every pool's and link's utilisation at capacity (the ``low`` probe)."""
        if self.search.low is None:
            return {}
        return {resource_name(k): e for k, e in self.search.low.estimates.items() if k.startswith("utilisation.")}

    @property
    def bottleneck(self) -> Optional[str]:
        busy = {k: e.mean for k, e in self.utilisation.items() if not math.isnan(e.mean)}
        return max(busy, key=busy.get) if busy else None


def resource_name(metric: str) -> str:
    """'utilisation.pool.gpu' -> 'gpu': the pool or link a utilisation metric is about."""
    from sim.contract.metric_keys import MetricKey

    return MetricKey.parse(metric).subject.name


def _relative_margin(outcome: Outcome) -> float:
    bound = abs(outcome.budget.bound) or 1.0
    return outcome.margin / bound if not math.isnan(outcome.margin) else math.inf


def scenario_budgets(scenario) -> list[Budget]:
    """The scenario's budgets, as ``dgsim check`` reads them (with the hardware when it takes it)."""
    import inspect

    if len(inspect.signature(budgets_of).parameters) > 1:
        return budgets_of(scenario.slo, scenario.hardware)
    return budgets_of(scenario.slo)


def capacity_checks(budgets: Sequence[Budget]) -> tuple[list[Budget], list[str]]:
    """The budgets that limit capacity, and the labels of those that cannot (floors)."""
    kept = [b for b in budgets if b.direction != MIN]
    return kept, [f"{b.label} {b.text}" for b in budgets if b.direction == MIN]


def _replication(task: tuple[ScenarioFile, str, int]) -> dict[str, float]:
    """Metrics of one replication of one variant (runs in a worker)."""
    from sim.experiment import run_variant

    scenario_file, variant, replication = task
    return run_variant(scenario_file, variant, replications=range(replication, replication + 1)).runs[0]


def find_capacity(scenario_file: ScenarioFile, variant: str, executor: Executor, tolerance: float = DEFAULT_TOLERANCE,
                  cap: int = 20, say: Callable[[str], None] = lambda line: None) -> Capacity:
    """Search one variant's capacity; ScenarioError for a scenario that has none to find."""
    scenario = scenario_file.resolve(variant)
    label = f"{scenario_file.path} (variant {variant})"
    axis = load_axis(scenario, label)
    checks, ignored = capacity_checks(scenario_budgets(scenario))
    if not checks:
        raise ScenarioError([Problem(label, "slo", "no latency, rate or utilisation budget to find the capacity at; "
                                     "add one, e.g. slo: {latency: {p99: 100 ms}}")])
    plan = compile_plan(scenario, label=label, base_dir=scenario_file.path.parent)
    rate, resource = saturation(plan)
    per_unit = axis.arrival_rate(axis.base) / axis.base
    bound = rate / per_unit if math.isfinite(rate) else math.inf
    start = bound * OVER_BOUND if math.isfinite(bound) else axis.base * 2

    def measure(value: float) -> Probe:
        probe_file = load_scenario_file(scenario_file.path, [*scenario_file.overrides, *axis.overrides(value)])
        probe_scenario = probe_file.resolve(variant)

        def run(reps: range) -> list[dict[str, float]]:
            done = executor.run(_replication, [(probe_file, variant, r) for r in reps])
            errors = [d.error for d in done if d.error]
            if errors:
                raise RuntimeError(f"{variant} at {value:g} {axis.unit}: {errors[0]}")
            return [d.value for d in done]

        runs, outcomes = replicate(run, checks, probe_scenario.run.replications, cap)
        probe = Probe(value, probe_verdict(outcomes), len(runs), tuple(outcomes), combine(runs))
        say(f"{variant}: {value:g} {axis.unit} -> {probe.verdict.value} ({probe.replications} replications)")
        return probe

    search = bisect(measure, axis, start, tolerance)
    return Capacity(variant, axis, search, bound, resource, design_cost(plan), tuple(ignored))
