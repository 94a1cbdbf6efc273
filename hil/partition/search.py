"""Split search: one scenario stage becomes head (DPU/CPU) + transfer + tail (GPU) at every cut, ranked.

For each written cut, the head segment becomes a stage ``<stage>-head`` with
costs on the ``dpu`` and ``cpu`` kinds (placement puts it on the DPU pool in
``dpu-offload`` designs, on the host CPU otherwise) whose ``output`` is the
bytes crossing the cut, and the tail becomes ``<stage>-tail`` with a ``gpu``
cost. Segment costs are either

- ``measured``: each segment run here with onnxruntime on one pinned core
  under ``hil calibrate``'s stability rule; these are *this host's* times on
  every kind (host cores, not a BlueField or a GPU), which is what
  ``dgsim hil run`` of the split measures on this host;
- ``estimated``: FLOPs over an effective FLOP rate of the reference part of
  each device kind (``hil.partition.estimate``, cited; an estimate).

The split scenario (base: the best cut; one variant ``cut-<k>`` per cut) is
simulated with ``sim.experiment``; cuts are ranked by capacity at the SLO
(``sim.explore.capacity``, when the scenario has a latency budget), by p99
at the scenario's load, and by the analytic bottleneck bound
(``sim.explore.bound``). Batching of the split stage is dropped: segments
are written for the partition's batch (one item).
"""

from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import yaml

from hil.partition.estimate import estimate_seconds
from hil.partition.partition import CutResult, Partition


class SearchError(ValueError):
    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class SegmentCost:
    head_s: float
    tail_s: float
    head_cv: float
    tail_cv: float
    how: str  # "measured on this host" or "estimated"
    head_cpu_s: Optional[float] = None  # the head on the cpu kind, where it differs from head_s (estimates)


@dataclass
class Ranked:
    cut: str
    cost: SegmentCost
    bytes: int
    p99: float
    p50: float
    mean: float
    throughput: float
    bound: float
    bound_resource: str
    capacity: Optional[float] = None


def measure_segment(path: Path, feeds: dict, core: int, quick: bool = True) -> tuple[float, float]:
    """Mean and CV of one segment run in onnxruntime, one thread on ``core`` (hil calibrate's rule)."""
    import numpy as np

    from hil.backends.base import BackendOptions
    from hil.calibrate.measure import FULL, QUICK, measure, pinned, timed
    from hil.runner.ops import MultiInputSession

    with pinned([core]):
        session = MultiInputSession(path, BackendOptions(threads=1, cores=(core,), pin_process=False))
        names = {i.name for i in session.session.get_inputs()}
        given = {k: v for k, v in feeds.items() if k in names}
        m = measure(timed(lambda: session.run_feeds(given)), QUICK if quick else FULL)
        session.close()
    return m.mean, float(np.std(m.samples) / m.mean) if m.mean > 0 else 0.0


def segment_costs(partition: Partition, mode: str, core: int, quick: bool = True) -> dict[str, SegmentCost]:
    """Head and tail cost of every written cut."""
    import onnx

    from hil.partition.verify import run_model

    costs = {}
    graph = partition.graph
    feeds = {p.name: graph.reference[p.name] for p in partition.plans}
    for r in partition.cuts:
        if r.head is None:
            continue
        if mode == "estimated":
            costs[r.cut.name] = SegmentCost(estimate_seconds(r.cut.head_flops, "dpu"),
                                            estimate_seconds(r.cut.tail_flops, "gpu"), 0.1, 0.05,
                                            "estimated from FLOPs (hil.partition.estimate)",
                                            estimate_seconds(r.cut.head_flops, "cpu"))
            continue
        head_s, head_cv = measure_segment(r.head, feeds, core, quick)
        middle = run_model(onnx.load(str(r.head)), feeds)
        tail_s, tail_cv = measure_segment(r.tail, middle, core, quick)
        costs[r.cut.name] = SegmentCost(head_s, tail_s, head_cv, tail_cv, "measured on this host")
    return costs


def _cost_spec(seconds: float, cv: float) -> dict:
    return {"kind": "lognormal", "mean": f"{seconds * 1e3:.6g} ms", "cv": round(max(cv, 0.02), 3)}


