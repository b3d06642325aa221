"""Direct convolution for few input channels at stride 1 (LeNet's first layer), NHWC in and out.

Why: a first layer has 1-3 input channels and a handful of filters, so im2col + GEMM spends
more time unrolling 25-75-value patches than in a GEMM whose 6 output columns BLAS runs far
below its peak. These kernels skip the unrolling.

How: per example, the input is copied once into zero-padded channel planes of width
Wp = n_W + f - 1, flat, and the output is computed filter by filter in a "wide" plane of the
same width (n_H rows of Wp cells, the last f - 1 cells of each row discarded: 14% more work
for LeNet). In that layout a filter tap (di, dj, c) is one shift, di Wp + dj, of the input
plane c: the whole output plane of filter k gains w[tap, k] times a contiguous run of the
input plane, a loop of n_H Wp elements (896 for LeNet) that LLVM vectorizes (16 float32 a
vector) without any view, spread copy or tiled weights. Two filters and four taps go in per
pass: four input loads and two loads and stores of the output per eight fused multiply-adds.
The filter gradient is the same shifts as dot products of the output gradient's wide plane
with the input plane, two filters and four taps a pass, summed per example then over
examples.

Fused in: the bias and a piecewise activation (linear, relu, leaky_relu, as the branch-free
select of kernels/activations.py) in the move from the wide plane to NHWC, and g'(z) and db
in the move of dA into the wide plane; and, for LeNet's 2x2 stride-2 max pool after the
layer (nn/conv_direct.py), the pool itself: `direct_forward_pool` writes the pooled output
and each window's argmax instead of the activation, and `direct_backward_pool` builds the
wide dZ from the pool's gradient, so the full activation is never written nor read back.

Flags: `fastmath` contract (multiply-adds fused) on every driver; reassoc on the filter
gradient's, so that its dot products vectorize (8 or 16 partial sums; a literal 0.0 for
their start would have summed in float64 at half the speed). The helpers are inlined into
their drivers: only the drivers a model calls compile, each once (fresh cache, load ~1.8:
forward + backward 5.4 -> 4.2 s against separately compiled helpers).

Measured (Dec 3 2026, 2-core Zen 4, float32, LeNet's 5x5x6 on 28x28x1 same + relu, one
thread, load 1.4), against the previous kernels (spread input rows, tiled weights, four taps
and two output rows unrolled by hand): batch 64 forward 0.90 -> 0.46 ms, filter gradient
0.91 (+0.09 for the activation's backward pass) -> 0.60 ms with g'(z) and db; batch 256
3.93 -> 2.06 and 3.97 -> 2.76 ms. Their fresh-cache compile took 10.6 s (parallel drivers,
which LeNet's sizes took) against 4.2-5.4 s for the serial pooled pair now (loads 1.4-2.9).

Three input channels take them too (nn/conv_paths.py DIRECT_BELOW, Dec 3 2026, whole steps
interleaved at load ~2-2.5): inception_small, whose 3x3x16 first layer's 2x2 max pool then
fuses in, 18.7 -> 15.6 ms; resnet_small 212 -> 202 ms; the U-Net 468 -> 438 ms.

Each kernel is a serial driver and a `_parallel` one over blocks of examples (each block with
its own planes and, for the gradients, its own partial sums, so no two threads share a cell);
nn/conv_direct.py says when a layer takes the parallel ones. The pooled pair also comes as
`_duo` drivers, for kernels/duo.py's helper thread (kernels/direct_duo.py).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, uint64

from .activations import LINEAR, _slope, _typed

BLOCKS = 8  # example blocks of a parallel driver
# The filter gradient's drivers may reassociate sums, so that LLVM vectorizes the dot products
# (8 or 16 partial sums each); every driver may fuse a multiply and an add (contract).
REDUCE = {"reassoc", "contract"}


@njit(inline="always")
def _geometry(A_prev, f, n_H, n_W):
    """(Wp, plane, offsets): the padded width, the length of one padded input plane (with
    f - 1 zeros after it, which the discarded cells of the last wide row read), and each
    tap's shift, in W.reshape(f f n_C_prev, n_C)'s row order (di, dj, c)."""
    n_C_prev = A_prev.shape[3]
    Wp = n_W + f - 1
    plane = (n_H + f - 1) * Wp + f - 1
    offsets = np.empty(f * f * n_C_prev, dtype=np.uint64)
    for di in range(f):
        for dj in range(f):
            for c in range(n_C_prev):
                offsets[(di * f + dj) * n_C_prev + c] = c * plane + di * Wp + dj
    return Wp, plane, offsets


@njit(inline="always")
def _pad_planes(i, A_prev, pad_top, pad_left, Wp, plane, P):
    """P[c plane + (r + pad_top) Wp + q + pad_left] = A_prev[i, r, q, c]; the padding cells
    stay as P was allocated (zeros), since only these cells are ever written."""
    _, n_H_prev, n_W_prev, n_C_prev = A_prev.shape
    for c in range(n_C_prev):
        for r in range(n_H_prev):
            d = uint64(c * plane + (r + pad_top) * Wp + pad_left)
            for q in range(n_W_prev):
                P[d + uint64(q)] = A_prev[i, r, q, c]


@njit(inline="always")
def _convolve(W2, offsets, N, P, Zw):
    """Zw[k N + o] = sum_tap W2[tap, k] P[offsets[tap] + o]: the wide output planes of one
    example from its padded input planes. Two filters and four taps a pass: four loads of the
    input feed eight fused multiply-adds (one filter a pass: 0.48 against 0.37 ms forward,
    LeNet at batch 64; an odd last filter is computed twice in place, the same values).
    kernels/small_gemm.py's `_rows_dot` runs it as a recurrent step's product of a few rows."""
    taps, n_C = W2.shape
    k = 0
    while k < n_C:
        pair = k + 1 < n_C
        z0 = uint64(k * N)
        z1 = z0 + uint64(N) if pair else z0
        for o in range(N):
            Zw[z0 + uint64(o)] = 0.0
            Zw[z1 + uint64(o)] = 0.0
        k1 = k + 1 if pair else k
        t = 0
        while t + 4 <= taps:
            w0, w1, w2, w3 = W2[t, k], W2[t + 1, k], W2[t + 2, k], W2[t + 3, k]
            v0, v1, v2, v3 = W2[t, k1], W2[t + 1, k1], W2[t + 2, k1], W2[t + 3, k1]
            s0, s1, s2, s3 = offsets[t], offsets[t + 1], offsets[t + 2], offsets[t + 3]
            for o in range(N):
                u = uint64(o)
                p0, p1, p2, p3 = P[s0 + u], P[s1 + u], P[s2 + u], P[s3 + u]
                z = Zw[z0 + u] + w0 * p0
                y = Zw[z1 + u] + v0 * p0
                z += w1 * p1
                y += v1 * p1
                z += w2 * p2
                y += v2 * p2
                Zw[z0 + u] = z + w3 * p3
                Zw[z1 + u] = y + v3 * p3
            t += 4
        while t < taps:
            w0, v0, s0 = W2[t, k], W2[t, k1], offsets[t]
            for o in range(N):
                u = uint64(o)
                p0 = P[s0 + u]
                z = Zw[z0 + u] + w0 * p0  # both read before either is written: z1 may be z0
                y = Zw[z1 + u] + v0 * p0
                Zw[z0 + u] = z
                Zw[z1 + u] = y
            t += 1
        k += 2


@njit(inline="always")
def _act(v, slope):
    """relu, leaky_relu or linear as the select kernels/activations.py runs: no branch on the
    activation's code in a loop (it made the loops 2x slower there and longer to compile)."""
    return v if v > 0 else v * slope


