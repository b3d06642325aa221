"""Bias and activation fused into single passes over a layer's output rows (rows, n).

Why: after the GEMM, numpy streams the activation through memory once for `Z += b`, once
for g(Z), and in backward once each for g'(Z), `dA * g'` and the column sums of db, with a
temporary per step. One pass does each direction instead. Every activation here has a
derivative its output alone gives (relu, leaky_relu: A > 0 exactly where Z > 0; sigmoid
A (1 - A); tanh 1 - A^2), so forward may overwrite Z with A and backward needs only A.

Forward runs only the piecewise-linear activations: Numba's scalar exp and tanh measured
3-25x slower than numpy's vectorised ones, so sigmoid and tanh go forward through numpy.

Both passes run a block of whole rows (at least BLOCK_ELEMENTS values) as one flat inner
loop, the bias tiled and db summed into one accumulator per block element, so they
vectorize whatever the channel count: looping over columns inside rows ran scalar (relu
backward with 6 channels, 64 x 28 x 28 rows: 1.7 ms against 0.09 ms now).

No branch on the activation code runs inside a loop: forward is one select with the code's
slope where z <= 0 (relu 0, leaky 0.01, linear 1), backward one select loop or one
p + a (q - a) loop for sigmoid and tanh. Switching per element measured 2x slower backward
(64 x 512: relu 11.2 -> 5.2 us, sigmoid 12.4 -> 5.1; 64 x 28 x 28 x 6 relu 84 -> 52 us) and
compiled in 0.9-1.1 s per pass instead of 0.7-0.8 (fresh cache, 2026-12-03, load ~1.6).
Callers keep the output apart from the input: in place (A2 is Z2), LLVM's runtime alias
check sends the loop to its scalar version (64 x 512 relu forward 11.8 against 3.9 us).

The row passes are inlined into their drivers: only the driver a layer calls compiles, and
no separate function for the body (fresh cache, load ~2: forward 0.79-1.01 -> 0.54-0.58 s,
backward 0.75-0.87 -> 0.68-0.89 s, the same within the noise).

Each pass comes serial and parallel, but the parallel drivers measured slower than the
serial passes at every size the models here reach, even on one thread (relu backward on
64 x 28 x 28 x 6: 0.6 ms against 0.09 ms; on 64 x 32 x 32 x 32: 2.4 ms against 0.65 ms),
so callers take them only from PARALLEL_MIN elements, far above those sizes.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

LINEAR, RELU, LEAKY_RELU, SIGMOID, TANH = 0, 1, 2, 3, 4
LEAKY_SLOPE = 0.01
BLOCKS = 16  # row blocks of a parallel pass; db gets one partial sum per block, no shared cell
PARALLEL_MIN = 1 << 26
BLOCK_ELEMENTS = 64  # a serial pass's inner loop runs over at least this many elements


@njit(inline="always")
def _g(z, code):
    """relu, leaky_relu or linear (the codes forward takes); kernels/conv.py fuses it in."""
    if code == RELU:
        return z if z > 0 else z * 0
    if code == LEAKY_RELU:
        return z if z > 0 else z * LEAKY_SLOPE
    return z


@njit(inline="always")
def _block_rows(n):
    """Rows per block: a block of k rows is one contiguous run of k n >= ~64 elements, long
    enough for the inner loop to vectorize whatever the channel count n."""
    return max(1, BLOCK_ELEMENTS // n)


@njit(inline="always")
def _typed(x, like):
    """x in the dtype of the array `like`: a float literal in a loop would promote float32
    to float64 and stop it vectorizing."""
    t = np.empty(1, dtype=like.dtype)
    t[0] = x
    return t[0]


@njit(inline="always")
def _slope(code, like):
    """g'(z) where z <= 0 for the piecewise-linear codes: relu 0, leaky_relu its slope, linear 1."""
    return _typed(0.0 if code == RELU else LEAKY_SLOPE if code == LEAKY_RELU else 1.0, like)


