"""2-D convolution and its gradients in plain numpy, by im2col.

im2col copies every k x k input patch into one row of a matrix, so a
convolution becomes one matrix product with the (k*k*C_in, C_out) weight
matrix. The backward pass reverses it: the gradient of the patches is
scattered back onto the input (col2im). Patches are a separate step so that
a network's first layer can take them once for a whole, fixed training set.
Products are taken frame by frame (a stack of small matrix products): on a
busy machine that runs several times faster than one large product spread
over BLAS threads. Tensors are channels-last (NHWC) and weights HWIO here,
which makes the patch rows contiguous; padding is 'same' (k // 2), as in the
exported ONNX Conv nodes.
"""

from __future__ import annotations

import numpy as np


def im2col(x: np.ndarray, k: int, stride: int) -> np.ndarray:
    """(N, H, W, C) -> (N, Ho, Wo, k*k*C): the k x k patch under every output pixel."""
    n, h, w, c = x.shape
    p = k // 2
    ho, wo = (h + 2 * p - k) // stride + 1, (w + 2 * p - k) // stride + 1
    padded = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    patches = [
        padded[:, i : i + stride * ho : stride, j : j + stride * wo : stride] for i in range(k) for j in range(k)
    ]
    return np.stack(patches, axis=3).reshape(n, ho, wo, k * k * c)


def conv_forward(cols: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Patches (N, Ho, Wo, k*k*C) and weights (k, k, C, O) -> output (N, Ho, Wo, O)."""
    n, ho, wo, size = cols.shape
    return (cols.reshape(n, ho * wo, size) @ w.reshape(size, -1) + b).reshape(n, ho, wo, -1)


def conv_backward(dy: np.ndarray, cols: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of a convolution's weights and bias, given its output's gradient ``dy``."""
    n, ho, wo, size = cols.shape
    dy3 = dy.reshape(n, ho * wo, -1)
    dw = (cols.reshape(n, ho * wo, size).transpose(0, 2, 1) @ dy3).sum(axis=0)
    return dw.reshape(w.shape), dy3.sum(axis=(0, 1))


def patch_gradient(dy: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Gradient of a convolution's patches (feed it to ``col2im``), given its output's gradient ``dy``."""
    return dy @ w.reshape(-1, w.shape[3]).T


def col2im(dcols: np.ndarray, x_shape: tuple[int, ...], k: int, stride: int) -> np.ndarray:
    """Scatter patch gradients (N, Ho, Wo, k*k*C) back onto the input (N, H, W, C)."""
    n, h, w, c = x_shape
    p = k // 2
    ho, wo = dcols.shape[1:3]
    dcols = dcols.reshape(n, ho, wo, k * k, c)
    padded = np.zeros((n, h + 2 * p, w + 2 * p, c), dcols.dtype)
    for index in range(k * k):
        i, j = divmod(index, k)
        padded[:, i : i + stride * ho : stride, j : j + stride * wo : stride] += dcols[:, :, :, index]
    return padded[:, p : p + h, p : p + w]
