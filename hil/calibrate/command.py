"""``dgsim hil calibrate SCENARIO``: the command line of ``calibrate_scenario``.

Registered in ``hil/cli.py`` with ``hil_app.command("calibrate")(calibrate_command)``.
Exit codes: 0 written, 1 the hardware failed to measure, 2 invalid input.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from sim.calibration import AffineEntry, CalibrationFile, HostCostEntry


def calibrate_command(
    scenario: str = typer.Argument(..., help="scenario YAML file, or the name of a shipped one"),
    variant: Optional[str] = typer.Option(None, "--variant", "-v", help="variant whose stages, batching and "
                                          "placement to measure (default: the one that places the most stages)"),
    out: Path = typer.Option(Path("calib/this-host.yaml"), "--out", "-o", help="calibration file to write"),
    max_batch: Optional[int] = typer.Option(None, "--max-batch", min=1, help="largest batch size of batched "
                                            "stages (default: each stage's policies.batching max_batch)"),
    quick: bool = typer.Option(False, "--quick", help="CI mode: batch sizes 1, 2, 4, four message sizes, "
                               "short windows (well under a minute)"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="override any field: dotted.path=value, "
                                             "e.g. hil.detector.input_size=320"),
    host_burst: int = typer.Option(1, "--host-burst", min=1, max=1024, help="host CPU costs: messages sent back "
                                   "to back per timed round (1: one at a time, as the harness's request loop)"),
) -> None:
    """Measure every stage and transport on this host; write a calibration file for scenarios to use."""
    from hil.backends import BackendError
    from hil.calibrate.scenario import CalibrateOptions, calibrate_scenario
    from hil.runner.run import HarnessError
    from hil.transports import TransportError
    from sim.commandline import fail_input
    from sim.scenario.builtin import scenario_path
    from sim.scenario.errors import ScenarioError
    from sim.scenario.load import load_scenario_file

    path = scenario_path(scenario)
    err = Console(stderr=True, highlight=False)
    try:
        names = load_scenario_file(path, set_ or ()).variant_names
    except ScenarioError as error:
        fail_input([str(p) for p in error.problems])
    if variant is not None and variant not in names:
        fail_input([f"{path}: variants: no variant '{variant}' (known: {', '.join(names)})"])
    words = [scenario, *(["--variant", variant] if variant else []), "--out", str(out),
             *(["--max-batch", str(max_batch)] if max_batch else []), *(["--quick"] if quick else []),
             *(w for s in set_ or () for w in ("--set", s)),
             *(["--host-burst", str(host_burst)] if host_burst > 1 else [])]
    command = "dgsim hil calibrate " + " ".join(shlex.quote(w) for w in words)
    try:
        options = CalibrateOptions(quick=quick, max_batch=max_batch, host_burst=host_burst)
        calibration = calibrate_scenario(path, variant, out, options,
                                         set_ or (), report=lambda line: err.print(line), command=command)
    except ScenarioError as error:  # e.g. hil.cores this host does not have
        fail_input([str(p) for p in error.problems])
    except (BackendError, TransportError, HarnessError, OSError, RuntimeError) as error:
        err.print(f"[red]error:[/red] calibration failed: {error}")
        raise typer.Exit(1) from None
    Console().print(summary_table(calibration, out))


def summary_table(calibration: CalibrationFile, out: Path) -> Table:
    """One row per entry: its model, fit quality, samples and whether it settled."""
    table = Table(title=f"calibration written to {out}", title_justify="left")
    for column in ("entry", "model", "R^2", "MAPE", "n", "stable"):
        table.add_column(column)
    for name, entry in calibration.entries.items():
        if isinstance(entry, AffineEntry):
            per = "per item" if entry.x == "batch" else "per MB"
            scale = 1e3 if entry.x == "batch" else 1e9
            model = f"{entry.a * 1e3:.4g} ms + {entry.b * scale:.4g} ms {per}"
            fit = (f"{entry.r2:.3f}", f"{entry.mape:.1%}")
        elif isinstance(entry, HostCostEntry):
            model = f"CPU {entry.per_message * 1e6:.4g} us + {entry.per_byte * 1e9:.4g} ns per byte"
            fit = (f"{entry.r2:.3f}", f"{entry.mape:.1%}")
        else:
            q = dict(zip(entry.quantiles.levels, entry.quantiles.values))
            model = f"mean {entry.sample_mean * 1e3:.4g} ms, p50 {q[0.5] * 1e3:.4g}, p99 {q[0.99] * 1e3:.4g}"
            fit = ("", "")
        stable = "" if isinstance(entry, HostCostEntry) else ("yes" if entry.stable else "[red]NO[/red]")
        table.add_row(name, model, *fit, str(entry.n), stable)
    return table
