"""Convolution kernels, NHWC: im2col / col2im around one BLAS GEMM (the direct kernels for few
input channels are in kernels/direct.py, the depthwise ones in kernels/depthwise.py).

Why this algorithm (measured on this 2-core machine, float32, batch 64):
- A dense convolution is one GEMM once the input is unrolled: cols (m n_H n_W, f f n_C_prev)
  @ W (f f n_C_prev, n_C). OpenBLAS runs it at 90-130 GFLOP/s (a 3x3x32 layer on 32x32x32:
  1.2 GFLOP in 9-13 ms). Direct Numba loops, even written row by row to vectorize, were
  slower from 3 input channels (1.1x there, 3.7x at 6). Below 3, at stride 1, the
  kernels of kernels/direct.py win: LeNet's first layer (5x5x6 on 28x28x1)
  forward 0.9 ms against 1.8 ms for im2col_t + GEMM, its filter gradient 0.8 ms against
  0.6 ms of GEMM but with no unrolling to keep, and its predictions a third faster.
  The unrolling is memory-bound: it goes into a buffer the layer reuses and
  folds the zero padding in, so no padded copy of A_prev is made.
- For few input channels a row of cols is short (25 values at 1 channel, 5x5), so
  `im2col_t` builds cols transposed: each (tap, image row) is one run along the row, and
  unsigned indices spare Numba's negative-index wraparound; 2x faster than `im2col` at 1
  channel, even at 3. BLAS takes either layout as it is (a transposed operand costs nothing).
- From 3 input channels the layers unroll a few examples at a time instead (kernels/patches.py,
  these bodies in cache-sized blocks). Below, batch-wide:
- The backward pass reuses the forward's cols: dW = cols.T @ dZ (one GEMM, BLAS reads the
  transpose in place), dcols = dZ @ W.T (one GEMM written over the cols buffer, which is no
  longer needed), then col2im adds the patches back, an example at a time: examples never
  share an output cell, so the parallel driver has no races.
- conv2d_transpose is the same pair run the other way round (its forward is a conv's
  input-gradient), in cache-sized blocks of input rows: kernels/transpose.py.
- Depthwise convolution has no channel sum to hand to BLAS: direct loops, kernels/depthwise.py.

Column order of cols is (di, dj, c), matching W.reshape(f * f * n_C_prev, n_C). So a
window row that lies inside the input is f n_C_prev contiguous values on both sides, and
im2col / col2im copy it as one run, by flat unsigned indices (LeNet's 5x5 on 14x14x6, batch
64: 0.62 -> 0.21 ms unrolling, 0.54 -> 0.18 ms folding, against per-cell loops).

Every kernel is a body for one example, `_name(i, ...)`, and two drivers over the batch:
`name` (serial) and `name_parallel` (`prange`). Waking Numba's workqueue threads measured
30-150 us here, more than a whole pass over a small layer (LeNet's second pool at batch
64), so layers take the parallel driver only for large arrays (`dlcli.nn.conv.kernel`).
The im2col / col2im bodies are inlined into their drivers (`inline="always"`), so a driver
compiles as one function: LeNet-5's first step compiled ~1 s less CPU with the pool bodies
inlined too (fresh cache, three interleaved pairs, load 1.7-2.2, 2026-12-03), and the kernels
ran as fast (best of 15: im2col 224-321 -> 239-302 us, col2im 252-358 -> 204-253 us at
LeNet's 5x5 on 14x14x6, batch 64; the parallel drivers on 64x32x32x32 within the noise).
"""

from __future__ import annotations

from numba import njit, prange, uint64



@njit(inline="always")
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


@njit(inline="always")
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


@njit(inline="always")
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


@njit(inline="always")
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
