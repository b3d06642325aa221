"""`l2_normalize`: each example's vector divided by its L2 norm (the encoding on the unit sphere).

    {type: l2_normalize}        # no parameters; y = x / max(||x||_2, 1e-12) along the last axis

FaceNet puts its 128-d encoding on the unit sphere so that squared distances lie in [0, 4] and a
fixed triplet margin means the same everywhere. The floor on the norm is PyTorch's
`F.normalize(eps=1e-12)`: an all-zero vector stays zero instead of dividing by zero.
Backward: dx = (dy - y (y . dy)) / ||x|| (the projection of dy off y, scaled).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import register
from .base import Layer

EPSILON = 1e-12


class L2NormalizeCache(NamedTuple):
    y: np.ndarray     # the normalised output
    norm: np.ndarray  # (..., 1), floored at EPSILON


@register("l2_normalize")
class L2Normalize(Layer):

    def forward(self, x, training):
        norm = np.maximum(np.sqrt(np.sum(x * x, axis=-1, keepdims=True)), EPSILON)
        y = x / norm
        if training:
            self.cache = L2NormalizeCache(y, norm)
        return y

    def backward(self, dy):
        y, norm = self.cache
        self.cache = None
        if not self.needs_input_grad:
            return None
        # below the floor the output is x / EPSILON, a linear map
        floored = norm <= EPSILON
        dx = (dy - y * np.sum(y * dy, axis=-1, keepdims=True)) / norm
        return np.where(floored, dy / EPSILON, dx).astype(dy.dtype, copy=False)
