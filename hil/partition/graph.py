"""The dataflow of an ONNX model, as far as cutting it is concerned.

A cut splits the model's top-level nodes, in topological order, into a head
(the first k) and a tail (the rest). What matters is which tensors flow
from one side to the other, so this module reads, for every top-level node,
the values it consumes (its inputs plus the outer-scope names its If/Loop/
Scan subgraphs use) and produces.

Constants are not dataflow: initializers, ``Constant`` nodes and every node
computed only from constants (shape arithmetic on fixed numbers) are
*constant nodes*; they are copied into whichever segment uses them and
never cross a cut. Every other node is a *work node* and takes a place in
the order.

Shapes come from running the model once in onnxruntime on generated inputs
with every top-level value exposed as an output (``observe``): that gives
each value's real dtype and shape even where onnx shape inference stops
(data-dependent Resize sizes, custom domains), and the reference values the
composition check compares against. ``onnx.shape_inference`` supplies the
declared types the exposed outputs need.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from hil.models.inputs import InputPlan

NONDETERMINISTIC = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
                    "Bernoulli", "Dropout"}


def subgraph_references(node: onnx.NodeProto) -> set[str]:
    """Names a node's subgraphs read from the enclosing scope."""
    found: set[str] = set()
    for attribute in node.attribute:
        graphs = [attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else list(attribute.graphs)
        for graph in graphs:
            local = {i.name for i in graph.input} | {t.name for t in graph.initializer}
            for inner in graph.node:
                local.update(o for o in inner.output if o)
            for inner in graph.node:
                found.update(i for i in inner.input if i and i not in local)
                found.update(r for r in subgraph_references(inner) if r not in local)
            found.update(o.name for o in graph.output if o.name not in local)
    return found


def node_reads(node: onnx.NodeProto) -> list[str]:
    """Every value ``node`` consumes, subgraph references included, in order, without repeats."""
    names = [i for i in node.input if i]
    names += sorted(subgraph_references(node) - set(names))
    return list(dict.fromkeys(names))


@dataclass(frozen=True)
class Value:
    """An observed top-level value."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


class ModelGraph:
    """A loaded model, its work nodes in order, and the observed value of every top-level tensor."""

    def __init__(self, path: Path, model: onnx.ModelProto, plans: list[InputPlan]):
        self.path = Path(path)
        self.model = model
        self.graph = model.graph
        self.plans = plans
        self.inputs = [p.name for p in plans]
        self.outputs = [o.name for o in self.graph.output]
        self.initializers = {t.name: t for t in self.graph.initializer}
        constant = set(self.initializers)
        self.const_nodes: list[int] = []
        self.work: list[int] = []  # indices into graph.node of work nodes, in topological order
        self.reads = [node_reads(n) for n in self.graph.node]
        for i, node in enumerate(self.graph.node):
            if node.op_type not in NONDETERMINISTIC and all(r in constant for r in self.reads[i]) \
                    and node.domain in ("", "ai.onnx"):
                self.const_nodes.append(i)
                constant.update(o for o in node.output if o)
            else:
                self.work.append(i)
        self.constants = constant
        self.producer = {o: i for i, n in enumerate(self.graph.node) for o in n.output if o}
        self.values: dict[str, Value] = {}
        self.reference: dict[str, np.ndarray] = {}

    @property
    def nodes(self):
        return self.graph.node

    def const_closure(self, names) -> set[str]:
        """The initializers and constant-node outputs that ``names`` depend on (themselves included)."""
        seen, stack = set(), [n for n in names if n in self.constants]
        while stack:
            name = stack.pop()
            if name in seen:
                continue
            seen.add(name)
            if name in self.producer:
                stack += [r for r in self.reads[self.producer[name]] if r in self.constants]
        return seen

    def observe(self, feeds: dict[str, np.ndarray]) -> None:
        """Run the whole model once, recording every top-level work value's dtype, shape and data."""
        import onnxruntime as ort

        typed = onnx.shape_inference.infer_shapes(self.model)
        known = {v.name: v for v in (*typed.graph.value_info, *typed.graph.output, *typed.graph.input)}
        wanted = [o for i in self.work for o in self.graph.node[i].output if o]
        probe = onnx.ModelProto()
        probe.CopyFrom(self.model)
        present = {o.name for o in probe.graph.output}
        for name in wanted:
            if name in present:
                continue
            info = known.get(name)
            if info is None or not info.type.tensor_type.elem_type:
                info = helper.ValueInfoProto(name=name)  # onnxruntime fills in the type it computes
            probe.graph.output.append(info)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.log_severity_level = 3
        session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        results = session.run(names, feeds)
        self.reference = dict(zip(names, results))
        for name, array in feeds.items():
            self.reference.setdefault(name, array)
        for name, array in self.reference.items():
            array = np.asarray(array)
            self.values[name] = Value(name, array.dtype, tuple(array.shape))

    def value_info(self, name: str) -> onnx.ValueInfoProto:
        """A typed, shaped declaration of an observed value (segment inputs and outputs)."""
        value = self.values[name]
        return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(value.dtype), list(value.shape))
