"""IoU, non-max suppression and mAP (dlcli.detect): the course's cases, plain references,
and pycocotools' COCOeval."""

import numpy as np
import pytest

from dlcli.detect import iou, non_max_suppression
from dlcli.detect.boxes import from_corners, shape_iou
from dlcli.detect.map import evaluate
from dlcli.detect.nms import per_class_nms


def corner_iou(a, b):
    """The course's iou on corners (x1, y1, x2, y2), written out as the notebook does."""
    xi1, yi1, xi2, yi2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(xi2 - xi1, 0) * max(yi2 - yi1, 0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


@pytest.mark.parametrize("a, b, expected", [
    ((2, 1, 4, 3), (1, 2, 3, 4), 1 / 7),
    ((1, 2, 3, 4), (5, 6, 7, 8), 0.0),
    ((1, 1, 2, 2), (2, 2, 3, 3), 0.0),   # touching at a vertex
    ((1, 1, 3, 3), (2, 3, 3, 4), 0.0),   # touching along an edge
    ((0, 0, 2, 2), (1, 1, 4, 3), 1 / 9),  # quiz: 2x2 and 2x3 overlapping in 1x1
])
def test_iou_course_cases(a, b, expected):
    got = iou(from_corners([a]), from_corners([b]))
    assert got.shape == (1, 1)
    assert got[0, 0] == pytest.approx(expected, abs=1e-12)


def random_boxes(rng, n):
    return np.column_stack([rng.uniform(0.1, 0.9, (n, 2)), rng.uniform(0.05, 0.5, (n, 2))])


def test_iou_pairwise_equals_reference_on_random_boxes():
    rng = np.random.default_rng(0)
    a, b = random_boxes(rng, 17), random_boxes(rng, 9)
    got = iou(a, b)
    assert got.shape == (17, 9)
    ca, cb = [np.column_stack([x[:, 0] - x[:, 3] / 2, x[:, 1] - x[:, 2] / 2,
                               x[:, 0] + x[:, 3] / 2, x[:, 1] + x[:, 2] / 2]) for x in (a, b)]
    want = np.array([[corner_iou(p, q) for q in cb] for p in ca])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    assert (want > 0).any() and (want == 0).any()  # the random sets exercise both cases
    np.testing.assert_allclose(iou(a, a).diagonal(), 1.0)


def test_shape_iou_is_iou_of_centred_boxes():
    rng = np.random.default_rng(1)
    s, t = rng.uniform(0.05, 0.6, (6, 2)), rng.uniform(0.05, 0.6, (4, 2))
    centred = lambda x: np.column_stack([np.full(len(x), 0.5), np.full(len(x), 0.5), x])
    np.testing.assert_allclose(shape_iou(s, t), iou(centred(s), centred(t)), rtol=1e-12)


def reference_nms(boxes, scores, threshold, max_boxes):
    """The course's rule in plain loops: take the best remaining, drop IoU > threshold."""
    remaining = sorted(range(len(scores)), key=lambda i: -scores[i])
    kept = []
    while remaining and len(kept) < max_boxes:
        best = remaining.pop(0)
        kept.append(best)
        remaining = [i for i in remaining if iou(boxes[[best]], boxes[[i]])[0, 0] <= threshold]
    return kept


def test_nms_course_rules():
    boxes = np.array([[0.5, 0.5, 0.2, 0.2], [0.52, 0.5, 0.2, 0.2], [0.2, 0.2, 0.1, 0.1],
                      [0.8, 0.8, 0.1, 0.1]])
    scores = np.array([0.9, 0.95, 0.7, 0.8])
    # box 0 overlaps box 1 (higher score) by IoU 0.82 > 0.5: dropped; the rest kept by score
    assert non_max_suppression(boxes, scores, 0.5, 10).tolist() == [1, 3, 2]
    assert non_max_suppression(boxes, scores, 0.5, 2).tolist() == [1, 3]
    # at a threshold above their overlap both survive
    assert non_max_suppression(boxes, scores, 0.9, 10).tolist() == [1, 0, 3, 2]
    assert non_max_suppression(np.zeros((0, 4)), np.zeros(0), 0.5, 10).tolist() == []


def test_nms_equals_plain_reference_on_random_sets():
    rng = np.random.default_rng(2)
    for trial in range(30):
        n = int(rng.integers(1, 40))
        boxes, scores = random_boxes(rng, n), rng.random(n)
        threshold, max_boxes = float(rng.choice([0.3, 0.5, 0.7])), int(rng.integers(1, 12))
        got = non_max_suppression(boxes, scores, threshold, max_boxes).tolist()
        assert got == reference_nms(boxes, scores, threshold, max_boxes)


def test_per_class_nms_keeps_overlapping_boxes_of_other_classes():
    boxes = np.array([[0.5, 0.5, 0.2, 0.2], [0.5, 0.5, 0.2, 0.2], [0.51, 0.5, 0.2, 0.2]])
    kept = per_class_nms(boxes, np.array([0.9, 0.8, 0.7]), np.array([0, 1, 0]), 0.5, 10)
    assert kept.tolist() == [0, 1]


def random_detection_set(rng, n_images=12, n_classes=3):
    truths, detections = [], []
    for _ in range(n_images):
        k = int(rng.integers(0, 5))
        gt = np.full((5, 5), -1.0)
        gt[:k, 0] = rng.integers(0, n_classes, k)
        gt[:k, 1:] = random_boxes(rng, k)
        truths.append(gt)
        # detections: jittered copies of the truths (some), plus random false ones
        rows = []
        for row in gt[:k]:
            for _ in range(int(rng.integers(0, 3))):
                box = row[1:] + rng.normal(0, 0.03, 4)
                box[2:] = np.abs(box[2:]) + 0.01
                cls = row[0] if rng.random() < 0.85 else rng.integers(0, n_classes)
                rows.append([cls, rng.random(), *box])
        for _ in range(int(rng.integers(0, 4))):
            rows.append([rng.integers(0, n_classes), rng.random(), *random_boxes(rng, 1)[0]])
        detections.append(np.array(rows).reshape(-1, 6))
    return detections, truths


def coco_eval(detections, truths, n_classes, size=100.0):
    """pycocotools' COCOeval on the same boxes in pixels: stats[0] (AP@[.5:.95]), stats[1] (AP@.5)."""
    import contextlib
    import io
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def xywh(b):
        return [float((b[0] - b[3] / 2) * size), float((b[1] - b[2] / 2) * size),
                float(b[3] * size), float(b[2] * size)]

    images = [{"id": i + 1, "width": size, "height": size} for i in range(len(truths))]
    anns = [{"id": len(images) * 10 + j + 100 * i, "image_id": i + 1, "category_id": int(r[0]) + 1,
             "bbox": xywh(r[1:]), "area": float(r[3] * r[4] * size * size), "iscrowd": 0}
            for i, gt in enumerate(truths) for j, r in enumerate(gt) if r[0] >= 0]
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns,
                  "categories": [{"id": c + 1} for c in range(n_classes)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dets = [{"image_id": i + 1, "category_id": int(r[0]) + 1, "bbox": xywh(r[2:]),
                 "score": float(r[1])} for i, d in enumerate(detections) for r in d]
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def voc_ap_reference(detections, truths, cls, threshold=0.5):
    """All-point AP written from the VOC definition (COCO's matching): a separate path."""
    records = []
    n_truth = 0
    for det, gt in zip(detections, truths):
        g = [r[1:] for r in gt if r[0] == cls]
        n_truth += len(g)
        used = [False] * len(g)
        for r in sorted([r for r in det if r[0] == cls], key=lambda r: -r[1]):
            best, best_iou = None, threshold
            for j, box in enumerate(g):
                o = iou(np.array([r[2:]]), np.array([box]))[0, 0]
                if not used[j] and o >= best_iou:
                    best, best_iou = j, o
            if best is not None:
                used[best] = True
            records.append((r[1], best is not None))
    if n_truth == 0:
        return None
    records.sort(key=lambda t: -t[0])
    tp = np.cumsum([hit for _, hit in records])
    fp = np.cumsum([not hit for _, hit in records])
    rec, prec = tp / n_truth, tp / np.maximum(tp + fp, 1e-300)
    mrec = np.concatenate([[0.0], rec, [1.0]])
    mpre = np.concatenate([[0.0], prec, [0.0]])
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    i = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_map_equals_cocoeval_and_voc_reference(seed):
    rng = np.random.default_rng(seed)
    detections, truths = random_detection_set(rng)
    scores = evaluate(detections, truths, 3)
    stats = coco_eval(detections, truths, 3)
    assert scores.map_50_95 == pytest.approx(stats[0], abs=1e-12)
    assert 0 < scores.map_50_95 < 1
    from dlcli.detect.map import class_aps
    coco_50 = [v for v in class_aps(detections, truths, 3, 0.5, "coco") if v is not None]
    assert np.mean(coco_50) == pytest.approx(stats[1], abs=1e-12)
    want = [voc_ap_reference(detections, truths, c) for c in range(3)]
    assert scores.ap_50 == pytest.approx(want, abs=1e-12)
    assert scores.map_50 == pytest.approx(np.mean([v for v in want if v is not None]), abs=1e-12)


def test_map_perfect_and_empty():
    truths = [np.array([[0, 0.5, 0.5, 0.2, 0.2], [-1, 0, 0, 0, 0]])]
    perfect = [np.array([[0, 0.9, 0.5, 0.5, 0.2, 0.2]])]
    s = evaluate(perfect, truths, 2)
    assert (s.map_50, s.map_50_95, s.ap_50) == (1.0, 1.0, [1.0, None])
    s = evaluate([np.zeros((0, 6))], truths, 2)
    assert (s.map_50, s.map_50_95) == (0.0, 0.0)
