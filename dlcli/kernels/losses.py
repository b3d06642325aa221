"""Cross-entropies from the logits: the cost and d cost / d z in one pass over z (m, C).

Why: numpy spends a call (2-5 us each) per reduction or fancy index, about 18 us on a
64 x 10 batch, where one pass takes about 1 us; a training step pays it every time.
Both stay finite at any z: log-sum-exp after the row maximum, softplus through log1p of
exp(-|z|). Costs accumulate in float64.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .gates import _exp_parts


@njit(inline="always")
def _softplus(v):
    """log(1 + e^v) without overflow."""
    return max(v, 0.0) + math.log1p(math.exp(-abs(v)))


@njit(inline="always")
def _exp_row(z, dz, r):
    """dz[r] = exp(z[r] - max z[r]); returns (their sum, the max): the shared start of both
    softmax cross-entropies, before each scales its gradient."""
    C = z.shape[1]
    zmax = z[r, 0]
    for c in range(1, C):
        zmax = max(zmax, z[r, c])
    s = 0.0
    for c in range(C):
        e = math.exp(z[r, c] - zmax)
        dz[r, c] = e
        s += e
    return s, zmax


@njit(cache=True)
def softmax_crossentropy(z, y, dz):
    """Mean over rows of -log softmax(z)[y]; dz = (softmax(z) - onehot(y)) / m."""
    m, C = z.shape
    total = 0.0
    for r in range(m):
        label = y[r]
        if label < 0 or label >= C:
            raise ValueError("a label is outside 0..C-1 for C output units")
        s, zmax = _exp_row(z, dz, r)
        total += math.log(s) + zmax - z[r, label]
        for c in range(C):
            dz[r, c] = dz[r, c] / s / m
        dz[r, label] -= 1 / m
    return total / m


@njit(inline="always")
def _exp_nonpositive(v):
    """exp(v) for v <= 0 (a logit minus its row's maximum), branch-free so that the row's loop
    vectorizes (kernels/gates.py's exp, 1-3 ulp of float64); below -708 it is 0, as libm's."""
    s, q = _exp_parts(max(v, -708.0))
    return (s * q + s) * (v > -708.0)


@njit(cache=True, error_model="numpy", fastmath={"reassoc", "nsz", "contract"})
def masked_softmax_crossentropy(z, y, scale, dz):
    """The sequence loss (nn/sequence.py): the sum over rows with y >= 0 of
    -log softmax(z)[y] (float64); dz = (softmax - onehot) * scale on those rows, 0 on rows with
    y < 0 (padded steps). z (N, C), y (N,).
    The exponentials are one branch-free loop a row and the row's sums may be reassociated
    (fastmath reassoc: the order of 27 float64 additions, not NaN or infinity handling, so a
    NaN logit still gives a NaN cost): the char-LM's (1280, 27) float32 loss at batch 32 took
    145 us with libm's exp, 145 us with this exp alone, 104 us with both (Dec 3 2026, load ~2);
    (5120, 27) 590 -> 450-510 us."""
    N, C = z.shape
    n = np.uint64(C)
    total = 0.0
    for r in range(N):
        label = y[r]
        zr, dr = z[r], dz[r]
        if label < 0:
            for c in range(n):
                dr[c] = 0.0
            continue
        if label >= C:
            raise ValueError("a label is outside 0..C-1 for C output units")
        zmax = np.float64(zr[0])
        for c in range(n):
            zmax = max(zmax, np.float64(zr[c]))
        for c in range(n):
            dr[c] = _exp_nonpositive(np.float64(zr[c]) - zmax)
        s = 0.0
        for c in range(n):
            s += dr[c]
        total += math.log(s) + zmax - zr[label]
        share = scale / s
        for c in range(n):
            dr[c] = dr[c] * share
        dr[label] -= scale
    return total


@njit(cache=True)
def sigmoid_crossentropy(z, y, dz):
    """The sum over cells with y >= 0 of y softplus(-z) + (1 - y) softplus(z) (that is,
    -y log a - (1 - y) log(1 - a) with a = sigmoid(z)), divided by the m rows;
    dz = (a - y) / m there and 0 where y < 0 (not labelled)."""
    m, k = z.shape
    total = 0.0
    for r in range(m):
        for c in range(k):
            v, t = np.float64(z[r, c]), y[r, c]
            if t < 0:
                dz[r, c] = 0
                continue
            total += t * _softplus(-v) + (1 - t) * _softplus(v)
            a = 1 / (1 + math.exp(-v)) if v >= 0 else math.exp(v) / (1 + math.exp(v))
            dz[r, c] = (a - t) / m
    return total / m