@njit(inline="always", error_model="numpy")
def _forward_rows(Z2, b, code, A2, r0, r1):
    n = Z2.shape[1]
    L = _block_rows(n) * n  # a variable: range(k * n) in the loop ran 20x slower
    bias = np.empty(L, dtype=b.dtype)  # b tiled over a block's rows
    for j in range(L):
        bias[j] = b[j % n]
    # one select for all three codes, no branch on the code in the loop
    slope = _slope(code, A2)
    z, a = Z2[r0:r1].reshape(-1), A2[r0:r1].reshape(-1)
    blocks = z.size // L
    for blk in range(blocks):
        base = blk * L
        for j in range(L):
            v = z[base + j] + bias[j]
            a[base + j] = v if v > 0 else v * slope
    base = blocks * L
    for j in range(z.size - base):
        v = z[base + j] + bias[j]
        a[base + j] = v if v > 0 else v * slope


@njit(inline="always", error_model="numpy")
def _backward_rows(dA2, A2, code, dZ2, db, r0, r1):
    """dZ2 rows r0:r1, their column sums added to db. The sums go into one accumulator per
    element of a block (no loop-carried sum), so the loop vectorizes: with the sum per
    column inside the row loop it ran scalar, 20x slower at 6 channels.

    Two loops, no branch on the code inside either: a select with the code's slope for the
    piecewise-linear codes, p + a (q - a) for the smooth ones (sigmoid a (1 - a): p, q = 0, 1;
    tanh 1 - a^2: p, q = 1, 0; the same roundings as those formulas). With the code switched
    per element the loops ran 2x slower (64 x 512 relu: 11.2 -> 5.2 us; sigmoid 12.4 -> 5.1)
    and took 1.1 s to compile instead of 0.8."""
    n = dA2.shape[1]
    L = _block_rows(n) * n  # a variable: range(k * n) in the loop ran 20x slower
    acc = np.zeros(L, dtype=db.dtype)
    da, a, dz = dA2[r0:r1].reshape(-1), A2[r0:r1].reshape(-1), dZ2[r0:r1].reshape(-1)
    smooth = code == SIGMOID or code == TANH
    p, q = _typed(1.0 if code == TANH else 0.0, dZ2), _typed(0.0 if code == TANH else 1.0, dZ2)
    slope = _slope(code, dZ2)
    blocks = da.size // L
    for blk in range(blocks + 1):  # the last block holds the rows left over, maybe none
        base = blk * L
        k = L if blk < blocks else da.size - base
        if smooth:
            for j in range(k):
                g = da[base + j] * (p + a[base + j] * (q - a[base + j]))
                dz[base + j] = g
                acc[j] += g
        else:
            for j in range(k):
                g = da[base + j] if a[base + j] > 0 else da[base + j] * slope
                dz[base + j] = g
                acc[j] += g
    for j in range(L):
        db[j % n] += acc[j]


@njit(cache=True, error_model="numpy")
def bias_activation(Z2, b, code, A2):
    """A2 = g(Z2 + b) for relu, leaky_relu, linear; A2 may be Z2 itself."""
    _forward_rows(Z2, b, code, A2, 0, Z2.shape[0])


@njit(parallel=True, cache=True, error_model="numpy")
def bias_activation_parallel(Z2, b, code, A2):
    """bias_activation with row blocks across threads."""
    rows = Z2.shape[0]
    step = -(-rows // BLOCKS)
    for p in prange(BLOCKS):
        _forward_rows(Z2, b, code, A2, p * step, min(rows, (p + 1) * step))


@njit(cache=True, error_model="numpy")
def activation_backward(dA2, A2, code, dZ2, db):
    """dZ2 = dA2 g'(Z) from A2 = g(Z), any activation code; db (overwritten) = its column sums.
    dZ2 may be dA2 itself."""
    db[:] = 0
    _backward_rows(dA2, A2, code, dZ2, db, 0, dA2.shape[0])


@njit(parallel=True, cache=True, error_model="numpy")
def activation_backward_parallel(dA2, A2, code, dZ2, db):
    """activation_backward with row blocks across threads."""
    rows = dA2.shape[0]
    step = -(-rows // BLOCKS)
    partial = np.zeros((BLOCKS, dA2.shape[1]), dtype=db.dtype)
    for p in prange(BLOCKS):
        _backward_rows(dA2, A2, code, dZ2, partial[p], p * step, min(rows, (p + 1) * step))
    for c in range(dA2.shape[1]):
        db[c] = partial[:, c].sum()
