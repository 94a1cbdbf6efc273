"""Timing the pipeline's real stages with the runner's own ops.

What ``dgsim hil run`` executes for a stage is its *op* (``hil.runner.ops``:
parse, preprocess, prefilter, detect, postprocess), laid out by
``hil.runner.layout`` on the front side (the DPU's cores) or the GPU side,
with the models, frame sizes and cores of the scenario's ``hil`` section.
This module opens those very ops, on their side's cores, and times them on
a batch of jobs: so the calibration measures what the harness runs, not a
look-alike.

Each op's inputs are the previous op's real outputs: the request's frame
goes through parse, preprocess, ... as it would in a run. A stage the
scenario batches (``policies.batching.<stage>.max_batch`` > 1) is timed at
every batch size and fitted in batch size; any other stage is a latency
distribution at batch 1. An ``emulate`` stage busy-spins on its own cost
model in the harness: there is nothing real to time, and it is skipped.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from hil.calibrate.fit import affine_entry, distribution_entry
from hil.calibrate.measure import Measurement, Settings, measure, pinned, timed
from hil.calibrate.model_identity import model_tag
from hil.runner.layout import FRAME_OPS, Layout
from hil.runner.ops import FrameBank, honest, open_op
from hil.runner.station import Job

Report = Callable[[str], None]


def batch_sizes(max_batch: int, quick: bool) -> tuple[int, ...]:
    """Every batch size 1..max_batch; quick: 1, 2 and 4 only (those not above max_batch)."""
    if quick:
        return tuple(b for b in (1, 2, 4) if b <= max_batch)
    return tuple(range(1, max_batch + 1))


def stage_entries(layout: Layout, backend: str, rule: Settings, quick: bool, max_batch: int | None,
                  report: Report = lambda _: None) -> tuple[dict, list[str]]:
    """A calibration entry per real stage of ``layout`` (by stage name), and notes on the stages skipped."""
    entries, notes = {}, []
    frames = FrameBank.of(layout) if layout.uses_frames else None
    plans = {s.index: batch_sizes(max_batch if max_batch and s.batching.max_batch > 1 else s.batching.max_batch,
                                  quick) for s in layout.stages}
    largest = max(max(sizes) for sizes in plans.values())
    # without frames, requests carry a payload and model ops generate their inputs (hil.inputs) by request id
    data = [frames.frame(i) for i in range(largest)] if frames is not None else \
        [np.zeros(1, np.uint8) for _ in range(largest)]
    for stage in layout.stages:
        if stage.op == "emulate":
            notes.append(f"stage '{stage.name}': not profiled; the harness emulates it (busy-spin on its cost model)")
            continue
        if frames is None and stage.op in FRAME_OPS:
            raise RuntimeError(f"stage '{stage.name}' ({stage.op}) needs frames, but the layout has none")
        cores = layout.cores[stage.side]
        with pinned(cores):  # a model op pins the process as it opens; pinned() restores the affinity after
            op = open_op(stage, layout, frames, backend, 0)
            try:
                jobs = [Job(i, stage.index, math.inf, 0, x) for i, x in enumerate(data)]
                points: list[tuple[float, Measurement]] = []
                for batch in plans[stage.index]:
                    batch_jobs = jobs[:batch]
                    points.append((float(batch), measure(timed(lambda: op(batch_jobs)), rule)))
                    m = points[-1][1]
                    report(f"{stage.name} ({stage.op}) batch {batch}: mean {m.mean * 1e3:.3f} ms over "
                           f"{len(m.samples)} samples, {m.windows} windows, {'stable' if m.stable else 'NOT stable'}")
                what = (f"op {stage.op} on the {stage.side} side, cores {', '.join(map(str, cores))}: "
                        f"{honest(op.describe(), stage.side)}")
                if stage.model is not None:
                    what += f"; {model_tag(stage.model)}"
                if stage.op == "postprocess":
                    rows = sum(int(np.sum(x[:, 4] > 0.25)) for x in data[:largest])
                    what += (f"; its input had {rows / largest:g} rows per image above the 0.25 objectness "
                             "threshold (the NMS cost grows with that count)")
                data = op(jobs)[0]  # the next stage's inputs: this op's real outputs
            finally:
                op.close()
        if len(points) == 1:
            entries[stage.name] = distribution_entry(points[0][1], f"batch 1; {what}")
        else:
            sizes = ", ".join(str(int(x)) for x, _ in points)
            entries[stage.name] = affine_entry(points, "batch", f"batch sizes {sizes}; {what}")
    return entries, notes
