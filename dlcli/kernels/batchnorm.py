"""Batch-norm training passes over rows (rows, C): statistics per column (a feature, or an
image channel after folding batch, height and width into rows).

Why: numpy needs about seven passes each way over the activation, with temporaries; these
make two each way. Sums accumulate in float64 whatever the data's dtype, and the variance
comes from sums shifted by the first row, so a mean far from zero cancels nothing.

How: as in kernels/activations.py, a block of whole rows (at least BLOCK_ELEMENTS values) is
one flat inner loop, each element of a block summing into its own accumulator and the
per-column constants tiled over the block, so every pass vectorizes whatever the channel
count; the accumulators fold into columns once at the end. The first version looped over
columns inside rows into (BLOCKS, C) partials in a prange: it ran scalar, 3.5-12 ns an
element (64x32x32x32 images, resnet_small: 7.5 ms forward, 7.2 ms backward; 64x16x16x64:
12.4 / 12.7 ms). The flat serial passes measure 1.0 / 1.1 ms and 0.4 / 0.4 ms there
(load 2-3, 2 threads): memory-bound, so a parallel driver would win little and would pay
the thread wake-up on a shared machine (kernels/conv.py); there is none.

A relu `activation` layer right after a batch norm runs in the batch norm's passes
(BatchNorm.fuse_next in nn/layers.py): forward one select more in the normalising loop,
backward dy masked where the output is 0 as both sums and dx read it. The relu layer's own
passes (0.7 ms forward, 1.3 backward on resnet_small's 64x32x32x32, its three such pairs)
are gone: resnet_small's step 170.8 -> 143.0 ms with kernels/residual.py's pass (profile,
Dec 3 2026, load 2.3-4), the batch norms themselves 3.4-4.2 -> 3.1-4.0 ms a layer.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

BLOCK_ELEMENTS = 64  # a pass's inner loop runs over at least this many elements


@njit(inline="always")
def _tile(v, L, dtype):
    """v (C values) repeated along L = k C elements."""
    C = v.shape[0]
    t = np.empty(L, dtype=dtype)
    for j in range(L):
        t[j] = v[j % C]
    return t


@njit(inline="always")
def _fold(acc, C):
    """Column sums of a block accumulator: out[c] = sum of acc[j] over j = c (mod C)."""
    out = np.zeros(C)
    for j in range(acc.shape[0]):
        out[j % C] += acc[j]
    return out


@njit(cache=True, error_model="numpy")
def batchnorm_forward(x2, gamma, beta, epsilon, z_norm, out, mean, var, inv_std, relu=False):
    """z_norm = (x2 - mean) inv_std and out = gamma z_norm + beta, with the batch mean and the
    biased batch variance, which land in `mean`, `var` and inv_std = 1 / sqrt(var + epsilon);
    relu: out = relu(gamma z_norm + beta), the activation after the batch norm in the same
    pass (one select: the floor is 0, or -inf without relu, NaN passing either way)."""
    rows, C = x2.shape
    L = max(1, BLOCK_ELEMENTS // C) * C  # a variable: range(k * C) in the loop ran 20x slower
    x = x2.reshape(-1)
    shift = _tile(x2[0], L, np.float64)
    s1, s2 = np.zeros(L), np.zeros(L)
    blocks = x.size // L
    for blk in range(blocks):
        base = blk * L
        for j in range(L):
            d = np.float64(x[base + j]) - shift[j]
            s1[j] += d
            s2[j] += d * d
    base = blocks * L
    for j in range(x.size - base):  # the last rows, fewer than a block
        d = np.float64(x[base + j]) - shift[j]
        s1[j] += d
        s2[j] += d * d
    t1, t2 = _fold(s1, C), _fold(s2, C)
    for c in range(C):
        shifted_mean = t1[c] / rows
        mean[c] = x2[0, c] + shifted_mean
        var[c] = max(t2[c] / rows - shifted_mean * shifted_mean, 0.0)
        inv_std[c] = 1 / math.sqrt(var[c] + epsilon)
    m, s, g, b = (_tile(mean, L, x2.dtype), _tile(inv_std, L, x2.dtype),
                  _tile(gamma, L, x2.dtype), _tile(beta, L, x2.dtype))
    zn, y = z_norm.reshape(-1), out.reshape(-1)
    lo = x2.dtype.type(0.0 if relu else -np.inf)
    for blk in range(blocks):
        base = blk * L
        for j in range(L):
            v = (x[base + j] - m[j]) * s[j]
            zn[base + j] = v
            t = g[j] * v + b[j]
            y[base + j] = lo if t < lo else t
    base = blocks * L
    for j in range(x.size - base):
        v = (x[base + j] - m[j]) * s[j]
        zn[base + j] = v
        t = g[j] * v + b[j]
        y[base + j] = lo if t < lo else t


@njit(inline="always")
def _through_relu(dy, a, masked, j):
    """dy[j] through the fused relu whose output is a, if masked (relu'(z) = 1 where a > 0,
    as kernels/activations.py has it)."""
    if not masked:
        return dy[j]
    return dy[j] if a[j] > 0 else dy[j] * 0


@njit(cache=True, error_model="numpy")
def batchnorm_backward(dy2, z_norm, gamma, inv_std, dx, dgamma, dbeta, a2=None):
    """dbeta = sum dy, dgamma = sum dy z_norm, and through the batch statistics
    dx = gamma inv_std / N (N dy - dbeta - z_norm dgamma), N = rows. With a2, the forward's
    output through a fused relu (batchnorm_forward's relu), dy is first masked where a2 is 0:
    the activation's backward in the same passes."""
    rows, C = dy2.shape
    L = max(1, BLOCK_ELEMENTS // C) * C
    dy, zn, out = dy2.reshape(-1), z_norm.reshape(-1), dx.reshape(-1)
    masked = a2 is not None
    a = np.zeros(1, dtype=dy2.dtype) if a2 is None else a2.reshape(-1)
    s_dy, s_dyz = np.zeros(L), np.zeros(L)
    blocks = dy.size // L
    for blk in range(blocks):
        base = blk * L
        for j in range(L):
            g = np.float64(_through_relu(dy, a, masked, base + j))
            s_dy[j] += g
            s_dyz[j] += g * zn[base + j]
    base = blocks * L
    for j in range(dy.size - base):
        g = np.float64(_through_relu(dy, a, masked, base + j))
        s_dy[j] += g
        s_dyz[j] += g * zn[base + j]
    t_dy, t_dyz = _fold(s_dy, C), _fold(s_dyz, C)
    coef = np.empty(C)
    for c in range(C):
        dbeta[c] = t_dy[c]
        dgamma[c] = t_dyz[c]
        coef[c] = gamma[c] * inv_std[c] / rows
    # dx = k1 dy - k0 - k2 z_norm per column, the constants folded once: k1 = coef N,
    # k0 = coef dbeta, k2 = coef dgamma
    k1 = _tile(coef * rows, L, dx.dtype)
    k0 = _tile(coef * dbeta, L, dx.dtype)
    k2 = _tile(coef * dgamma, L, dx.dtype)
    for blk in range(blocks):
        base = blk * L
        for j in range(L):
            g = _through_relu(dy, a, masked, base + j)
            out[base + j] = k1[j] * g - k0[j] - k2[j] * zn[base + j]
    base = blocks * L
    for j in range(dy.size - base):
        g = _through_relu(dy, a, masked, base + j)
        out[base + j] = k1[j] * g - k0[j] - k2[j] * zn[base + j]
