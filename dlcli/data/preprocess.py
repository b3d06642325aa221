"""scale, flatten, normalize: in that order, with statistics from the training split only.

The notes: "use the same mu, sigma^2 to normalize the test set", so the mean and std are
fitted once on the training examples and reused for every split and for re-prediction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Preprocessing:
    dtype: np.dtype
    scale: float = 1.0
    flatten: bool = False
    normalize: bool = False
    mean: np.ndarray | None = None  # per feature, set by fit() when normalize is on
    std: np.ndarray | None = None
    example_shape: tuple | None = None  # one raw example's shape, and the raw data's largest
    raw_max: float | None = None        # value: what `dlcli predict` needs to read new inputs alike

    def fit(self, x_train) -> "Preprocessing":
        self.example_shape = tuple(np.shape(x_train)[1:])
        self.raw_max = float(np.max(x_train)) if np.size(x_train) else None
        if self.normalize:
            x = self._scaled(x_train).astype(np.float64)
            self.mean = x.mean(axis=0)
            std = x.std(axis=0)
            self.std = np.where(std > 0, std, 1.0)  # a constant feature is centred, not divided by 0
        return self

    def __call__(self, x) -> np.ndarray:
        x = self._scaled(x)
        if self.normalize:
            x = ((x - self.mean) / self.std).astype(self.dtype)
        return x

    def _scaled(self, x) -> np.ndarray:
        x = np.asarray(x).astype(self.dtype) / self.dtype.type(self.scale)
        return x.reshape(len(x), -1) if self.flatten else x
