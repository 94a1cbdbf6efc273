"""What a segment of a model costs to run: FLOPs and parameter bytes.

FLOPs count the multiply-adds of the heavy operators, two FLOPs each, from
the observed shapes of their inputs and outputs:

    Conv           2 x output elements x (input channels / group) x kernel area
    ConvTranspose  2 x input elements x (output channels / group) x kernel area
    Gemm, MatMul   2 x M x N x K (x the broadcast batch of MatMul)
    LSTM, GRU, RNN 2 x sequence x batch x gates x hidden x (input + hidden)

Other operators (element-wise, pooling, normalisation, resizes) are not
counted, and neither are operators inside If/Loop/Scan subgraphs: the
figure is a lower bound that the heavy layers dominate in convolutional and
transformer models. Parameter bytes are the bytes of the initializers and
constants a segment holds (a weight both segments use counts in both).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from hil.partition.graph import ModelGraph

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


def _attribute(node: onnx.NodeProto, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def node_flops(graph: ModelGraph, node: onnx.NodeProto) -> int:
    """FLOPs of one top-level node from observed shapes; 0 for uncounted operators."""
    shape = lambda name: graph.values[name].shape if name in graph.values else _const_shape(graph, name)  # noqa: E731
    try:
        if node.op_type == "Conv":
            out, w = shape(node.output[0]), shape(node.input[1])
            return 2 * int(np.prod(out)) * int(np.prod(w[1:]))
        if node.op_type == "ConvTranspose":
            x, w = shape(node.input[0]), shape(node.input[1])
            return 2 * int(np.prod(x)) * int(w[1]) * int(np.prod(w[2:]))  # w: (C_in, C_out / group, kh, kw)
        if node.op_type == "Gemm":
            a, out = shape(node.input[0]), shape(node.output[0])
            k = a[0] if _attribute(node, "transA", 0) else a[1]
            return 2 * int(np.prod(out)) * int(k)
        if node.op_type in ("MatMul", "MatMulInteger"):
            a, out = shape(node.input[0]), shape(node.output[0])
            return 2 * int(np.prod(out)) * int(a[-1])
        if node.op_type in GATES:
            x, w = shape(node.input[0]), shape(node.input[1])
            hidden = _attribute(node, "hidden_size", w[1] // GATES[node.op_type])
            directions = w[0]
            return 2 * x[0] * x[1] * directions * GATES[node.op_type] * hidden * (x[2] + hidden)
    except (KeyError, IndexError, TypeError, ValueError):
        return 0
    return 0


def _const_shape(graph: ModelGraph, name: str) -> tuple[int, ...]:
    if name in graph.initializers:
        return tuple(graph.initializers[name].dims)
    node = graph.nodes[graph.producer[name]]
    for a in node.attribute:
        if a.name == "value":
            return tuple(a.t.dims)
    raise KeyError(name)


def constant_bytes(graph: ModelGraph, names: set[str]) -> int:
    """Bytes of the initializers and Constant-node tensors among ``names``."""
    total = 0
    for name in names:
        if name in graph.initializers:
            t = graph.initializers[name]
            total += int(np.prod(t.dims, dtype=np.int64)) * onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
        elif name in graph.producer and graph.nodes[graph.producer[name]].op_type == "Constant":
            for a in graph.nodes[graph.producer[name]].attribute:
                if a.name == "value":
                    total += numpy_helper.to_array(a.t).nbytes
    return total
