"""The load sweep: at each load, the harness and its twin on the same arrivals.

1. **Probes.** Three ``offline`` harness runs (LoadGen's offline scenario:
   a backlog kept full) measure the pipeline's maximum throughput on this
   host, ``capacity`` (their median); a short ``server`` run at ``LOW_LOAD`` x capacity
   (another seed) follows. Together they give the run conditions the
   calibration cannot see (``conditions``). The twin's own capacity (its
   bottleneck process's mean work per request) is kept beside the measured
   one. Before each load another offline probe follows the host's drift
   (the mean over every offline probe so far is used).
2. **Each load L.** Poisson arrivals at ``L x capacity`` (``server`` mode),
   drawn by ``sim.workload`` from the scenario's seed for replications
   0..R-1, long enough that every replication serves at least ``min_served``
   requests after the warm-up (662: LoadGen's minimum for a p99; filtered
   requests have no latency, so a prefilter lengthens the run). The harness
   measures them (``hil.runner.run.measure``); then the twins of the very
   scenario that was measured are simulated (``TWINS``: the calibration
   alone, each correction added in turn, and a diagnostic one) over the same
   replications 0..R-1, so each sees exactly the arrivals the harness issued
   (checked, request by request): prediction and measurement are paired.

Both results folders are written in the standard format (``measured/``,
``simulated/`` under ``load-<L>/``), so ``dgsim check --results`` reads
either.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from hil.runner.layout import FRONT, GPU, Layout, build_models, lay_out
from hil.runner.load import prepare
from hil.runner.run import Settings, measure
from hil.validate.conditions import LOW_LOAD, Conditions, adjusted, loop_turn, pickup, service_ratios
from hil.validate.twin import pass_fractions, read_calibration, twin_scenario
from sim.calibration import CalibratedCost, write_calibration
from sim.contract.metric_keys import Kind, MetricKey, Subject
from sim.experiment import ExperimentResult, VariantResult, run_replication
from sim.metrics.records import column
from sim.metrics.summary import combine
from sim.plan import compile_plan
from sim.results import write_results
from sim.scenario.schema import Scenario

P99_MIN = 662  # LoadGen's minimum query count for a 99th percentile


@dataclass(frozen=True)
class SweepOptions:
    loads: tuple[float, ...] = (0.3, 0.5, 0.7, 0.9)
    replications: int = 3  # measured runs per load; the twins simulate the same replications (same arrivals)
    min_served: int = P99_MIN
    probe_duration: float = 6.0  # seconds of load (after the warm-up) in each probe run
    duration: Optional[float] = None  # per-load duration floor (the run lengthens it to reach min_served)
    kinds: tuple[str, ...] = ("shm",)
    backend: str = "auto"
    reply_timeout: float = 10.0


# calibration only; + in-run service from the probes; + loop turns and polling (the prediction);
# diagnostic: the twin given the mean service times measured in that very run
TWINS = ("calibration", "load", "twin", "in-run")
PROBE_SEED = 7919  # added to the seed of the low-load probe, so it never replays a validation run's arrivals


@dataclass(frozen=True)
class LoadPoint:
    load: float
    rate: float
    measured: VariantResult
    simulated: dict[str, VariantResult]  # by twin (TWINS); "twin" is the prediction
    predicted: dict[str, dict]  # by twin: its estimates, utilisation without the loop's turns (as the harness counts)
    conditions: Conditions  # as used at this load (full-backlog figures: the mean of every offline probe so far)
    capacity: float  # measured by the offline probe just before this load
    identical_arrivals: bool  # the paired replications' arrival times are equal, request by request
    folder: Path


@dataclass(frozen=True)
class Sweep:
    variant: str
    capacity: float  # measured, requests/s
    capacity_predicted: dict[str, float]  # by twin: the bottleneck's estimate (load-dependent twins at load 1)
    bottleneck: str  # the twin's bottleneck pool
    pass_fraction: dict[str, float]
    served_fraction: float
    conditions: Conditions  # from the first probes
    points: list[LoadPoint]
    layout: Layout  # as laid out for the sweep (sizes, cores, models)


Say = Callable[[str], None]


def relaid(layout: Layout, scenario: Scenario) -> Layout:
    """``layout`` for a rewritten scenario (same variant, models already built)."""
    fresh = lay_out(compile_plan(scenario, layout.label, layout.plan.base_dir), layout.variant, layout.label)
    models = {s.name: s.model for s in layout.stages}
    return replace(fresh, stages=tuple(replace(s, model=models.get(s.name, s.model)) for s in fresh.stages))


def predicted_capacity(twin: Scenario, base_dir: Path) -> tuple[float, str]:
    """Requests/s the twin's busiest process can take, and its pool.

    Work per request on a process = the sum over its stages of the share of
    requests that reach the stage times its mean cost (a batched stage at its
    largest batch, per request: the offline backlog keeps batches full).
    """
    plan = compile_plan(twin, "twin", base_dir)
    reach, work = 1.0, {}
    for stage in plan.stages:
        pool = plan.pools[stage.pools[0]]
        batch = stage.batching.max_batch
        work[pool.name] = work.get(pool.name, 0.0) + reach * stage.costs[pool.kind].mean(batch) / batch
        reach *= stage.pass_probability
    pool = max(work, key=work.get)
    return 1.0 / work[pool], pool


class Runner:
    """The harness runs of a sweep: same layout, transports and backend; results under ``out``."""

    def __init__(self, layout: Layout, options: SweepOptions, out: Path, say: Say):
        self.layout, self.options, self.out, self.say = layout, options, out, say

    def __call__(self, scenario: Scenario, mode: str, rate: Optional[float], minimum: int, folder: str,
                 note: str) -> VariantResult:
        o = self.options
        scenario, notes = prepare(scenario, mode, rate, 1.0, minimum, self.layout.plan.base_dir)
        layout = relaid(self.layout, scenario)
        settings = Settings(mode, o.kinds, o.backend, minimum, o.reply_timeout, notes=(f"validate: {note}", *notes))
        m = measure([layout], settings, self.out / folder, say=lambda t: self.say(f"  {note}: {t}"))
        if m.result is None or m.interrupted or m.problems:
            raise RuntimeError(f"{note}: the harness run failed: {'; '.join(m.problems) or 'interrupted'}")
        return m.result.variants[layout.variant]


def with_run(scenario: Scenario, **run) -> Scenario:
    return scenario.model_copy(update={"run": scenario.run.model_copy(update=run)})


def run_sweep(layout: Layout, calibration: Path, options: SweepOptions, out: Path, say: Say = print) -> Sweep:
    """Probe the run conditions, then measure every load; simulate the twins of each measured scenario."""
    layout = build_models(layout)
    base, base_dir, kinds = layout.scenario, layout.plan.base_dir, options.kinds
    calibration = Path(calibration).resolve()
    passes = pass_fractions(layout)
    served_fraction = float(np.prod(list(passes.values()))) if passes else 1.0
    for s in layout.stages:
        if s.op != "prefilter" and s.pass_probability < 1:
            served_fraction *= s.pass_probability
    plain = twin_scenario(layout, calibration, kinds, passes)
    plan = compile_plan(plain, "twin", base_dir)
    means = {s.name: (lambda n, c=s.costs[plan.pools[s.pools[0]].kind]: c.mean(n)) for s in plan.stages
             if isinstance(s.costs[plan.pools[s.pools[0]].kind], CalibratedCost)}
    run = Runner(layout, options, out, say)

    entries = read_calibration(calibration).entries

    def transport(kind: str, size: float) -> float:
        entry = entries[f"transport.{kind}"]
        return entry.mean(size) if entry.kind == "affine" else entry.mean()

    def offline_probe(folder: str, note: str):
        """Capacity, in-run/calibrated service under a full backlog, the loop's turn per side."""
        result = run(with_run(base, duration=base.run.warmup + options.probe_duration, replications=1),
                     "offline", None, 1, folder, note)
        return (result.estimates[MetricKey(Kind.THROUGHPUT).name].mean, service_ratios(result.frame, layout, means),
                {side: loop_turn(result.frame, layout, side) for side in (FRONT, GPU)})

    # the capacity: the median of three offline probes, so that one slow spell of the shared host does not set
    # every load's rate; their service ratios and turns open the list of probes (below)
    first = [offline_probe(f"probe-offline-{i}", f"capacity probe {i + 1}/3 (offline)") for i in range(3)]
    capacity = float(np.median([c for c, _, _ in first]))
    probes = [(h, t) for _, h, t in first]
    high = {k: float(np.mean([h[k] for h, _ in probes])) for k in probes[0][0]}
    turn = {k: float(np.mean([t[k] for _, t in probes])) for k in probes[0][1]}
    low = run(with_run(base, duration=base.run.warmup + 2 * options.probe_duration, replications=1,
                       seed=base.run.seed + PROBE_SEED),
              "server", LOW_LOAD * capacity, 1, "probe-low", f"low-load probe ({LOW_LOAD:g} x capacity)")
    idle_pickup, sizes = pickup(out / "probe-low" / "stream" / layout.variant / "r0", transport)
    conditions = Conditions(low=service_ratios(low.frame, layout, means), high=high, turn=turn, pickup=idle_pickup,
                            sizes=sizes)
    say(f"capacity {capacity:.1f} requests/s; in-run/calibrated service at load {LOW_LOAD:g}: "
        + ", ".join(f"{k} {v:.2f}" for k, v in conditions.low.items()) + "; at load 1: "
        + ", ".join(f"{k} {v:.2f}" for k, v in conditions.high.items())
        + f"; pickup {idle_pickup * 1e3:.2f} ms; message bytes {sizes}")

    def twins(measured: Scenario, load: float, folder: Path, c: Conditions, frame=None) -> dict[str, Scenario]:
        mlayout = relaid(layout, measured)
        folder.mkdir(parents=True, exist_ok=True)
        variants = [("load", replace(c, turn={})), ("twin", c)]
        if frame is not None:
            own = service_ratios(frame, layout, means)
            variants.append(("in-run", replace(c, low=own, high=own)))
        files = {}
        for name, v in variants:
            files[name] = write_calibration(adjusted(read_calibration(calibration), mlayout, v, load,
                                                     f"probes at loads {LOW_LOAD:g} and 1"),
                                            folder / f"calibration-{name}.yaml")
        out = {"calibration": twin_scenario(mlayout, calibration, kinds, passes),
               "load": twin_scenario(mlayout, files["load"], kinds, passes)}
        for name in files.keys() - {"load"}:
            out[name] = twin_scenario(mlayout, files[name], kinds, passes, c.pickup, c.sizes)
        return out

    capacities = {name: predicted_capacity(t, base_dir)[0]
                  for name, t in twins(base, 1.0, out / "capacity-twin", conditions).items()}
    bottleneck = predicted_capacity(plain, base_dir)[1]
    points = []
    for load in options.loads:
        rate = load * capacity
        arrivals = math.ceil(1.1 * options.min_served / max(served_fraction, 1e-3))
        # 8% above the expected time, so that a Poisson sequence a little short of arrivals is rarely lengthened
        duration = math.ceil(max(options.duration or 0.0, base.run.warmup + 1.08 * arrivals / rate) * 10) / 10
        folder = out / f"load-{load:.2f}"
        # re-probe: the host drifts as other work comes and goes, in spells of seconds to minutes; the mean over
        # every offline probe so far follows the drift without chasing one spell. Low-load ratios move alike.
        now, high, turn = offline_probe(f"load-{load:.2f}/probe-offline", f"load {load:g}: drift probe (offline)")
        probes.append((high, turn))
        high = {k: float(np.mean([h.get(k, 1.0) for h, _ in probes])) for k in high}
        turn = {k: float(np.mean([t.get(k, 0.0) for _, t in probes])) for k in turn}
        here = replace(conditions, high=high, turn=turn, low={
            k: v * high.get(k, 1.0) / conditions.high.get(k, 1.0) for k, v in conditions.low.items()})
        say(f"load {load:g}: {rate:.2f} requests/s for {duration:g} s x {options.replications} (capacity now "
            f"{now:.1f}/s)")
        measured = run(with_run(base, duration=duration, replications=options.replications), "server",
                                rate, arrivals, f"load-{load:.2f}/measured", f"load {load:g}")
        simulated = {name: simulate_twin(t, base_dir, layout.variant, options.replications,
                                         folder / ("simulated" if name == "twin" else f"simulated-{name}"))
                     for name, t in twins(measured.scenario, load, folder / "twin", here, measured.frame).items()}
        predicted = {name: batch_busy(result, layout, conditions.turn if name in ("twin", "in-run") else {})
                     for name, result in simulated.items()}
        points.append(LoadPoint(load, rate, measured, simulated, predicted, here, now,
                                same_arrivals(measured, simulated["twin"]), folder))
    return Sweep(layout.variant, capacity, capacities, bottleneck, passes, served_fraction, conditions, points, layout)


