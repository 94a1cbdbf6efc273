"""``dgsim capacity`` and ``dgsim sweep``: the command functions (registered by ``sim.cli``).

Both read a scenario with the usual ``--set`` overrides, run their
simulations on an executor (``--jobs`` local processes, or ``--dask local``
/ ``--dask tcp://HOST:8786``), and write a results folder with the data, PNG
plots and one self-contained HTML page. Invalid input (scenario, grid,
option, an unreachable Dask scheduler) is reported one line per problem,
exit 2.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import List, Optional

import typer

CAPACITY_REPLICATION_CAP = 12


def _cli_helpers():
    """``fail_input`` and ``scenario_overrides`` from the commands' shared library."""
    from sim.commandline import fail_input, scenario_overrides

    return fail_input, scenario_overrides


def parse_fraction(text: str, option: str) -> float:
    """'2%' or '0.02' -> 0.02; ValueError with one line otherwise."""
    try:
        value = float(text.strip().removesuffix("%")) / (100 if text.strip().endswith("%") else 1)
    except ValueError:
        raise ValueError(f"{option}: expected a fraction such as 2% or 0.02, got '{text}'") from None
    if not 0 < value < 1:
        raise ValueError(f"{option}: expected a fraction between 0 and 1 (exclusive), got '{text}'")
    return value


@contextmanager
def _executor(dask: Optional[str], jobs: int, workers: int):
    fail_input, _ = _cli_helpers()
    from sim.explore.executors import ExecutorError, make_executor

    try:
        executor = make_executor(dask, jobs, workers)
    except ExecutorError as error:
        fail_input([str(error)])
    try:
        yield executor
    finally:
        executor.close()


def _say(line: str) -> None:
    typer.echo(line, err=True)


def capacity_command(
    scenario: str = typer.Argument(..., help="scenario YAML file, or the name of a shipped one"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="results folder [default: results/<scenario>-capacity]"),
    tolerance: str = typer.Option("2%", "--tolerance", help="stop when the bracket is this narrow (relative)"),
    max_replications: int = typer.Option(CAPACITY_REPLICATION_CAP, "--max-replications", min=2,
                                         help="most replications per probe while a budget is undecided"),
    variant: Optional[List[str]] = typer.Option(None, "--variant", "-v", help="only these variants"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="override any field: dotted.path=value"),
    seed: Optional[int] = typer.Option(None, help="override run.seed"),
    jobs: int = typer.Option(os.cpu_count() or 1, "--jobs", "-j", min=1, help="replications run in parallel"),
    dask: Optional[str] = typer.Option(None, "--dask", help="run on Dask: 'local' or tcp://HOST:PORT"),
    workers: int = typer.Option(2, "--workers", min=1, help="workers of a --dask local cluster"),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="write PNG plots and capacity.html"),
) -> None:
    """Largest load meeting every slo budget, per variant (exit 0, or 2 on invalid input)."""
    fail_input, scenario_overrides = _cli_helpers()
    from sim.explore.capacity import find_capacities
    from sim.explore.capacity_report import capacity_document, capacity_lines, write_capacity
    from sim.scenario.builtin import scenario_path
    from sim.scenario.errors import ScenarioError
    from sim.scenario.load import load_scenario_file

    try:
        fraction = parse_fraction(tolerance, "--tolerance")
    except ValueError as error:
        fail_input([str(error)])
    path = scenario_path(scenario)
    try:
        scenario_file = load_scenario_file(path, scenario_overrides(seed, None, None, set_))
        names = _chosen(scenario_file, variant, path)
        first = scenario_file.resolve(names[0])
        from sim.explore.capacity import capacity_checks, scenario_budgets
        from sim.explore.load import load_axis

        problems = []
        for name in names:  # every variant's input checked before anything runs
            resolved = scenario_file.resolve(name)
            try:
                load_axis(resolved, f"{path} (variant {name})")
            except ScenarioError as error:
                problems += [str(p) for p in error.problems]
            if not capacity_checks(scenario_budgets(resolved))[0]:
                problems.append(f"{path} (variant {name}): slo: no latency, rate or utilisation budget to find "
                                f"the capacity at; add one, e.g. slo: {{latency: {{p99: 100 ms}}}}")
        if problems:
            fail_input(list(dict.fromkeys(problems)))
        with _executor(dask, jobs, workers) as executor:
            results = find_capacities(scenario_file, names, executor, fraction, max_replications, _say)
    except ScenarioError as error:
        fail_input([str(p) for p in error.problems])
    document = capacity_document(first.name, first.run.seed, fraction, results)
    folder = out or Path("results") / f"{first.name}-capacity"
    written = write_capacity(folder, document)
    typer.echo("\n".join(capacity_lines(document)))
    if plots:
        from sim.explore.pages import capacity_page

        page = capacity_page(folder, document, _budget_lines(first))
        typer.echo(f"results: {written} and {page}")
    else:
        typer.echo(f"results: {written}")


