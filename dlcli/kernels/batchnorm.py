"""Batch-norm training passes over rows (rows, C): statistics per column (a feature, or an
image channel after folding batch, height and width into rows).

Why: numpy needs about seven passes each way over the activation, with temporaries; these
make two each way. Rows are split into BLOCKS, each summing into its own partials (no
shared cell), combined per column afterwards. Sums accumulate in float64 whatever the
data's dtype, and the variance comes from sums shifted by the first row, so a mean far
from zero cancels nothing.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

BLOCKS = 16


@njit(parallel=True, cache=True)
def batchnorm_forward(x2, gamma, beta, epsilon, z_norm, out, mean, var, inv_std):
    """z_norm = (x2 - mean) inv_std and out = gamma z_norm + beta, with the batch mean and the
    biased batch variance, which land in `mean`, `var` and inv_std = 1 / sqrt(var + epsilon)."""
    rows, C = x2.shape
    step = -(-rows // BLOCKS)
    s1 = np.zeros((BLOCKS, C))
    s2 = np.zeros((BLOCKS, C))
    for p in prange(BLOCKS):
        for r in range(p * step, min(rows, (p + 1) * step)):
            for c in range(C):
                d = np.float64(x2[r, c]) - x2[0, c]
                s1[p, c] += d
                s2[p, c] += d * d
    for c in range(C):
        shifted_mean = s1[:, c].sum() / rows
        mean[c] = x2[0, c] + shifted_mean
        var[c] = max(s2[:, c].sum() / rows - shifted_mean * shifted_mean, 0.0)
        inv_std[c] = 1 / math.sqrt(var[c] + epsilon)
    for p in prange(BLOCKS):
        for r in range(p * step, min(rows, (p + 1) * step)):
            for c in range(C):
                zn = (x2[r, c] - mean[c]) * inv_std[c]
                z_norm[r, c] = zn
                out[r, c] = gamma[c] * zn + beta[c]


@njit(parallel=True, cache=True)
def batchnorm_backward(dy2, z_norm, gamma, inv_std, dx, dgamma, dbeta):
    """dbeta = sum dy, dgamma = sum dy z_norm, and through the batch statistics
    dx = gamma inv_std / N (N dy - dbeta - z_norm dgamma), N = rows."""
    rows, C = dy2.shape
    step = -(-rows // BLOCKS)
    s_dy = np.zeros((BLOCKS, C))
    s_dyz = np.zeros((BLOCKS, C))
    for p in prange(BLOCKS):
        for r in range(p * step, min(rows, (p + 1) * step)):
            for c in range(C):
                s_dy[p, c] += dy2[r, c]
                s_dyz[p, c] += np.float64(dy2[r, c]) * z_norm[r, c]
    coef = np.empty(C)
    for c in range(C):
        dbeta[c] = s_dy[:, c].sum()
        dgamma[c] = s_dyz[:, c].sum()
        coef[c] = gamma[c] * inv_std[c] / rows
    for p in prange(BLOCKS):
        for r in range(p * step, min(rows, (p + 1) * step)):
            for c in range(C):
                dx[r, c] = coef[c] * (rows * dy2[r, c] - dbeta[c] - z_norm[r, c] * dgamma[c])
