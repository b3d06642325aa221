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


def pairs(detections, truths, cls: int):
    """Per image holding class `cls`: (its detections' scores, highest first, and their IoU
    with its ground-truth boxes (n_det, n_gt)); and the count of ground-truth boxes."""
    out, n_truths = [], 0
    for det, gt in zip(detections, truths):
        det = np.asarray(det, dtype=np.float64).reshape(-1, 6)
        gt = np.asarray(gt, dtype=np.float64).reshape(-1, 5)
        det, gt = det[det[:, 0] == cls], gt[gt[:, 0] == cls]
        n_truths += len(gt)
        if not len(det):
            continue
        det = det[np.argsort(-det[:, 1], kind="mergesort")]
        out.append((det[:, 1], iou(det[:, 2:], gt[:, 1:]) if len(gt) else np.zeros((len(det), 0))))
    return out, n_truths


def match(image_pairs, threshold: float):
    """(scores, is_true_positive) of all detections: each, in descending score, takes the
    untaken ground-truth box of highest IoU at or above the threshold (COCOeval's rule)."""
    least = min(threshold, 1 - 1e-10)
    scores, hits = [], []
    for det_scores, overlaps in image_pairs:
        hit = np.zeros(len(det_scores), dtype=bool)
        if overlaps.shape[1]:
            free = overlaps.copy()
            for d in range(len(det_scores)):
                g = int(np.argmax(free[d]))
                if free[d, g] >= least:
                    hit[d] = True
                    free[:, g] = -1.0
        scores.append(det_scores)
        hits.append(hit)
    if not scores:
        return np.zeros(0), np.zeros(0, dtype=bool)
    return np.concatenate(scores), np.concatenate(hits)


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
    aps = []
    for c in range(n_classes):
        image_pairs, n_truths = pairs(detections, truths, c)
        aps.append(average_precision(*match(image_pairs, threshold), n_truths, interpolation))
    return aps


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


def map_50(detections, truths, n_classes: int) -> float:
    """mAP@0.5 alone (VOC all-point): what a detection run's error needs each epoch."""
    return _mean(class_aps(detections, truths, n_classes, 0.5, "all"))


def evaluate(detections, truths, n_classes: int) -> DetectionScores:
    """mAP@0.5 (VOC all-point) and mAP@[.5:.95] (COCO) over a split's images."""
    ap_50, cells = [], []
    for c in range(n_classes):
        image_pairs, n_truths = pairs(detections, truths, c)
        ap_50.append(average_precision(*match(image_pairs, 0.5), n_truths, "all"))
        # COCOeval averages over every (threshold, class) cell that has ground truth
        cells += [average_precision(*match(image_pairs, t), n_truths, "coco") for t in COCO_THRESHOLDS]
    cells = [v for v in cells if v is not None]
    return DetectionScores(_mean(ap_50), float(np.mean(cells)) if cells else 0.0, ap_50)
