"""Capacity at the SLO: the largest load that meets every budget, found by search on verdicts.

The search works on one variant's load axis (``sim.explore.load``) and
starts from the analytic bottleneck bound (``sim.explore.bound``): the load
at which a pool or link saturates, above which no steady state exists.

1. bracket: the first probe is just below the bound (the largest whole
   stream count under it; on a continuous axis the bound less one
   tolerance). If it passes, loads above it are tried in steps that start
   at the tolerance and double (1x, 2x, 4x ... the tolerance, at most a
   doubling of the load; the first step past the bound starts again from
   the tolerance, since a pass there is rare) until one does not pass; if it does not pass,
   loads below it in the same growing steps (at most a halving) until one
   does. Capacity usually sits just under the bound, so the bracket is
   then often already within the tolerance;
2. bisect between the highest load that passed and the lowest that did
   not, until the bracket is within the relative ``tolerance`` (or one
   stream apart on a whole-number axis).

Each probe is judged exactly as ``dgsim check`` judges a variant: the same
budgets (``sim.check.budgets``), the same judgement of each budget
(``sim.check.verdict.judge``) on the same sequential schedule of
replications (start with ``run.replications``, double while undecided, up
to the cap). Two rules spend fewer replications without changing what a
verdict means:

- a probe stops as soon as its verdict is decided: once one budget FAILs
  (or is INVALID) the probe cannot pass, so replications spent on deciding
  the other budgets are not run;
- a probe at the analytic bound (within one tolerance of it, or past it)
  gets no more than ``run.replications``: there the busiest pool or link
  is on average at least (1 - tolerance) busy, its queue near-critical or
  unstable; it settles far more slowly than a run lasts, so a verdict
  there measures the run's length, and more replications cannot make a
  pass meaningful. Undecided, it is INCONCLUSIVE. The answer is then at
  most about one tolerance further below the bound than a longer look
  could have shown.

A probe passes only when every budget PASSes; a probe that stays
INCONCLUSIVE is kept and reported, and counts as "not shown to pass", never
as a pass. So ``low`` is a load shown to meet every budget and ``high`` one
that failed one (or could not be shown to meet it). Every probe of every
variant uses the same seed: replication r always sees the same random
streams (common random numbers), so neighbouring probes and the variants
differ by the design and the load, not by luck.

Budgets that get easier as load grows (``throughput_min``) cannot limit
capacity and are left out of the search (and reported as such).

Several variants are searched together (``find_capacities``): each search
is a generator that yields the replications it needs next, and the
replications all searches need are handed to the executor as one batch, so
on several workers the probes of different variants run in parallel. A
search's probes and verdicts depend only on its own replications: the
same answer, to the byte, on one worker or many.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Generator, Mapping, Optional, Sequence

from sim.check.budgets import MIN, Budget, budgets_of
from sim.check.verdict import Outcome, Verdict, judge
from sim.contract.metric_keys import Kind, MetricKey, Namespace, Subject
from sim.explore.bound import Saturation, saturation
from sim.explore.cost import DesignCost, design_cost
from sim.explore.executors import Executor
from sim.explore.load import LoadAxis, load_axis
from sim.metrics.summary import Estimate, combine
from sim.plan import compile_plan
from sim.scenario.errors import Problem, ScenarioError
from sim.scenario.load import ScenarioFile, load_scenario_file

DEFAULT_TOLERANCE = 0.02
MAX_UP_STEPS = 12  # growing steps above the first probe: past 64x it at most
MAX_STEP_UP = 1.0  # a step up at most doubles the load
MAX_STEP_DOWN = 0.5  # a step down at most halves it
MIN_FRACTION = 1e-3  # a continuous axis stops stepping down at this fraction of the first probe

Steps = Generator[Any, Any, Any]  # yields what it needs next (replications to run), is sent the answer


@dataclass(frozen=True)
class Probe:
    """One load, judged on every budget."""

    value: float
    verdict: Verdict
    replications: int
    outcomes: tuple[Outcome, ...]
    estimates: Mapping[str, Estimate]
    at_bound: bool = False  # within one tolerance of the analytic bound, or past it: held at run.replications


def probe_verdict(outcomes: Sequence[Outcome]) -> Verdict:
    """PASS when every budget passed; else FAIL, INVALID (data that cannot decide), INCONCLUSIVE, in that order."""
    for worst in (Verdict.FAIL, Verdict.INVALID):
        if any(o.verdict is worst for o in outcomes):
            return worst
    if all(o.verdict is Verdict.PASS for o in outcomes):
        return Verdict.PASS
    return Verdict.INCONCLUSIVE


def replicate_probe(budgets: Sequence[Budget], start: int, cap: int) -> Steps:
    """``dgsim check``'s schedule (start, then doubling up to ``cap`` while undecided), stopping once the
    probe's verdict is decided: every budget decided, or one FAIL/INVALID (the probe cannot pass then).

    A generator: it yields the ``range`` of replications it needs next and is sent their metrics;
    it returns every replication's metrics and each budget's outcome (drive it with ``complete``)."""
    runs = list((yield range(start)))
    while True:
        n, estimates = len(runs), combine(runs)
        outcomes = [judge(b, estimates, n) for b in budgets]
        if n >= cap or probe_verdict(outcomes) is not Verdict.INCONCLUSIVE:
            return runs, outcomes
        runs += (yield range(n, min(cap, 2 * n)))


def complete(steps: Steps, answer: Callable[[Any], Any]) -> Any:
    """Run a generator of steps to its end, answering each request it yields with ``answer(request)``."""
    try:
        request = next(steps)
        while True:
            request = steps.send(answer(request))
    except StopIteration as stop:
        return stop.value


def _at_once(value: Any) -> Steps:
    """A generator of no steps that returns ``value``."""
    return value
    yield  # pragma: no cover - makes this a generator


@dataclass(frozen=True)
class Search:
    """The probes of one search and the bracket it ended with."""

    probes: tuple[Probe, ...]  # by load
    low: Optional[Probe]  # highest load shown to pass; None: none passed
    high: Optional[Probe]  # lowest load above ``low`` that did not pass; None: every probe passed
    status: str  # "bracketed", "below" (nothing passed), "above" (all passed up to the cap)


def first_probe(axis: LoadAxis, bound: float, tolerance: float) -> float:
    """Just below the analytic bound; the scenario's own load when there is no bound."""
    if not math.isfinite(bound) or bound <= 0:
        return axis.base
    return axis.snap(bound) if axis.whole else bound * (1 - tolerance)


