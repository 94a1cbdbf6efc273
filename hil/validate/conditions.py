"""Run conditions: what a stage alone on a quiet core does not show, measured in two probe runs.

The calibration times each op alone, back to back, on its own core. In a
harness run three things differ, and each was found by comparing the two
(``compare.breakdown`` on a measured run against its twin):

1. **Service time depends on the load.** A process that slept between
   requests runs its next batch slower: on this host the same preprocess
   took ~1.7x longer at 20% load than under a full backlog (the idle vCPU
   loses its caches and clock to other work; a ``time.sleep`` before each
   call reproduces it outside the harness). Concurrency with the other side
   and the host's background load at the time of the sweep add to it. The
   twin multiplies each stage's calibrated cost by ``k``, the ratio in-run /
   calibrated of its mean batch service time, measured in two probe runs
   (a low-load ``server`` run at ``LOW_LOAD`` x capacity and the ``offline``
   capacity run, load 1) and interpolated linearly in the load in between.
2. **The loop's turn between batches.** Between two batches each process
   goes once round its loop: it issues due requests, polls the rings (and
   copies what arrived out of them), logs the batch and each job, asks the
   batchers. That takes ~0.2-0.3 ms of the same core per batch here.
   Measured in the offline probe as the mean time between consecutive
   batches of a process while work was waiting, and added to every batch
   that process runs. (The harness counts only batches as busy time, so the
   twin's utilisation is compared without these turns.)
3. **Pickup.** An idle process sleeps in steps growing from 20 us to 1 ms
   (``hil.runner.worker``), and waking an idle core takes time (longer the
   longer it slept), so a message to an idle process waits before it is
   taken off the ring. Measured in the low-load probe as the mean of
   (received - sent - the transport's calibrated mean for its size) over the
   messages that reached a process that was not running a batch, and added
   to each link's per-message overhead. (Not under a full backlog: there a
   process "not running a batch" is still busy copying other messages.)

The twin's messages also get the sizes the harness really sends (the
detector's input tensor, its raw output), measured in the same probe,
instead of the scenario's nominal sizes.

``adjusted`` writes these into a copy of the calibration file (each changed
entry says so in its ``measured`` text); the twin reads that copy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from hil.runner.layout import FRONT, GPU, Layout
from sim.calibration import AffineEntry, CalibrationFile, DistributionEntry, Quantiles
from sim.metrics.records import column

LOW_LOAD = 0.2  # the low-load probe's load, a fraction of the measured capacity


@dataclass(frozen=True)
class Conditions:
    low: dict[str, float]  # stage -> k at LOW_LOAD
    high: dict[str, float]  # stage -> k under a full backlog (load 1)
    turn: dict[str, float] = field(default_factory=dict)  # side -> seconds per batch between batches
    pickup: float = 0.0  # seconds a message to an idle process waits to be taken off the ring
    sizes: dict[str, float] = field(default_factory=dict)  # receiving side -> mean bytes of its messages

    def k(self, stage: str, load: float) -> float:
        """The in-run / calibrated service ratio of ``stage`` at ``load``, linear between the probes."""
        lo, hi = self.low.get(stage, 1.0), self.high.get(stage, 1.0)
        return lo + (hi - lo) * min(max((load - LOW_LOAD) / (1.0 - LOW_LOAD), 0.0), 1.0)


def batches(frame: pd.DataFrame, stage: str) -> pd.DataFrame:
    """One row per batch of ``stage``: start, end, size, earliest enqueue (jobs of a batch share start and end)."""
    cols = [column(stage, c) for c in ("enqueued", "start", "end")]
    rows = frame[cols].dropna()
    rows.columns = ["enqueued", "start", "end"]
    key = [frame["replication"].loc[rows.index], rows["start"], rows["end"]]
    out = rows.groupby(key).agg(size=("start", "size"), enqueued=("enqueued", "min")).reset_index()
    out.columns = ["replication", "start", "end", "size", "enqueued"]
    return out


def service_ratios(frame: pd.DataFrame, layout: Layout, means: dict[str, callable]) -> dict[str, float]:
    """Per stage: total in-run batch service / total calibrated mean for the same batch sizes."""
    out = {}
    for stage in layout.stages:
        if stage.name not in means:
            continue
        b = batches(frame, stage.name)
        model = float(sum(means[stage.name](int(n)) for n in b["size"]))
        if len(b) and model > 0:
            out[stage.name] = float((b["end"] - b["start"]).sum()) / model
    return out


def loop_turn(frame: pd.DataFrame, layout: Layout, side: str) -> float:
    """Mean seconds between consecutive batches of a process while work was waiting (its loop's own work)."""
    names = [s.name for s in layout.side_stages(side)]
    if not names:
        return 0.0
    all_batches = pd.concat([batches(frame, n) for n in names]).sort_values(["replication", "start"])
    gaps = []
    for _, b in all_batches.groupby("replication"):
        start, end, enq = (b[c].to_numpy() for c in ("start", "end", "enqueued"))
        waiting = enq[1:] <= end[:-1]  # the next batch's work was there when this one ended
        gaps.append((start[1:] - end[:-1])[waiting])
    gaps = np.concatenate(gaps) if gaps else np.empty(0)
    return float(np.mean(gaps)) if len(gaps) else 0.0


def messages(folder: Path, side: str) -> tuple[list, np.ndarray]:
    """From a run's event file of ``side``: messages received (kind, bytes, sent, received), batches (start, end)."""
    hops, runs = [], []
    with open(folder / f"{side}.jsonl", encoding="utf-8") as file:
        for line in file:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if event[0] == "h":
                hops.append(event[2:6])
            elif event[0] == "b":
                runs.append(event[3:5])
    return hops, np.array(sorted(runs), float).reshape(-1, 2)


def pickup(folder: Path, transport) -> tuple[float, dict[str, float]]:
    """Mean pickup delay of a message to a process not running a batch, and mean bytes received per side.

    ``transport(kind, bytes)`` is the calibrated mean one-way time of a message.
    """
    delays, sizes = [], {}
    for side in (FRONT, GPU):
        hops, runs = messages(folder, side)
        if not hops:
            continue
        sizes[side] = float(np.mean([n for _, n, _, _ in hops]))
        starts, ends = runs[:, 0], np.concatenate([[-np.inf], runs[:, 1]])
        for kind, n, sent, received in hops:
            k = np.searchsorted(starts, received)
            if ends[k] <= sent and np.searchsorted(starts, sent) == k:  # no batch ran while it waited
                delays.append(received - sent - transport(kind, n))
    return (max(float(np.mean(delays)), 0.0) if delays else 0.0), sizes


def adjusted(calibration: CalibrationFile, layout: Layout, conditions: Conditions, load: float,
             note: str) -> CalibrationFile:
    """The calibration with each stage entry scaled by k(load) and its process's loop turn added per batch."""
    entries = dict(calibration.entries)
    for stage in layout.stages:
        if stage.name not in entries or stage.op == "emulate":
            continue
        k, turn = conditions.k(stage.name, load), conditions.turn.get(stage.side, 0.0)
        entries[stage.name] = _scaled(entries[stage.name], k, turn, f"; for the twin at load {load:g}: x {k:.3f} "
                                      f"(in-run / calibrated service, {note}) + {turn * 1e3:.3f} ms per batch "
                                      "(the loop's turn between batches)")
    notes = [*calibration.provenance.notes, f"adjusted for the harness twin at load {load:g} by dgsim validate"]
    return calibration.model_copy(update={"entries": entries, "provenance": calibration.provenance.model_copy(
        update={"notes": notes})})


def _scaled(entry, k: float, extra: float, how: str):
    """``entry`` x k, plus ``extra`` seconds per batch (a distribution is drawn per item: batches of 1 there)."""
    if isinstance(entry, DistributionEntry):
        values = [v * k + extra for v in entry.quantiles.values]
        return entry.model_copy(update={
            "quantiles": Quantiles(levels=entry.quantiles.levels, values=values),
            "sample_mean": entry.sample_mean * k + extra, "measured": entry.measured + how})
    assert isinstance(entry, AffineEntry)
    points = [p.model_copy(update={"mean": p.mean * k + extra, "p50": p.p50 * k + extra}) for p in entry.points]
    return entry.model_copy(update={"a": entry.a * k + extra / entry.residual.mean(), "b": entry.b * k,
                                    "points": points, "measured": entry.measured + how})
