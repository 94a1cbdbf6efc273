"""A YOLO-shaped detector with random weights: real compute, meaningless boxes.

The harness needs a GPU model whose cost behaves like a real detector's:
the same layer types, strides, channel widths and output size. Trained
weights add nothing to that cost, so the weights here are random (He
initialisation, from a seed) and the network is built directly as ONNX.

The layout follows YOLOv5: a stride-2 stem, four stages that each halve the
resolution (a stride-2 3x3 convolution, then residual bottlenecks of a 1x1
and a 3x3 convolution), and a 1x1 detection head on the stride-8, 16 and 32
feature maps with three anchors per cell. Every convolution carries a folded
batch norm (random scale and shift merged into its weights and bias) and a
SiLU (x * sigmoid(x)). The head's output is decoded in the graph, as YOLOv5
exports do: ``detections`` is (N, A, 5 + C), per anchor box centre x, y,
width, height in input pixels, objectness and C class probabilities, where
A = 3 * (S/8)^2 + 3 * (S/16)^2 + 3 * (S/32)^2 for input size S. ``nms``
post-processes that format, so a real YOLOv5 export can replace this one.

``width`` scales every channel count (YOLOv5 calls it the width multiple;
0.25 gives its "n" widths), ``blocks`` the bottlenecks per stage: together
with ``input_size`` they size the compute.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from hil.models.onnx_graph import GraphBuilder, batched_tensor

INPUT_NAME = "images"
OUTPUT_NAME = "detections"
STRIDES = (8, 16, 32)
_BASE_CHANNELS = (64, 128, 256, 512, 1024)
_ANCHORS_640 = (  # YOLOv5's default anchors (width, height in pixels at 640 x 640), per head
    ((10, 13), (16, 30), (33, 23)),
    ((30, 61), (62, 45), (59, 119)),
    ((116, 90), (156, 198), (373, 326)),
)


@dataclass(frozen=True)
class DetectorSpec:
    """The detector's shape and seed; its hash keys the on-disk cache."""

    input_size: int = 640
    width: float = 0.25
    blocks: int = 1
    num_classes: int = 80
    seed: int = 0

    def __post_init__(self) -> None:
        if self.input_size <= 0 or self.input_size % 32:
            raise ValueError(f"detector input_size must be a positive multiple of 32, got {self.input_size}")

    @property
    def channels(self) -> tuple[int, ...]:
        """Channels of the stem and the four stages, rounded up to multiples of 8."""
        return tuple(max(8, -(-round(c * self.width) // 8) * 8) for c in _BASE_CHANNELS)

    @property
    def num_anchors(self) -> int:
        """Rows of the output: anchor boxes over all grid cells of all heads."""
        return sum(3 * (self.input_size // s) ** 2 for s in STRIDES)


def build_detector(spec: DetectorSpec) -> onnx.ModelProto:
    """The detector as an ONNX model with a dynamic batch dimension."""
    rng = np.random.default_rng(spec.seed)
    g = GraphBuilder()
    c = spec.channels
    h = _conv_bn_silu(g, rng, INPUT_NAME, 3, c[0], 3, 2)
    features = []
    for stage in range(1, 5):
        h = _conv_bn_silu(g, rng, h, c[stage - 1], c[stage], 3, 2)
        for _ in range(spec.blocks):
            inner = _conv_bn_silu(g, rng, h, c[stage], c[stage] // 2, 1, 1)
            h = g.op("Add", h, _conv_bn_silu(g, rng, inner, c[stage] // 2, c[stage], 3, 1))
        features.append(h)
    heads = [
        _head(g, rng, f, c[i + 2], stride, anchors, spec)
        for i, (f, stride, anchors) in enumerate(zip(features[1:], STRIDES, _ANCHORS_640))
    ]
    g.op("Concat", *heads, axis=1, output=OUTPUT_NAME)
    return g.model(
        "dgsim_detector",
        [batched_tensor(INPUT_NAME, 3, spec.input_size, spec.input_size)],
        [batched_tensor(OUTPUT_NAME, spec.num_anchors, 5 + spec.num_classes)],
    )


def _conv_bn_silu(g: GraphBuilder, rng: np.random.Generator, x: str, c_in: int, c_out: int, k: int, stride: int) -> str:
    """Conv with a random batch norm folded into it, then SiLU."""
    weight = rng.normal(0.0, np.sqrt(2.0 / (c_in * k * k)), (c_out, c_in, k, k))
    gamma, beta = rng.uniform(0.8, 1.2, c_out), rng.normal(0.0, 0.05, c_out)
    mean, var = rng.normal(0.0, 0.05, c_out), rng.uniform(0.8, 1.2, c_out)
    scale = gamma / np.sqrt(var + 1e-3)
    y = g.conv(x, weight * scale[:, None, None, None], beta - mean * scale, stride)
    return g.op("Mul", y, g.op("Sigmoid", y))


def _head(
    g: GraphBuilder, rng: np.random.Generator, x: str, c_in: int, stride: int, anchors: tuple, spec: DetectorSpec
) -> str:
    """1x1 prediction conv for one feature map, decoded to (N, 3*H*W, 5 + C) as YOLOv5 does."""
    n = spec.input_size // stride
    outputs = 5 + spec.num_classes
    weight = rng.normal(0.0, np.sqrt(1.0 / c_in), (3 * outputs, c_in, 1, 1))
    bias = np.zeros((3, outputs))
    bias[:, 4] = np.log(8 / (640 / stride) ** 2)  # YOLOv5's priors: ~8 objects per image,
    bias[:, 5:] = np.log(0.6 / (spec.num_classes - 0.99))  # and evenly spread classes
    y = g.conv(x, weight, bias.ravel())
    y = g.op("Reshape", y, g.const([-1, 3, outputs, n, n]))
    y = g.op("Sigmoid", g.op("Transpose", y, perm=[0, 1, 3, 4, 2]))  # (N, 3, n, n, 5 + C)
    xy, wh, rest = (
        g.op("Slice", y, g.const([a]), g.const([b]), g.const([4])) for a, b in ((0, 2), (2, 4), (4, outputs))
    )
    grid = np.stack(np.meshgrid(np.arange(n), np.arange(n)), axis=-1)[None, None]  # (1, 1, n, n, 2) as x, y
    xy = g.op("Add", g.op("Mul", xy, g.const(np.float32(2 * stride))), g.const((grid - 0.5) * stride))
    anchor_size = np.array(anchors, np.float64).reshape(1, 3, 1, 1, 2) * spec.input_size / 640
    wh = g.op("Mul", g.op("Mul", wh, wh), g.const(4 * anchor_size))
    y = g.op("Concat", xy, wh, rest, axis=4)
    return g.op("Reshape", y, g.const([-1, 3 * n * n, outputs]))
