"""Non-max suppression as the notes run it: keep the highest score, drop every box whose IoU
with it is above the threshold, repeat, at most `max_boxes` kept. Pure: returns indices."""

from __future__ import annotations

import numpy as np

from .boxes import iou


def non_max_suppression(boxes, scores, iou_threshold: float = 0.5, max_boxes: int = 10) -> np.ndarray:
    """Indices into `boxes` (N, 4) `(b_x, b_y, b_h, b_w)` kept, highest score first.

    A box exactly at the threshold survives (the course suppresses IoU > threshold); equal
    scores keep the earlier box first.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if boxes.shape[0] != scores.shape[0]:
        raise ValueError(f"{boxes.shape[0]} boxes but {scores.shape[0]} scores")
    order = np.argsort(-scores, kind="stable")
    overlaps = iou(boxes, boxes)
    alive = np.ones(len(order), dtype=bool)
    kept = []
    for rank, i in enumerate(order):
        if len(kept) >= max_boxes:
            break
        if not alive[rank]:
            continue
        kept.append(i)
        alive[rank + 1:] &= overlaps[i, order[rank + 1:]] <= iou_threshold
    return np.asarray(kept, dtype=np.int64)


def per_class_nms(boxes, scores, classes, iou_threshold: float = 0.5, max_boxes: int = 10) -> np.ndarray:
    """NMS within each class, then the survivors of all classes by score, at most max_boxes."""
    classes = np.asarray(classes)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    kept = [np.flatnonzero(classes == c)[non_max_suppression(boxes[classes == c], scores[classes == c],
                                                               iou_threshold, max_boxes)]
            for c in np.unique(classes)]
    kept = np.concatenate(kept) if kept else np.zeros(0, dtype=np.int64)
    return kept[np.argsort(-scores[kept], kind="stable")][:max_boxes]
