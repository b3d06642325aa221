"""Boxes in one layout, the notes' `(b_x, b_y, b_h, b_w)`: centre, height and width as
fractions of the image. Every IoU in dlcli (NMS, mAP, anchor assignment, k-means) comes from
`iou` here, so there is one definition of what "overlap" means.
"""

from __future__ import annotations

import numpy as np


def to_corners(boxes) -> np.ndarray:
    """(..., 4) `(b_x, b_y, b_h, b_w)` -> (..., 4) `(x1, y1, x2, y2)`."""
    b = np.asarray(boxes, dtype=np.float64)
    x, y, h, w = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    return np.stack([x - w / 2, y - h / 2, x + w / 2, y + h / 2], axis=-1)


def from_corners(corners) -> np.ndarray:
    """(..., 4) `(x1, y1, x2, y2)` -> (..., 4) `(b_x, b_y, b_h, b_w)`."""
    c = np.asarray(corners, dtype=np.float64)
    x1, y1, x2, y2 = c[..., 0], c[..., 1], c[..., 2], c[..., 3]
    return np.stack([(x1 + x2) / 2, (y1 + y2) / 2, y2 - y1, x2 - x1], axis=-1)


def iou(boxes_a, boxes_b) -> np.ndarray:
    """Pairwise IoU, (N, 4) x (M, 4) in `(b_x, b_y, b_h, b_w)` -> (N, M).

    The notes' rule: the intersection's width and height are clipped at 0, so boxes that only
    touch (at a vertex or along an edge) or don't meet have IoU 0; two empty boxes too.
    """
    a = to_corners(np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4))
    b = to_corners(np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4))
    return iou_corners(a, b)


def iou_corners(a, b) -> np.ndarray:
    """Pairwise IoU of corner boxes (N, 4) x (M, 4) `(x1, y1, x2, y2)`."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    w = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = w * h
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def shape_iou(shapes_a, shapes_b) -> np.ndarray:
    """IoU of (h, w) shapes placed on one centre, (N, 2) x (M, 2) -> (N, M): how anchors are
    matched to objects and how k-means measures distance between box shapes."""
    a = np.asarray(shapes_a, dtype=np.float64).reshape(-1, 2)
    b = np.asarray(shapes_b, dtype=np.float64).reshape(-1, 2)
    inter = np.minimum(a[:, None, 0], b[None, :, 0]) * np.minimum(a[:, None, 1], b[None, :, 1])
    union = (a[:, 0] * a[:, 1])[:, None] + (b[:, 0] * b[:, 1])[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def valid_rows(boxes) -> np.ndarray:
    """Rows of an (K, 5) `[class, b_x, b_y, b_h, b_w]` array that are objects (class >= 0)."""
    boxes = np.asarray(boxes)
    return boxes[boxes[:, 0] >= 0]
