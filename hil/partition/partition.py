"""Partition one ONNX model: find the cuts, write the segments, check they compose, describe them.

``partition_model`` is what ``dgsim partition`` runs: load the model, fix
its inputs (``hil.models.inputs``), observe every value once, list the
candidate cuts (``cuts``), and for the chosen ones write
``<out>/<cut>-head.onnx`` and ``<out>/<cut>-tail.onnx`` (``extract``),
check that each pair composes to the model (``verify``), and write
``<out>/cuts.json``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import onnx

from hil.models.inputs import InputPlan, resolve_inputs, signature, signature_text
from hil.partition.cuts import Cut, CutRules, find_cuts
from hil.partition.extract import segments
from hil.partition.graph import ModelGraph
from hil.partition.verify import TOLERANCE, Composition, compose

SEED = 0


class PartitionError(ValueError):
    """Input the partitioner cannot use; ``problems`` has one line each."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass
class CutResult:
    cut: Cut
    head: Optional[Path] = None
    tail: Optional[Path] = None
    composition: Optional[Composition] = None


@dataclass
class Partition:
    graph: ModelGraph
    plans: list[InputPlan]
    cuts: list[CutResult]
    sha256: str
    batch: int
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def total_flops(self) -> int:
        c = self.cuts[0].cut if self.cuts else None
        return c.head_flops + c.tail_flops if c else 0

    def describe(self) -> dict:
        g = self.graph
        return {
            "model": str(g.path), "sha256": self.sha256,
            "inputs": {p.name: {"dtype": str(p.dtype), "shape": list(p.shape), "generator": p.generator.text}
                       for p in self.plans},
            "outputs": {n: {"dtype": str(g.values[n].dtype), "shape": list(g.values[n].shape)} for n in g.outputs},
            "batch": self.batch, "work_nodes": len(g.work), "total_flops": self.total_flops,
            "flops_counted": "2 x multiply-adds of Conv, ConvTranspose, Gemm, MatMul, LSTM/GRU/RNN (top level)",
            "tolerance": TOLERANCE,
            "cuts": [_describe_cut(r, g, self.batch) for r in self.cuts],
        }


def _describe_cut(r: CutResult, g: ModelGraph, batch: int) -> dict:
    c = r.cut
    return {
        "name": c.name, "position": c.position, "after_node": c.after_node,
        "crossing": [{"name": n, "dtype": str(g.values[n].dtype), "shape": list(g.values[n].shape),
                      "bytes": c.crossing_bytes[n]} for n in c.crossing],
        "bytes": c.bytes, "bytes_per_item": c.bytes / batch,
        "head_flops": c.head_flops, "tail_flops": c.tail_flops,
        "head_param_bytes": c.head_param_bytes, "tail_param_bytes": c.tail_param_bytes,
        "head": r.head.name if r.head else None, "tail": r.tail.name if r.tail else None,
        "composes": None if r.composition is None else r.composition.ok,
        "error_vs_tolerance": None if r.composition is None else r.composition.worst,
        "check": None if r.composition is None else r.composition.detail,
    }


def load_graph(path: Path, shapes: dict[str, list[int]], generators: dict[str, str], seed: int = SEED) -> ModelGraph:
    """The model at ``path`` with its inputs fixed and every value observed; PartitionError on bad input."""
    path = Path(path)
    if not path.is_file():
        raise PartitionError([f"{path}: no such model file"])
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as error:
        raise PartitionError([f"{path}: not a valid ONNX model: {error}"]) from error
    declared = signature(model)
    plans, problems = resolve_inputs(declared, shapes, generators)
    if problems:
        raise PartitionError([f"{path}: --input/--feed: {p}. The model's inputs: {signature_text(declared)}"
                              for p in problems])
    graph = ModelGraph(path, model, plans)
    try:
        feeds = {p.name: p.values(list(range(p.shape[0])) if p.batched else [0], seed) for p in plans}
    except (ValueError, OSError) as error:
        raise PartitionError([f"{path}: generating inputs: {error}"]) from error
    try:
        graph.observe(feeds)
    except Exception as error:
        raise PartitionError([f"{path}: the model did not run on the generated inputs "
                              f"({', '.join(f'{p.name}={p.generator.text} {list(p.shape)}' for p in plans)}): "
                              f"{error}"]) from error
    return graph


def partition_model(path: Path, shapes: dict[str, list[int]], generators: dict[str, str], out: Optional[Path],
                    wanted: Optional[list[str]] = None, rules: CutRules = CutRules(), check: bool = True,
                    seed: int = SEED) -> Partition:
    """List the cuts; write and check the segments of ``wanted`` (default: every candidate) under ``out``."""
    graph = load_graph(path, shapes, generators, seed)
    cuts = find_cuts(graph, rules)
    names = [c.name for c in cuts]
    if wanted:
        unknown = [w for w in wanted if w not in names]
        if unknown:
            raise PartitionError([f"--cuts: {', '.join(unknown)} not among the candidate cuts "
                                  f"({', '.join(names) or 'none'})"])
    batch = next((p.shape[0] for p in graph.plans if p.batched), 1)
    result = Partition(graph, graph.plans, [CutResult(c) for c in cuts], _sha256(Path(path)), batch)
    if out is None:
        return result
    out.mkdir(parents=True, exist_ok=True)
    feeds = {p.name: graph.reference[p.name] for p in graph.plans}
    for r in result.cuts:
        if wanted is not None and r.cut.name not in wanted:
            continue
        head, tail = segments(graph, r.cut)
        r.head, r.tail = out / f"{r.cut.name}-head.onnx", out / f"{r.cut.name}-tail.onnx"
        onnx.save(head, str(r.head))
        onnx.save(tail, str(r.tail))
        if check:
            r.composition = compose(head, tail, feeds, graph.reference, graph.outputs)
    (out / "cuts.json").write_text(json.dumps(result.describe(), indent=1, default=_jsonable) + "\n")
    result.files["cuts.json"] = out / "cuts.json"
    return result


def _jsonable(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    raise TypeError(type(value))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
