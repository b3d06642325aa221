"""Checks that turn a source's raw arrays into examples dlcli can train on.

x comes out (m, n) for features or (m, n_H, n_W, n_C) for images; y comes out as integer
class labels (m,), multi-label targets (m, k) of 0/1/-1 ("not labelled"), or, for
`targets="real"`, the numbers as given. Problems are BadInput at the source's key path.
"""

from __future__ import annotations

import numpy as np

from ..errors import BadInput

NUMERIC = "biuf"  # bool, signed, unsigned, float


def check_examples(x, y, key: str, origin: str, targets: str = "auto"):
    """(x, y) checked and shaped; `origin` names the data (a file) in messages."""
    x, y = np.asarray(x), np.asarray(y)
    if x.dtype.kind not in NUMERIC or x.ndim == 0 or x.ndim > 4:
        raise BadInput(f"{origin}: x must be numbers of shape (m, n), (m, n_H, n_W) or "
                       f"(m, n_H, n_W, n_C), got {x.dtype} {x.shape}", key=f"{key}.x")
    if y.ndim == 0:
        raise BadInput(f"{origin}: y must hold one label per example, got a scalar", key=f"{key}.y")
    if len(x) == 0:
        raise BadInput(f"{origin} holds no examples", key=key)
    if len(x) != len(y):
        raise BadInput(f"{origin}: x has {len(x)} examples but y has {len(y)}", key=key)
    _check_finite(x, f"{origin}: x", f"{key}.x")
    if x.ndim in (1, 3):
        x = x[..., None]  # one feature per example, or greyscale images: n_C = 1
    return x, labels(y, f"{key}.y", origin, targets)


def labels(y, key: str, origin: str, targets: str = "auto"):
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.dtype.kind not in NUMERIC or y.ndim > 2:
        raise BadInput(f"{origin}: y must be numbers of shape (m,) or (m, k), got {y.dtype} "
                       f"{y.shape}", key=key)
    _check_finite(y, f"{origin}: y", key)
    if targets == "real":
        return y
    fractional = y != np.round(y)
    if fractional.any():
        raise BadInput(f"{origin}: labels must be integers, got {_first(y, fractional)}", key=key)
    y = y.astype(np.int64)
    if y.ndim == 1 and y.min() < 0:
        raise BadInput(f"{origin}: class labels must be 0, 1, 2, ..., got {_first(y, y < 0)}",
                       key=key)
    if y.ndim == 2 and targets == "sequence":  # labels 0..C-1 per step, -1 a padded step
        bad = y < -1
        if bad.any():
            raise BadInput(f"{origin}: sequence labels (m, T) must hold 0, 1, ... or -1 (a "
                           f"padded step), got {_first(y, bad)}", key=key)
    elif y.ndim == 2:
        bad = (y != 0) & (y != 1) & (y != -1)
        if bad.any():
            raise BadInput(f"{origin}: multi-label y must hold 0, 1 or -1 (not labelled), got "
                           f"{_first(y, bad)}", key=key)
    return y


def _check_finite(a, what: str, key: str) -> None:
    if a.dtype.kind == "f":
        bad = ~np.isfinite(a)
        if bad.any():
            raise BadInput(f"{what} holds NaN or infinite values ({_first(a, bad)})", key=key)


def _first(a, bad) -> str:
    """The first offending value and its example, for the message."""
    row = int(np.flatnonzero(bad.reshape(len(bad), -1).any(axis=1))[0])
    value = a[row][bad[row]].flat[0] if a.ndim > 1 else a[row]
    return f"{value.item()} at example {row}"
