"""The ``dgsim`` command line.

``dgsim run SCENARIO`` simulates every variant of a scenario, prints a table
comparing them and writes the results folder. Other packages add commands
through the ``dgsim.cli`` entry-point group (the hardware harness adds
``dgsim hil ...``), so ``sim`` never imports them. Helpers every command
shares live in ``sim.commandline`` and ``sim.session``, not here.

Exit codes: 0 success, 1 a check failed, 2 invalid input (also a bad
option value, an ``--out`` that cannot hold results, a run estimated to be
larger than ``--max-work``), 130 interrupted (SIGINT), 143 terminated
(SIGTERM); an interrupted run writes nothing and leaves no process behind.
"""

from __future__ import annotations

import os
import shutil
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from sim.commandline import INVALID_INPUT, Interrupted, error_line, fail_input, interruptible, run_app, \
    scenario_overrides

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Simulate DPU/GPU inference pipelines.")
__all__ = ["app", "main", "INVALID_INPUT"]


@app.callback()
def _root() -> None:
    """Simulate and measure DPU-offloaded GPU inference pipelines."""


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
    records: str = typer.Option("all", "--records", help="per-request rows to keep in requests/: all, "
                                                          "sample:N (per variant) or none"),
    max_work: Optional[float] = typer.Option(None, "--max-work", min=0,
                                             help="refuse runs estimated above this many request-stages (expected "
                                                  "arrivals x stages x replications, all variants) [default: 2e7]"),
    dask: Optional[str] = typer.Option(None, "--dask", help="run the replications on Dask: 'local' (a LocalCluster "
                                                            "on this machine) or a scheduler, tcp://HOST:8786"),
) -> None:
    """Simulate a scenario's variants and compare them."""
    from concurrent.futures.process import BrokenProcessPool

    from sim.experiment import RecordsTarget, ReplicationFailed, simulate_plans
    from sim.metrics.sink import RecordsChoice, RecordsError
    from sim.report.table import comparison_table
    from sim.results import ResultsError, check_out, write_results
    from sim.scenario.builtin import scenario_path
    from sim.session import InputError, open_scenario

    path = scenario_path(scenario)
    try:
        keep = str(RecordsChoice.parse(records))
    except RecordsError as error:
        fail_input([str(error)])
    try:
        session = open_scenario(path, scenario_overrides(seed, duration, replications, set_), variant)
        folder = out or Path("results") / session.name
        check_out(folder)
        _check_work(session, max_work)
    except (InputError, ResultsError) as error:
        fail_input(error.lines if isinstance(error, InputError) else [str(error)])
    kept = f"; the previous results in {folder}/ are intact" if folder.exists() else ""
    # Per-request rows stream to files beside --out while replications run (memory stays bounded),
    # and are merged into the results folder when it is written; the spool goes either way.
    spool = folder.parent / f".{folder.name}.records-{os.getpid()}"
    records = RecordsTarget(RecordsChoice.parse(keep), spool)
    try:
        spool.mkdir(parents=True)
    except OSError as error:
        fail_input([f"--out {folder}: cannot write beside it ({error.strerror or error}); no results written"])
    executor = None
    if dask:
        from sim.explore.executors import ExecutorError, make_executor

        try:
            executor = make_executor(dask, jobs)
        except ExecutorError as error:
            shutil.rmtree(spool, ignore_errors=True)
            fail_input([str(error)])
    try:
        with interruptible(), _progress() as report:
            result = simulate_plans(session.plans, report, jobs, records, executor)
    except Interrupted as stop:
        shutil.rmtree(spool, ignore_errors=True)
        error_line(f"{stop.name}: run stopped, no results written{kept}")
        raise typer.Exit(stop.exit_code) from None
    except ReplicationFailed as error:
        shutil.rmtree(spool, ignore_errors=True)
        error_line(f"a replication failed on a Dask worker ({error}); no results written{kept}")
        raise typer.Exit(1) from None
    except BrokenProcessPool:
        shutil.rmtree(spool, ignore_errors=True)
        error_line(f"a replication worker process died (killed, or out of memory: see --jobs and --max-work); "
                   f"no results written{kept}")
        raise typer.Exit(1) from None
    except BaseException:
        shutil.rmtree(spool, ignore_errors=True)  # whatever went wrong, no half-written rows stay beside --out
        raise
    finally:
        if executor is not None:
            executor.close()
    try:
        with interruptible():
            summary = write_results(result, folder, session.base_dir, keep)
    except ResultsError as error:
        fail_input([str(error)])
    except Interrupted as stop:
        error_line(f"{stop.name}: stopped while writing, no results written{kept}")
        raise typer.Exit(stop.exit_code) from None
    finally:
        shutil.rmtree(spool, ignore_errors=True)
    console = Console()
    console.print(comparison_table(result))
    for name, variant_result in result.variants.items():
        from sim.capacity import overloads

        for load in overloads(variant_result.plan):
            console.print(f"[yellow]warning:[/yellow] {name}: {load.warning()}", highlight=False)
    console.print(f"results: {summary.parent}/ (summary.json, requests/, resolved/)")


def _check_work(session, limit: Optional[float]) -> None:
    """Refuse (InputError) a run whose estimated work exceeds ``limit``, before simulating anything."""
    from sim.scenario.work import DEFAULT_WORK_LIMIT, estimate_work, total
    from sim.session import InputError

    limit = DEFAULT_WORK_LIMIT if limit is None else limit
    estimates = {v: estimate_work(plan.scenario, session.base_dir) for v, plan in session.plans.items()}
    work = total(estimates.values())
    if work > limit:
        each = "; ".join(f"{v}: {e.describe()}" for v, e in estimates.items())
        raise InputError([f"{session.path}: estimated work {work:.3g} request-stages is above the limit "
                          f"{limit:.3g} ({each}); shorten run.duration or run.replications, or allow it with "
                          f"--max-work {work:.2g}"])


def _register_check() -> None:
    from sim.check.command import check_command

    app.command("check")(check_command)


_register_check()


def _register_explore() -> None:
    from sim.explore.commands import capacity_command, sweep_command

    app.command("capacity")(capacity_command)
    app.command("sweep")(sweep_command)


_register_explore()


def _register_report() -> None:
    from sim.report.command import register

    register(app)


_register_report()


class _progress:
    """A progress bar on stderr while variants and replications run."""

    def __enter__(self):
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                             TextColumn("left"), TimeRemainingColumn(),
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


def main(args: Optional[List[str]] = None) -> None:
    _load_plugins()
    sys.exit(run_app(app, args))


if __name__ == "__main__":
    main()