@njit(inline="always")
def _to_nhwc(i, Zw, b, code, Wp, Z):
    """Z[i] = g(Zw + b): the bias and the activation on the way to NHWC, a filter at a time
    (read in order, written n_C apart: 3-4x faster than gathering n_C planes per pixel)."""
    _, n_H, n_W, n_C = Z.shape
    N = n_H * Wp
    out, C = Z.reshape(-1), uint64(n_C)
    slope = _slope(code, Z)
    for k in range(n_C):
        bk = b[k]
        for h in range(n_H):
            s = uint64(k * N + h * Wp)
            d = uint64((i * n_H + h) * n_W * n_C + k)
            for w in range(n_W):
                out[d + uint64(w) * C] = _act(Zw[s + uint64(w)] + bk, slope)


@njit(inline="always")
def _to_pooled(i, Zw, b, code, Wp, A, argmax):
    """A[i] = the 2x2 stride-2 max pool of g(Zw + b), argmax[i] = the window cell it came from
    (dy 2 + dx; the first on ties, as kernels/pool.py scans): the same values as the
    activation then MaxPool, without writing the unpooled output. The maximum is taken before
    the activation, which is monotone, so g runs once a window, not four times (LeNet-5's
    forward at batch 64 0.355 -> 0.324 ms, best of 300); where g flattens a window to zeros
    (relu, all z + b <= 0) the cell is that of the largest z + b, not the first, and the
    gradient it gets is zero either way."""
    _, n_H, n_W, n_C = A.shape
    N = 2 * n_H * Wp
    out, where, C = A.reshape(-1), argmax.reshape(-1), uint64(n_C)
    slope = _slope(code, A)
    for k in range(n_C):
        bk = b[k]
        for h in range(n_H):
            s = uint64(k * N + 2 * h * Wp)
            d = uint64((i * n_H + h) * n_W * n_C + k)
            for w in range(n_W):
                u = s + uint64(2 * w)
                top, p = Zw[u] + bk, 0
                v = Zw[u + uint64(1)] + bk
                top, p = (v, 1) if v > top else (top, p)
                v = Zw[u + uint64(Wp)] + bk
                top, p = (v, 2) if v > top else (top, p)
                v = Zw[u + uint64(Wp + 1)] + bk
                top, p = (v, 3) if v > top else (top, p)
                out[d + uint64(w) * C] = _act(top, slope)
                where[d + uint64(w) * C] = p


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def direct_forward_act(A_prev, W, b, code, pad_top, pad_left, Z):
    """Z[i, h, w, k] = g(b[k] + sum_{di, dj, c} A_prev[i, h + di - pad_top, w + dj - pad_left, c] W[di, dj, c, k])
    (0 outside; g relu, leaky_relu or linear by its code in kernels/activations.py): a
    stride-1 convolution without unrolling, its bias and activation fused in."""
    m, n_H, n_W, n_C = Z.shape
    Wp, plane, offsets = _geometry(A_prev, W.shape[0], n_H, n_W)
    W2 = W.reshape(-1, n_C)
    P = np.zeros(A_prev.shape[3] * plane, dtype=Z.dtype)
    Zw = np.empty(n_C * n_H * Wp, dtype=Z.dtype)
    for i in range(m):
        _pad_planes(i, A_prev, pad_top, pad_left, Wp, plane, P)
        _convolve(W2, offsets, n_H * Wp, P, Zw)
        _to_nhwc(i, Zw, b, code, Wp, Z)


