"""Ground-truth boxes -> the YOLO grid's targets, as the notes build the training set: each
object goes to the cell holding its midpoint and to the anchor whose shape has the highest
IoU with its own (shapes compared on one centre). Needs only labels and anchors, no
predictions, so it is a pure function of the batch's boxes (and of its augmentation).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .boxes import shape_iou


class GridTargets(NamedTuple):
    """Per cell and anchor, (m, S_H, S_W, A) arrays; `txy` and `thw` have a last axis of 2."""
    obj: np.ndarray  # 1 where an object is assigned
    txy: np.ndarray  # the targets of (sigmoid(t_x), sigmoid(t_y)): the midpoint's place in its cell
    thw: np.ndarray  # the targets of (t_h, t_w): log(b_h / anchor_h), log(b_w / anchor_w)
    cls: np.ndarray  # the assigned class (0 where no object)


def assign(boxes, grid, anchors) -> tuple:
    """(example, row, col, anchor, box rows) of every object in `boxes` (m, K, 5)."""
    boxes = np.asarray(boxes, dtype=np.float64)
    s_h, s_w = grid
    ex, k = np.nonzero(boxes[..., 0] >= 0)
    rows = boxes[ex, k]
    col = np.clip(np.floor(rows[:, 1] * s_w), 0, s_w - 1).astype(np.int64)
    row = np.clip(np.floor(rows[:, 2] * s_h), 0, s_h - 1).astype(np.int64)
    anchor = shape_iou(rows[:, 3:5], anchors).argmax(axis=1) if len(rows) else np.zeros(0, np.int64)
    return ex, row, col, anchor, rows


def encode(boxes, grid, anchors, dtype=np.float64) -> GridTargets:
    """The targets of a batch of boxes (m, K, 5) on an S_H x S_W grid with anchors (A, 2).

    Two objects that fall on the same cell and anchor: the later row wins (as a YOLO label
    file written in order would); the scenes data has them in under 0.5% of images.
    """
    anchors = np.asarray(anchors, dtype=np.float64)
    m = np.asarray(boxes).shape[0]
    shape = (m, grid[0], grid[1], len(anchors))
    obj, cls = np.zeros(shape, dtype=dtype), np.zeros(shape, dtype=np.int64)
    txy, thw = np.zeros(shape + (2,), dtype=dtype), np.zeros(shape + (2,), dtype=dtype)
    ex, row, col, anchor, rows = assign(boxes, grid, anchors)
    at = (ex, row, col, anchor)
    obj[at] = 1
    cls[at] = rows[:, 0].astype(np.int64)
    txy[at] = np.column_stack([rows[:, 1] * grid[1] - col, rows[:, 2] * grid[0] - row])
    thw[at] = np.log(np.maximum(rows[:, 3:5], 1e-9) / anchors[anchor])
    return GridTargets(obj, txy, thw, cls)
