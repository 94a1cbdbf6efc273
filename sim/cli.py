"""The ``dgsim`` command line.

``dgsim run SCENARIO`` simulates every variant of a scenario, prints a table
comparing them and writes the results folder. Other packages add commands
through the ``dgsim.cli`` entry-point group (the hardware harness adds
``dgsim hil ...``), so ``sim`` never imports them.

Exit codes: 0 success, 1 a check failed, 2 invalid input.
"""

from __future__ import annotations

import os
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from sim.scenario.errors import ScenarioError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Simulate DPU/GPU inference pipelines.")
INVALID_INPUT = 2


@app.callback()
def _root() -> None:
    """Simulate and measure DPU-offloaded GPU inference pipelines."""


def fail_input(lines: list[str]) -> None:
    """Print one line per problem to stderr and exit 2."""
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    for line in lines:
        console.print(f"[red]error:[/red] {line}", markup=True)
    raise typer.Exit(INVALID_INPUT)


def scenario_overrides(seed: Optional[int], duration: Optional[str], replications: Optional[int],
                       sets: Optional[List[str]]) -> list[str]:
    """Command-line options as ``dotted.path=value`` overrides."""
    out = list(sets or [])
    if seed is not None:
        out.append(f"run.seed={seed}")
    if duration is not None:
        out.append(f"run.duration={duration}")
    if replications is not None:
        out.append(f"run.replications={replications}")
    return out


@app.command()
def run(
    scenario: Optional[str] = typer.Argument(
        None, help="scenario YAML file, or the name of a shipped one (default: video-analytics-64)"
    ),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="results folder [default: results/<scenario name>]"),
    seed: Optional[int] = typer.Option(None, help="override run.seed"),
    duration: Optional[str] = typer.Option(None, help="override run.duration, e.g. '30 s'"),
    replications: Optional[int] = typer.Option(None, help="override run.replications"),
    variant: Optional[List[str]] = typer.Option(None, "--variant", "-v", help="run only these variants"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="override any field: dotted.path=value"),
    jobs: int = typer.Option(os.cpu_count() or 1, "--jobs", "-j", min=1, help="replications run in parallel"),
) -> None:
    """Simulate a scenario's variants and compare them."""
    from sim.experiment import simulate
    from sim.report.table import comparison_table
    from sim.results import write_results
    from sim.scenario.builtin import scenario_path
    from sim.scenario.load import load_scenario_file

    path = scenario_path(scenario)
    try:
        scenario_file = load_scenario_file(path, scenario_overrides(seed, duration, replications, set_))
        chosen = variant or None
        if chosen:
            unknown = [v for v in chosen if v not in scenario_file.variant_names]
            if unknown:
                fail_input([f"{path}: variants: no variant {', '.join(map(repr, unknown))} "
                            f"(known: {', '.join(scenario_file.variant_names)})"])
        with _progress() as report:
            result = simulate(scenario_file, chosen, report, jobs)
    except ScenarioError as error:
        fail_input([str(p) for p in error.problems])
    folder = out or Path("results") / result.scenario
    summary = write_results(result, folder, scenario_file.path.parent)
    console = Console()
    console.print(comparison_table(result))
    console.print(f"results: {summary.parent}/ (summary.json, requests/, resolved/)")


def _register_check() -> None:
    from sim.check.command import check_command

    app.command("check")(check_command)


_register_check()


def _register_explore() -> None:
    from sim.explore.commands import capacity_command, sweep_command

    app.command("capacity")(capacity_command)
    app.command("sweep")(sweep_command)


_register_explore()


class _progress:
    """A progress bar on stderr while variants and replications run."""

    def __enter__(self):
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                             console=Console(stderr=True), transient=True,
                             disable=not sys.stderr.isatty())
        self._bar.__enter__()
        self._tasks: dict[tuple[str, int], int] = {}
        return self.report

    def report(self, variant: str, replication: int, fraction: float) -> None:
        key = (variant, replication)
        if key not in self._tasks:
            self._tasks[key] = self._bar.add_task(f"{variant} #{replication + 1}", total=1.0)
        self._bar.update(self._tasks[key], completed=fraction)

    def __exit__(self, *exc):
        return self._bar.__exit__(*exc)


def _load_plugins() -> None:
    for entry in entry_points(group="dgsim.cli"):
        entry.load()(app)


def main() -> None:
    _load_plugins()
    app()


if __name__ == "__main__":
    main()
