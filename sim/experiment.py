"""An experiment: every variant of a scenario, over several replications.

Replication ``r`` of every variant uses the same seed material, so designs
are compared on common random numbers: the same arrivals, the same
prefilter decisions and, where stages match, the same service-time streams.
Same scenario and seed give the same numbers, byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import pandas as pd

from sim.metrics.summary import Estimate, combine, summarise
from sim.model.collect import collect
from sim.model.system import System
from sim.plan import compile_plan
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


def run_variant(scenario_file: ScenarioFile, variant: str, progress: Optional[Progress] = None) -> VariantResult:
    scenario = scenario_file.resolve(variant)
    plan = compile_plan(scenario, label=str(scenario_file.path), base_dir=scenario_file.path.parent)
    run = scenario.run
    frames, runs = [], []
    for replication in range(run.replications):
        arrivals = generate_arrivals(scenario.workload, run.duration, run.seed, replication, plan.base_dir)
        report = (lambda f, r=replication: progress(variant, r, f)) if progress else None
        output = System(plan, arrivals, run.seed, replication).run(report)
        frame, usage = collect(output, replication)
        frames.append(frame)
        runs.append(summarise(frame, usage, run.warmup, run.duration))
    return VariantResult(variant, scenario, pd.concat(frames, ignore_index=True), tuple(runs), combine(runs))


def simulate(
    scenario_file: ScenarioFile, variants: Optional[Sequence[str]] = None, progress: Optional[Progress] = None
) -> ExperimentResult:
    names = list(variants) if variants else scenario_file.variant_names
    results = {name: run_variant(scenario_file, name, progress) for name in names}
    first = next(iter(results.values())).scenario
    return ExperimentResult(first.name, "simulation", first.run.seed, results)
