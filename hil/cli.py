"""``dgsim hil ...``: the hardware harness's commands.

Registered into the ``dgsim`` command through the ``dgsim.cli`` entry point,
so the simulator's CLI never imports the harness.

    dgsim hil doctor
    dgsim hil run SCENARIO [--variant V] [--backend auto|onnxruntime|tensorrt] [--transport auto|shm|tcp|rdma]
                  [--mode single-stream|server|offline|scenario] [--duration '30 s'] [--rate 50/s] [--out DIR]

Exit codes as ``dgsim run``: 0 success, 1 a worker failed during the run
in a way the scenario did not inject, or requests failed or timed out that
the scenario did not expect (``hil.runner.run.unexpected_failures``;
results are still written), 2 invalid input (one line per problem, also
for a backend or transport this machine does not have), 130 interrupted
(results of what was measured are written).
"""

from __future__ import annotations

import signal
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

hil_app = typer.Typer(add_completion=False, no_args_is_help=True,
                      help="Run pipelines for real: onnxruntime/TensorRT, shm/TCP/RDMA transports.")


class Mode(str, Enum):
    single_stream = "single-stream"
    server = "server"
    offline = "offline"
    scenario = "scenario"


class BackendChoice(str, Enum):
    auto = "auto"
    onnxruntime = "onnxruntime"
    tensorrt = "tensorrt"
    onnxruntime_gpu = "onnxruntime-gpu"
    onnxruntime_cpu = "onnxruntime-cpu"


class TransportChoice(str, Enum):
    auto = "auto"
    shm = "shm"
    tcp = "tcp"
    rdma = "rdma"


@hil_app.command()
def doctor() -> None:
    """List what this machine can run for real, and why not where it cannot."""
    from hil.doctor import capabilities

    table = Table(title="dgsim hil doctor: what this machine can run", title_justify="left")
    table.add_column("capability")
    table.add_column("available")
    table.add_column("detail")
    for capability in capabilities():
        mark = "[green]yes[/green]" if capability.available else "[red]no[/red]"
        table.add_row(capability.name, mark, capability.detail)
    Console().print(table)