def search(measure: Callable[[float], Probe], axis: LoadAxis, bound: float, tolerance: float) -> Search:
    """Bracket from the bound, then bisect the load axis on ``measure``'s verdicts (see the module docstring)."""
    return complete(search_steps(lambda value: _at_once(measure(value)), axis, bound, tolerance), lambda _: None)


def search_steps(measure: Callable[[float], Steps], axis: LoadAxis, bound: float, tolerance: float) -> Steps:
    """``search`` as a generator: ``measure(value)`` is a generator of steps that returns the probe."""
    probes: dict[float, Probe] = {}

    def passes(value: float) -> Steps:
        if value not in probes:
            probes[value] = yield from measure(value)
        return probes[value].verdict is Verdict.PASS

    def done(status: str, lo: Optional[float], hi: Optional[float]) -> Search:
        ordered = tuple(probes[v] for v in sorted(probes))
        return Search(ordered, probes.get(lo) if lo is not None else None,
                      probes.get(hi) if hi is not None else None, status)

    def above(value: float, step: float) -> float:  # the furthest load within ``step`` (at least one stream)
        return max(axis.snap(value * (1 + step)), value + 1) if axis.whole else value * (1 + step)

    def below(value: float, step: float) -> float:
        return min(axis.snap(value * (1 - step), up=True), value - 1) if axis.whole else value * (1 - step)

    start = first_probe(axis, bound, tolerance)
    step = tolerance if math.isfinite(bound) else MAX_STEP_UP
    if (yield from passes(start)):
        lo, hi = start, None
        for _ in range(MAX_UP_STEPS):
            value = above(lo, step)
            if not (yield from passes(value)):
                hi = value
                break
            crossed = lo <= bound < value  # past the bound the steps start again from the tolerance
            lo, step = value, tolerance if crossed else min(2 * step, MAX_STEP_UP)
        if hi is None:
            return done("above", lo, None)
    else:
        floor = 1.0 if axis.whole else start * MIN_FRACTION
        lo, hi = None, start
        while lo is None:
            if hi <= floor:
                return done("below", None, hi)
            value = max(below(hi, step), floor)
            if (yield from passes(value)):
                lo = value
            else:
                hi, step = value, min(2 * step, MAX_STEP_DOWN)
    while hi - lo > max(1.0 if axis.whole else 0.0, tolerance * lo):
        mid = axis.snap((lo + hi) / 2)
        if not lo < mid < hi:
            break
        if (yield from passes(mid)):
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
    bound_resource: Optional[Subject]  # the pool or link that saturates first there
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
    def utilisation(self) -> dict[Subject, Estimate]:
        """Every pool's and link's utilisation at capacity (the ``low`` probe), by pool or link."""
        if self.search.low is None:
            return {}
        return utilisations(self.search.low.estimates)

    @property
    def bottleneck(self) -> Optional[Subject]:
        busy = {k: e.mean for k, e in self.utilisation.items() if not math.isnan(e.mean)}
        return max(busy, key=busy.get) if busy else None


