"""Convolution kernels, NHWC: im2col / col2im around one BLAS GEMM, direct loops for few input
channels, and direct depthwise loops.

Why this algorithm (measured on this 2-core machine, float32, batch 64):
- A dense convolution is one GEMM once the input is unrolled: cols (m n_H n_W, f f n_C_prev)
  @ W (f f n_C_prev, n_C). OpenBLAS runs it at 90-130 GFLOP/s (a 3x3x32 layer on 32x32x32:
  1.2 GFLOP in 9-13 ms). Direct Numba loops, even written row by row to vectorize, were
  slower from 3 input channels (1.1x there, 3.7x at 6). Below 3, at stride 1, the
  `direct_*` kernels at the end of this file win: LeNet's first layer (5x5x6 on 28x28x1)
  forward 0.9 ms against 1.8 ms for im2col_t + GEMM, its filter gradient 0.8 ms against
  0.6 ms of GEMM but with no unrolling to keep, and its predictions a third faster.
  The unrolling is memory-bound: it goes into a buffer the layer reuses and
  folds the zero padding in, so no padded copy of A_prev is made.
- For few input channels a row of cols is short (25 values at 1 channel, 5x5), so
  `im2col_t` builds cols transposed: each (tap, image row) is one run along the row, and
  unsigned indices spare Numba's negative-index wraparound; 2x faster than `im2col` at 1
  channel, even at 3. BLAS takes either layout as it is (a transposed operand costs nothing).
- The backward pass reuses the forward's cols: dW = cols.T @ dZ (one GEMM, BLAS reads the
  transpose in place), dcols = dZ @ W.T (one GEMM written over the cols buffer, which is no
  longer needed), then col2im adds the patches back, an example at a time: examples never
  share an output cell, so the parallel driver has no races.
- conv2d_transpose is the same pair run the other way round (its forward is a conv's
  input-gradient), so it needs no kernel of its own.
- Depthwise convolution has no channel sum to hand to BLAS (a GEMM per channel would be
  f f wide), so it runs as direct loops with the channel loop innermost (contiguous in
  NHWC, so it vectorizes); the filter gradient is summed per example then reduced, so the
  parallel loop never writes a shared cell.

Column order of cols is (di, dj, c), matching W.reshape(f * f * n_C_prev, n_C). So a
window row that lies inside the input is f n_C_prev contiguous values on both sides, and
im2col / col2im copy it as one run, by flat unsigned indices (LeNet's 5x5 on 14x14x6, batch
64: 0.62 -> 0.21 ms unrolling, 0.54 -> 0.18 ms folding, against per-cell loops).

Every kernel is a body for one example, `_name(i, ...)`, and two drivers over the batch:
`name` (serial) and `name_parallel` (`prange`). Waking Numba's workqueue threads measured
30-150 us here, more than a whole pass over a small layer (LeNet's second pool at batch
64), so layers take the parallel driver only for large arrays (`dlcli.nn.conv.kernel`).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, uint64

from .activations import LINEAR, _g

BLOCKS = 8  # example blocks of a parallel direct kernel, each with its own buffers


@njit
def _im2col(i, A_prev, f, stride, pad_top, pad_left, n_H, n_W, cols):
    _, n_H_prev, n_W_prev, n_C_prev = A_prev.shape
    run, width = f * n_C_prev, cols.shape[1]
    src, dst = A_prev.reshape(-1), cols.reshape(-1)  # flat, indexed by hand: no view per run
    for h in range(n_H):
        for w in range(n_W):
            row = (i * n_H + h) * n_W + w
            c0 = w * stride - pad_left
            whole = 0 <= c0 and c0 + f <= n_W_prev
            for di in range(f):
                r = h * stride + di - pad_top
                inside_r = 0 <= r < n_H_prev
                if inside_r and whole:
                    # the window's row is f n_C_prev contiguous values in A_prev and in cols:
                    # one run (unsigned indices: no wraparound test, so it vectorizes)
                    s0 = uint64(((i * n_H_prev + r) * n_W_prev + c0) * n_C_prev)
                    d0 = uint64(row * width + di * run)
                    for j in range(run):
                        dst[d0 + uint64(j)] = src[s0 + uint64(j)]
                    continue
                for dj in range(f):
                    c = c0 + dj
                    col = (di * f + dj) * n_C_prev
                    if inside_r and 0 <= c < n_W_prev:
                        for k in range(n_C_prev):
                            cols[row, col + k] = A_prev[i, r, c, k]
                    else:
                        for k in range(n_C_prev):
                            cols[row, col + k] = 0.0


@njit(cache=True)
def im2col(A_prev, f, stride, pad_top, pad_left, n_H, n_W, cols):
    """cols[(i, h, w), (di, dj, c)] = A_prev[i, h s + di - pad_top, w s + dj - pad_left, c], 0 outside."""
    for i in range(A_prev.shape[0]):
        _im2col(i, A_prev, f, stride, pad_top, pad_left, n_H, n_W, cols)


@njit(parallel=True, cache=True)
def im2col_parallel(A_prev, f, stride, pad_top, pad_left, n_H, n_W, cols):
    for i in prange(A_prev.shape[0]):
        _im2col(i, A_prev, f, stride, pad_top, pad_left, n_H, n_W, cols)


@njit
def _col2im(i, cols, f, stride, pad_top, pad_left, n_H, n_W, dA_prev):
    _, n_H_prev, n_W_prev, n_C_prev = dA_prev.shape
    run, width = f * n_C_prev, cols.shape[1]
    dst, src = dA_prev.reshape(-1), cols.reshape(-1)  # flat, indexed by hand
    dA_prev[i] = 0.0
    for h in range(n_H):
        for w in range(n_W):
            row = (i * n_H + h) * n_W + w
            c0 = w * stride - pad_left
            whole = 0 <= c0 and c0 + f <= n_W_prev
            for di in range(f):
                r = h * stride + di - pad_top
                if r < 0 or r >= n_H_prev:
                    continue
                if whole:  # one contiguous run, as in _im2col
                    d0 = uint64(((i * n_H_prev + r) * n_W_prev + c0) * n_C_prev)
                    s0 = uint64(row * width + di * run)
                    for j in range(run):
                        dst[d0 + uint64(j)] += src[s0 + uint64(j)]
                    continue
                for dj in range(f):
                    c = c0 + dj
                    if c < 0 or c >= n_W_prev:
                        continue
                    col = (di * f + dj) * n_C_prev
                    for k in range(n_C_prev):
                        dA_prev[i, r, c, k] += cols[row, col + k]


@njit(cache=True)
def col2im(cols, f, stride, pad_top, pad_left, n_H, n_W, dA_prev):
    """The adjoint of im2col: dA_prev (overwritten) = sum of each row's patch put back in place."""
    for i in range(dA_prev.shape[0]):
        _col2im(i, cols, f, stride, pad_top, pad_left, n_H, n_W, dA_prev)


