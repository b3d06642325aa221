"""Mean average precision of detections. Pure: arrays in, numbers out.

Matching follows COCO's evaluation (pycocotools' COCOeval.evaluateImg): per image and class,
detections in descending score take the unmatched ground-truth box of highest IoU at or above
the threshold; a detection with none is a false positive. Precision is made non-increasing
from the right. Then:
- `average_precision(..., interpolation="all")`: VOC's all-point interpolation (the area under
  that precision envelope at every recall step), what mAP@0.5 reports;
- `interpolation="coco"`: COCO's mean of the envelope at 101 recall points 0, 0.01, ..., 1,
  what mAP@[.5:.95] reports over IoU 0.50, 0.55, ..., 0.95 (equal to COCOeval's AP).
A class with no ground-truth box has no AP (None) and stays out of the mean.

Detections per image: (n, 6) rows `[class, score, b_x, b_y, b_h, b_w]`; ground truth per
image: (K, 5) rows `[class, b_x, b_y, b_h, b_w]`, class -1 for padding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .boxes import iou

COCO_THRESHOLDS = np.linspace(0.5, 0.95, 10)
COCO_RECALLS = np.linspace(0.0, 1.0, 101)


def match(detections, truths, cls: int, threshold: float):
    """(scores, is_true_positive, n_truths) of one class over all images."""
    scores, hits, n_truths = [], [], 0
    for det, gt in zip(detections, truths):
        det = np.asarray(det, dtype=np.float64).reshape(-1, 6)
        gt = np.asarray(gt, dtype=np.float64).reshape(-1, 5)
        det = det[det[:, 0] == cls]
        gt = gt[gt[:, 0] == cls]
        n_truths += len(gt)
        det = det[np.argsort(-det[:, 1], kind="mergesort")]
        taken = np.zeros(len(gt), dtype=bool)
        overlaps = iou(det[:, 2:], gt[:, 1:]) if len(gt) and len(det) else np.zeros((len(det), 0))
        for d in range(len(det)):
            best, best_iou = -1, min(threshold, 1 - 1e-10)
            for g in range(len(gt)):
                if not taken[g] and overlaps[d, g] >= best_iou:
                    best, best_iou = g, overlaps[d, g]
            if best >= 0:
                taken[best] = True
            scores.append(det[d, 1])
            hits.append(best >= 0)
    return np.asarray(scores), np.asarray(hits, dtype=bool), n_truths


def average_precision(scores, hits, n_truths, interpolation="all"):
    """AP of one class from its matched detections; None without ground truth."""
    if n_truths == 0:
        return None
    order = np.argsort(-scores, kind="mergesort")
    tp = np.cumsum(hits[order])
    fp = np.cumsum(~hits[order])
    recall = tp / n_truths
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    envelope = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
    if interpolation == "coco":
        at = np.searchsorted(recall, COCO_RECALLS, side="left")
        sampled = np.where(at < len(envelope), envelope[np.minimum(at, len(envelope) - 1)]
                           if len(envelope) else 0.0, 0.0)
        return float(np.mean(sampled))
    steps = np.diff(np.concatenate([[0.0], recall]))
    return float(np.sum(steps * envelope))


def class_aps(detections, truths, n_classes, threshold, interpolation="all") -> list:
    return [average_precision(*match(detections, truths, c, threshold), interpolation)
            for c in range(n_classes)]


def _mean(values):
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else 0.0


@dataclass
class DetectionScores:
    map_50: float
    map_50_95: float
    ap_50: list

    def to_json(self) -> dict:
        return {"map_50": self.map_50, "map_50_95": self.map_50_95, "ap_50": self.ap_50}


def evaluate(detections, truths, n_classes: int) -> DetectionScores:
    """mAP@0.5 (VOC all-point) and mAP@[.5:.95] (COCO) over a split's images."""
    ap_50 = class_aps(detections, truths, n_classes, 0.5, "all")
    coco = [class_aps(detections, truths, n_classes, t, "coco") for t in COCO_THRESHOLDS]
    # COCOeval averages over every (threshold, class) cell that has ground truth
    cells = [v for row in coco for v in row if v is not None]
    return DetectionScores(_mean(ap_50), float(np.mean(cells)) if cells else 0.0, ap_50)
