"""An experiment: every variant of a scenario, over several replications.

Replication ``r`` of every variant uses the same seed material, so designs
are compared on common random numbers: the same arrivals, the same
prefilter decisions and, where stages match, the same service-time streams.
Same scenario and seed give the same numbers, byte for byte.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import pandas as pd

from sim.metrics.summary import Estimate, combine, summarise
from sim.model.collect import collect
from sim.model.system import System
from sim.plan import Plan, compile_plan
from sim.scenario.load import ScenarioFile
from sim.scenario.schema import Scenario
from sim.workload import generate_arrivals

Progress = Callable[[str, int, float], None]


@dataclass(frozen=True)
class VariantResult:
    name: str
    scenario: Scenario
    frame: pd.DataFrame  # all replications, column ``replication``
    runs: tuple[dict[str, float], ...]
    estimates: dict[str, Estimate]


@dataclass(frozen=True)
class ExperimentResult:
    scenario: str
    source: str  # "simulation" or "measurement"
    seed: int
    variants: dict[str, VariantResult]


def run_replication(plan: Plan, replication: int, progress: Optional[Callable[[float], None]] = None
                    ) -> tuple[pd.DataFrame, dict[str, float]]:
    """Simulate replication ``replication`` of a plan: its request table and metrics."""
    run = plan.scenario.run
    arrivals = generate_arrivals(plan.scenario.workload, run.duration, run.seed, replication, plan.base_dir)
    output = System(plan, arrivals, run.seed, replication).run(progress)
    frame, usage = collect(output, replication)
    return frame, summarise(frame, usage, run.warmup, run.duration)


def _replication_task(scenario_file: ScenarioFile, variant: str, replication: int
                      ) -> tuple[pd.DataFrame, dict[str, float]]:
    scenario = scenario_file.resolve(variant)
    plan = compile_plan(scenario, label=str(scenario_file.path), base_dir=scenario_file.path.parent)
    return run_replication(plan, replication)


def run_variants(
    scenario_file: ScenarioFile,
    variants: Sequence[str],
    replications: Optional[range] = None,
    progress: Optional[Progress] = None,
    jobs: int = 1,
) -> dict[str, VariantResult]:
    """Simulate variants over ``replications`` (default: each one's run.replications).

    With ``jobs`` > 1 the replications run in that many worker processes;
    the results are identical to a sequential run, only sooner.
    """
    scenarios = {v: scenario_file.resolve(v) for v in variants}
    tasks = [(v, r) for v in variants
             for r in (replications if replications is not None else range(scenarios[v].run.replications))]
    outputs: dict[tuple[str, int], tuple[pd.DataFrame, dict[str, float]]] = {}
    if jobs > 1 and len(tasks) > 1:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["sim.experiment"])
        with ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=context) as pool:
            futures = {pool.submit(_replication_task, scenario_file, v, r): (v, r) for v, r in tasks}
            for future in as_completed(futures):
                outputs[futures[future]] = future.result()
                if progress:
                    progress(*futures[future], 1.0)
    else:
        for variant, replication in tasks:
            plan = compile_plan(scenarios[variant], label=str(scenario_file.path), base_dir=scenario_file.path.parent)
            report = (lambda f, v=variant, r=replication: progress(v, r, f)) if progress else None
            outputs[variant, replication] = run_replication(plan, replication, report)
    results = {}
    for variant in variants:
        done = [outputs[task] for task in tasks if task[0] == variant]
        runs = tuple(metrics for _, metrics in done)
        frame = pd.concat([f for f, _ in done], ignore_index=True)
        results[variant] = VariantResult(variant, scenarios[variant], frame, runs, combine(runs))
    return results


def run_variant(scenario_file: ScenarioFile, variant: str, progress: Optional[Progress] = None,
                replications: Optional[range] = None, jobs: int = 1) -> VariantResult:
    """Simulate one variant over ``replications`` (default: the scenario's run.replications)."""
    return run_variants(scenario_file, [variant], replications, progress, jobs)[variant]


def simulate(
    scenario_file: ScenarioFile,
    variants: Optional[Sequence[str]] = None,
    progress: Optional[Progress] = None,
    jobs: int = 1,
) -> ExperimentResult:
    names = list(variants) if variants else scenario_file.variant_names
    results = run_variants(scenario_file, names, None, progress, jobs)
    first = next(iter(results.values())).scenario
    return ExperimentResult(first.name, "simulation", first.run.seed, results)