def split_document(document: dict, stage: str, partition: Partition, costs: dict[str, SegmentCost],
                   base_cut: str, where: Path) -> dict:
    """The scenario document with ``stage`` split at ``base_cut``, and one variant per costed cut."""
    doc = copy.deepcopy(document)
    doc.pop("variants", None)
    stages = doc["pipeline"]["stages"]
    index = next(i for i, s in enumerate(stages) if s["name"] == stage)
    original = stages[index]
    head, tail = f"{stage}-head", f"{stage}-tail"
    by_name = {r.cut.name: r for r in partition.cuts}

    def pair(cut: str) -> tuple[dict, dict]:
        r, c = by_name[cut], costs[cut]
        plans = partition.plans
        cpu_s = c.head_s if c.head_cpu_s is None else c.head_cpu_s
        h = {"name": head, "costs": {"dpu": _cost_spec(c.head_s, c.head_cv), "cpu": _cost_spec(cpu_s, c.head_cv)},
             "output": f"{r.cut.bytes} B",
             "hil": {"op": "model", "model": os.path.relpath(r.head, where),
                     "shapes": {p.name: list(p.shape) for p in plans},
                     "inputs": {p.name: p.generator.text for p in plans}}}
        t = {"name": tail, "costs": {"gpu": _cost_spec(c.tail_s, c.tail_cv)},
             "hil": {"op": "model", "model": os.path.relpath(r.tail, where)}}
        return h, t

    h, t = pair(base_cut)
    if "after" in original:
        h["after"] = original["after"]
    for key in ("output", "pass_probability"):
        if key in original:
            t[key] = original[key]
    stages[index:index + 1] = [h, t]
    for s in stages:
        if s.get("after"):
            s["after"] = [tail if a == stage else a for a in s["after"]]
    batching = doc.get("policies", {}).get("batching", {})
    batching.pop(stage, None)
    doc["name"] = f"{doc.get('name', 'scenario')}-split-{stage}"
    doc["description"] = (f"{stage} of {document.get('name')} split between DPU/CPU (head) and GPU (tail) at "
                          f"candidate cuts of {partition.graph.path.name}; segment costs "
                          f"{next(iter(costs.values())).how}. Generated by dgsim partition --search.")
    doc["variants"] = {}
    for cut in costs:
        h, t = pair(cut)
        doc["variants"][cut] = {"pipeline": {"stages": [h, t]}}
    return doc


def rank(split_file: Path, costs: dict[str, SegmentCost], partition: Partition, with_capacity: bool,
         say=lambda line: None) -> list[Ranked]:
    """Simulate every variant of the split file; p99, bound and (optionally) capacity per cut, best first."""
    from sim.experiment import simulate
    from sim.explore.bound import saturation
    from sim.scenario.errors import ScenarioError
    from sim.scenario.load import load_scenario_file

    sf = load_scenario_file(split_file)
    result = simulate(sf, list(costs))
    by_name = {r.cut.name: r for r in partition.cuts}
    ranked = []
    for cut, variant in result.variants.items():
        first = saturation(sf.plan(cut))
        rate, resource = first.rate, (first.resource.name if first.resource else "")
        est = variant.estimates
        p99 = est["latency.p99"].mean if "latency.p99" in est else math.nan
        thr = est["throughput"].mean if "throughput" in est else math.nan
        p50 = est["latency.p50"].mean if "latency.p50" in est else math.nan
        mean = est["latency.mean"].mean if "latency.mean" in est else math.nan
        ranked.append(Ranked(cut, costs[cut], by_name[cut].cut.bytes, p99, p50, mean, thr, rate, resource))
    if with_capacity:
        try:
            from sim.explore.capacity import find_capacity
            from sim.explore.executors import Serial

            for r in ranked:
                found = find_capacity(sf, r.cut, Serial())
                r.capacity = found.value if found.search.low is not None else None
                say(f"  capacity of {r.cut}: " + (f"{r.capacity:.4g}" if r.capacity is not None else
                    "none found (no probed load had a valid verdict: lengthen run.duration so the budgets' "
                    "percentiles are bounded by the data)"))
        except (ScenarioError, ImportError, TypeError) as error:
            say(f"capacity search skipped: {error}")
    return sorted(ranked, key=lambda r: (-(r.capacity or 0), _nan_last(r.p99), -r.bound))


