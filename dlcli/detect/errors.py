"""`dlcli analyze errors` on a detection or segmentation run: per-class AP@0.5 / IoU and the
worst images (a detection image by its misses plus false boxes at IoU 0.5, a segmentation
image by its own mean IoU), and with --sheet a contact sheet of them with boxes or masks drawn.
A job returning data (`DenseErrors`); `dense_errors_cli` draws it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from .data import target_kind


@dataclass
class DenseErrors:
    split: str
    kind: str  # detection | segmentation
    scores: dict  # summary.json's fields for the split
    class_names: list | None
    worst: list = field(default_factory=list)  # [{index, ...}] worst first

    def to_json(self) -> dict:
        return {"split": self.split, "kind": self.kind, **self.scores, "classes": self.class_names,
                "worst": self.worst}


def image_mistakes(detections, truths, threshold=0.5) -> tuple[int, int]:
    """(ground-truth boxes missed, predicted boxes matching none) of one image."""
    from .boxes import iou
    det = detections[detections[:, 0] >= 0]
    gt = truths[truths[:, 0] >= 0]
    taken = np.zeros(len(gt), dtype=bool)
    false = 0
    for row in det[np.argsort(-det[:, 1], kind="stable")]:
        same = np.flatnonzero((gt[:, 0] == row[0]) & ~taken)
        overlaps = iou(row[None, 2:], gt[same, 1:])[0] if len(same) else np.zeros(0)
        if len(same) and overlaps.max() >= threshold:
            taken[same[int(overlaps.argmax())]] = True
        else:
            false += 1
    return int((~taken).sum()), false


def analyze_dense(pred: dict, split: str, class_names=None, top: int = 20) -> DenseErrors | None:
    y_true, y_pred = pred["y_true"], pred["y_pred"]
    kind = target_kind(y_true)
    if kind == "boxes" and y_pred.ndim == 3 and y_pred.shape[-1] == 6:
        from .map import evaluate
        n = int(max(y_true[..., 0].max(), y_pred[..., 0].max())) + 1
        if class_names:
            n = max(n, len(class_names))
        real = lambda a: [r[r[:, 0] >= 0] for r in a]
        scores = evaluate(real(y_pred), real(y_true), n).to_json()
        rows = []
        for i, (d, t) in enumerate(zip(y_pred, y_true)):
            missed, false = image_mistakes(d, t)
            if missed + false:
                rows.append({"index": int(pred["index"][i]), "row": i, "missed": missed,
                             "false_boxes": false})
        rows.sort(key=lambda r: -(r["missed"] + r["false_boxes"]))
        return DenseErrors(split, "detection", scores, class_names, rows[:top])
    if kind == "masks":
        from .segment import class_iou, image_iou
        n = pred["probabilities"].shape[-1]
        scores = class_iou(y_true, y_pred, n).to_json()
        per_image = image_iou(y_true, y_pred, n)
        order = np.argsort(per_image, kind="stable")[:top]
        worst = [{"index": int(pred["index"][i]), "row": int(i), "mean_iou": float(per_image[i])}
                 for i in order if per_image[i] < 1]
        return DenseErrors(split, "segmentation", scores, class_names, worst)
    return None


def sheet_tiles(run_split, result: DenseErrors):
    """(images, captions) for the contact sheet: boxes drawn (truth white, predictions in
    their class colour), or image | true mask | predicted mask side by side."""
    import yaml
    from ..contact_sheet import display_images
    from .predict_kinds import PALETTE, draw_boxes
    data_cfg = (yaml.safe_load((run_split.path / "recipe.yaml").read_text()) or {}).get("data") or {}
    rows = [w["row"] for w in result.worst]
    images = display_images(run_split.data.x[rows], data_cfg)
    pred = run_split.predictions
    tiles, captions = [], []
    names = result.class_names
    for k, (w, image) in enumerate(zip(result.worst, images)):
        i = w["row"]
        if result.kind == "detection":
            truth = [{"class": -1, "label": "true " + (names[int(r[0])] if names else str(int(r[0]))),
                      "score": 1.0, "box": r[1:].tolist()} for r in pred["y_true"][i] if r[0] >= 0]
            found = [{"class": int(r[0]), "label": names[int(r[0])] if names else None,
                      "score": float(r[1]), "box": r[2:].tolist()} for r in pred["y_pred"][i] if r[0] >= 0]
            tiles.append(np.asarray(draw_boxes(image, truth + found, min_side=128)))
            captions.append([f"#{w['index']} missed {w['missed']}", f"false boxes {w['false_boxes']}"])
        else:
            t = PALETTE[pred["y_true"][i] % len(PALETTE)]
            p = PALETTE[pred["y_pred"][i] % len(PALETTE)]
            tiles.append(np.concatenate([image, t, p], axis=1))
            captions.append([f"#{w['index']} image|true|pred", f"mean IoU {w['mean_iou']:.3f}"])
    return tiles, captions


def dense_errors_cli(run, split, sheet, top, as_json):
    """analyze errors for boxes / masks; None when the run is neither (the classifier path)."""
    from ..analyze import RunSplit
    run_split = RunSplit(run, split)
    pred = run_split.predictions
    if target_kind(pred["y_true"]) is None:
        return None
    names = None
    try:
        import yaml
        from .data import class_names as default_names
        cfg = yaml.safe_load((run_split.path / "recipe.yaml").read_text())
        src = cfg["data"]["train"]
        if src.get("builtin") in ("shapes_detection", "shapes_segmentation"):
            names = default_names(target_kind(pred["y_true"]), src.get("classes") or 3)
    except (OSError, KeyError, TypeError, AttributeError):
        names = None
    result = analyze_dense(pred, split, names, top)
    from rich.console import Console
    from .render import dense_errors_table
    console = Console(stderr=as_json)
    dense_errors_table(result, console)
    if sheet is not None and result.worst:
        from ..runs import atomic_write_bytes
        tiles, captions = sheet_tiles(run_split, result)
        atomic_write_bytes(sheet, contact_sheet_rgb(tiles, captions))
        console.print(f"wrote {sheet}: the {len(tiles)} worst images")
    if as_json:
        print(json.dumps(result.to_json()))
    return 0


def contact_sheet_rgb(tiles, captions) -> bytes:
    """Tiles of different widths on one sheet: padded to the widest, then analyze's sheet."""
    from ..contact_sheet import contact_sheet
    h = max(t.shape[0] for t in tiles)
    w = max(t.shape[1] for t in tiles)
    padded = np.full((len(tiles), h, w, 3), 255, dtype=np.uint8)
    for k, t in enumerate(tiles):
        padded[k, :t.shape[0], :t.shape[1]] = t[..., :3]
    return contact_sheet(padded, captions)
