"""The prefilter: a small CNN that answers "is there an object in this frame?"

Most camera frames show an empty scene. A DPU can run a tiny classifier on a
downscaled frame and forward to the GPU detector only the frames that may
hold something; the fraction it forwards (the *pass rate*) sets the GPU's
load, and its misses are objects the pipeline never sees.

The network is two 3x3 convolutions with stride 2 and ReLU, global average
pooling, one dense unit and a sigmoid: about 1,400 weights. It is trained
here, in numpy, with full backpropagation through every layer (im2col
convolutions, binary cross-entropy, Adam with a cosine learning-rate decay,
mini-batches) on frames from ``synthetic_frames``, then exported to ONNX
(opset 17): input ``frames`` float32 (N, 3, S, S) in [0, 1], output
``p_object`` (N, 1), the probability that an object is present.

Two choices make this small network learn in seconds rather than stall:
the first layer's filters start zero-sum, so the background colour does not
drown the edges that give objects away, and the dense layer learns
``pooled area`` times faster than the convolutions (its inputs are means
over that many positions, so its weights must grow that much larger).
Training holds the first layer's patches for the whole training set in
memory (about 230 MB at the default spec). It is deterministic for one seed
on one machine (same BLAS, same thread count); another BLAS may round
differently and train slightly different weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from hil.models.numpy_conv import col2im, conv_backward, conv_forward, im2col, patch_gradient
from hil.models.onnx_graph import GraphBuilder, batched_tensor
from hil.models.preprocess import to_model_input
from hil.models.synthetic_frames import FrameSet, make_frames

INPUT_NAME = "frames"
OUTPUT_NAME = "p_object"
_PARAMETER_NAMES = ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc.weight", "fc.bias")


@dataclass(frozen=True)
class PrefilterSpec:
    """How to build and train the prefilter; its hash keys the on-disk cache."""

    input_size: int = 64  # the prefilter sees frames downscaled to input_size x input_size
    frame_size: int = 64  # training frames are generated at this size, then downscaled
    channels: tuple[int, int] = (8, 16)
    train_frames: int = 2048
    epochs: int = 6
    batch_size: int = 32
    learning_rate: float = 0.006
    seed: int = 0


@dataclass(frozen=True)
class PrefilterWeights:
    """Trained parameters in ONNX layout: conv weights OIHW, dense weight (C, 1)."""

    conv1_weight: np.ndarray
    conv1_bias: np.ndarray
    conv2_weight: np.ndarray
    conv2_bias: np.ndarray
    fc_weight: np.ndarray
    fc_bias: np.ndarray


@dataclass(frozen=True)
class PrefilterScore:
    """How a prefilter decides on labelled frames at one threshold."""

    accuracy: float
    pass_rate: float  # fraction of frames forwarded (predicted positive)
    recall: float  # fraction of frames with objects that are forwarded
    frames: int
    threshold: float


def train_prefilter(spec: PrefilterSpec) -> PrefilterWeights:
    """Train the CNN on ``spec.train_frames`` synthetic frames drawn from ``spec.seed``."""
    frames = make_frames(spec.train_frames, spec.seed, spec.frame_size, spec.frame_size)
    patches = im2col(to_model_input(frames.images, spec.input_size, spec.input_size).transpose(0, 2, 3, 1), 3, 2)
    y = frames.labels.astype(np.float32)[:, None]
    rng = np.random.default_rng([spec.seed, 1])
    params = _initial_parameters(rng, spec.channels)
    moments = [(np.zeros_like(p), np.zeros_like(p)) for p in params]
    pooled_area = ((spec.input_size + 3) // 4) ** 2
    rate_scales = (1, 1, 1, 1, pooled_area, 1)
    steps = spec.epochs * -(-len(y) // spec.batch_size)
    step = 0
    for _ in range(spec.epochs):
        order = rng.permutation(len(y))
        for start in range(0, len(y), spec.batch_size):
            batch = order[start : start + spec.batch_size]
            step += 1
            rate = spec.learning_rate * 0.5 * (1 + math.cos(math.pi * step / steps))
            for p, g, (m, v), scale in zip(params, _gradients(params, patches[batch], y[batch]), moments, rate_scales):
                _adam(p, g, m, v, step, rate * scale)
    w1, b1, w2, b2, w3, b3 = params
    return PrefilterWeights(w1.transpose(3, 2, 0, 1).copy(), b1, w2.transpose(3, 2, 0, 1).copy(), b2, w3, b3)


def predict_numpy(weights: PrefilterWeights, x: np.ndarray) -> np.ndarray:
    """The network's forward pass in numpy: (N, 3, S, S) -> (N, 1) probabilities."""
    params = [
        weights.conv1_weight.transpose(2, 3, 1, 0), weights.conv1_bias,
        weights.conv2_weight.transpose(2, 3, 1, 0), weights.conv2_bias,
        weights.fc_weight, weights.fc_bias,
    ]  # fmt: skip
    return _sigmoid(_forward(params, im2col(x.transpose(0, 2, 3, 1), 3, 2))[0])


