"""Weight initialisations, as the recipe names them (SPEC: model.init).

All draw normals except `zeros`; the scale uses n_prev = fan_in (f*f*n_C_prev for convs).
"""

from __future__ import annotations

import math

import numpy as np

INITS = ("he", "xavier", "glorot", "small", "zeros")


def initialize(name: str, shape: tuple, fan_in: int, fan_out: int, rng: np.random.Generator,
               dtype) -> np.ndarray:
    from ..limits import too_big
    # drawn in float64 then cast; training adds its gradient and (Adam) two moments
    size = int(np.prod(shape, dtype=np.float64))
    why = too_big(size * (8 + 4 * np.dtype(dtype).itemsize))
    if why:
        raise ValueError(f"a parameter of shape {tuple(shape)} {why}")
    if name == "zeros":
        return np.zeros(shape, dtype=dtype)
    scale = {
        "he": lambda: math.sqrt(2.0 / fan_in),
        "xavier": lambda: math.sqrt(1.0 / fan_in),
        "glorot": lambda: math.sqrt(2.0 / (fan_in + fan_out)),
        "small": lambda: 0.01,
    }[name]()
    return (rng.standard_normal(shape) * scale).astype(dtype)
