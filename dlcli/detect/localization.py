"""`loss: localization`: the notes' object localization, one object at most per image.

The network's (m, 5 + C) linear output is `[p_c, b_x, b_y, b_h, b_w, c_1..c_C]`; the target
from the image's first box row is `[1, b_x, b_y, b_h, b_w, one-hot class]`, or p_c = 0 where
the image has no object. As the notes write it: the squared error over every component when
y_1 = 1, only (yhat_1 - y_1)^2 when y_1 = 0; averaged over the mini-batch.

A prediction is the box when p_c > 0.5: rows `[class, p_c, b_x, b_y, b_h, b_w]` (class -1 for
"no object"). An example is right when it says "object" exactly where there is one and, there,
names the class and overlaps the true box with IoU >= 0.5; the error is the share that is not.
"""

from __future__ import annotations

import numpy as np

from ..nn.losses import Loss, register
from .boxes import iou


def targets(boxes, n_classes: int, dtype=np.float64) -> np.ndarray:
    """(m, 5 + C) targets from boxes (m, K, 5): the first row's object, if any."""
    first = np.asarray(boxes, dtype=np.float64)[:, 0]
    present = first[:, 0] >= 0
    t = np.zeros((len(first), 5 + n_classes), dtype=dtype)
    t[:, 0] = present
    t[present, 1:5] = first[present, 1:5]
    t[np.flatnonzero(present), 5 + first[present, 0].astype(np.int64)] = 1
    return t


@register
class Localization(Loss):
    name = "localization"
    output_activation = "linear"

    def check(self, output_shape):
        if len(output_shape) != 1 or output_shape[0] < 6:
            raise ValueError(f"loss: localization needs a dense output of 5 + classes units "
                             f"[p_c, b_x, b_y, b_h, b_w, c_1..c_C], got {tuple(output_shape)}")

    def forward(self, z, y):
        t = targets(y, z.shape[1] - 5, z.dtype)
        weight = np.ones_like(z)
        weight[t[:, 0] == 0, 1:] = 0  # no object: only p_c counts
        diff = weight * (z - t)
        self.cache = diff * (2 / z.shape[0])
        return float(np.sum(diff * diff) / z.shape[0])

    def backward(self):
        return self.cache

    def predict(self, out):
        out = np.asarray(out)
        rows = np.full((len(out), 1, 6), -1.0)
        rows[:, 0, 1:] = 0
        found = out[:, 0] > 0.5
        rows[found, 0, 0] = out[found, 5:].argmax(axis=1)
        rows[found, 0, 1] = out[found, 0]
        rows[found, 0, 2:] = out[found, 1:5]
        return rows

    def error(self, out, y):
        pred = self.predict(out)[:, 0]
        truth = np.asarray(y, dtype=np.float64)[:, 0]
        said, there = pred[:, 0] >= 0, truth[:, 0] >= 0
        right = said == there
        both = np.flatnonzero(said & there)
        if len(both):
            overlap = np.array([iou(pred[[i], 2:], truth[[i], 1:])[0, 0] for i in both])
            right[both] = (pred[both, 0] == truth[both, 0]) & (overlap >= 0.5)
        return float(1 - right.mean())
