"""Checking one variant: its budgets and regressions on simulated or measured data.

A simulated variant starts with the scenario's ``run.replications`` and
adds replications while a check is undecided (``verdict.replicate``).
Measured results (``dgsim hil run``, or any results folder) are judged as
they are: they cannot be extended, so what their interval leaves open is
INCONCLUSIVE. Either way the result is a ``VariantCheck``, which the
reports, the JUnit file and the baseline are written from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Optional

from sim.check.baseline import Recorded, regression_budgets
from sim.check.budgets import Budget, budgets_of
from sim.check.diagnose import diagnose
from sim.check.verdict import Outcome, judge, replicate
from sim.metrics.summary import Estimate, combine
from sim.scenario.load import ScenarioFile
from sim.scenario.schema import Scenario


@dataclass(frozen=True)
class VariantCheck:
    scenario: str
    file: str  # the scenario file or results folder it came from
    variant: str
    source: str  # "simulation" or "measurement"
    seed: int
    replications: int
    outcomes: tuple[Outcome, ...]
    findings: tuple[str, ...]
    estimates: Mapping[str, Estimate]


def checks_for(scenario: Scenario, recorded: Optional[Recorded], tolerance: float, source: str, seed: int
               ) -> list[Budget]:
    """The scenario's budgets, then regression checks when the baseline has this variant.

    Regression checks are paired when both runs are simulations with the
    same seed (common random numbers), and unpaired otherwise.
    """
    budgets = budgets_of(scenario.slo, scenario.hardware)
    if recorded is None:
        return budgets
    paired = recorded.source == source == "simulation" and recorded.seed == seed
    return budgets + regression_budgets(budgets, recorded, tolerance, paired)


def check_simulated(scenario_file: ScenarioFile, variant: str, checks: list[Budget], cap: int, jobs: int = 1,
                    say: Callable[[str], None] = lambda line: None) -> VariantCheck:
    """Simulate until every check is decided or ``cap`` replications ran.

    ``jobs`` worker processes run the replications (same numbers as one);
    ``say`` reports progress.
    """
    from sim.experiment import run_variant

    scenario = scenario_file.resolve(variant)

    def run(reps: range):
        say(f"{scenario.name} / {variant}: simulating replications {reps.start + 1}-{reps.stop}")
        return run_variant(scenario_file, variant, replications=reps, jobs=jobs).runs

    runs, outcomes = replicate(run, checks, scenario.run.replications, cap)
    estimates = combine(runs)
    return VariantCheck(scenario.name, str(scenario_file.path), variant, "simulation", scenario.run.seed, len(runs),
                        tuple(outcomes), tuple(diagnose(scenario, estimates, outcomes)), estimates)


def check_measured(scenario: Scenario, file: str, source: str, seed: int, variant: str,
                   estimates: Mapping[str, Estimate], checks: list[Budget]) -> VariantCheck:
    replications = max((len(e.values) for e in estimates.values()), default=0)
    outcomes = [judge(b, estimates, replications) for b in checks]
    return VariantCheck(scenario.name, file, variant, source, seed, replications, tuple(outcomes),
                        tuple(diagnose(scenario, estimates, outcomes)), estimates)