def utilisations(estimates: Mapping[str, Estimate]) -> dict[Subject, Estimate]:
    """The utilisation estimates among ``estimates``, keyed by their pool or link."""
    out = {}
    for name, e in estimates.items():
        key = MetricKey.parse(name)
        if key.kind is Kind.UTILISATION:
            out[key.subject] = e
    return out


def resource_label(subject: Subject) -> str:
    """How capacity.json names a pool or link: 'pool.gpu', 'link.pcie' (pools and links are separate namespaces)."""
    return f"{subject.namespace.value}.{subject.name}"


def resource_of(label: str) -> Subject:
    """``resource_label`` read back: 'pool.gpu' -> the pool gpu (a name may hold dots: 'pool.srv[0].gpu')."""
    namespace, _, name = label.partition(".")
    return Subject(Namespace(namespace), name)


def _relative_margin(outcome: Outcome) -> float:
    bound = abs(outcome.budget.bound) or 1.0
    return outcome.margin / bound if not math.isnan(outcome.margin) else math.inf


def scenario_budgets(scenario) -> list[Budget]:
    """The scenario's budgets, as ``dgsim check`` reads them (with the hardware, which keys utilisation budgets)."""
    return budgets_of(scenario.slo, scenario.hardware)


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
    return find_capacities(scenario_file, [variant], executor, tolerance, cap, say)[0]


def find_capacities(scenario_file: ScenarioFile, variants: Sequence[str], executor: Executor,
                    tolerance: float = DEFAULT_TOLERANCE, cap: int = 20,
                    say: Callable[[str], None] = lambda line: None) -> list[Capacity]:
    """Every variant's capacity, in ``variants`` order. The searches advance together: the replications
    each one needs next go to the executor in one batch, so independent probes of different variants run
    in parallel on several workers. Each search's probes and verdicts are its own, whatever else runs."""
    searches = [_capacity_steps(scenario_file, v, tolerance, cap, say) for v in variants]
    results: list[Optional[Capacity]] = [None] * len(searches)
    asked: dict[int, list] = {}
    for i, steps in enumerate(searches):
        try:
            asked[i] = next(steps)
        except StopIteration as stop:
            results[i] = stop.value
    while asked:
        order = sorted(asked)
        done = executor.run(_replication, [task for i in order for task in asked[i]])
        at = 0
        for i in order:
            mine, at = done[at:at + len(asked[i])], at + len(asked[i])
            try:
                asked[i] = searches[i].send(mine)
            except StopIteration as stop:
                results[i] = stop.value
                del asked[i]
    return results  # type: ignore[return-value]


def _capacity_steps(scenario_file: ScenarioFile, variant: str, tolerance: float, cap: int,
                    say: Callable[[str], None]) -> Steps:
    """One variant's search as a generator: yields replication tasks, is sent their ``Done`` results."""
    scenario = scenario_file.resolve(variant)
    label = f"{scenario_file.path} (variant {variant})"
    axis = load_axis(scenario, label)
    checks, ignored = capacity_checks(scenario_budgets(scenario))
    if not checks:
        raise ScenarioError([Problem(label, "slo", "no latency, rate or utilisation budget to find the capacity at; "
                                     "add one, e.g. slo: {latency: {p99: 100 ms}}")])
    plan = compile_plan(scenario, label=label, base_dir=scenario_file.path.parent)
    first: Saturation = saturation(plan)
    per_unit = axis.arrival_rate(axis.base) / axis.base
    bound = first.rate / per_unit if math.isfinite(first.rate) else math.inf

    def measure(value: float) -> Steps:
        probe_file = load_scenario_file(scenario_file.path, [*scenario_file.overrides, *axis.overrides(value)])
        start = probe_file.resolve(variant).run.replications
        at_bound = axis.arrival_rate(value) >= (1 - tolerance) * first.rate * (1 - 1e-9)
        limit = min(cap, start) if at_bound else cap
        replications = replicate_probe(checks, min(start, limit), limit)
        reps = next(replications)
        while True:
            done = yield [(probe_file, variant, r) for r in reps]
            errors = [d.error for d in done if d.error]
            if errors:
                raise RuntimeError(f"{variant} at {value:g} {axis.unit}: {errors[0]}")
            try:
                reps = replications.send([d.value for d in done])
            except StopIteration as stop:
                runs, outcomes = stop.value
                break
        probe = Probe(value, probe_verdict(outcomes), len(runs), tuple(outcomes), combine(runs), at_bound)
        say(f"{variant}: {value:g} {axis.unit} -> {probe.verdict.value} ({probe.replications} replications"
            f"{', at the analytic bound' if at_bound else ''})")
        return probe

    found = yield from search_steps(measure, axis, bound, tolerance)
    return Capacity(variant, axis, found, bound, first.resource, design_cost(plan), tuple(ignored))