@hil_app.command()
def run(
    scenario: Optional[str] = typer.Argument(
        None, help="scenario YAML file, or the name of a shipped one (default: video-analytics-64)"),
    variant: Optional[List[str]] = typer.Option(None, "--variant", "-v", help="measure only these variants"),
    backend: BackendChoice = typer.Option(BackendChoice.auto, help="GPU-side engine; auto: TensorRT, else "
                                          "onnxruntime-gpu, else onnxruntime on host cores"),
    transport: TransportChoice = typer.Option(TransportChoice.auto, help="between the two processes; auto: every "
                                              "available one, chosen per message by the scenario's channel policy"),
    mode: Mode = typer.Option(Mode.scenario, help="LoadGen scenario; 'scenario': the scenario's own sources"),
    duration: Optional[str] = typer.Option(None, help="override run.duration, e.g. '30 s'"),
    rate: Optional[str] = typer.Option(None, help="server mode: Poisson arrival rate, e.g. '50/s'"),
    scale: Optional[float] = typer.Option(None, help="scenario mode: scale the sources' load by this factor"),
    replications: int = typer.Option(1, min=1, help="measured runs per variant (replication index r each)"),
    seed: Optional[int] = typer.Option(None, help="override run.seed"),
    min_requests: int = typer.Option(662, min=1, help="measured requests at least (LoadGen's minimum for p99)"),
    warmup: Optional[str] = typer.Option(None, help="override run.warmup, e.g. '2 s'"),
    metrics_port: Optional[int] = typer.Option(None, min=0, max=65535, help="serve Prometheus metrics here"),
    metrics_host: str = typer.Option("127.0.0.1", help="address of the metrics endpoint"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="override any field: dotted.path=value"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="results folder (default: results/hil/<scenario>)"),
    record: int = typer.Option(0, min=0, help="save each stage's output for the first N requests (stream/.../*.npz)"),
    reply_timeout: str = typer.Option("10 s", help="a request the GPU side holds longer fails with this reason"),
) -> None:
    """Run a scenario's pipeline for real and write results in the format of 'dgsim run'."""
    from hil.runner.layout import build_models, lay_out
    from hil.runner.load import prepare
    from hil.runner.run import HarnessError, Settings, measure
    from hil.options import transport_kinds
    from sim.commandline import fail_input, scenario_overrides
    from sim.plan import compile_plan
    from sim.scenario.builtin import scenario_path
    from sim.scenario.errors import ScenarioError
    from sim.results import ResultsError, check_out
    from sim.session import InputError, open_scenario
    from sim.units import UnitError, parse_duration, parse_rate

    problems = []
    rate_value = timeout = None
    if mode is Mode.server and rate is None:
        problems.append("--mode server needs --rate, e.g. --rate 50/s")
    if rate is not None and mode is not Mode.server:
        problems.append("--rate applies to --mode server only")
    if scale is not None and (mode is not Mode.scenario or scale <= 0):
        problems.append("--scale needs --mode scenario and a factor > 0")
    try:
        rate_value = None if rate is None else _rate(rate, parse_rate)
        timeout = parse_duration(reply_timeout)
    except UnitError as error:
        problems.append(f"--rate/--reply-timeout: {error}")
    kinds = transport_kinds(transport.value, problems)
    _check_backend(backend.value, problems)
    if problems:
        fail_input(problems)

    path = scenario_path(scenario)
    overrides = scenario_overrides(seed, duration, replications, set_) + ([f"run.warmup={warmup}"] if warmup else [])
    console = Console(highlight=False)
    try:
        session = open_scenario(path, overrides, variant)
        names = session.variants
        layouts, notes = [], []
        for name in names:  # the harness measures a prepared copy of each variant (its load mode applied)
            measured, notes = prepare(session.plans[name].scenario, mode.value, rate_value, scale or 1.0,
                                      min_requests, session.base_dir)
            layouts.append(lay_out(compile_plan(measured, session.label(name), session.base_dir), name,
                                   session.label(name)))
        check_out(out or Path("results") / "hil" / layouts[0].scenario.name)
    except InputError as error:
        fail_input(error.lines)
    except ScenarioError as error:
        fail_input([str(p) for p in error.problems])
    except ResultsError as error:
        fail_input([str(error)])
    console.print(f"[bold]dgsim hil run[/bold] {layouts[0].scenario.name}: {', '.join(names)}; mode {mode.value}; "
                  f"transports {', '.join(kinds)} (per message, channel policy); backend {backend.value}")
    if any(st.op in ("prefilter", "detect") and not st.user_model for st in layouts[0].stages):
        console.print(f"  built-in models in {Path(layouts[0].settings.cache) / 'models'} (first use of new sizes "
                      "trains the prefilter: up to a minute)")
    layouts = [build_models(layout) for layout in layouts]
    for line in _sizes(layouts[0]) + notes:
        console.print(f"  {line}")
    from hil.runner.faults import describe

    for layout in layouts:
        for fault in layout.faults:
            console.print(f"  {layout.variant}: injects {describe(fault)}")

    live = None
    if metrics_port is not None:
        from hil.runner.live import Live

        try:
            live = Live(metrics_host, metrics_port)
        except OSError as error:
            fail_input([f"--metrics-port: cannot serve on {metrics_host}:{metrics_port}: {error.strerror or error}"])
        console.print(f"  metrics: http://{metrics_host}:{live.port}/metrics")
    folder = out or Path("results") / "hil" / layouts[0].scenario.name
    settings = Settings(mode.value, kinds, backend.value, min_requests, timeout, record, tuple(notes))
    # Both handlers are ours, as in ``dgsim run``: a process started with SIGINT ignored (a background job of a
    # script, some CI runners) would otherwise never see Ctrl-C and measure the whole duration.
    previous = {s: signal.signal(s, _interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        measurement = measure(layouts, settings, folder, live, lambda text: console.print(f"  {text}"),
                              lambda variant_name, workers: _where(console, variant_name, workers))
    except (HarnessError, ResultsError) as error:
        fail_input([str(error)])
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if live is not None:
            live.close()
    _report(console, measurement, folder)


def _report(console: Console, measurement, folder: Path) -> None:
    from sim.report.table import comparison_table

    if measurement.result is not None:
        console.print(comparison_table(measurement.result))
        console.print(f"results: {folder}/ (summary.json, requests/, resolved/, failures.json, stream/)")
    if measurement.failures:
        reasons = sorted({f["reason"] for f in measurement.failures})
        console.print(f"[yellow]{len(measurement.failures)} request(s) failed[/yellow]: " + "; ".join(reasons[:3])
                      + (f"; ... (see {folder}/failures.json)" if len(reasons) > 3 else ""))
    for problem in measurement.problems:
        console.print(f"[red]worker failure:[/red] {problem}")
    for line in measurement.unexpected:
        console.print(f"[red]unexpected failures:[/red] {line}")
    if measurement.interrupted:
        console.print("[yellow]interrupted[/yellow]: " + ("results hold what was measured until then"
                      if measurement.result is not None else "before anything was measured; nothing written"))
        raise typer.Exit(130)
    if measurement.problems or measurement.unexpected:
        raise typer.Exit(1)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _rate(text: str, parse_rate) -> float:
    try:
        value = float(text)
    except ValueError:
        value = parse_rate(text)
    if value <= 0:
        from sim.units import UnitError

        raise UnitError(f"rate must be positive, got {text!r}")
    return value


def _check_backend(choice: str, problems: list[str]) -> None:
    from hil.backends import BACKENDS

    if choice in BACKENDS:
        capability = BACKENDS[choice].probe()
        if not capability.available:
            problems.append(f"--backend {choice}: not available here: {capability.detail}")


def _sizes(layout) -> list[str]:
    """What really runs: the built-in models' sizes only where built-in models run, user models by file."""
    s = layout.settings
    builtin = {st.op for st in layout.stages if not st.user_model}
    lines = []
    if layout.uses_frames:
        lines.append(f"frames: {s.frames.height}x{s.frames.width} synthetic RGB, {s.frames.count} distinct, "
                     f"{layout.positive_fraction:.0%} with objects")
    if "prefilter" in builtin:
        lines.append(f"prefilter: built-in, input {s.prefilter.input_size}x{s.prefilter.input_size}")
    if builtin & {"preprocess", "detect"}:
        lines.append(f"detector: built-in, input {layout.tensor_size[0]}x{layout.tensor_size[1]}, "
                     f"width {s.detector.width:g}")
    for st in layout.stages:
        if st.user_model and st.model is not None:
            lines.append(f"{st.name}: {st.op} op runs {st.model}")
    emulated = [st.name for st in layout.stages if st.op == "emulate"]
    if emulated:
        lines.append(f"EMULATED stages (busy-spin on their cost model, no real work): {', '.join(emulated)}")
    return lines


def _where(console: Console, variant: str, workers: dict) -> None:
    console.print(f"  [bold]{variant}[/bold]: what runs where")
    for side, info in workers.items():
        cores = ",".join(map(str, info["cores"]))
        console.print(f"    {side} side: pid {info['pid']}, cores {{{cores}}} ({info['role']})")
        for stage, text in info["stages"].items():
            console.print(f"      {stage}: {text}")


def _register_calibrate() -> None:
    from hil.calibrate.command import calibrate_command

    hil_app.command("calibrate")(calibrate_command)


_register_calibrate()


def register(app: typer.Typer) -> None:
    from hil.validate.command import validate_command

    from hil.partition.command import partition_command

    app.add_typer(hil_app, name="hil")
    app.command("validate")(validate_command)
    app.command("partition")(partition_command)