def simulate_twin(twin: Scenario, base_dir: Path, variant: str, replications: int, out: Path) -> VariantResult:
    """Simulate replications 0..n-1 of the twin; write its results folder."""
    twin = twin.model_copy(update={"run": twin.run.model_copy(update={"replications": replications})})
    plan = compile_plan(twin, "twin", base_dir)
    runs = [run_replication(plan, r) for r in range(replications)]
    import pandas as pd

    frame = pd.concat([f for f, _ in runs], ignore_index=True)
    metrics = tuple(m for _, m in runs)
    result = VariantResult(variant, twin, frame, metrics, combine(metrics))
    write_results(ExperimentResult(twin.name, "simulation", twin.run.seed, {variant: result}), out, base_dir)
    return result


def batch_busy(result: VariantResult, layout: Layout, turn: dict[str, float]) -> dict:
    """The result's estimates with each pool's utilisation less the loop's turns the twin added to its batches."""
    if not any(turn.values()):
        return result.estimates
    run = result.scenario.run
    runs = []
    for r, metrics in enumerate(result.runs):
        rows = result.frame[result.frame["replication"] == r]
        metrics = dict(metrics)
        for stage in layout.stages:
            starts = rows[column(stage.name, "start")]
            count = starts[(starts >= run.warmup) & (starts < run.duration)].nunique()
            key = MetricKey(Kind.UTILISATION, Subject.pool(stage.pool)).name
            metrics[key] = metrics.get(key, 0.0) - count * turn.get(stage.side, 0.0) / (run.duration - run.warmup)
        runs.append(metrics)
    return combine(runs)


def same_arrivals(measured: VariantResult, simulated: VariantResult) -> bool:
    """Whether every measured replication's arrival times equal the simulated replication of that index."""
    for r, rows in measured.frame.groupby("replication"):
        sim = simulated.frame[simulated.frame["replication"] == r]
        a = rows.sort_values("id")["arrival"].to_numpy()
        b = sim.sort_values("id")["arrival"].to_numpy()
        if len(a) != len(b) or not np.array_equal(a, b):
            return False
    return True


def sides(layout: Layout) -> dict[str, list[str]]:
    """The pools of each process, for reading utilisation."""
    return {side: sorted({s.pool for s in layout.side_stages(side)}) for side in (FRONT, GPU)}
