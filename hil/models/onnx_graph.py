"""A tiny builder for ONNX graphs made of numpy weights.

``onnx.helper`` makes single nodes; a model needs many, each with unique
tensor names and with its weights stored as initializers. ``GraphBuilder``
keeps that bookkeeping: every call adds one node and returns the name of its
output, so a network reads like a forward pass. Names are numbered in call
order, so the same calls always give the same, byte-identical model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

OPSET = 17
IR_VERSION = 8  # the oldest IR that carries opset 17: readable by older onnxruntime and TensorRT


@dataclass
class GraphBuilder:
    """Nodes and initializers of one graph under construction."""

    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[onnx.TensorProto] = field(default_factory=list)

    def const(self, value: np.ndarray | list, name: str | None = None) -> str:
        """Store ``value`` as an initializer; return its name."""
        array = np.asarray(value)
        array = array.astype(np.float32) if array.dtype.kind == "f" else array.astype(np.int64)
        name = name or f"const_{len(self.initializers)}"
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, *inputs: str, output: str | None = None, **attributes) -> str:
        """Add one single-output node (named ``output`` if given); return its output's name."""
        output = output or f"{op_type.lower()}_{len(self.nodes)}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [output], name=output, **attributes))
        return output

    def conv(self, x: str, weight: np.ndarray, bias: np.ndarray, stride: int = 1, name: str | None = None) -> str:
        """Conv with OIHW ``weight``, 'same' padding for odd kernels."""
        pad = weight.shape[-1] // 2
        w = self.const(weight, name and f"{name}.weight")
        b = self.const(bias, name and f"{name}.bias")
        return self.op("Conv", x, w, b, strides=[stride, stride], pads=[pad] * 4, kernel_shape=list(weight.shape[2:]))

    def model(
        self, graph_name: str, inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto]
    ) -> onnx.ModelProto:
        """The finished, checked model."""
        graph = helper.make_graph(self.nodes, graph_name, inputs, outputs, self.initializers)
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="dgsim", ir_version=IR_VERSION
        )
        onnx.checker.check_model(model)
        return model


def batched_tensor(name: str, *dims: int) -> onnx.ValueInfoProto:
    """A float32 graph input or output whose first dimension is the dynamic batch ``N``."""
    return helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, ["N", *dims])
