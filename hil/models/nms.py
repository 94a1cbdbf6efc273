"""From raw detector rows to a few boxes per image: threshold, then suppress.

A YOLO-style detector scores every anchor of every grid cell, tens of
thousands of rows per image, most of them background and many of them the
same object seen by neighbouring cells. Post-processing keeps the rows whose
score (objectness times the best class probability) passes a confidence
threshold, then runs greedy non-maximum suppression per class: take the
highest-scoring box, drop the boxes of its class that overlap it by more
than an IoU threshold, repeat. Boxes of different classes never suppress one
another.

Input is the (N, A, 5 + C) ``detections`` format of ``detector``, which is
also YOLOv5's exported format: centre x, y, width, height, objectness, then
class probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Detections:
    """The boxes kept for one image, best first."""

    boxes: np.ndarray  # (k, 4) float32 x1 y1 x2 y2
    scores: np.ndarray  # (k,) float32
    classes: np.ndarray  # (k,) int64

    def __len__(self) -> int:
        return len(self.scores)


def postprocess(
    output: np.ndarray,
    conf_threshold: float = 0.25,
    iou_threshold: float = 0.45,
    max_detections: int = 300,
    max_candidates: int = 30_000,
) -> list[Detections]:
    """Decode, threshold and suppress a batch of detector output, one result per image."""
    results = []
    for rows in output:
        boxes, scores, classes = decode(rows, conf_threshold)
        top = np.argsort(-scores, kind="stable")[:max_candidates]
        keep = top[batched_nms(boxes[top], scores[top], classes[top], iou_threshold)][:max_detections]
        results.append(Detections(boxes[keep], scores[keep], classes[keep]))
    return results


def decode(rows: np.ndarray, conf_threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's (A, 5 + C) rows -> candidate xyxy boxes, scores and classes above the threshold."""
    rows = rows[rows[:, 4] > conf_threshold]
    classes = rows[:, 5:].argmax(axis=1)
    scores = rows[:, 4] * rows[np.arange(len(rows)), 5 + classes]
    keep = scores > conf_threshold
    centre, size = rows[keep, 0:2], rows[keep, 2:4]
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
    return boxes.astype(np.float32), scores[keep].astype(np.float32), classes[keep].astype(np.int64)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) intersection over union of xyxy boxes; 0 where both are empty."""
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of the boxes greedy NMS keeps, highest score first (ties: lower index first)."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        best, order = order[0], order[1:]
        keep.append(best)
        order = order[iou_matrix(boxes[best : best + 1], boxes[order])[0] <= iou_threshold]
    return np.array(keep, np.int64)


def batched_nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Class-aware NMS: ``nms`` within each class; indices highest score first."""
    keep = [
        np.flatnonzero(classes == c)[nms(boxes[classes == c], scores[classes == c], iou_threshold)]
        for c in np.unique(classes)
    ]
    keep = np.concatenate(keep) if keep else np.zeros(0, np.int64)
    return keep[np.lexsort((keep, -scores[keep]))]