def _nan_last(x: float) -> float:
    return math.inf if math.isnan(x) else x


def search_command(partition: Partition, scenario: Path, stage: str, mode: str, out_yaml: Path, console,
                   capacity: bool = False, core: Optional[int] = None) -> list[Ranked]:
    """``dgsim partition ... --search``: cost, write the split scenario, simulate, rank, print."""
    from rich.table import Table

    from sim.scenario.errors import ScenarioError
    from sim.scenario.load import load_scenario_file
    from sim.scenario.safe_yaml import read_yaml_file

    try:
        load_scenario_file(scenario).resolve(load_scenario_file(scenario).variant_names[0])
    except ScenarioError as error:
        raise SearchError([str(p) for p in error.problems]) from error
    document = read_yaml_file(Path(scenario))  # checked just above: a scenario file that loads
    names = [s.get("name") for s in document.get("pipeline", {}).get("stages", [])]
    if stage not in names:
        raise SearchError([f"{scenario}: pipeline.stages: no stage '{stage}' (stages: {', '.join(map(str, names))})"])
    written = [r for r in partition.cuts if r.head is not None]
    if not written:
        raise SearchError(["--search: no cut was written (check --cuts)"])
    core = core if core is not None else sorted(os.sched_getaffinity(0))[-1]
    console.print(f"costing {len(written)} cuts ({mode}{' on core ' + str(core) if mode == 'measured' else ''}) ...")
    costs = segment_costs(partition, mode, core)
    first = written[0].cut.name
    out_yaml.parent.mkdir(parents=True, exist_ok=True)
    out_yaml.write_text(yaml.safe_dump(split_document(document, stage, partition, costs, first, out_yaml.parent),
                                       sort_keys=False))
    ranked = rank(out_yaml, costs, partition, capacity, say=console.print)
    best = ranked[0].cut
    out_yaml.write_text(yaml.safe_dump(split_document(document, stage, partition, costs, best, out_yaml.parent),
                                       sort_keys=False))
    table = Table(title=f"split of stage '{stage}' at each cut (segment costs {costs[best].how}), best first",
                  title_justify="left")
    for column in ("rank", "cut", "head ms", "tail ms", "crossing", "p99 ms", "throughput /s", "bound /s",
                   "bottleneck", *(["capacity"] if capacity else [])):
        table.add_column(column, justify="left" if column in ("cut", "bottleneck") else "right")
    for i, r in enumerate(ranked, 1):
        table.add_row(str(i), r.cut, f"{r.cost.head_s * 1e3:.3f}", f"{r.cost.tail_s * 1e3:.3f}", f"{r.bytes} B",
                      f"{r.p99 * 1e3:.2f}", f"{r.throughput:.1f}", f"{r.bound:.1f}", r.bound_resource,
                      *([f"{r.capacity:.4g}" if r.capacity is not None else "-"] if capacity else []))
    console.print(table)
    ranking = out_yaml.with_name(out_yaml.stem + "-ranking.json")
    ranking.write_text(json.dumps({
        "scenario": str(scenario), "stage": stage, "costs": costs[best].how, "split_scenario": out_yaml.name,
        "ranked_by": ["capacity"] * capacity + ["latency.p99 at the scenario's load", "bottleneck bound"],
        "cuts": [{"cut": r.cut, "head_s": r.cost.head_s, "tail_s": r.cost.tail_s, "head_cv": r.cost.head_cv,
                  "tail_cv": r.cost.tail_cv, "crossing_bytes": r.bytes, "p99_s": r.p99, "p50_s": r.p50,
                  "mean_s": r.mean, "throughput_per_s": r.throughput, "bound_per_s": r.bound,
                  "bottleneck": r.bound_resource, "capacity": r.capacity} for r in ranked]}, indent=1) + "\n")
    console.print(f"wrote {out_yaml} and {ranking.name}: base = {best} (best), one variant per cut; "
                  f"run one for real with: dgsim hil run {out_yaml} --variant {best}")
    return ranked


__all__ = ["CutResult", "Ranked", "SearchError", "search_command", "segment_costs", "split_document"]
