"""``dgsim report``, ``dgsim trace`` and ``dgsim compare``: looking at results folders.

    dgsim report RESULTS [--open]
    dgsim trace RESULTS --variant V --window 2s:2.1s [--sample N] [--format json|proto]
    dgsim compare RESULTS_A RESULTS_B [--html FILE]

Each reads folders written by ``dgsim run`` or ``dgsim hil run`` (same
format) and never simulates. Invalid input (no such folder, unknown
variant, a malformed window) is one line per problem and exit 2;
``register`` adds the three commands to the ``dgsim`` application.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer


class TraceFormat(str, Enum):
    json = "json"
    proto = "proto"


def _folder(path: Path) -> None:
    from sim.commandline import fail_input

    if not path.is_dir():
        fail_input([f"{path}: no such results folder"])
    if not (path / "summary.json").exists():
        fail_input([f"{path}: no summary.json here (run 'dgsim run' or 'dgsim hil run' first)"])


def report_command(
    results: Path = typer.Argument(..., help="results folder (from 'dgsim run' or 'dgsim hil run')"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="where to write the page [default: RESULTS/report.html]"),
    open_: bool = typer.Option(False, "--open", help="open the page in the default browser"),
) -> None:
    """Write RESULTS/report.html: one self-contained page with plots, verdicts and the scenario as run."""
    from sim.commandline import fail_input
    from sim.report.html import write_report
    from sim.results import ResultsError

    _folder(results)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        fail_input(["dgsim report draws with matplotlib, which is not installed: pip install -e '.[report]'"])
    try:
        path = write_report(results, out)
    except ResultsError as error:
        fail_input([str(error)])
    except FileNotFoundError as error:
        fail_input([f"{error.filename}: missing (the results folder is incomplete)"])
    except OSError as error:
        fail_input([f"{error.filename}: cannot write ({error.strerror})"])
    typer.echo(f"report: {path} ({path.stat().st_size / 1024:.0f} KiB)")
    if open_:
        import webbrowser

        webbrowser.open(path.resolve().as_uri())


def trace_command(
    results: Path = typer.Argument(..., help="results folder (from 'dgsim run' or 'dgsim hil run')"),
    variant: Optional[str] = typer.Option(None, "--variant", "-v", help="variant to trace [default: the only one]"),
    window: str = typer.Option(..., "--window", "-w", help="arrivals to trace, START:END such as 2s:2.1s"),
    sample: Optional[int] = typer.Option(None, "--sample", min=1, help="trace at most N of those requests, at random"),
    replication: int = typer.Option(0, "--replication", min=0, help="replication to trace (0 is the first)"),
    fmt: TraceFormat = typer.Option(TraceFormat.json, "--format", help="json: Chrome trace events; proto: Perfetto"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="trace file [default: RESULTS/traces/V-START-END.EXT]"),
    max_size: float = typer.Option(64.0, "--max-size", min=0.001, help="refuse to write a trace over this many MiB"),
) -> None:
    """Write a Perfetto trace of a window of requests: devices and links as tracks, requests as flows."""
    from sim.commandline import fail_input
    from sim.report import trace as traces
    from sim.report.columns import read_requests, resolved_scenario, stage_graph, stage_names

    _folder(results)
    names = sorted(p.stem for p in (results / "requests").glob("*.parquet"))
    if not names:
        fail_input([f"{results}/requests/: no per-request tables to trace (a run written with --records none "
                    f"keeps none: run again with --records all, or --records sample:N)"])
    if variant is None:
        if len(names) != 1:
            fail_input([f"--variant: {results} has several variants; name one of {', '.join(names)}"])
        variant = names[0]
    if variant not in names:
        fail_input([f"--variant: no variant '{variant}' in {results} (known: {', '.join(names)})"])
    try:
        span = traces.parse_window(window)
    except ValueError as error:
        fail_input([f"--window: {error}"])
    try:
        frame = read_requests(results, variant)
    except FileNotFoundError:
        fail_input([f"{results}/requests/{variant}.parquet: missing (the results folder is incomplete)"])
    replications = sorted(int(r) for r in frame["replication"].unique())
    if replication not in replications:
        fail_input([f"--replication: {results} has replications {replications[0]}..{replications[-1]} of '{variant}'"])
    rows = traces.select_requests(frame, replication, span, sample)
    if not len(rows):
        last = float(frame["arrival"].max()) if len(frame) else 0.0
        fail_input([f"--window: no request of '{variant}' arrived in {window} (arrivals span 0..{last:.3f} s)"])
    scenario, _ = resolved_scenario(results, variant)
    trace = traces.build_trace(rows, stage_graph(scenario, stage_names(frame)), variant, replication, span)
    try:
        data = traces.encode(trace, fmt.value, int(max_size * 2**20))
    except traces.TraceTooLarge as error:
        fail_input([str(error)])
    except ImportError:
        fail_input(["--format proto needs the 'perfetto' package (pip install perfetto); or use --format json"])
    suffix = traces.FORMATS[fmt.value][1]
    path = out or results / "traces" / f"{variant}-{span[0]:g}s-{span[1]:g}s{suffix}"
    try:
        traces.write_trace(path, data)
    except OSError as error:
        fail_input([f"{path}: cannot write ({error.strerror})"])
    typer.echo(f"trace: {path} ({len(data) / 2**20:.2f} MiB; {trace.requests} requests, {len(trace.slices)} slices, "
               f"{len(trace.flows)} flows, {len(trace.tracks())} tracks); open it at https://ui.perfetto.dev")


def compare_command(
    a: Path = typer.Argument(..., help="results folder A (the reference)"),
    b: Path = typer.Argument(..., help="results folder B (compared with A: differences are B - A)"),
    html: Optional[Path] = typer.Option(None, "--html", help="also write the comparison as an HTML page"),
    metric: Optional[List[str]] = typer.Option(None, "--metric", "-m",
                                               help="metrics to compare (glob patterns, e.g. 'latency.*')"),
) -> None:
    """Compare two results folders per variant and metric: B - A with 95% CIs, paired on common random numbers."""
    from rich.console import Console

    from sim.commandline import fail_input
    from sim.report.compare import compare, console_table, html_page, only_patterns, text_lines
    from sim.results import ResultsError, read_summary

    problems = []
    summaries = []
    for path in (a, b):
        try:
            summaries.append(read_summary(path))
        except ResultsError as error:
            problems.append(str(error))
    if problems:
        fail_input(problems)
    comparison = compare(*summaries, only_patterns(metric))
    if not comparison.paired:
        fail_input([f"{a} and {b} have no variant in common (A: {', '.join(summaries[0].variants)}; "
                    f"B: {', '.join(summaries[1].variants)})"])
    console = Console()
    for table in console_table(comparison):
        console.print(table)
    for line in text_lines(comparison):
        console.print(line, highlight=False, markup=False)
    if html:
        try:
            html.parent.mkdir(parents=True, exist_ok=True)
            html.write_text(html_page(comparison), encoding="utf-8")
        except OSError as error:
            fail_input([f"{html}: cannot write ({error.strerror})"])
        console.print(f"comparison: {html}")


def register(app: typer.Typer) -> None:
    app.command("report")(report_command)
    app.command("trace")(trace_command)
    app.command("compare")(compare_command)
