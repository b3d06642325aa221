"""Batch-norm training passes over rows (rows, C): statistics per column (a feature, or an
image channel after folding batch, height and width into rows).

Why: numpy needs about seven passes each way over the activation, with temporaries; these
make two each way. Each accumulator sums PARTIAL blocks (8 values) in the data's dtype, then
adds them into float64 (so float32 data is summed in float32 vectors, with no conversion an
element, and still rounds like float64 over a whole batch), and the variance comes from sums
shifted by the first row, so a mean far from zero cancels nothing.

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

Fewer arrays of the activation's size a step (s7-resnet, Dec 3 2026):
- z_norm is not written: the backward computes it again from the input x2 (kept, as a conv
  keeps its A_prev) with the forward's very operations, and the fused relu's mask from it
  too, so neither z_norm nor the output is read back (`batchnorm_backward`).
- After a bias-free Winograd conv, the batch's moments come from the conv's output pass
  (`moments_add` as each output row is written, in cache, on the conv's threads; `moments`
  combines the threads' shifted sums), and the forward is the normalising pass alone.
- A residual block's last batch norm adds the shortcut and applies the block's relu in that
  same pass (`batchnorm_normalize`'s addend, nn/conv_blocks.py): the block's own sum pass
  and the batch norm's output array are gone.
resnet_small, batch 64, against main (55dc821) in one process, 14 alternations of 4 steps,
wall medians, load ~4 (18:04 UTC): the four batch norms after Winograd convs forward 3.5-3.7
-> 1.3-2.0 ms, backward 3.2-4.1 -> 3.0-4.0; the stem's (own moments) forward 3.3 -> 2.2; the
blocks forward 26 -> 22 ms each (their sum pass gone); the convs' forward +0.6-1.0 ms each
for the moments; a step 160.6 -> 148.0 ms. benchmarks/cnn.py --only resnet64 back to back:
main 501 ex/s against PyTorch's 560 / 587, 0.85x (18:11, load 3.3 -> 2.7); this 538 against
541 / 593, 0.91x (18:12, load 2.4 -> 2.1). Tried, not kept: the block's relu_backward folded
into this backward's first pass, dZ written as it sums (5.5-7.2 ms against 4.1-4.4 apart: its
loop stayed scalar behind the alias checks of one more store stream).

The data's dtype throughout (s10-bn, Dec 4 2026): the fused relu's `dy * 0` (an int literal
times a float32) is a float64 in Numba, so the select made the whole backward float64 (ymm
vcvtps2pd / vmulpd in its loops) and the relu backward cost 1.2x the plain one; now
`dy * dy.dtype.type(0)`, and the sums partial in float32 as above. Alone (float32, out of
cache, medians of 21 interleaved with main, load 2.1-2.7): relu backward 16384x64 0.93 ->
0.77 ms, 65536x32 1.85-2.00 -> 1.56-1.61; plain backward 1.02-1.09x; stats 65536x32 0.50 ->
0.43, 16384x64 0.24 -> 0.22. Whole steps in one process, nn/layers.py's kernels swapped
between main's module and this one each round (batch 64, medians of 120 / 36 steps):
mobilenet_v2_small's batch norms 9.16 -> 7.54 ms a step (load 2.3-2.7), resnet_small's
23.4 -> 19.8 (step 96.4 -> 89.3 ms, load 2.5-2.7). The passes now run at about the memory's
pace alone (the backward 0.75 ms a 1M-value layer against 0.72 for two plain streaming
loops over the same bytes). Tried, not kept: blocks of 128 values or 16 partial blocks (no
change); the sums' blocks in reverse order, to start on the end the previous pass left in
cache (mobilenet's batch norms 6.1 -> 11.9 ms a step); the same typing fix in
kernels/residual.py's relu passes (no change: memory-bound either way).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, uint64

BLOCK_ELEMENTS = 64  # a pass's inner loop runs over at least this many elements
PARTIAL = 8  # blocks summed in the data's dtype before their sums go into float64


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


@njit(inline="always")
def _finish(t1, t2, first, rows, epsilon, mean, var, inv_std):
    """mean, var and inv_std per column from sums t1, t2 of x - first over `rows` rows."""
    for c in range(mean.shape[0]):
        shifted_mean = t1[c] / rows
        mean[c] = first[c] + shifted_mean
        var[c] = max(t2[c] / rows - shifted_mean * shifted_mean, 0.0)
        inv_std[c] = 1 / math.sqrt(var[c] + epsilon)


@njit(inline="always")
def _flush(p, s):
    """Partial sums p (the data's dtype) added into s (float64), p zeroed."""
    for j in range(p.shape[0]):
        s[j] += np.float64(p[j])
        p[j] = 0


@njit(inline="always")
def _shifted_sums(x, base, n, shift, p1, p2):
    """x[base:base + n] - shift into the partial sums p1, their squares into p2."""
    for j in range(n):
        d = x[base + j] - shift[j]
        p1[j] += d
        p2[j] += d * d


@njit(cache=True, error_model="numpy")
def batchnorm_stats(x2, epsilon, mean, var, inv_std):
    """The batch mean, the biased batch variance and inv_std = 1 / sqrt(var + epsilon) of each
    column of x2, from sums shifted by its first row: PARTIAL blocks summed in x2's dtype,
    then into float64."""
    rows, C = x2.shape
    L = max(1, BLOCK_ELEMENTS // C) * C  # a variable: range(k * C) in the loop ran 20x slower
    x = x2.reshape(-1)
    shift = _tile(x2[0], L, x2.dtype)
    s1, s2 = np.zeros(L), np.zeros(L)
    p1, p2 = np.zeros(L, dtype=x2.dtype), np.zeros(L, dtype=x2.dtype)
    uL, R = uint64(L), uint64(PARTIAL)
    blocks = uint64(x.size) // uL
    for top in range(blocks // R):
        for k in range(R):
            _shifted_sums(x, (top * R + k) * uL, uL, shift, p1, p2)
        _flush(p1, s1)
        _flush(p2, s2)
    for blk in range(blocks // R * R, blocks):  # the last blocks, fewer than PARTIAL
        _shifted_sums(x, blk * uL, uL, shift, p1, p2)
    base = blocks * uL
    _shifted_sums(x, base, uint64(x.size) - base, shift, p1, p2)  # the last rows
    _flush(p1, s1)
    _flush(p2, s2)
    _finish(_fold(s1, C), _fold(s2, C), x2[0], rows, epsilon, mean, var, inv_std)


@njit(inline="always")
def moments_add(z, z0, n, C, acc):
    """The run z[z0:z0 + n] (n / C whole pixels of C channels) into `acc` (3, n + 1) float64:
    acc[0, :n] the shift (the first run's first pixel, tiled), acc[1, :n] the sums of
    z - shift, acc[2, :n] their squares, acc[0, n] the runs counted. A conv writing its
    output a run at a time takes batch norm's statistics while the run is in cache
    (kernels/winograd.py). Three rows of acc, not one flat run: the flat one's loop stayed
    scalar behind its aliasing (2.9 ms against 0.6 for 2M values on one thread)."""
    shift, s1, s2 = acc[0], acc[1], acc[2]
    if shift[n] == 0:
        for j in range(n):
            shift[j] = z[z0 + uint64(j % C)]
    shift[n] += 1
    for j in range(n):
        d = np.float64(z[z0 + uint64(j)]) - shift[j]
        s1[j] += d
        s2[j] += d * d


def moments(acc, C):
    """Mean and biased variance per channel (float64) from the parts' moments `acc` (parts,
    3, n + 1), each part's sums shifted by its own first pixel: the parts combined as Chan,
    Golub and LeVeque's pairwise update (no sum of squares about zero, so a mean far from
    zero cancels nothing)."""
    n = acc.shape[2] - 1
    runs = acc[:, 0, n]
    acc = acc[runs > 0]
    count = runs[runs > 0, None] * (n // C)  # samples a channel of each part
    shift = acc[:, 0, :C]
    s1 = acc[:, 1, :n].reshape(len(acc), -1, C).sum(axis=1)
    s2 = acc[:, 2, :n].reshape(len(acc), -1, C).sum(axis=1)
    part_mean = shift + s1 / count
    m2 = s2 - s1 * s1 / count
    total = count.sum()
    mean = (count * part_mean).sum(axis=0) / total
    var = (m2 + count * (part_mean - mean) ** 2).sum(axis=0) / total
    return mean, np.maximum(var, 0.0)


@njit(cache=True, error_model="numpy")
def batchnorm_normalize(x2, gamma, beta, mean, inv_std, out, relu=False, addend=None):
    """out = gamma (x2 - mean) inv_std + beta per column; with addend (x2's shape) that plus
    addend, a residual block's shortcut summed in the same pass (nn/conv_blocks.py); relu:
    out = relu(that), the activation after it in the same pass (one select: the floor is 0,
    or -inf without relu, NaN passing either way). z_norm is not kept: the backward pass
    computes it again from x2 with the same operations (one array of the activation's size
    fewer written each step)."""
    rows, C = x2.shape
    L = max(1, BLOCK_ELEMENTS // C) * C
    x = x2.reshape(-1)
    blocks = x.size // L
    m, s, g, b = (_tile(mean, L, x2.dtype), _tile(inv_std, L, x2.dtype),
                  _tile(gamma, L, x2.dtype), _tile(beta, L, x2.dtype))
    y = out.reshape(-1)
    added = addend is not None
    a = np.zeros(1, dtype=x2.dtype) if addend is None else addend.reshape(-1)
    lo = x2.dtype.type(0.0 if relu else -np.inf)
    for blk in range(blocks):
        base = blk * L
        for j in range(L):
            t = g[j] * ((x[base + j] - m[j]) * s[j]) + b[j]
            if added:
                t = t + a[base + j]
            y[base + j] = lo if t < lo else t
    base = blocks * L
    for j in range(x.size - base):
        t = g[j] * ((x[base + j] - m[j]) * s[j]) + b[j]
        if added:
            t = t + a[base + j]
        y[base + j] = lo if t < lo else t


@njit(cache=True, error_model="numpy")
def batchnorm_forward(x2, gamma, beta, epsilon, out, mean, var, inv_std, relu=False):
    """`batchnorm_stats` then `batchnorm_normalize`: the batch's statistics land in `mean`,
    `var` and `inv_std`, out = [relu](gamma z_norm + beta)."""
    batchnorm_stats(x2, epsilon, mean, var, inv_std)
    batchnorm_normalize(x2, gamma, beta, mean, inv_std, out, relu)


@njit(inline="always")
def _grad(dy, x, m, s, g, b, relu, i, j):
    """(dy through the fused relu, z_norm) at element i (column j of the tiled constants),
    z_norm as the forward computed it; with relu, dy kept where t = gamma z_norm + beta > 0
    (relu'(t) = 1 there, kernels/activations.py's convention), else dy * 0 (a select, so
    that the loop vectorizes). relu is the same for the whole loop, which LLVM unswitches:
    without it no t at all (a batch norm before a residual block's sum measured 0.8 ms
    slower when every element computed it)."""
    v = (x[i] - m[j]) * s[j]
    if not relu:
        return dy[i], v
    t = g[j] * v + b[j]
    return (dy[i] if t > 0 else dy[i] * dy.dtype.type(0)), v


@njit(inline="always")
def _sums(dy, x, m, s, g, b, relu, base, n, s_dy, s_dyz):
    """Elements base:base + n into the (partial) sums of dy (through the fused relu) and
    dy z_norm."""
    for j in range(n):
        d, v = _grad(dy, x, m, s, g, b, relu, base + j, j)
        s_dy[j] += d
        s_dyz[j] += d * v


@njit(inline="always")
def _dx(dy, x, m, s, g, b, relu, k0, k1, k2, base, n, out):
    """dx = k1 dy - k0 - k2 z_norm at elements base:base + n (dy through the fused relu)."""
    for j in range(n):
        d, v = _grad(dy, x, m, s, g, b, relu, base + j, j)
        out[base + j] = k1[j] * d - k0[j] - k2[j] * v


@njit(cache=True, error_model="numpy")
def batchnorm_backward(dy2, x2, mean, gamma, beta, inv_std, dx, dgamma, dbeta, relu=False):
    """dbeta = sum dy, dgamma = sum dy z_norm, and through the batch statistics
    dx = gamma inv_std / N (N dy - dbeta - z_norm dgamma), N = rows, z_norm = (x2 - mean)
    inv_std recomputed as the forward pass computed it. relu: dy is first masked where the
    forward's output gamma z_norm + beta was not above 0, the activation's backward in the
    same passes (its output is not read back)."""
    rows, C = dy2.shape
    L = max(1, BLOCK_ELEMENTS // C) * C
    dy, x, out = dy2.reshape(-1), x2.reshape(-1), dx.reshape(-1)
    m, s, g, b = (_tile(mean, L, x2.dtype), _tile(inv_std, L, x2.dtype),
                  _tile(gamma, L, x2.dtype), _tile(beta, L, x2.dtype))
    s_dy, s_dyz = np.zeros(L), np.zeros(L)
    p_dy, p_dyz = np.zeros(L, dtype=dx.dtype), np.zeros(L, dtype=dx.dtype)
    uL, R = uint64(L), uint64(PARTIAL)
    blocks = uint64(dy.size) // uL
    for top in range(blocks // R):
        for k in range(R):
            _sums(dy, x, m, s, g, b, relu, (top * R + k) * uL, uL, p_dy, p_dyz)
        _flush(p_dy, s_dy)
        _flush(p_dyz, s_dyz)
    for blk in range(blocks // R * R, blocks):  # the last blocks, fewer than PARTIAL
        _sums(dy, x, m, s, g, b, relu, blk * uL, uL, p_dy, p_dyz)
    base = blocks * uL
    _sums(dy, x, m, s, g, b, relu, base, uint64(dy.size) - base, p_dy, p_dyz)  # the last rows
    _flush(p_dy, s_dy)
    _flush(p_dyz, s_dyz)
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
        _dx(dy, x, m, s, g, b, relu, k0, k1, k2, blk * uL, uL, out)
    _dx(dy, x, m, s, g, b, relu, k0, k1, k2, base, uint64(dy.size) - base, out)
