"""``dgsim validate SCENARIO --calibration FILE``: predicted against measured, at several loads.

Registered as a top-level command by ``hil/cli.py`` (``register``).
Exit codes: 0 done (whether or not the goal was met: the report says),
1 the harness failed during a run, 2 invalid input, one line per problem.
"""

from __future__ import annotations

import datetime
import os
import shlex
import socket
import sys
import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table


def validate_command(
    scenario: str = typer.Argument(..., help="scenario YAML file, or the name of a shipped one"),
    calibration: Path = typer.Option(..., "--calibration", "-c", help="calibration file written by "
                                     "'dgsim hil calibrate' on this host"),
    variant: Optional[str] = typer.Option(None, "--variant", "-v", help="variant to validate (default: the one "
                                          "the calibration measured)"),
    loads: str = typer.Option("0.3,0.5,0.7,0.9", help="loads, as fractions of the measured capacity"),
    replications: int = typer.Option(3, min=1, help="measured runs per load (replication index 0..N-1); the "
                                     "twin simulates the same replications, so the same arrivals"),
    duration: Optional[str] = typer.Option(None, help="least duration per load, e.g. '30 s' (each load runs "
                                           "until every replication has served 662 requests)"),
    min_served: int = typer.Option(662, min=1, help="served requests per replication and load at least (662: "
                                   "LoadGen's minimum for a p99; lower it only for smoke tests)"),
    probe: str = typer.Option("6 s", help="load time of each offline probe run (3 for the capacity, 1 before "
                              "each load); the low-load probe runs twice as long"),
    transport: str = typer.Option("shm", help="transport between the two processes: shm, tcp, or auto (every "
                                  "available one, chosen per message by the channel policy)"),
    seed: Optional[int] = typer.Option(None, help="override run.seed"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="override any field: dotted.path=value "
                                             "(use the same ones as for the calibration)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="results folder (default: results/validate/"
                                       "<scenario>)"),
    report: Optional[Path] = typer.Option(None, "--report", help="markdown report (default: "
                                          "reports/validation-<host>.md); plots are written beside it"),
) -> None:
    """Run the harness and its simulated twin on the same arrivals at several loads; report the errors."""
    from hil.runner.layout import lay_out
    from hil.validate.twin import check_twin
    from sim.commandline import fail_input, scenario_overrides
    from sim.scenario.builtin import scenario_path
    from sim.scenario.errors import ScenarioError
    from sim.scenario.load import load_scenario_file
    from sim.units import UnitError, parse_duration

    problems: list[str] = []
    load_values = _loads(loads, problems)
    try:
        least = parse_duration(duration) if duration else None
        probe_s = parse_duration(probe)
    except UnitError as error:
        problems.append(f"--duration/--probe: {error}")
    kinds = _kinds(transport, problems)
    path = scenario_path(scenario)
    layout = None
    try:
        loaded = load_scenario_file(path, scenario_overrides(seed, None, None, set_))
        names = loaded.variant_names
        chosen = variant or _calibrated_variant(calibration, names)
        if chosen not in names:
            problems.append(f"{path}: variants: no variant '{chosen}' (known: {', '.join(names)})")
        else:
            label = f"{path} (variant {chosen})"
            layout = lay_out(loaded.plan(chosen), chosen, label)
    except ScenarioError as error:
        problems += [str(p) for p in error.problems]
    if not calibration.is_file():
        problems.append(f"--calibration: calibration file {calibration}: file not found")
    elif layout is not None:
        problems += check_twin(layout, calibration, kinds) or _plan_problems(layout, calibration, kinds)
    if problems:
        fail_input(problems)

    from hil.backends import BackendError
    from hil.runner.run import HarnessError
    from hil.transports import TransportError
    from hil.validate.compare import compare, metric_names
    from hil.validate.report import rows_document, write_report
    from hil.validate.sweep import SweepOptions, run_sweep

    console = Console(highlight=False)
    err = Console(stderr=True, highlight=False)
    host = socket.gethostname()
    folder = out or Path("results") / "validate" / layout.scenario.name
    report = report or Path("reports") / f"validation-{host}.md"
    options = SweepOptions(loads=load_values, replications=replications,
                           min_served=min_served, probe_duration=probe_s, duration=least, kinds=kinds)
    began, load_before = time.monotonic(), os.getloadavg()[0]
    try:
        sweep = run_sweep(layout, calibration, options, folder, say=lambda t: err.print(t))
    except (BackendError, TransportError, HarnessError, RuntimeError, OSError) as error:
        err.print(f"[red]error:[/red] validation failed: {error}")
        raise typer.Exit(1) from None
    names = metric_names(sweep.layout, kinds)
    rows = [r for p in sweep.points for r in compare(p.load, p.predicted["twin"], p.measured.estimates, names)]
    ablation = {twin: [r for p in sweep.points for r in compare(p.load, p.predicted[twin], p.measured.estimates, names)]
                for twin in sweep.points[0].simulated}
    import json

    (folder / "validation.json").write_text(json.dumps(rows_document(sweep, rows), indent=1) + "\n")
    console.print(table(rows))
    context = _context(sys.argv, scenario, calibration, sweep, folder, kinds, options, began, load_before)
    for written in write_report(sweep, rows, ablation, report, context):
        console.print(f"written: {written}")
    console.print(f"results: {folder}/ (load-<L>/measured, load-<L>/simulated, validation.json)")


def table(rows) -> Table:
    from hil.validate.compare import GOAL_MAX_LOAD
    from hil.validate.report import fmt, measured_text, scale

    t = Table(title=f"predicted (harness twin) vs measured (dgsim hil run); goal applies up to load {GOAL_MAX_LOAD:g}",
              title_justify="left")
    for column in ("load", "metric", "predicted", "measured ± 95% CI", "error", "goal"):
        t.add_column(column, justify="right" if column not in ("metric", "goal") else "left")
    for r in rows:
        _, unit = scale(r.metric)
        mark = "" if r.met is None else ("[green]met[/green]" if r.met else "[red]missed[/red]")
        t.add_row(f"{r.load:g}", f"{r.metric}{f' ({unit})' if unit else ''}", fmt(r.predicted.mean, r.metric),
                  measured_text(r), f"{r.error:+.1%}", mark)
    return t


def _loads(text: str, problems: list[str]) -> tuple[float, ...]:
    try:
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        problems.append(f"--loads: expected fractions of capacity separated by commas, e.g. 0.3,0.5,0.7, got {text!r}")
        return ()
    if not values or any(not 0 < v <= 1.5 for v in values):
        problems.append(f"--loads: each load must be in (0, 1.5], got {text!r}")
    return values


def _kinds(choice: str, problems: list[str]) -> tuple[str, ...]:
    from hil.options import transport_kinds

    if choice not in ("shm", "tcp", "rdma", "auto"):
        problems.append(f"--transport: expected shm, tcp, rdma or auto, got {choice!r}")
        return ()
    return transport_kinds(choice, problems)


def _calibrated_variant(calibration: Path, names: list[str]) -> str:
    """The variant the calibration file measured, else the scenario's first."""
    from sim.calibration import CalibrationError, load_calibration

    try:
        measured = load_calibration(calibration).provenance.variant
    except CalibrationError:
        measured = ""
    return measured if measured in names else names[0]


def _plan_problems(layout, calibration: Path, kinds) -> list[str]:
    """Problems the simulator finds in the twin (an entry of the wrong kind, a bad fit)."""
    from hil.validate.twin import twin_scenario
    from sim.plan import compile_plan
    from sim.scenario.errors import ScenarioError

    passes = {s.name: s.pass_probability for s in layout.stages}
    try:
        compile_plan(twin_scenario(layout, calibration, kinds, passes), "harness twin", layout.plan.base_dir)
    except ScenarioError as error:
        return [f"{p.path}: {p.message}" for p in error.problems]
    return []


def _context(argv, scenario, calibration: Path, sweep, folder: Path, kinds, options, began: float,
             load_before: float) -> dict:
    import platform

    from hil.calibrate.scenario import cpu_model, versions
    from sim.calibration import load_calibration

    cal = load_calibration(calibration)
    v = versions()
    ran = len(argv) > 1 and argv[1] == "validate"
    words = ["dgsim", "validate", *argv[2:]] if ran else ["dgsim", "validate", scenario, "..."]
    p = cal.provenance
    unstable = cal.unstable()
    return {
        "host": socket.gethostname(), "cpu": cpu_model(), "cores": os.cpu_count(),
        "versions": ", ".join(f"{k} {v[k]}" for k in ("python", "numpy", "onnxruntime", "dgsim") if k in v)
                    + f", {platform.system()} {platform.release()}",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(shlex.quote(w) for w in words), "scenario": scenario, "calibration": str(calibration),
        "calibrate_command": p.command or "dgsim hil calibrate ...",
        "calibration_note": (f"{p.date} on `{p.host}`, {'quick' if cal.method.quick else 'full'} mode, load average "
                             f"{p.load_average}; entries that never stabilised: {', '.join(unstable) or 'none'}."),
        "elapsed": time.monotonic() - began, "load_before": load_before, "load_after": os.getloadavg()[0],
        "out": str(folder), "kinds": kinds, "probe": options.probe_duration, "replications": options.replications,
        "min_served": options.min_served,
    }