def prefilter_model(weights: PrefilterWeights, input_size: int) -> onnx.ModelProto:
    """The trained network as an ONNX model with a dynamic batch dimension."""
    g = GraphBuilder()
    h = g.op("Relu", g.conv(INPUT_NAME, weights.conv1_weight, weights.conv1_bias, stride=2, name="conv1"))
    h = g.op("Relu", g.conv(h, weights.conv2_weight, weights.conv2_bias, stride=2, name="conv2"))
    h = g.op("Flatten", g.op("GlobalAveragePool", h))
    h = g.op("Gemm", h, g.const(weights.fc_weight, "fc.weight"), g.const(weights.fc_bias, "fc.bias"))
    g.op("Sigmoid", h, output=OUTPUT_NAME)
    return g.model(
        "dgsim_prefilter",
        [batched_tensor(INPUT_NAME, 3, input_size, input_size)],
        [batched_tensor(OUTPUT_NAME, 1)],
    )


def build_prefilter(spec: PrefilterSpec) -> onnx.ModelProto:
    """Train, then export: the whole recipe a cache entry stands for."""
    return prefilter_model(train_prefilter(spec), spec.input_size)


def weights_from_model(model: onnx.ModelProto) -> PrefilterWeights:
    """Read the trained parameters back out of an exported prefilter."""
    stored = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return PrefilterWeights(*(stored[name] for name in _PARAMETER_NAMES))


def prefilter_probabilities(session: ort.InferenceSession, images: np.ndarray) -> np.ndarray:
    """(N,) probability of an object for uint8 (N, H, W, 3) frames of any size."""
    size = session.get_inputs()[0].shape[2:]
    x = to_model_input(images, int(size[0]), int(size[1]))
    return session.run([OUTPUT_NAME], {INPUT_NAME: x})[0][:, 0]


def frame_scores(session: ort.InferenceSession, images: np.ndarray, score: tuple[str, int] | None = None) -> np.ndarray:
    """(N,) scores of any prefilter model for uint8 (N, H, W, 3) frames, as the harness computes them.

    The model's own input name and size are read from the session (its H, W must be fixed); the score is
    element ``index`` of output ``name`` per frame (``hil.score``), by default element 0 of the first output.
    """
    spec = session.get_inputs()[0]
    h, w = spec.shape[2:]
    x = to_model_input(images, int(h), int(w)).astype(np.float16 if "float16" in spec.type else np.float32)
    name, index = score or (session.get_outputs()[0].name, 0)
    out = session.run([name], {spec.name: x})[0]
    return np.asarray(out).reshape(len(images), -1)[:, index].astype(np.float64)


def evaluate_prefilter(session: ort.InferenceSession, frames: FrameSet, threshold: float = 0.5) -> PrefilterScore:
    """Accuracy, pass rate and recall on labelled frames (use a seed not used in training)."""
    passed = prefilter_probabilities(session, frames.images) >= threshold
    labels = frames.labels
    return PrefilterScore(
        accuracy=float(np.mean(passed == labels)),
        pass_rate=float(np.mean(passed)),
        recall=float(passed[labels].mean()) if labels.any() else float("nan"),
        frames=len(labels),
        threshold=threshold,
    )


def _initial_parameters(rng: np.random.Generator, channels: tuple[int, int]) -> list[np.ndarray]:
    """He-initialised HWIO conv weights (the first layer's made zero-sum), zero biases and dense layer."""
    c1, c2 = channels
    w1 = rng.normal(0, np.sqrt(2 / 27), (3, 3, 3, c1)).astype(np.float32)
    w2 = rng.normal(0, np.sqrt(2 / (9 * c1)), (3, 3, c1, c2)).astype(np.float32)
    zeros = [np.zeros(shape, np.float32) for shape in (c1, c2, (c2, 1), 1)]
    return [w1 - w1.mean(axis=(0, 1, 2)), zeros[0], w2, zeros[1], zeros[2], zeros[3]]


def _forward(params: list[np.ndarray], patches: np.ndarray) -> tuple[np.ndarray, tuple]:
    """First-layer patches of NHWC input -> (N, 1) logits, and what backward needs."""
    w1, b1, w2, b2, w3, b3 = params
    z1 = conv_forward(patches, w1, b1)
    a1 = np.maximum(z1, 0)
    cols2 = im2col(a1, 3, 2)
    z2 = conv_forward(cols2, w2, b2)
    pooled = np.maximum(z2, 0).mean(axis=(1, 2))
    return pooled @ w3 + b3, (z1, a1, cols2, z2, pooled)


def _gradients(params: list[np.ndarray], patches: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    """Gradients of the mean binary cross-entropy, in ``params`` order."""
    w1, _, w2, _, w3, _ = params
    logits, (z1, a1, cols2, z2, pooled) = _forward(params, patches)
    dlogits = (_sigmoid(logits) - y) / len(y)
    dpooled = dlogits @ w3.T
    dz2 = np.broadcast_to(dpooled[:, None, None, :] / (z2.shape[1] * z2.shape[2]), z2.shape) * (z2 > 0)
    dw2, db2 = conv_backward(dz2, cols2, w2)
    dw1, db1 = conv_backward(col2im(patch_gradient(dz2, w2), a1.shape, 3, 2) * (z1 > 0), patches, w1)
    return [dw1, db1, dw2, db2, pooled.T @ dlogits, dlogits.sum(axis=0)]


def _adam(p: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, step: int, lr: float) -> None:
    """One Adam update of ``p`` in place (beta1 0.9, beta2 0.999)."""
    m *= 0.9
    m += 0.1 * g
    v *= 0.999
    v += 0.001 * g * g
    p -= (lr * math.sqrt(1 - 0.999**step) / (1 - 0.9**step)) * m / (np.sqrt(v) + 1e-8)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))
