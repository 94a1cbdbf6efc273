"""``dgsim partition MODEL.onnx``: the command line of ``partition_model`` and ``search_cuts``.

    dgsim partition MODEL.onnx --input 'images:1x3x640x640' --out parts/
    dgsim partition MODEL.onnx --input ... --scenario my.yaml --stage infer --search [--costs measured|estimated]

Exit codes: 0 done (every written pair composes), 1 a pair failed its
composition check or a segment failed to run, 2 invalid input (one line per
problem).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table


def _pairs(values: Optional[List[str]], sep: str, what: str, problems: list[str]) -> dict[str, str]:
    found = {}
    for text in values or ():
        name, found_sep, rest = text.partition(sep)
        if not found_sep or not name:
            problems.append(f"{what} {text!r}: expected NAME{sep}..., e.g. {'images:1x3x640x640' if sep == ':' else 'sr=const:16000'}")
            continue
        found[name] = rest
    return found


def partition_command(
    model: Path = typer.Argument(..., help="the ONNX model to cut"),
    input_: Optional[List[str]] = typer.Option(None, "--input", "-i", help="NAME:SHAPE fixing an input's dims, "
                                               "e.g. 'images:1x3x640x640' (axis 0, if dynamic, defaults to 1)"),
    feed: Optional[List[str]] = typer.Option(None, "--feed", help="NAME=GENERATOR for an input's values: random, "
                                             "image, image:raw, audio, tokens:HIGH, const:VALUE, zeros, npy:PATH"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="folder for <cut>-head.onnx, <cut>-tail.onnx and "
                                       "cuts.json (default: list only)"),
    cuts: Optional[str] = typer.Option(None, "--cuts", help="comma-separated cut names to write (default: all)"),
    max_tensors: int = typer.Option(1, "--max-tensors", min=1, help="most computed tensors (> 64 bytes) a "
                                    "candidate cut may send"),
    max_cuts: int = typer.Option(16, "--max-cuts", min=1, help="most candidates listed (evenly spread by FLOPs)"),
    scenario: Optional[Path] = typer.Option(None, "--scenario", help="scenario whose stage to split (with --search)"),
    stage: Optional[str] = typer.Option(None, "--stage", help="the stage that runs MODEL"),
    search: bool = typer.Option(False, "--search", help="cost every cut, simulate the split pipeline, rank cuts"),
    costs: str = typer.Option("measured", "--costs", help="measured (run each segment here with onnxruntime) or "
                              "estimated (FLOPs and bytes over the device profiles' peak figures)"),
    scenario_out: Optional[Path] = typer.Option(None, "--scenario-out", help="split scenario to write (default: "
                                                "OUT/split.yaml)"),
    capacity: bool = typer.Option(False, "--capacity", help="also search each cut's capacity at the SLO "
                                  "(sim.explore; many simulations) and rank by it first"),
) -> None:
    """List a model's cut points; write head/tail segments checked to compose; optionally rank the cuts."""
    from hil.models.inputs import parse_shape
    from hil.partition.cuts import CutRules
    from hil.partition.partition import PartitionError, partition_model
    from sim.commandline import fail_input

    problems: list[str] = []
    shapes = {}
    for name, text in _pairs(input_, ":", "--input", problems).items():
        try:
            shapes[name] = parse_shape(text)
        except ValueError as error:
            problems.append(f"--input {name}: {error}")
    generators = _pairs(feed, "=", "--feed", problems)
    if search and (scenario is None or stage is None):
        problems.append("--search needs --scenario FILE and --stage NAME")
    if search and out is None:
        problems.append("--search needs --out DIR (the segments are written and measured there)")
    if costs not in ("measured", "estimated"):
        problems.append(f"--costs: expected measured or estimated, got {costs!r}")
    if problems:
        fail_input(problems)
    wanted = [c.strip() for c in cuts.split(",") if c.strip()] if cuts else None
    try:
        result = partition_model(model, shapes, generators, out, wanted, CutRules(max_tensors, max_cuts=max_cuts))
    except PartitionError as error:
        fail_input(error.problems)
    console = Console(highlight=False, width=max(Console().width, 160))
    console.print(cut_table(result))
    failed = [r.cut.name for r in result.cuts if r.composition is not None and not r.composition.ok]
    if out is not None:
        console.print(f"wrote {sum(1 for r in result.cuts if r.head)} head/tail pairs and {out / 'cuts.json'}; "
                      f"composition checked on generated inputs, tolerance {result.describe()['tolerance']}")
    if failed:
        Console(stderr=True).print(f"[red]error:[/red] {', '.join(failed)}: head + tail do not reproduce the model")
        raise typer.Exit(1)
    if search:
        from hil.partition.search import SearchError, search_command

        try:
            search_command(result, scenario, stage, costs, scenario_out or out / "split.yaml", console, capacity)
        except SearchError as error:
            fail_input(error.problems)


def cut_table(result) -> Table:
    g = result.graph
    table = Table(title=f"{g.path.name}: {len(result.cuts)} candidate cuts of {len(g.work)} work nodes "
                  f"({result.total_flops / 1e9:.3g} GFLOP counted)", title_justify="left")
    for column in ("cut", "after node", "crossing tensors", "bytes/item", "head GFLOP", "tail GFLOP",
                   "head params", "tail params", "composes"):
        table.add_column(column, justify="left" if column in ("cut", "after node", "crossing tensors") else "right")
    for r in result.cuts:
        c = r.cut
        crossing = ", ".join(f"{_short(n)} {'x'.join(map(str, g.values[n].shape)) or 'scalar'} {g.values[n].dtype}"
                             for n in c.crossing)
        check = "-" if r.composition is None else ("yes" if r.composition.ok else "[red]NO[/red]")
        table.add_row(c.name, _short(c.after_node), crossing, _bytes(c.bytes / result.batch),
                      f"{c.head_flops / 1e9:.4f}", f"{c.tail_flops / 1e9:.4f}", _bytes(c.head_param_bytes),
                      _bytes(c.tail_param_bytes), check)
    return table


def _short(name: str, keep: int = 28) -> str:
    return name if len(name) <= keep else "…" + name[-(keep - 1):]


def _bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n}"
