"""``dgsim check``: budgets and regressions as a CI gate, with exit codes.

    dgsim check scenarios/*.yaml --junit build/dgsim.xml
    dgsim check scenarios/*.yaml --baseline ci/baseline.json --max-regression 5%
    dgsim check scenarios/edge.yaml --results results/edge-measured

Exit 0 when every check holds (inconclusive ones too, unless
``--inconclusive fail``), 1 when one fails or regressed, 2 when an input
is invalid (scenario, results folder, baseline, option); invalid input is
reported one problem per line, never as a traceback.

Results folders: with scenario files, ``--results DIR`` takes each
scenario's results from DIR itself (when it holds summary.json) or from
DIR/<scenario name>/ (the layout ``dgsim run`` writes), and judges them on
the scenario files' budgets. Without scenario files, every results folder
in DIR is judged on the budgets of the scenario it was run with
(``resolved/<variant>.yaml``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Callable, List, Optional

import typer

if TYPE_CHECKING:  # the rest is imported when the command runs, so that `dgsim --help` stays quick
    from sim.check.budgets import Budget
    from sim.check.gate import VariantCheck
    from sim.results import SummaryFile
    from sim.scenario.schema import Scenario


class Inconclusive(str, Enum):
    pass_ = "pass"
    fail = "fail"


def check_command(
    scenarios: Optional[List[Path]] = typer.Argument(None, help="scenario YAML files (globs expanded by the shell)"),
    results: Optional[Path] = typer.Option(
        None, "--results", help="judge measured results (from 'dgsim run' or 'dgsim hil run') instead of simulating"),
    junit: Optional[Path] = typer.Option(None, "--junit", help="write a JUnit XML report here"),
    markdown: Optional[Path] = typer.Option(
        None, "--markdown", help="write a markdown summary here (also appended to $GITHUB_STEP_SUMMARY when set)"),
    baseline: Optional[Path] = typer.Option(None, "--baseline", help="also fail on regressions against this baseline"),
    write_baseline_to: Optional[Path] = typer.Option(None, "--write-baseline",
                                                     help="record these results as a baseline"),
    max_regression: str = typer.Option("5%", "--max-regression", help="worsening tolerated against the baseline"),
    max_replications: int = typer.Option(20, "--max-replications", min=1,
                                         help="most replications to run while a check is undecided"),
    inconclusive: Inconclusive = typer.Option(Inconclusive.pass_, "--inconclusive",
                                              help="how a check still undecided at the cap counts"),
    jobs: int = typer.Option(os.cpu_count() or 1, "--jobs", "-j", min=1, help="replications run in parallel"),
    seed: Optional[int] = typer.Option(None, help="override run.seed"),
    variant: Optional[List[str]] = typer.Option(None, "--variant", "-v", help="check only these variants"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="override any field: dotted.path=value"),
) -> None:
    """Check latency budgets and regressions; exit 0 pass, 1 fail, 2 invalid input."""
    from sim.check.baseline import Baseline, BaselineError, Recorded, parse_tolerance, read_baseline, write_baseline
    from sim.check.gate import checks_for
    from sim.check.junit import write_junit
    from sim.check.report import console_text, markdown_text, tally
    from sim.commandline import fail_input, scenario_overrides

    overrides = scenario_overrides(seed, None, None, set_)
    try:
        tolerance = parse_tolerance(max_regression)
        reference = read_baseline(baseline) if baseline else None
    except BaselineError as error:
        fail_input([str(error)])
    if not scenarios and results is None:
        fail_input(["give scenario files to simulate, or --results DIR to judge measured results"])
    problems: list[str] = []
    notes: list[str] = []
    work = _jobs(scenarios or [], results, overrides, variant, max_replications, jobs, problems)
    if problems:
        fail_input(problems)

    checks: list[VariantCheck] = []
    for job in work:
        recorded = None if reference is None else reference.get(job.scenario, {}).get(job.variant)
        if reference is not None and recorded is None:
            notes.append(f"{job.scenario} / {job.variant}: not in the baseline {baseline}; no regression checks")
        plan = checks_for(job.resolved, recorded, tolerance, job.source, job.seed)
        if not plan:
            notes.append(f"{job.scenario} / {job.variant}: no budgets in slo; nothing to check")
            if write_baseline_to is None:
                continue
        checks.append(job.run(plan))
    inconclusive_fails = inconclusive is Inconclusive.fail
    typer.echo(console_text(checks, notes, inconclusive_fails))
    try:
        if junit:
            write_junit(junit, checks, inconclusive_fails)
        text = markdown_text(checks, notes, inconclusive_fails)
        if markdown:
            markdown.parent.mkdir(parents=True, exist_ok=True)
            markdown.write_text(text)
        if os.environ.get("GITHUB_STEP_SUMMARY"):
            with open(os.environ["GITHUB_STEP_SUMMARY"], "a") as summary:
                summary.write(text)
        if write_baseline_to:
            results_now: Baseline = {}
            for c in checks:
                results_now.setdefault(c.scenario, {})[c.variant] = Recorded(c.source, c.seed, c.estimates)
            write_baseline(write_baseline_to, results_now)
    except OSError as error:
        fail_input([f"{error.filename}: cannot write ({error.strerror})"])
    raise typer.Exit(0 if tally(checks, inconclusive_fails).ok else 1)


@dataclass(frozen=True)
class Job:
    """One variant to check: where its data comes from, and how to check it against a list of budgets."""

    scenario: str
    variant: str
    resolved: Scenario
    source: str
    seed: int
    run: Callable[[list[Budget]], VariantCheck]


def _jobs(paths: List[Path], results: Optional[Path], overrides: list[str], only: Optional[List[str]],
          cap: int, processes: int, problems: list[str]) -> list[Job]:
    """What to check, variant by variant; problems are collected, not raised."""
    from sim.check.gate import check_simulated
    from sim.results import ResultsError, read_summary
    from sim.scenario.errors import ScenarioError
    from sim.scenario.load import load_scenario_file

    if results is not None and not results.is_dir():
        problems.append(f"{results}: no such results folder")
        return []
    jobs: list[Job] = []
    seen: dict[str, Path] = {}
    variants_known: set[str] = set()

    def wanted(name: str) -> bool:
        variants_known.add(name)
        return not only or name in only

    for path in paths:
        try:
            scenario_file = load_scenario_file(path, overrides)
            names = scenario_file.variant_names
            resolved = {v: scenario_file.resolve(v) for v in names}
        except ScenarioError as error:
            problems.extend(str(p) for p in error.problems)
            continue
        name = next(iter(resolved.values())).name
        if name in seen:
            problems.append(f"{path}: name: '{name}' is also the name of {seen[name]}; scenario names must be unique")
        seen[name] = path
        if results is None:
            jobs += [Job(name, v, resolved[v], "simulation", resolved[v].run.seed,
                         lambda plan, v=v, f=scenario_file: check_simulated(f, v, plan, cap, processes, _say))
                     for v in names if wanted(v)]
            continue
        folder = results if (results / "summary.json").exists() else results / name
        if not (folder / "summary.json").exists():
            problems.append(f"{results}: no summary.json for scenario '{name}' in it or in {folder}/")
            continue
        try:
            summary = read_summary(folder)
        except ResultsError as error:
            problems.append(str(error))
            continue
        if summary.scenario != name:
            problems.append(f"{summary.path}: results of scenario '{summary.scenario}', not '{name}' ({path})")
            continue
        for v, estimates in summary.variants.items():
            if v not in resolved:
                problems.append(f"{summary.path}: variant '{v}' is not in {path} (known: {', '.join(names)})")
            elif wanted(v):
                jobs.append(_measured(name, v, resolved[v], summary, estimates))
    if results is not None and not paths:
        folders = ([results] if (results / "summary.json").exists()
                   else sorted(p.parent for p in results.glob("*/summary.json")))
        if not folders:
            problems.append(f"{results}: no summary.json in it or in its sub-folders")
        for folder in folders:
            try:
                summary = read_summary(folder)
            except ResultsError as error:
                problems.append(str(error))
                continue
            for v, estimates in summary.variants.items():
                scenario = _resolved(folder / "resolved" / f"{v}.yaml", overrides, problems)
                if scenario is not None and wanted(v):
                    jobs.append(_measured(summary.scenario, v, scenario, summary, estimates))
    unknown = [v for v in only or [] if v not in variants_known]
    if unknown and not problems:
        known = ", ".join(sorted(variants_known))
        problems.append(f"--variant: no variant {', '.join(map(repr, unknown))} (known: {known})")
    return jobs


def _say(line: str) -> None:
    typer.echo(line, err=True)


def _measured(name: str, variant: str, scenario: Scenario, summary: SummaryFile, estimates) -> Job:
    from sim.check.gate import check_measured

    return Job(name, variant, scenario, summary.source, summary.seed, lambda plan: check_measured(
        scenario, str(summary.path.parent), summary.source, summary.seed, variant, estimates, plan))


def _resolved(path: Path, overrides: list[str], problems: list[str]) -> Optional[Scenario]:
    """The scenario a results folder was run with, and --set applied to it."""
    import yaml
    from pydantic import ValidationError

    from sim.scenario.errors import ScenarioError
    from sim.scenario.load import apply_override
    from sim.scenario.safe_yaml import YamlProblem, read_yaml_file
    from sim.scenario.schema import Scenario

    try:
        document = read_yaml_file(path)
        for override in overrides:
            document = apply_override(document, override)
        return Scenario.model_validate(document)
    except OSError:
        problems.append(f"{path}: missing; cannot tell which budgets applied (give the scenario file)")
    except (yaml.YAMLError, YamlProblem) as error:
        problems.append(f"{path}: not valid YAML ({error})")
    except ScenarioError as error:
        problems.extend(str(p) for p in error.problems)
    except ValidationError as error:
        problems.extend(f"{path}: {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
    return None
