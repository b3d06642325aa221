"""Anchor shapes by k-means on the training boxes' (b_h, b_w), with the YOLOv2 distance
d = 1 - IoU(box, centroid) (shapes on one centre): large boxes do not outweigh small ones as
they would with Euclidean distance. Seeded k-means++ start, Lloyd iterations with each
centroid the mean of its cluster, until the assignment stops changing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BadInput
from .boxes import shape_iou


@dataclass
class AnchorResult:
    anchors: list  # [[b_h, b_w], ...] by area
    mean_iou: float  # the mean over boxes of the best IoU with an anchor
    counts: list  # boxes per anchor
    boxes: int
    current: list | None = None  # the recipe's anchors, if any
    current_mean_iou: float | None = None

    def to_json(self) -> dict:
        return {"anchors": self.anchors, "mean_iou": self.mean_iou, "counts": self.counts,
                "boxes": self.boxes, "current": self.current, "current_mean_iou": self.current_mean_iou}


def kmeans_anchors(shapes, k: int, seed: int = 0, iterations: int = 300):
    """(anchors (k, 2) by area, assignment) of the (N, 2) shapes."""
    shapes = np.asarray(shapes, dtype=np.float64).reshape(-1, 2)
    if len(shapes) < k:
        raise ValueError(f"{len(shapes)} boxes cannot make {k} anchors")
    rng = np.random.default_rng(seed)
    centres = shapes[[rng.integers(len(shapes))]]
    while len(centres) < k:  # k-means++: far (in 1 - IoU) shapes more likely
        d = (1 - shape_iou(shapes, centres).max(axis=1)) ** 2
        centres = np.vstack([centres, shapes[rng.choice(len(shapes), p=d / d.sum())
                                             if d.sum() > 0 else rng.integers(len(shapes))]])
    assign = None
    for _ in range(iterations):
        new = shape_iou(shapes, centres).argmax(axis=1)
        if assign is not None and np.array_equal(new, assign):
            break
        assign = new
        centres = np.array([shapes[assign == j].mean(axis=0) if (assign == j).any() else centres[j]
                            for j in range(k)])
    order = np.argsort(centres.prod(axis=1))
    return centres[order], np.argsort(order)[assign]


def suggest(run_or_recipe, k: int | None = None, seed: int = 0) -> AnchorResult:
    """Anchors for a recipe's (or a run's recipe's) training boxes."""
    from ..api import as_recipe, load_data
    path = Path(run_or_recipe)
    recipe = as_recipe(path / "recipe.yaml" if path.is_dir() else path)
    data = load_data(recipe)
    y = data.splits["train"].y
    if y.ndim != 3 or y.shape[-1] != 5:
        raise BadInput(f"{path}: the training data holds no boxes (m, K, 5)", key="data.train")
    shapes = y[y[..., 0] >= 0][:, 3:5]
    heads = [layer for layer in recipe.to_dict()["model"]["layers"] if layer.get("type") == "yolo"]
    current = heads[-1]["anchors"] if heads else None
    k = k or (len(current) if current else 5)
    try:
        anchors, assign = kmeans_anchors(shapes, k, seed)
    except ValueError as err:
        raise BadInput(f"{path}: {err}")
    best = lambda a: float(shape_iou(shapes, a).max(axis=1).mean())
    return AnchorResult(np.round(anchors, 4).tolist(), best(anchors),
                        np.bincount(assign, minlength=k).tolist(), int(len(shapes)),
                        current, best(np.asarray(current)) if current else None)


def anchors_cli(run_or_recipe, k=None, seed=0, as_json=False) -> int:
    import json
    result = suggest(run_or_recipe, k, seed)
    if as_json:
        print(json.dumps(result.to_json()))
        return 0
    from rich.console import Console
    from .render import anchors_table
    anchors_table(result, Console())
    return 0