@njit(parallel=True, cache=True, error_model="numpy", fastmath={"contract"})
def direct_forward_act_parallel(A_prev, W, b, code, pad_top, pad_left, Z):
    m, n_H, n_W, n_C = Z.shape
    Wp, plane, offsets = _geometry(A_prev, W.shape[0], n_H, n_W)
    W2 = W.reshape(-1, n_C)
    step = -(-m // BLOCKS)
    for p in prange(BLOCKS):
        P = np.zeros(A_prev.shape[3] * plane, dtype=Z.dtype)
        Zw = np.empty(n_C * n_H * Wp, dtype=Z.dtype)
        for i in range(p * step, min(m, (p + 1) * step)):
            _pad_planes(i, A_prev, pad_top, pad_left, Wp, plane, P)
            _convolve(W2, offsets, n_H * Wp, P, Zw)
            _to_nhwc(i, Zw, b, code, Wp, Z)


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def direct_forward_pool(A_prev, W, b, code, pad_top, pad_left, A, argmax):
    """direct_forward_act then a 2x2 stride-2 max pool, in one pass: A (m, n_H / 2, n_W / 2,
    n_C) and argmax (int8, its shape) as _to_pooled says; n_H and n_W even."""
    m, n_H, n_W, n_C = A.shape[0], 2 * A.shape[1], 2 * A.shape[2], A.shape[3]
    Wp, plane, offsets = _geometry(A_prev, W.shape[0], n_H, n_W)
    W2 = W.reshape(-1, n_C)
    P = np.zeros(A_prev.shape[3] * plane, dtype=A.dtype)
    Zw = np.empty(n_C * n_H * Wp, dtype=A.dtype)
    for i in range(m):
        _pad_planes(i, A_prev, pad_top, pad_left, Wp, plane, P)
        _convolve(W2, offsets, n_H * Wp, P, Zw)
        _to_pooled(i, Zw, b, code, Wp, A, argmax)


@njit(parallel=True, cache=True, error_model="numpy", fastmath={"contract"})
def direct_forward_pool_parallel(A_prev, W, b, code, pad_top, pad_left, A, argmax):
    m, n_H, n_W, n_C = A.shape[0], 2 * A.shape[1], 2 * A.shape[2], A.shape[3]
    Wp, plane, offsets = _geometry(A_prev, W.shape[0], n_H, n_W)
    W2 = W.reshape(-1, n_C)
    step = -(-m // BLOCKS)
    for p in prange(BLOCKS):
        P = np.zeros(A_prev.shape[3] * plane, dtype=A.dtype)
        Zw = np.empty(n_C * n_H * Wp, dtype=A.dtype)
        for i in range(p * step, min(m, (p + 1) * step)):
            _pad_planes(i, A_prev, pad_top, pad_left, Wp, plane, P)
            _convolve(W2, offsets, n_H * Wp, P, Zw)
            _to_pooled(i, Zw, b, code, Wp, A, argmax)


@njit(cache=True, error_model="numpy")
def direct_forward(A_prev, W, pad_top, pad_left, Z):
    """The convolution alone: direct_forward_act with no bias, linear."""
    direct_forward_act(A_prev, W, np.zeros(W.shape[3], dtype=Z.dtype), LINEAR, pad_top, pad_left, Z)


@njit(cache=True, error_model="numpy")
def direct_forward_parallel(A_prev, W, pad_top, pad_left, Z):
    direct_forward_act_parallel(A_prev, W, np.zeros(W.shape[3], dtype=Z.dtype), LINEAR,
                                pad_top, pad_left, Z)


# -- the filter gradient ---------------------------------------------------------------------------
@njit(inline="always")
def _wide_dZ(i, dA, A, code, Wp, G, db):
    """G[k N + h Wp + w] = dZ[i, h, w, k] = dA g'(z), g' from A (kernels/activations.py);
    db += its sums. The discarded cells w >= n_W are never written: they stay 0."""
    _, n_H, n_W, n_C = dA.shape
    N = n_H * Wp
    slope = _slope(code, G)
    da, a, C = dA.reshape(-1), A.reshape(-1), uint64(n_C)
    for k in range(n_C):  # a filter at a time, as the forward's last pass
        total = db[k]
        for h in range(n_H):
            s = uint64((i * n_H + h) * n_W * n_C + k)
            d = uint64(k * N + h * Wp)
            for w in range(n_W):
                u = s + uint64(w) * C
                g = da[u] if a[u] > 0 else da[u] * slope
                G[d + uint64(w)] = g
                total += g
        db[k] = total


@njit(inline="always")
def _wide_dZ_pooled(i, dA, A, argmax, code, Wp, G, db):
    """_wide_dZ behind direct_forward_pool: dA, A and argmax are the pool's (m, n_H / 2, n_W / 2,
    n_C); each gradient goes to the one cell its window's maximum came from, the other cells
    get 0, as MaxPool's backward then the activation's would give."""
    _, n_H, n_W, n_C = dA.shape
    N = 2 * n_H * Wp
    G[:] = 0.0
    slope = _slope(code, G)
    da, a, where, C = dA.reshape(-1), A.reshape(-1), argmax.reshape(-1), uint64(n_C)
    for k in range(n_C):
        total = db[k]
        for h in range(n_H):
            s = uint64((i * n_H + h) * n_W * n_C + k)
            d = uint64(k * N + 2 * h * Wp)
            for w in range(n_W):
                u = s + uint64(w) * C
                g = da[u] if a[u] > 0 else da[u] * slope
                q = where[u]
                G[d + uint64(2 * w + (q >> 1) * Wp + (q & 1))] = g
                total += g
        db[k] = total


@njit(inline="always")
def _filter_dots(offsets, N, P, G, dW2):
    """dW2[tap, k] += sum_o G[k N + o] P[offsets[tap] + o]: two filters and four taps a pass,
    six loads per eight multiply-adds (one filter a pass: 0.44 against 0.32 ms, LeNet at batch
    64). The driver's reassociation lets these sums vectorize (8 or 16 partial sums each)."""
    taps, n_C = dW2.shape
    k = 0
    while k < n_C:
        k1 = k + 1 if k + 1 < n_C else k  # an odd last filter is summed twice, kept once
        g0, g1 = uint64(k * N), uint64(k1 * N)
        t = 0
        while t + 4 <= taps:
            s0, s1, s2, s3 = offsets[t], offsets[t + 1], offsets[t + 2], offsets[t + 3]
            a0 = a1 = a2 = a3 = b0 = b1 = b2 = b3 = _typed(0.0, G)
            for o in range(N):
                u = uint64(o)
                g, h = G[g0 + u], G[g1 + u]
                p0, p1, p2, p3 = P[s0 + u], P[s1 + u], P[s2 + u], P[s3 + u]
                a0 += g * p0
                a1 += g * p1
                a2 += g * p2
                a3 += g * p3
                b0 += h * p0
                b1 += h * p1
                b2 += h * p2
                b3 += h * p3
            dW2[t, k] += a0
            dW2[t + 1, k] += a1
            dW2[t + 2, k] += a2
            dW2[t + 3, k] += a3
            if k1 != k:
                dW2[t, k1] += b0
                dW2[t + 1, k1] += b1
                dW2[t + 2, k1] += b2
                dW2[t + 3, k1] += b3
            t += 4
        while t < taps:
            s0 = offsets[t]
            a0 = b0 = _typed(0.0, G)
            for o in range(N):
                u = uint64(o)
                p0 = P[s0 + u]
                a0 += G[g0 + u] * p0
                b0 += G[g1 + u] * p0
            dW2[t, k] += a0
            if k1 != k:
                dW2[t, k1] += b0
            t += 1
        k += 2


@njit(inline="always")
def _backward_block(i0, i1, A_prev, dA, A, code, pad_top, pad_left, Wp, plane, offsets, dW2, db):
    n_H, n_C = dA.shape[1], dA.shape[3]
    P = np.zeros(A_prev.shape[3] * plane, dtype=dW2.dtype)
    G = np.zeros(n_C * n_H * Wp, dtype=dW2.dtype)
    for i in range(i0, i1):
        _pad_planes(i, A_prev, pad_top, pad_left, Wp, plane, P)
        _wide_dZ(i, dA, A, code, Wp, G, db)
        _filter_dots(offsets, n_H * Wp, P, G, dW2)


@njit(inline="always")
def _backward_pooled_block(i0, i1, A_prev, dA, A, argmax, code, pad_top, pad_left, Wp, plane,
                           offsets, dW2, db):
    n_H, n_C = 2 * dA.shape[1], dA.shape[3]
    P = np.zeros(A_prev.shape[3] * plane, dtype=dW2.dtype)
    G = np.zeros(n_C * n_H * Wp, dtype=dW2.dtype)
    for i in range(i0, i1):
        _pad_planes(i, A_prev, pad_top, pad_left, Wp, plane, P)
        _wide_dZ_pooled(i, dA, A, argmax, code, Wp, G, db)
        _filter_dots(offsets, n_H * Wp, P, G, dW2)


@njit(cache=True, error_model="numpy", fastmath=REDUCE)
def direct_backward_act(A_prev, dA, A, code, pad_top, pad_left, dW, db):
    """The filter and bias gradients of direct_forward_act from the output gradient dA and
    the output A (g'(z) by its code, as kernels/activations.py): dW and db overwritten."""
    m, n_H, n_W, n_C = dA.shape
    Wp, plane, offsets = _geometry(A_prev, dW.shape[0], n_H, n_W)
    dW2 = dW.reshape(-1, n_C)
    dW2[:] = 0.0
    db[:] = 0.0
    _backward_block(0, m, A_prev, dA, A, code, pad_top, pad_left, Wp, plane, offsets, dW2, db)


@njit(parallel=True, cache=True, error_model="numpy", fastmath=REDUCE)
def direct_backward_act_parallel(A_prev, dA, A, code, pad_top, pad_left, dW, db):
    m, n_H, n_W, n_C = dA.shape
    Wp, plane, offsets = _geometry(A_prev, dW.shape[0], n_H, n_W)
    step = -(-m // BLOCKS)
    dW_part = np.zeros((BLOCKS, offsets.shape[0], n_C), dtype=dW.dtype)  # a partial sum per block
    db_part = np.zeros((BLOCKS, n_C), dtype=db.dtype)
    for p in prange(BLOCKS):
        _backward_block(p * step, min(m, (p + 1) * step), A_prev, dA, A, code, pad_top, pad_left,
                        Wp, plane, offsets, dW_part[p], db_part[p])
    _fold(dW_part, db_part, dW.reshape(-1, n_C), db)


@njit(cache=True, error_model="numpy", fastmath=REDUCE)
def direct_backward_pool(A_prev, dA, A, argmax, code, pad_top, pad_left, dW, db):
    """The filter and bias gradients of direct_forward_pool from the pooled output's gradient
    dA, the pooled output A and its argmax: dW and db overwritten."""
    m, n_H, n_W, n_C = dA.shape[0], 2 * dA.shape[1], 2 * dA.shape[2], dA.shape[3]
    Wp, plane, offsets = _geometry(A_prev, dW.shape[0], n_H, n_W)
    dW2 = dW.reshape(-1, n_C)
    dW2[:] = 0.0
    db[:] = 0.0
    _backward_pooled_block(0, m, A_prev, dA, A, argmax, code, pad_top, pad_left, Wp, plane,
                           offsets, dW2, db)


@njit(parallel=True, cache=True, error_model="numpy", fastmath=REDUCE)
def direct_backward_pool_parallel(A_prev, dA, A, argmax, code, pad_top, pad_left, dW, db):
    m, n_H, n_W, n_C = dA.shape[0], 2 * dA.shape[1], 2 * dA.shape[2], dA.shape[3]
    Wp, plane, offsets = _geometry(A_prev, dW.shape[0], n_H, n_W)
    step = -(-m // BLOCKS)
    dW_part = np.zeros((BLOCKS, offsets.shape[0], n_C), dtype=dW.dtype)
    db_part = np.zeros((BLOCKS, n_C), dtype=db.dtype)
    for p in prange(BLOCKS):
        _backward_pooled_block(p * step, min(m, (p + 1) * step), A_prev, dA, A, argmax, code,
                               pad_top, pad_left, Wp, plane, offsets, dW_part[p], db_part[p])
    _fold(dW_part, db_part, dW.reshape(-1, n_C), db)


@njit(inline="always")
def _fold(dW_part, db_part, dW2, db):
    """dW2, db (overwritten) = the blocks' partial sums, in block order."""
    for t in range(dW2.shape[0]):
        for k in range(dW2.shape[1]):
            total = dW_part[0, t, k]
            for p in range(1, dW_part.shape[0]):
                total += dW_part[p, t, k]
            dW2[t, k] = total
    for k in range(db.shape[0]):
        total = db_part[0, k]
        for p in range(1, db_part.shape[0]):
            total += db_part[p, k]
        db[k] = total


@njit(cache=True, error_model="numpy")
def direct_filter_grad(A_prev, dZ, pad_top, pad_left, dW):
    """dW (overwritten) = the filter gradient of direct_forward for the output gradient dZ."""
    direct_backward_act(A_prev, dZ, dZ, LINEAR, pad_top, pad_left, dW,
                        np.empty(dZ.shape[3], dtype=dW.dtype))


@njit(cache=True, error_model="numpy")
def direct_filter_grad_parallel(A_prev, dZ, pad_top, pad_left, dW):
    direct_backward_act_parallel(A_prev, dZ, dZ, LINEAR, pad_top, pad_left, dW,
                                 np.empty(dZ.shape[3], dtype=dW.dtype))
