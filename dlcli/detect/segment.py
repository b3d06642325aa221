"""Per-class IoU of segmentation masks, from the split's confusion over all its pixels (as
Keras' MeanIoU accumulates it): IoU_c = TP / (TP + FP + FN). A class neither present nor
predicted anywhere in the split has no IoU (None) and stays out of the mean."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SegmentationScores:
    iou: list
    mean_iou: float

    def to_json(self) -> dict:
        return {"iou": self.iou, "mean_iou": self.mean_iou}


def confusion(y_true, y_pred, n_classes: int) -> np.ndarray:
    """(C, C) pixel counts, rows the true class, columns the predicted one."""
    t = np.asarray(y_true, dtype=np.int64).reshape(-1)
    p = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def class_iou(y_true, y_pred, n_classes: int) -> SegmentationScores:
    c = confusion(y_true, y_pred, n_classes)
    tp = np.diag(c).astype(np.float64)
    union = c.sum(0) + c.sum(1) - tp
    iou = [float(tp[k] / union[k]) if union[k] > 0 else None for k in range(n_classes)]
    present = [v for v in iou if v is not None]
    return SegmentationScores(iou, float(np.mean(present)) if present else 0.0)


def image_iou(y_true, y_pred, n_classes: int) -> np.ndarray:
    """(m,) mean IoU of each image over the classes it shows or predicts (for worst images)."""
    t, p = np.asarray(y_true), np.asarray(y_pred)
    out = np.empty(len(t))
    for i in range(len(t)):
        out[i] = class_iou(t[i], p[i], n_classes).mean_iou
    return out