def _budget_lines(scenario) -> dict[str, float]:
    """Latency budgets (metric -> seconds) to draw on latency plots."""
    from sim.explore.capacity import scenario_budgets

    from sim.contract.metric_keys import Kind, Namespace

    return {b.metric: b.bound for b in scenario_budgets(scenario)
            if b.key.kind is Kind.LATENCY and b.key.subject.namespace is Namespace.ALL}


def _chosen(scenario_file, only: Optional[List[str]], path) -> list[str]:
    fail_input, _ = _cli_helpers()

    names = scenario_file.variant_names
    if only:
        unknown = [v for v in only if v not in names]
        if unknown:
            fail_input([f"{path}: variants: no variant {', '.join(map(repr, unknown))} (known: {', '.join(names)})"])
        return [v for v in names if v in only]
    return names



def sweep_command(
    scenario: str = typer.Argument(..., help="scenario YAML file, or the name of a shipped one"),
    grid: Optional[List[str]] = typer.Option(None, "--grid", "-g", help="dotted.path=v1,v2,... (repeat for more axes)"),
    zipped: bool = typer.Option(False, "--zip", help="pair the i-th values of every --grid instead of all combinations"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="results folder [default: results/<scenario>-sweep]"),
    pareto: bool = typer.Option(False, "--pareto", help="mark the Pareto front of cost per hour vs p99 at each load"),
    variant: Optional[List[str]] = typer.Option(None, "--variant", "-v", help="only these variants"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="override any field: dotted.path=value"),
    seed: Optional[int] = typer.Option(None, help="override run.seed"),
    replications: Optional[int] = typer.Option(None, help="override run.replications"),
    jobs: int = typer.Option(os.cpu_count() or 1, "--jobs", "-j", min=1, help="grid cells run in parallel"),
    dask: Optional[str] = typer.Option(None, "--dask", help="run on Dask: 'local' or tcp://HOST:PORT"),
    workers: int = typer.Option(2, "--workers", min=1, help="workers of a --dask local cluster"),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="write PNG plots and sweep.html"),
) -> None:
    """Every variant at every point of a parameter grid (exit 0, 1 when a point failed, 2 on invalid input)."""
    fail_input, scenario_overrides = _cli_helpers()
    from sim.explore.grid import GridError, axes_of, parse_grid
    from sim.explore.sweep import plan_cells, run_cells, sweep_table, write_table
    from sim.scenario.builtin import scenario_path
    from sim.scenario.errors import ScenarioError
    from sim.scenario.load import load_scenario_file

    path = scenario_path(scenario)
    overrides = scenario_overrides(seed, None, replications, set_)
    try:
        scenario_file = load_scenario_file(path, overrides)
        names = _chosen(scenario_file, variant, path)
        first = scenario_file.resolve(names[0])
        if grid:
            axes = parse_grid(grid)
        else:
            axes = axes_of(first.sweep) if first.sweep else []
            zipped = zipped or bool(first.sweep and first.sweep.zip)
        cells = plan_cells(path, overrides, names, axes, zipped)
    except ScenarioError as error:
        fail_input([str(p) for p in error.problems])
    except GridError as error:
        fail_input(error.lines)
    folder = out or Path("results") / f"{first.name}-sweep"
    with _executor(dask, jobs, workers) as executor, _bar(len(cells)) as tick:
        results = run_cells(cells, executor, folder / "points", tick)
    table = sweep_table(cells, results, axes, pareto)
    write_table(table, folder / "sweep.parquet")
    failed = [(c, r) for c, r in zip(cells, results) if r.error]
    cached = sum(r.cached for r in results)
    typer.echo(f"{len(cells)} cells ({len(cells) // max(1, len(names))} points x {len(names)} variants): "
               f"{len(cells) - len(failed)} done ({cached} from the cache), {len(failed)} failed")
    for cell, result in failed:
        typer.echo(f"failed: point {cell.point.index} ({', '.join(cell.point.overrides)}) / {cell.variant}: "
                   f"{result.error}", err=True)
    written = [folder / "sweep.parquet"]
    if plots:
        from sim.explore.pages import sweep_page

        written.append(sweep_page(folder, table, axes, _budget_lines(first), pareto))
    typer.echo(f"results: {', '.join(map(str, written))}")
    if failed:
        raise typer.Exit(1)


@contextmanager
def _bar(total: int):
    """A progress bar over grid cells with an ETA, on stderr (when it is a terminal)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    bar = Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("ETA"), TimeRemainingColumn(), console=Console(stderr=True), transient=True,
                   disable=not sys.stderr.isatty())
    with bar:
        task = bar.add_task("sweep", total=total)
        yield lambda index: bar.advance(task)
