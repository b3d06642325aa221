"""The segmentation loss: softmax cross-entropy over many rows of few classes (every pixel of
a mask a row, nn/losses.py), LANES rows at a time, across the rows.

Why: kernels/losses.py's softmax_crossentropy runs a row at a time, its loops over the C
classes: at C = 10 they do not vectorize, and each row calls libm's exp C times and log once.
The U-Net's loss (8 x 96 x 128 pixels, 10 classes, float32) took 7.6 ms of a step that way.
Here a block of LANES rows is turned to (C, LANES) in a small array, so that each step (the
rows' maxima, exponentials, sums) is a loop over LANES rows, branch-free and vectorized, the
exponential kernels/gates.py's in the logits' precision (`_exp_parts`, 1-3 ulp of float64,
so float64 runs equal PyTorch to 1e-9; `_exp_parts_32` for float32, as the old kernel's
float32 exp), one log for the block's product of sums (float64, as the cost), and the
gradient written back row by row.
Measured (Dec 3 2026, one thread, (98304, 10) float32, median of 15): see `LANES`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from .gates import _exp_parts, _exp_parts_32

F32 = np.float32

# Rows a block. (98304, 10), CPU time, one thread, median of 15 (Dec 3 2026, 17:30-17:45
# UTC, load ~5): float32 7.4-8.5 ms a row at a time (kernels/losses.py), here 4.4-4.8 with
# float64 exponentials at 16 rows, 3.1-3.4 with float32 ones, 2.9-3.0 at 32 rows; float64
# 8.0-8.4 against 4.4-4.5 (4.8 with a log a row instead of a block's).
LANES = 32

# From this many logits the loss runs on every Numba thread, a run of blocks each. The U-Net's
# (98304, 10) float32 at batch 8 (2-core Intel guest, Dec 4 2026, `cnn.py --profile`, median
# of 20 steps): 3.07-3.10 ms of its step on one thread, 2.25 on two. Alone, back to back, 2.25
# against 1.53 ms; with 2 ms of sleep between calls, waking the other thread, alike (2.4-2.5
# against 2.3-2.9): in the step the other core has just run the 1x1 head's GEMM.
PARALLEL_MIN = 1 << 17


def _exp_nonpositive(v):
    """exp(v) for v <= 0 in v's own precision, branch-free; 0 below the range, as libm's."""
    return math.exp(v)


@overload(_exp_nonpositive, inline="always")
def _exp_nonpositive_typed(v):
    if v == types.float32:  # float32 logits: 8 more lanes a vector and a shorter polynomial
        def exp_32(v):
            s, q = _exp_parts_32(max(v, F32(-87.0)))
            return (s * q + s) * F32(v > F32(-87.0))
        return exp_32

    def exp_64(v):
        s, q = _exp_parts(max(v, -708.0))
        return (s * q + s) * (v > -708.0)
    return exp_64


@njit(inline="always", error_model="numpy")
def _block_exp(t, zmax, s, C):
    """t (C LANES, class-major) = exp(t - the rows' maxima), zmax and s the rows' maxima and
    sums: loops over the LANES rows with unsigned indices, which vectorize."""
    L = np.uint64(LANES)
    for j in range(L):
        zmax[j] = t[j]
        s[j] = 0.0
    for c in range(np.uint64(1), np.uint64(C)):
        for j in range(L):
            zmax[j] = max(zmax[j], t[c * L + j])
    for c in range(np.uint64(C)):
        for j in range(L):
            e = _exp_nonpositive(t[c * L + j] - zmax[j])
            t[c * L + j] = e
            s[j] += e


@njit(inline="always")
def _check_labels(y, C):
    for r in range(y.shape[0]):
        if y[r] < 0 or y[r] >= C:
            raise ValueError("a label is outside 0..C-1 for C output units")


@njit(inline="always", error_model="numpy")
def _rows(z, y, dz, r_start, r_end, inv_m):
    """Rows r_start:r_end (r_start a multiple of LANES) in blocks of LANES: their dz and the
    sum of their -log softmax(z)[y] (float64)."""
    C = z.shape[1]
    L = np.uint64(LANES)
    # a block's logits, class-major, then exponentials, in z's precision
    t = np.zeros(C * LANES, dtype=z.dtype)
    zmax = np.empty(LANES, dtype=z.dtype)
    s = np.empty(LANES, dtype=z.dtype)
    zf, dzf = z.reshape(-1), dz.reshape(-1)
    total = 0.0
    for r0 in range(r_start, r_end, LANES):
        n = np.uint64(min(LANES, r_end - r0))
        base = np.uint64(r0 * C)
        for j in range(n):  # a short last block keeps the rows of the one before: not read
            for c in range(np.uint64(C)):
                t[c * L + j] = zf[base + j * np.uint64(C) + c]
        _block_exp(t, zmax, s, C)
        # one log a block: each sum is in [1, C], their product at most C^32 (finite below
        # 10^9 classes)
        prod = 1.0
        for j in range(n):
            prod *= np.float64(s[j])
        total += math.log(prod)
        for j in range(n):
            label = np.uint64(y[r0 + j])
            row = base + j * np.uint64(C)
            total += np.float64(zmax[j]) - np.float64(zf[row + label])
            share = inv_m / np.float64(s[j])
            for c in range(np.uint64(C)):
                dzf[row + c] = t[c * L + j] * share
            dzf[row + label] -= inv_m
    return total


@njit(cache=True, error_model="numpy")
def pixel_softmax_crossentropy(z, y, dz):
    """Mean over rows of -log softmax(z)[y] (float64); dz = (softmax(z) - onehot(y)) / m.
    z, dz (m, C), y (m,) in 0..C-1: kernels/losses.py's softmax_crossentropy, LANES rows a
    block."""
    m, C = z.shape
    _check_labels(y, C)
    return _rows(z, y, dz, 0, m, 1.0 / m) / m


@njit(cache=True, error_model="numpy", parallel=True)
def pixel_softmax_crossentropy_parallel(z, y, dz, parts):
    """`pixel_softmax_crossentropy` in `parts` runs of whole blocks, a Numba thread each: dz
    the same, the cost the sum of the runs' sums (float64, to rounding the same)."""
    m, C = z.shape
    _check_labels(y, C)
    run = -(-(-(-m // LANES)) // parts) * LANES
    sums = np.zeros(parts)
    for p in prange(parts):
        r0 = p * run
        r1 = min(m, r0 + run)
        if r0 < r1:
            sums[p] = _rows(z, y, dz, r0, r1, 1.0 / m)
    return sums.sum() / m


def pixel_crossentropy(z, y, dz):
    """The segmentation loss on every Numba thread where there are enough rows
    (`PARALLEL_MIN` values), else on one."""
    from numba import get_num_threads
    threads = get_num_threads()
    if z.size < PARALLEL_MIN or threads < 2:
        return pixel_softmax_crossentropy(z, y, dz)
    return pixel_softmax_crossentropy_parallel(z, y, dz, threads)
