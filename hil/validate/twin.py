"""The harness twin: the scenario rewritten to describe the harness as it runs on this host.

A scenario describes the hardware it is meant for (a BlueField's 16 cores,
an A100 with two streams). ``dgsim hil run`` runs it on something else: two
single-threaded processes, the front (every ``cpu``/``dpu`` stage) and the
GPU side (every ``gpu`` stage), each running one batch at a time, joined by
the transports it opened. To predict *that*, the twin keeps the scenario's
pipeline, placement, workload and policies (the very objects the harness
calls) and replaces what the harness replaces:

- every pool: one device (``count: 1``) with one server (``servers: 1``:
  one process runs one batch at a time) at ``speed: 1`` (calibrated costs
  are this host's own figures);
- every stage the harness runs for real: its calibration entry, named after
  the stage (affine in batch size for a batched stage, a distribution
  otherwise); an emulated stage keeps its cost model, which the harness
  busy-spins on;
- a prefilter's pass probability: the fraction of the harness's frame bank
  its real model passes (the harness filters by frame, request ``i`` carrying
  frame ``i mod count``);
- the links: one per transport the harness opened, between the front's pool
  and the GPU side's pool, named after the transport (as the harness names
  its measurements), its latency the calibration's ``transport.<kind>`` fit
  in bytes; the channel policy picks among them as in the harness. No client
  links: the front issues requests itself and the result is known where the
  last stage ran.

Only the layout decides what ran where (``hil.runner.layout``), so the twin
mirrors it by construction. Problems (a missing entry, a variant the twin
cannot express) are reported all at once, one line each.
"""

from __future__ import annotations

from pathlib import Path

from hil.runner.layout import FRONT, GPU, Layout
from sim.calibration import CalibrationError, CalibrationFile, load_calibration
from sim.scenario.schema import Scenario


class TwinError(ValueError):
    """The twin cannot be built; ``lines`` says why, one problem each."""

    def __init__(self, lines: list[str]):
        self.lines = lines
        super().__init__("\n".join(lines))


def read_calibration(path: Path) -> CalibrationFile:
    """The calibration file, or TwinError with its problems."""
    try:
        return load_calibration(path)
    except CalibrationError as error:
        raise TwinError(error.lines()) from None


def needed_entries(layout: Layout, kinds: tuple[str, ...]) -> list[str]:
    """The calibration entries the twin of ``layout`` reads: its real stages and the transports."""
    return [s.name for s in layout.stages if s.op != "emulate"] + [f"transport.{k}" for k in kinds]


def check_twin(layout: Layout, calibration: Path, kinds: tuple[str, ...]) -> list[str]:
    """Every reason the twin of ``layout`` cannot be built from ``calibration``, one line each."""
    try:
        entries = read_calibration(calibration).entries
    except TwinError as error:
        return error.lines
    problems = [f"calibration file {calibration}: no entry '{name}', which the twin of variant {layout.variant} "
                f"needs (calibrate this scenario and variant with 'dgsim hil calibrate'); it has: {', '.join(entries)}"
                for name in needed_entries(layout, kinds) if name not in entries]
    for side in (FRONT, GPU):
        pools = sorted({s.pool for s in layout.side_stages(side)})
        if len(pools) > 1:
            problems.append(f"variant {layout.variant}: stages on pools {', '.join(pools)} share the {side} process; "
                            "the twin models one pool per process")
    for s in layout.stages:
        if s.op == "emulate" and s.speed != 1:
            problems.append(f"stage '{s.name}' is emulated on pool '{s.pool}' of speed {s.speed:g}; the twin runs "
                            "every pool at speed 1: give that pool speed 1")
    return problems


def twin_scenario(layout: Layout, calibration: Path, kinds: tuple[str, ...], pass_fraction: dict[str, float],
                  poll: float = 0.0, sizes: dict[str, float] | None = None) -> Scenario:
    """The twin of the scenario ``layout`` runs (its workload and run section as measured).

    ``pass_fraction``: per prefilter stage, the share of the frame bank its model passes;
    ``poll``: seconds a message waits for an idle receiver to look (added to each link's overhead);
    ``sizes``: bytes the harness really sends to each side, as the outputs of the stages before a hop.
    Raises TwinError with every problem.
    """
    calibration = Path(calibration).resolve()
    problems = check_twin(layout, calibration, kinds)
    if problems:
        raise TwinError(problems)
    entries = read_calibration(calibration).entries
    sides = {side: sorted({s.pool for s in layout.side_stages(side)}) for side in (FRONT, GPU)}
    document = layout.scenario.model_dump(mode="json", by_alias=True, exclude={"variants"})
    for pool in document["hardware"]["pools"].values():
        pool.update(count=1, servers=1, speed=1.0)
    for stage, spec in zip(layout.scenario.pipeline.stages, document["pipeline"]["stages"]):
        run = next((s for s in layout.stages if s.name == stage.name), None)
        if run is None or run.op == "emulate":
            continue  # skipped by the placement, or busy-spun on its own cost model
        spec["costs"] = {kind: {"kind": "calibrated", "file": str(calibration), "entry": run.name}
                         for kind in spec["costs"]}
        if run.op == "prefilter":
            spec["pass_probability"] = pass_fraction[run.name]
    for stage, after in zip(layout.stages, layout.stages[1:]):
        if sizes and after.side != stage.side and after.side in sizes:
            spec = next(x for x in document["pipeline"]["stages"] if x["name"] == stage.name)
            spec["output"] = f"{sizes[after.side]:.0f} B"
    front, gpu = sides[FRONT], sides[GPU]
    document["hardware"]["links"] = [
        {"name": kind, "between": [front[0], gpu[0]], "kind": kind, "contention": "fifo",
         "latency": {"kind": "calibrated", "file": str(calibration), "entry": f"transport.{kind}"},
         "overhead": f"{_hold(entries[f'transport.{kind}']) + poll!r} s"}
        for kind in kinds] if front and gpu else []
    document["name"] = f"{layout.scenario.name}-twin"
    document["description"] = (f"harness twin of {layout.scenario.name} ({layout.variant}) on this host: one "
                               f"single-server process per side, costs from {calibration.name}, links "
                               f"{', '.join(kinds)}")
    return Scenario.model_validate(document)


def _hold(entry) -> float:
    """The per-message overhead a bytes fit gives a link (``sim.calibration.Resolver.link``): q0 x a."""
    return entry.residual.values[0] * entry.a if entry.kind == "affine" else 0.0


def pass_fractions(layout: Layout) -> dict[str, float]:
    """Per real prefilter stage: the fraction of the harness's frame bank its model passes."""
    stages = [s for s in layout.stages if s.op == "prefilter"]
    if not stages:
        return {}
    import onnxruntime as ort

    from hil.models.prefilter import frame_scores
    from hil.runner.ops import FrameBank

    bank = FrameBank.of(layout)
    out = {}
    for stage in stages:  # any prefilter model: its own input name and size, its hil.score output
        session = ort.InferenceSession(str(stage.model), providers=["CPUExecutionProvider"])
        out[stage.name] = float((frame_scores(session, bank.images, stage.score) >= stage.threshold).mean())
    return out