@njit(parallel=True, cache=True)
def col2im_parallel(cols, f, stride, pad_top, pad_left, n_H, n_W, dA_prev):
    for i in prange(dA_prev.shape[0]):
        _col2im(i, cols, f, stride, pad_top, pad_left, n_H, n_W, dA_prev)


@njit(inline="always")
def _inside(offset, stride, n_prev, n_out):
    """The outputs w in [w0, w1) whose input w * stride + offset lies inside [0, n_prev)."""
    w0 = 0 if offset >= 0 else (-offset + stride - 1) // stride
    w1 = min(n_out, (n_prev - 1 - offset) // stride + 1) if n_prev - 1 - offset >= 0 else 0
    return w0, max(w0, w1)


@njit
def _im2col_t(i, A_prev, f, stride, pad_top, pad_left, n_H, n_W, cols_t):
    _, n_H_prev, n_W_prev, n_C_prev = A_prev.shape
    for h in range(n_H):
        col = (i * n_H + h) * n_W
        for di in range(f):
            r = h * stride + di - pad_top
            for dj in range(f):
                offset = dj - pad_left
                w0, w1 = _inside(offset, stride, n_W_prev, n_W) if 0 <= r < n_H_prev else (0, 0)
                for k in range(n_C_prev):
                    row = (di * f + dj) * n_C_prev + k
                    for w in range(w0):
                        cols_t[row, col + w] = 0.0
                    for w in range(w0, w1):
                        # unsigned: Numba skips its negative-index wraparound (measured 1.4x)
                        cols_t[row, uint64(col + w)] = A_prev[i, r, uint64(w * stride + offset), k]
                    for w in range(w1, n_W):
                        cols_t[row, col + w] = 0.0


@njit(cache=True)
def im2col_t(A_prev, f, stride, pad_top, pad_left, n_H, n_W, cols_t):
    """cols_t = im2col's cols transposed: one row per filter tap (di, dj, c), one column per output.

    For few input channels, where a row of cols is only f f n_C_prev long, this layout copies
    whole image rows per tap instead, which runs about twice as fast at n_C_prev = 1."""
    for i in range(A_prev.shape[0]):
        _im2col_t(i, A_prev, f, stride, pad_top, pad_left, n_H, n_W, cols_t)


@njit(parallel=True, cache=True)
def im2col_t_parallel(A_prev, f, stride, pad_top, pad_left, n_H, n_W, cols_t):
    for i in prange(A_prev.shape[0]):
        _im2col_t(i, A_prev, f, stride, pad_top, pad_left, n_H, n_W, cols_t)


@njit
def _col2im_t(i, cols_t, f, stride, pad_top, pad_left, n_H, n_W, dA_prev):
    _, n_H_prev, n_W_prev, n_C_prev = dA_prev.shape
    dA_prev[i] = 0.0
    for h in range(n_H):
        col = (i * n_H + h) * n_W
        for di in range(f):
            r = h * stride + di - pad_top
            if r < 0 or r >= n_H_prev:
                continue
            for dj in range(f):
                offset = dj - pad_left
                w0, w1 = _inside(offset, stride, n_W_prev, n_W)
                for k in range(n_C_prev):
                    row = (di * f + dj) * n_C_prev + k
                    for w in range(w0, w1):
                        dA_prev[i, r, w * stride + offset, k] += cols_t[row, col + w]


@njit(cache=True)
def col2im_t(cols_t, f, stride, pad_top, pad_left, n_H, n_W, dA_prev):
    """The adjoint of im2col_t: dA_prev (overwritten)."""
    for i in range(dA_prev.shape[0]):
        _col2im_t(i, cols_t, f, stride, pad_top, pad_left, n_H, n_W, dA_prev)


@njit(parallel=True, cache=True)
def col2im_t_parallel(cols_t, f, stride, pad_top, pad_left, n_H, n_W, dA_prev):
    for i in prange(dA_prev.shape[0]):
        _col2im_t(i, cols_t, f, stride, pad_top, pad_left, n_H, n_W, dA_prev)


@njit
def _depthwise_forward(i, A_prev, W, stride, pad_top, pad_left, Z):
    _, n_H_prev, n_W_prev, n_C = A_prev.shape
    f = W.shape[0]
    n_H, n_W = Z.shape[1], Z.shape[2]
    for h in range(n_H):
        for w in range(n_W):
            for c in range(n_C):
                Z[i, h, w, c] = 0.0
            for di in range(f):
                r = h * stride + di - pad_top
                if r < 0 or r >= n_H_prev:
                    continue
                for dj in range(f):
                    q = w * stride + dj - pad_left
                    if q < 0 or q >= n_W_prev:
                        continue
                    for c in range(n_C):
                        Z[i, h, w, c] += A_prev[i, r, q, c] * W[di, dj, c]


@njit(cache=True)
def depthwise_forward(A_prev, W, stride, pad_top, pad_left, Z):
    """Z[i, h, w, c] = sum_{di, dj} A_prev[i, h s + di - pad_top, w s + dj - pad_left, c] W[di, dj, c]."""
    for i in range(A_prev.shape[0]):
        _depthwise_forward(i, A_prev, W, stride, pad_top, pad_left, Z)


@njit(parallel=True, cache=True)
def depthwise_forward_parallel(A_prev, W, stride, pad_top, pad_left, Z):
    for i in prange(A_prev.shape[0]):
        _depthwise_forward(i, A_prev, W, stride, pad_top, pad_left, Z)


@njit
def _depthwise_backward(i, dZ, A_prev, W, stride, pad_top, pad_left, dA_prev, dW_per_example):
    _, n_H_prev, n_W_prev, n_C = A_prev.shape
    f = W.shape[0]
    n_H, n_W = dZ.shape[1], dZ.shape[2]
    dA_prev[i] = 0.0
    dW_per_example[i] = 0.0
    for h in range(n_H):
        for w in range(n_W):
            for di in range(f):
                r = h * stride + di - pad_top
                if r < 0 or r >= n_H_prev:
                    continue
                for dj in range(f):
                    q = w * stride + dj - pad_left
                    if q < 0 or q >= n_W_prev:
                        continue
                    for c in range(n_C):
                        g = dZ[i, h, w, c]
                        dA_prev[i, r, q, c] += g * W[di, dj, c]
                        dW_per_example[i, di, dj, c] += g * A_prev[i, r, q, c]


@njit(cache=True)
def depthwise_backward(dZ, A_prev, W, stride, pad_top, pad_left, dA_prev, dW_per_example):
    """dA_prev (overwritten) and dW_per_example[i] (overwritten; the caller sums over i)."""
    for i in range(dZ.shape[0]):
        _depthwise_backward(i, dZ, A_prev, W, stride, pad_top, pad_left, dA_prev, dW_per_example)


@njit(parallel=True, cache=True)
def depthwise_backward_parallel(dZ, A_prev, W, stride, pad_top, pad_left, dA_prev, dW_per_example):
    for i in prange(dZ.shape[0]):
        _depthwise_backward(i, dZ, A_prev, W, stride, pad_top, pad_left, dA_prev, dW_per_example)


# -- direct convolution for few input channels, stride 1 ---------------------------------------------
# LeNet's first layer (5x5x6 on 28x28x1) spent twice as long unrolling its patches as in its
# GEMM, whose 6 output columns BLAS runs far below its peak. Direct loops skip the unrolling:
# an output row Z[i, h] is n_W n_C values, flat, and each tap (di, dj, c) adds a shifted run
# of a "spread" input row (every pixel repeated n_C times) times that tap's weights tiled
# along the row, a contiguous multiply-add over n_W n_C values that vectorizes. The filter
# gradient runs the same loop with dZ's row in the weights' place.


@njit(inline="always")
def _spread(i, A_prev, pad_top, pad_left, n_C, S):
    """S[rr, c, q n_C + k] = A_prev[i, rr - pad_top, q - pad_left, c] (0 outside), for every k."""
    _, n_H_prev, n_W_prev, n_C_prev = A_prev.shape
    S[:] = 0.0
    for r in range(n_H_prev):
        for q in range(n_W_prev):
            for c in range(n_C_prev):
                v = A_prev[i, r, q, c]
                base = (q + pad_left) * n_C
                for k in range(n_C):
                    S[r + pad_top, c, base + k] = v


@njit(inline="always")
def _spread_shape(A_prev, f, pad_top, pad_left, n_H, n_W, n_C):
    return (n_H + f - 1, A_prev.shape[3], (n_W + f - 1) * n_C)


@njit(inline="always")
def _tiled_weights(W, n_W):
    """T[di, dj, c, w n_C + k] = W[di, dj, c, k]."""
    f, _, n_C_prev, n_C = W.shape
    T = np.empty((f, f, n_C_prev, n_W * n_C), dtype=W.dtype)
    for di in range(f):
        for dj in range(f):
            for c in range(n_C_prev):
                for w in range(n_W):
                    for k in range(n_C):
                        T[di, dj, c, w * n_C + k] = W[di, dj, c, k]
    return T


@njit(inline="always")
def _direct_forward(i, A_prev, T, B, code, pad_top, pad_left, S, Z):
    f, n_C_prev = T.shape[0], T.shape[2]
    _, n_H, n_W, n_C = Z.shape
    L = n_W * n_C
    _spread(i, A_prev, pad_top, pad_left, n_C, S)
    s, t = S.reshape(-1), T.reshape(-1)  # flat, indexed by hand: no view per tap
    row = S.shape[2]
    # taps four filter rows di at a time: one load and store of z per four multiply-adds;
    # the spread input and the weights of the next filter row lie these far on, unsigned
    p1, p2, p3 = uint64(n_C_prev * row), uint64(2 * n_C_prev * row), uint64(3 * n_C_prev * row)
    q1, q2, q3 = uint64(f * n_C_prev * L), uint64(2 * f * n_C_prev * L), uint64(3 * f * n_C_prev * L)
    zf = Z.reshape(-1)
    # two output rows a pass over the grouped taps, which share the weights' loads
    for h in range(0, n_H - 1, 2):
        z0 = uint64((i * n_H + h) * L)
        z1 = z0 + uint64(L)
        for j in range(2 * L):  # the accumulators start at the bias
            zf[z0 + uint64(j)] = B[j]
        for di in range(0, f - 3, 4):
            for dj in range(f):
                for c in range(n_C_prev):
                    s0 = uint64(((h + di) * n_C_prev + c) * row + dj * n_C)
                    t0 = uint64(((di * f + dj) * n_C_prev + c) * L)
                    s1, s2, s3, t1, t2, t3 = s0 + p1, s0 + p2, s0 + p3, t0 + q1, t0 + q2, t0 + q3
                    s4 = s3 + p1
                    for j in range(L):
                        u = uint64(j)
                        w0, w1, w2, w3 = t[t0 + u], t[t1 + u], t[t2 + u], t[t3 + u]
                        zf[z0 + u] += (s[s0 + u] * w0 + s[s1 + u] * w1
                                       + s[s2 + u] * w2 + s[s3 + u] * w3)
                        zf[z1 + u] += (s[s1 + u] * w0 + s[s2 + u] * w1
                                       + s[s3 + u] * w2 + s[s4 + u] * w3)
        for di in range(f - f % 4, f):
            for dj in range(f):
                for c in range(n_C_prev):
                    s0 = uint64(((h + di) * n_C_prev + c) * row + dj * n_C)
                    t0 = uint64(((di * f + dj) * n_C_prev + c) * L)
                    s1 = s0 + p1
                    for j in range(L):
                        u = uint64(j)
                        w0 = t[t0 + u]
                        zf[z0 + u] += s[s0 + u] * w0
                        zf[z1 + u] += s[s1 + u] * w0
        # the activation while the two rows are in cache: no second pass over Z
        if code != LINEAR:
            for j in range(2 * L):
                u = uint64(j)
                zf[z0 + u] = _g(zf[z0 + u], code)
    for h in range(n_H - n_H % 2, n_H):  # the odd last row
        z = Z[i, h].reshape(-1)
        z[:] = B[:L]
        for di in range(0, f - 3, 4):
            for dj in range(f):
                for c in range(n_C_prev):
                    # unsigned: no negative-index wraparound test per element, so it vectorizes
                    s0 = uint64(((h + di) * n_C_prev + c) * row + dj * n_C)
                    t0 = uint64(((di * f + dj) * n_C_prev + c) * L)
                    s1, s2, s3, t1, t2, t3 = s0 + p1, s0 + p2, s0 + p3, t0 + q1, t0 + q2, t0 + q3
                    for j in range(L):
                        u = uint64(j)
                        z[j] += (s[s0 + u] * t[t0 + u] + s[s1 + u] * t[t1 + u]
                                 + s[s2 + u] * t[t2 + u] + s[s3 + u] * t[t3 + u])
        for di in range(f - f % 4, f):
            for dj in range(f):
                for c in range(n_C_prev):
                    s0 = uint64(((h + di) * n_C_prev + c) * row + dj * n_C)
                    t0 = uint64(((di * f + dj) * n_C_prev + c) * L)
                    for j in range(L):
                        z[j] += s[s0 + uint64(j)] * t[t0 + uint64(j)]
        if code != LINEAR:
            for j in range(L):
                z[j] = _g(z[j], code)


@njit(inline="always")
def _tiled_bias(b, n_W):
    """b over two output rows: B[j] = b[j % n_C], 2 n_W n_C values."""
    n_C = b.shape[0]
    B = np.empty(2 * n_W * n_C, dtype=b.dtype)
    for j in range(B.shape[0]):
        B[j] = b[j % n_C]
    return B


@njit(cache=True, error_model="numpy")
def direct_forward_act(A_prev, W, b, code, pad_top, pad_left, Z):
    """Z[i, h, w, k] = g(b[k] + sum_{di, dj, c} A_prev[i, h + di - pad_top, w + dj - pad_left, c] W[di, dj, c, k])
    (0 outside; g relu, leaky_relu or linear by its code in kernels/activations.py): a stride-1
    convolution without unrolling, for few input channels, its bias and activation fused in."""
    n_H, n_W, n_C = Z.shape[1], Z.shape[2], Z.shape[3]
    T, B = _tiled_weights(W, n_W), _tiled_bias(b, n_W)
    S = np.empty(_spread_shape(A_prev, W.shape[0], pad_top, pad_left, n_H, n_W, n_C), dtype=Z.dtype)
    for i in range(A_prev.shape[0]):
        _direct_forward(i, A_prev, T, B, code, pad_top, pad_left, S, Z)


@njit(parallel=True, cache=True, error_model="numpy")
def direct_forward_act_parallel(A_prev, W, b, code, pad_top, pad_left, Z):
    n_H, n_W, n_C = Z.shape[1], Z.shape[2], Z.shape[3]
    T, B = _tiled_weights(W, n_W), _tiled_bias(b, n_W)
    shape = _spread_shape(A_prev, W.shape[0], pad_top, pad_left, n_H, n_W, n_C)
    m = A_prev.shape[0]
    step = -(-m // BLOCKS)
    for p in prange(BLOCKS):
        S = np.empty(shape, dtype=Z.dtype)
        for i in range(p * step, min(m, (p + 1) * step)):
            _direct_forward(i, A_prev, T, B, code, pad_top, pad_left, S, Z)


@njit(cache=True, error_model="numpy")
def direct_forward(A_prev, W, pad_top, pad_left, Z):
    """The convolution alone: direct_forward_act with no bias, linear."""
    direct_forward_act(A_prev, W, np.zeros(W.shape[3], dtype=Z.dtype), LINEAR, pad_top, pad_left, Z)


@njit(cache=True, error_model="numpy")
def direct_forward_parallel(A_prev, W, pad_top, pad_left, Z):
    direct_forward_act_parallel(A_prev, W, np.zeros(W.shape[3], dtype=Z.dtype), LINEAR,
                                pad_top, pad_left, Z)


@njit(inline="always")
def _direct_filter_grad(i0, i1, A_prev, dZ, f, pad_top, pad_left, S, G):
    """G[di, dj, c, w n_C + k] += sum over examples i0:i1 and rows h of S[h + di, c, (w + dj) n_C + k] dZ[i, h, w, k]."""
    n_C_prev = A_prev.shape[3]
    _, n_H, n_W, n_C = dZ.shape
    L = n_W * n_C
    for i in range(i0, i1):
        _spread(i, A_prev, pad_top, pad_left, n_C, S)
        s, acc, g = S.reshape(-1), G.reshape(-1), dZ.reshape(-1)  # flat, indexed by hand
        row = S.shape[2]
        # a spread input row (all channels) and an output row apart, unsigned like the rest
        p1, p2, p3 = uint64(n_C_prev * row), uint64(2 * n_C_prev * row), uint64(3 * n_C_prev * row)
        l1, l2, l3 = uint64(L), uint64(2 * L), uint64(3 * L)
        # four output rows a pass: one load and store of the accumulator per four multiply-adds
        # (store-bound otherwise: 1.3x slower one row at a time)
        for h in range(0, n_H - 3, 4):
            g0 = uint64((i * n_H + h) * L)
            for di in range(f):
                for dj in range(f):
                    for c in range(n_C_prev):
                        s0 = uint64(((h + di) * n_C_prev + c) * row + dj * n_C)
                        a0 = uint64(((di * f + dj) * n_C_prev + c) * L)
                        s1, s2, s3 = s0 + p1, s0 + p2, s0 + p3
                        g1, g2, g3 = g0 + l1, g0 + l2, g0 + l3
                        for j in range(L):
                            u = uint64(j)
                            acc[a0 + u] += (s[s0 + u] * g[g0 + u] + s[s1 + u] * g[g1 + u]
                                            + s[s2 + u] * g[g2 + u] + s[s3 + u] * g[g3 + u])
        for h in range(n_H - n_H % 4, n_H):
            g0 = uint64((i * n_H + h) * L)
            for di in range(f):
                for dj in range(f):
                    for c in range(n_C_prev):
                        s0 = uint64(((h + di) * n_C_prev + c) * row + dj * n_C)
                        a0 = uint64(((di * f + dj) * n_C_prev + c) * L)
                        for j in range(L):
                            u = uint64(j)
                            acc[a0 + u] += s[s0 + u] * g[g0 + u]


@njit(inline="always")
def _fold_filter_grad(G, dW):
    f, _, n_C_prev, n_C = dW.shape
    n_W = G.shape[4] // n_C
    for di in range(f):
        for dj in range(f):
            for c in range(n_C_prev):
                for k in range(n_C):
                    total = 0.0
                    for p in range(G.shape[0]):
                        for w in range(n_W):
                            total += G[p, di, dj, c, w * n_C + k]
                    dW[di, dj, c, k] = total


@njit(cache=True, error_model="numpy")
def direct_filter_grad(A_prev, dZ, pad_top, pad_left, dW):
    """dW (overwritten) = the filter gradient of direct_forward for the output gradient dZ."""
    f, n_C_prev = dW.shape[0], dW.shape[2]
    n_H, n_W, n_C = dZ.shape[1], dZ.shape[2], dZ.shape[3]
    S = np.empty(_spread_shape(A_prev, f, pad_top, pad_left, n_H, n_W, n_C), dtype=dZ.dtype)
    G = np.zeros((1, f, f, n_C_prev, n_W * n_C), dtype=dZ.dtype)
    _direct_filter_grad(0, dZ.shape[0], A_prev, dZ, f, pad_top, pad_left, S, G[0])
    _fold_filter_grad(G, dW)


@njit(parallel=True, cache=True, error_model="numpy")
def direct_filter_grad_parallel(A_prev, dZ, pad_top, pad_left, dW):
    f, n_C_prev = dW.shape[0], dW.shape[2]
    n_H, n_W, n_C = dZ.shape[1], dZ.shape[2], dZ.shape[3]
    shape = _spread_shape(A_prev, f, pad_top, pad_left, n_H, n_W, n_C)
    m = dZ.shape[0]
    step = -(-m // BLOCKS)
    G = np.zeros((BLOCKS, f, f, n_C_prev, n_W * n_C), dtype=dZ.dtype)  # a partial sum per block
    for p in prange(BLOCKS):
        S = np.empty(shape, dtype=dZ.dtype)
        _direct_filter_grad(p * step, min(m, (p + 1) * step), A_prev, dZ, f, pad_top, pad_left, S, G[p])
    _fold_filter_grad(G, dW)
