"""Test-time tricks from the notes: multi-crop evaluation and ensembles of seeds.

Both change only how probabilities are computed at evaluation; training is untouched.
"""

from __future__ import annotations

import numpy as np


def ten_crops(x: np.ndarray, pad: int):
    """Centre, four corners and their mirrors: (m, H, W, C) views of the zero-padded batch."""
    h, w = x.shape[1:3]
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    corners = [(pad, pad), (0, 0), (0, 2 * pad), (2 * pad, 0), (2 * pad, 2 * pad)]
    for i, j in corners:
        crop = padded[:, i:i + h, j:j + w]
        yield crop
        yield crop[:, :, ::-1]


def multi_crop_proba(model, x: np.ndarray, pad: int, batch_size: int = 1024) -> np.ndarray:
    """The mean of the model's probabilities over the ten crops of each image."""
    total = None
    for crop in ten_crops(x, pad):
        p = model.predict_proba(np.ascontiguousarray(crop), batch_size)
        total = p if total is None else total + p
    return total / 10


def crop_pad(augment: list) -> int:
    """The padding the crops move within: random_crop's pad where training used it, else 4."""
    for spec in augment:
        if isinstance(spec, dict) and "random_crop" in spec:
            return int(spec["random_crop"].get("pad", 4))
    return 4


def predictor(recipe, model, dataset):
    """x -> probabilities, honouring evaluation.multi_crop."""
    if recipe.evaluation.multi_crop and dataset.is_image:
        pad = crop_pad(recipe.to_dict()["data"]["augment"])
        return lambda x: multi_crop_proba(model, x, pad)
    return model.predict_proba


def ensemble_predictor(predictors):
    """x -> the mean of several models' probabilities (the notes' ensembling)."""
    return lambda x: sum(p(x) for p in predictors) / len(predictors)
