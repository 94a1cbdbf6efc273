"""Camera frames to model input: resize, scale to [0, 1], channels first.

Both models take float32 NCHW tensors in [0, 1]. A camera gives uint8
HxWx3 frames at its own resolution, so frames are resized first: by area
averaging when shrinking (each output pixel is the mean of the input pixels
that fall in it, which also averages sensor noise away), by nearest
neighbour when enlarging. The resize is two small matrix products, so it
needs nothing beyond numpy.
"""

from __future__ import annotations

import numpy as np


def to_model_input(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """(N, H, W, 3) uint8 frames -> (N, 3, height, width) float32 in [0, 1]."""
    pixels = images.astype(np.float32) * np.float32(1 / 255)
    if images.shape[1:3] == (height, width):
        return np.ascontiguousarray(pixels.transpose(0, 3, 1, 2))
    rows = _resize_matrix(height, images.shape[1])
    cols = _resize_matrix(width, images.shape[2])
    return np.ascontiguousarray(np.einsum("oh,nhwc,pw->ncop", rows, pixels, cols, optimize=True))


def _resize_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) weights mapping one image axis to its resized length."""
    matrix = np.zeros((n_out, n_in), np.float32)
    if n_out >= n_in:
        matrix[np.arange(n_out), (np.arange(n_out) * n_in) // n_out] = 1.0
        return matrix
    matrix[(np.arange(n_in) * n_out) // n_in, np.arange(n_in)] = 1.0
    return matrix / matrix.sum(axis=1, keepdims=True)
