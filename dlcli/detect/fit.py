"""Hooks that let the classifier-shaped pipeline (api.check_fit, api.finish) take boxes and
masks: whether the model's output can learn the targets, and the scores summary.json adds."""

from __future__ import annotations

import numpy as np

from .data import target_kind


def check_dense_fit(recipe, model, dataset) -> bool:
    """True when the data's targets are boxes or masks and the model fits them (else BadInput);
    False for any other targets (the classifier checks apply)."""
    y = dataset.splits["train"].y
    kind = target_kind(y)
    out = model.net.output_shape
    name = model.loss.name
    if kind is None:
        if name == "yolo":
            raise recipe.error("data.train", "a yolo head needs boxes: a source with boxes: KEY "
                               "or builtin: shapes_detection")
        return False
    if kind == "boxes":
        if name == "localization":
            return True
        if name != "yolo":
            raise recipe.error("model.layers", "the data holds boxes: end the model with a yolo "
                               "layer (or use loss: localization)")
        top = max(int(s.y[..., 0].max()) for s in dataset.splits.values())
        if top >= model.loss.classes:
            raise recipe.error("model.layers", f"the boxes hold class {top} but the yolo layer "
                               f"has classes: {model.loss.classes}")
        return True
    if name != "categorical_crossentropy" or len(out) != 3 or out[:2] != y.shape[1:]:
        raise recipe.error("model.layers", f"masks of {y.shape[1]}x{y.shape[2]} need a softmax "
                           f"output ({y.shape[1]}, {y.shape[2]}, classes), the network gives {out}")
    top = max(int(s.y.max()) for s in dataset.splits.values())
    if top >= out[2]:
        raise recipe.error("model.layers", f"the masks hold class id {top} but the output has "
                           f"{out[2]} channels")
    return True


def dense_scores(loss, arrays, y_true, split, into: dict) -> None:
    """Add a split's detection or segmentation scores to `into` (summary.json's fields)."""
    kind = target_kind(y_true)
    if kind == "boxes" and loss.name == "yolo":
        into.setdefault("detection", {})[split] = loss.scores(arrays["probabilities"], y_true).to_json()
    elif kind == "masks":
        from .segment import class_iou
        n = arrays["probabilities"].shape[-1]
        into.setdefault("segmentation", {})[split] = class_iou(y_true, arrays["y_pred"], n).to_json()
        # per-pixel probabilities are large (m n_H n_W C): half precision in predictions/*.npz
        arrays["probabilities"] = arrays["probabilities"].astype(np.float16)
