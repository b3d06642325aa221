"""Activations g(z) over the last axis, their backward passes, and the bias folded in.

`forward(name, z, b, out)` gives a = g(z + b) and `backward(name, da, a, out, db)` gives
dz = da g'(z) from a alone (with db, the sums of dz over every axis but the last, on the
way), so a layer keeps only its output for backward. relu'(z) is 1 where z > 0, else 0,
as in the course. The elementwise passes run in `dlcli.kernels.activations`.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..kernels import activations as k

CODES = {"linear": k.LINEAR, "relu": k.RELU, "leaky_relu": k.LEAKY_RELU,
         "sigmoid": k.SIGMOID, "tanh": k.TANH}
ACTIVATIONS = tuple(CODES) + ("softmax",)
PIECEWISE = ("linear", "relu", "leaky_relu")  # forward in a kernel; see kernels.activations


def slope(name: str, dtype) -> np.generic:
    """g'(z) where z <= 0 for a piecewise-linear activation (relu 0, leaky_relu its slope,
    linear 1), in `dtype`: what the kernels that fold g or its backward in take (the same
    value as kernels/activations.py's `_slope`)."""
    return np.dtype(dtype).type({"relu": 0.0, "leaky_relu": k.LEAKY_SLOPE, "linear": 1.0}[name])


def check(name) -> str:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {', '.join(ACTIVATIONS)}")
    return name


def sigmoid(z, out=None):
    """1 / (1 + e^-z): exp overflows to inf for z < -709 (-88 in float32) and 1/inf is the
    right 0, so the one formula is exact in both tails; only the warning is silenced."""
    with np.errstate(over="ignore"):
        out = np.negative(z, out=out)
        np.exp(out, out=out)
        out += 1
        return np.reciprocal(out, out=out)


def softmax(z, out=None):
    out = np.subtract(z, z.max(axis=-1, keepdims=True), out=out)
    np.exp(out, out=out)
    out /= out.sum(axis=-1, keepdims=True)
    return out


_NUMPY_FORWARD = {"sigmoid": sigmoid, "tanh": np.tanh, "softmax": softmax}


@lru_cache(maxsize=None)
def _no_bias(n: int, dtype) -> np.ndarray:
    return np.zeros(n, dtype=dtype)


def _rows(a: np.ndarray) -> np.ndarray:
    return a.reshape(-1, a.shape[-1])


# A bias gradient over many narrow rows (the U-Net's 16 -> 10 head: 98304 rows of 10) folds
# FOLD rows into one before numpy's column sums: numpy adds a C-contiguous array over axis 0
# a row at a time, and rows of 10 values cost it as much as rows of 320. (98304, 10) float32,
# one thread, median of 31 (Dec 3 2026, load 2.3): 1.50 ms as it is, 0.19 folded (einsum
# 0.32, a GEMV by ones 0.30). Folding changes only the order of the additions.
FOLD = 32
FOLD_BELOW = 64  # row widths folded
FOLD_FROM = 1024  # rows from which folding pays


def _column_sums(x2: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out = x2's sums over its rows (axis 0)."""
    n, width = x2.shape
    head = n - n % FOLD
    if width >= FOLD_BELOW or n < FOLD_FROM or not x2.flags.c_contiguous:
        return x2.sum(axis=0, out=out)
    x2[:head].reshape(head // FOLD, FOLD * width).sum(axis=0).reshape(FOLD, width).sum(axis=0, out=out)
    if head < n:
        out += x2[head:].sum(axis=0)
    return out


def forward(name: str, z: np.ndarray, b: np.ndarray | None = None,
            out: np.ndarray | None = None) -> np.ndarray:
    """a = g(z + b), b (any shape holding z.shape[-1] values) added along the last axis.
    `out` (C-contiguous, z's shape) may be z itself; without it a new array is returned."""
    z = np.ascontiguousarray(z)
    if out is None:
        out = np.empty(z.shape, dtype=z.dtype)
    n = z.shape[-1]
    if name == "linear" and b is None:  # nothing to compute (conv before batch norm, say)
        if out is not z:
            np.copyto(out, z)
        return out
    if name in PIECEWISE:
        bias = _no_bias(n, z.dtype) if b is None else b.reshape(n)
        kernel = k.bias_activation_parallel if z.size >= k.PARALLEL_MIN else k.bias_activation
        kernel(_rows(z), bias, CODES[name], _rows(out))
        return out
    if b is None:
        np.copyto(out, z)
    else:
        np.add(z, b.reshape(n), out=out)
    return _NUMPY_FORWARD[name](out, out=out)


def backward(name: str, da: np.ndarray, a: np.ndarray, out: np.ndarray | None = None,
             db: np.ndarray | None = None) -> np.ndarray:
    """dz = da g'(z) from a = g(z), in `out` (linear: da itself); `db` (C-contiguous, holding
    a.shape[-1] values), when given, is overwritten with the sums of dz over every axis but
    the last."""
    da = np.ascontiguousarray(da, dtype=a.dtype)
    n = a.shape[-1]
    if name == "linear":  # dz is da itself: no pass beyond db's sums
        if db is not None:
            _column_sums(_rows(da), db.reshape(n))
        return da
    if out is None:
        out = np.empty(a.shape, dtype=a.dtype)
    if name == "softmax":
        # the Jacobian diag(a) - a a^T, applied per row without forming it
        np.multiply(da, a, out=out)
        out -= a * out.sum(axis=-1, keepdims=True)
        if db is not None:
            _column_sums(_rows(out), db.reshape(n))
        return out
    sums = np.empty(n, dtype=a.dtype) if db is None else db.reshape(n)
    kernel = k.activation_backward_parallel if a.size >= k.PARALLEL_MIN else k.activation_backward
    kernel(_rows(da), _rows(a), CODES[name], _rows(out), sums)
    return out
