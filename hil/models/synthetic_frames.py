"""Synthetic camera frames: a background, and sometimes a few objects on it.

A street camera mostly films the same empty scene; now and then something
enters it. These frames imitate that cheaply and reproducibly: every frame
has a smooth colour gradient with a faint low-frequency texture and sensor
noise, and a *positive* frame carries one to three filled rectangles or
ellipses whose colour contrasts with the background under them. Labels say
whether a frame holds an object, and boxes say where (pixels, x1 y1 x2 y2).

Everything comes from one ``numpy.random.Generator`` seeded by the caller:
the same seed gives the same frames, byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FrameSet:
    """Frames and their ground truth."""

    images: np.ndarray  # (N, H, W, 3) uint8
    labels: np.ndarray  # (N,) bool: at least one object present
    boxes: tuple[np.ndarray, ...]  # per frame, (k, 4) float32 x1 y1 x2 y2; k = 0 when negative

    def __len__(self) -> int:
        return len(self.labels)


def make_frames(
    n: int,
    seed: int,
    height: int = 64,
    width: int = 64,
    positive_fraction: float = 0.5,
    noise: float = 6.0,
) -> FrameSet:
    """``n`` frames of ``height`` x ``width``; about ``positive_fraction`` hold objects."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32) / max(height, width)
    images = np.empty((n, height, width, 3), np.uint8)
    labels = rng.random(n) < positive_fraction
    boxes = []
    for i in range(n):
        frame = _background(rng, yy, xx)
        count = int(rng.integers(1, 4)) if labels[i] else 0
        boxes.append(np.array([_draw_object(rng, frame) for _ in range(count)], np.float32).reshape(-1, 4))
        frame += rng.normal(0.0, noise, frame.shape).astype(np.float32)
        images[i] = np.clip(np.rint(frame), 0, 255)
    return FrameSet(images, labels, tuple(boxes))


def _background(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    angle = rng.uniform(0.0, 2 * np.pi)
    t = np.cos(angle) * xx + np.sin(angle) * yy
    t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    start, end = rng.uniform(30.0, 225.0, (2, 3)).astype(np.float32)
    frequency = rng.uniform(0.5, 2.0, 2)
    texture = rng.uniform(0.0, 12.0) * np.sin(
        2 * np.pi * (frequency[0] * xx + frequency[1] * yy) + rng.uniform(0, 2 * np.pi)
    )
    return start + (end - start) * t[..., None] + texture[..., None]


def _draw_object(rng: np.random.Generator, frame: np.ndarray) -> list[float]:
    """Paint one rectangle or ellipse onto ``frame`` (in place); return its box in pixels."""
    height, width = frame.shape[:2]
    box_h, box_w = (rng.uniform(0.12, 0.35, 2) * min(height, width)).round().astype(int)
    y0 = int(rng.integers(0, height - box_h + 1))
    x0 = int(rng.integers(0, width - box_w + 1))
    rows, cols = np.ogrid[0:height, 0:width]
    if rng.random() < 0.5:
        mask = (rows >= y0) & (rows < y0 + box_h) & (cols >= x0) & (cols < x0 + box_w)
    else:
        cy, cx = y0 + (box_h - 1) / 2, x0 + (box_w - 1) / 2
        mask = ((rows - cy) / (box_h / 2)) ** 2 + ((cols - cx) / (box_w / 2)) ** 2 <= 1.0
    under = frame[mask].mean(axis=0)
    frame[mask] = np.where(under > 127.5, under - rng.uniform(70, 130, 3), under + rng.uniform(70, 130, 3))
    return [x0, y0, x0 + box_w, y0 + box_h]
