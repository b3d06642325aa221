"""Max and average pooling kernels, NHWC, parallel over the batch.

Why direct loops: a pool does f f compares or adds per output and no channel mixing, so one
pass in Numba beats building a window view in numpy and reducing it, which copies the
windows first (a 2x2 max pool with its argmax, batch 64: 0.46 ms against 4.5 ms on 28x28x6,
1.1 ms against 32 ms on 32x32x32, one thread).
Max pooling keeps, per output, the flat position r * n_W_prev + c of its maximum (the
first one on ties), so the backward pass is a scatter and never compares again; the scatter
runs in parallel over the batch, where no two examples share an input cell. It starts each
example's dA_prev at an addend instead of zeros when given one: a U-Net level's skip gradient
(detect/layers.py SkipConcat), which was a strided add of its own after the pool (pool
backward and add, 8x96x128x16 float32, 61 interleaved, load 5.6: 1.74 -> 1.06 ms; 48x64x32
0.57 -> 0.45). Likewise the forward, when its windows tile the input, copies each cell it
scans into the level's concatenation (the skip's channels), where the level copied its input
after the pool had read it.
A padded window ("same") ignores the cells outside the input: max over the inside ones,
average over the inside count, as Keras does.
Each kernel comes as a serial and a `_parallel` driver of a per-example body, as in conv.py,
the max pool bodies inlined into their drivers (compile time: see conv.py).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, uint64


# From this many channels the window scan runs a cell at a time with the channel loop
# innermost, which vectorizes (3.5x at 32 channels); below it, a channel at a time with the
# running maximum in registers (2.4x faster at 6 channels; `maxpool_forward_narrow`, which
# MaxPool picks). Both index flat arrays with
# unsigned indices (no view per window): 1.02 -> 0.79 ms at 64x32x32x32, 0.46 -> 0.34 ms
# at 64x28x28x6.
VECTOR_CHANNELS = 8


@njit(inline="always")
def _maxpool_forward_narrow(i, A_prev, f, stride, pad_top, pad_left, A, argmax):
    """A channel at a time, the running maximum in registers: below VECTOR_CHANNELS."""
    _, n_H_prev, n_W_prev, n_C = A_prev.shape
    n_H, n_W = A.shape[1], A.shape[2]
    # flat arrays, unsigned indices: no view per window and no wraparound test per element
    src, out, where = A_prev.reshape(-1), A.reshape(-1), argmax.reshape(-1)
    C = uint64(n_C)
    for h in range(n_H):
        r0 = max(h * stride - pad_top, 0)
        r1 = min(h * stride - pad_top + f, n_H_prev)
        for w in range(n_W):
            c0 = max(w * stride - pad_left, 0)
            c1 = min(w * stride - pad_left + f, n_W_prev)
            o = uint64(((i * n_H + h) * n_W + w) * n_C)
            first = uint64(((i * n_H_prev + r0) * n_W_prev + c0) * n_C)
            for k in range(C):
                # locals, not array cells, so the compare compiles to selects, not branches
                top, p = src[first + k], r0 * n_W_prev + c0
                for r in range(r0, r1):
                    for c in range(c0, c1):
                        v = src[uint64(((i * n_H_prev + r) * n_W_prev + c) * n_C) + k]
                        better = v > top
                        top = v if better else top
                        p = r * n_W_prev + c if better else p
                out[o + k] = top
                where[o + k] = p


@njit(inline="always")
def _maxpool_forward(i, A_prev, f, stride, pad_top, pad_left, A, argmax, into):
    """A window cell at a time, the channels innermost: any channel count, vectorized from
    VECTOR_CHANNELS (2x2 and 3x3 windows take `_fixed_window`'s bodies). Each cell scanned is
    also copied into the first n_C channels of its pixel of `into` (m, n_H_prev, n_W_prev, ld),
    unless into is empty (shape (0, 1, 1, 1))."""
    _, n_H_prev, n_W_prev, n_C = A_prev.shape
    n_H, n_W = A.shape[1], A.shape[2]
    src, out, where = A_prev.reshape(-1), A.reshape(-1), argmax.reshape(-1)
    C = uint64(n_C)
    copying, ld, dst = into.shape[0] > 0, uint64(into.shape[3]), into.reshape(-1)
    for h in range(n_H):
        r0 = max(h * stride - pad_top, 0)
        r1 = min(h * stride - pad_top + f, n_H_prev)
        for w in range(n_W):
            c0 = max(w * stride - pad_left, 0)
            c1 = min(w * stride - pad_left + f, n_W_prev)
            o = uint64(((i * n_H + h) * n_W + w) * n_C)
            first = uint64(((i * n_H_prev + r0) * n_W_prev + c0) * n_C)
            for k in range(C):
                out[o + k] = src[first + k]
                where[o + k] = r0 * n_W_prev + c0
            for r in range(r0, r1):
                for c in range(c0, c1):
                    cell, p = uint64(((i * n_H_prev + r) * n_W_prev + c) * n_C), r * n_W_prev + c
                    for k in range(C):  # channels innermost: the selects vectorize
                        v = src[cell + k]
                        better = v > out[o + k]
                        out[o + k] = v if better else out[o + k]
                        where[o + k] = p if better else where[o + k]
                    if copying:  # the cell is in cache: a skip_concat's copy of its input
                        d0 = uint64((i * n_H_prev + r) * n_W_prev + c) * ld
                        for k in range(C):
                            dst[d0 + k] = src[cell + k]


def _fixed_window(F):
    """_maxpool_forward's body for F x F windows, F a constant: each output's window cells
    unrolled in the channel loop, the running maximum and its position in registers, one store
    each at the end. The window's rows and columns are clamped into the input, which repeats
    an edge cell right after itself: the maximum and the first position of it are those of the
    cells inside, as the scan above takes them.
    Why: the scan above keeps the running maximum in A and argmax, cell after cell, and LLVM
    turns that read-compare-write into masked stores (vmaskmovps), a slow instruction on the
    AMD EPYC (Zen 2). One thread, float32, the scan above against this (Dec 4 2026): 3x3
    stride 1 same on 64x16x16x16 (inception_small's pool branch) 1.92 -> 0.52 ms; 2x2 stride 2
    on 64x32x32x16 1.09 -> 0.60, on 8x96x128x16 (the U-Net's first) 1.59 -> 0.89."""
    @njit(inline="always")
    def body(i, A_prev, stride, pad_top, pad_left, A, argmax, into):
        _, n_H_prev, n_W_prev, n_C = A_prev.shape
        n_H, n_W = A.shape[1], A.shape[2]
        src, out, where = A_prev.reshape(-1), A.reshape(-1), argmax.reshape(-1)
        C = uint64(n_C)
        copying, ld, dst = into.shape[0] > 0, uint64(into.shape[3]), into.reshape(-1)
        for h in range(n_H):
            h0 = h * stride - pad_top
            for w in range(n_W):
                w0 = w * stride - pad_left
                o = uint64(((i * n_H + h) * n_W + w) * n_C)
                r_first, c_first = max(h0, 0), max(w0, 0)
                first = uint64(((i * n_H_prev + r_first) * n_W_prev + c_first) * n_C)
                for k in range(C):
                    top, p = src[first + k], r_first * n_W_prev + c_first
                    for dr in range(F):
                        r = min(max(h0 + dr, 0), n_H_prev - 1)
                        for dc in range(F):
                            c = min(max(w0 + dc, 0), n_W_prev - 1)
                            cell = uint64((i * n_H_prev + r) * n_W_prev + c)
                            v = src[cell * C + k]
                            better = v > top
                            top = v if better else top
                            p = r * n_W_prev + c if better else p
                            if copying:  # tiles only (MaxPool): every cell once, none clamped
                                dst[cell * ld + k] = v
                    out[o + k] = top
                    where[o + k] = p
    return body


_maxpool_forward_2x2 = _fixed_window(2)
_maxpool_forward_3x3 = _fixed_window(3)


@njit(inline="always")
def _maxpool_forward_any(i, A_prev, f, stride, pad_top, pad_left, A, argmax, into):
    if f == 2:
        _maxpool_forward_2x2(i, A_prev, stride, pad_top, pad_left, A, argmax, into)
    elif f == 3:
        _maxpool_forward_3x3(i, A_prev, stride, pad_top, pad_left, A, argmax, into)
    else:
        _maxpool_forward(i, A_prev, f, stride, pad_top, pad_left, A, argmax, into)


@njit(cache=True)
def maxpool_forward(A_prev, f, stride, pad_top, pad_left, A, argmax, into):
    for i in range(A_prev.shape[0]):
        _maxpool_forward_any(i, A_prev, f, stride, pad_top, pad_left, A, argmax, into)


@njit(parallel=True, cache=True)
def maxpool_forward_parallel(A_prev, f, stride, pad_top, pad_left, A, argmax, into):
    for i in prange(A_prev.shape[0]):
        _maxpool_forward_any(i, A_prev, f, stride, pad_top, pad_left, A, argmax, into)


@njit(cache=True)
def maxpool_forward_narrow(A_prev, f, stride, pad_top, pad_left, A, argmax):
    """maxpool_forward's scan for fewer than VECTOR_CHANNELS channels. Separate drivers, so
    that a model compiles only the scans its pools use (0.3-0.5 s each, fresh cache)."""
    for i in range(A_prev.shape[0]):
        _maxpool_forward_narrow(i, A_prev, f, stride, pad_top, pad_left, A, argmax)


@njit(parallel=True, cache=True)
def maxpool_forward_narrow_parallel(A_prev, f, stride, pad_top, pad_left, A, argmax):
    for i in prange(A_prev.shape[0]):
        _maxpool_forward_narrow(i, A_prev, f, stride, pad_top, pad_left, A, argmax)


@njit(inline="always")
def _maxpool_infer(i, A_prev, f, stride, pad_top, pad_left, A):
    """_maxpool_forward without the argmax, in two stages per output row: the maximum down
    the window's rows over the whole input row (contiguous, so it vectorizes at any channel
    count), then across each window's columns. The same values as the training scan, NaNs
    too (both keep the window's first cell unless a greater one comes)."""
    _, n_H_prev, n_W_prev, n_C = A_prev.shape
    n_H, n_W = A.shape[1], A.shape[2]
    src, out = A_prev.reshape(-1), A.reshape(-1)
    row = n_W_prev * n_C
    R, C = uint64(row), uint64(n_C)
    down = np.empty(row, dtype=A.dtype)  # the maxima down the window rows, per input column
    for h in range(n_H):
        r0 = max(h * stride - pad_top, 0)
        r1 = min(h * stride - pad_top + f, n_H_prev)
        first = uint64((i * n_H_prev + r0) * row)
        for x in range(R):
            down[x] = src[first + x]
        for r in range(r0 + 1, r1):
            base = uint64((i * n_H_prev + r) * row)
            for x in range(R):
                v = src[base + x]
                down[x] = v if v > down[x] else down[x]
        for w in range(n_W):
            c0 = max(w * stride - pad_left, 0)
            c1 = min(w * stride - pad_left + f, n_W_prev)
            o = uint64(((i * n_H + h) * n_W + w) * n_C)
            t = uint64(c0 * n_C)
            for k in range(C):
                out[o + k] = down[t + k]
            for c in range(c0 + 1, c1):
                t = uint64(c * n_C)
                for k in range(C):
                    v = down[t + k]
                    out[o + k] = v if v > out[o + k] else out[o + k]


@njit(cache=True)
def maxpool_infer(A_prev, f, stride, pad_top, pad_left, A):
    for i in range(A_prev.shape[0]):
        _maxpool_infer(i, A_prev, f, stride, pad_top, pad_left, A)


@njit(parallel=True, cache=True)
def maxpool_infer_parallel(A_prev, f, stride, pad_top, pad_left, A):
    for i in prange(A_prev.shape[0]):
        _maxpool_infer(i, A_prev, f, stride, pad_top, pad_left, A)


@njit(inline="always")
def _start_rows(i, addend, dA_prev):
    """dA_prev[i] = addend[i] (any strides: a skip_concat's channels of its gradient), or 0
    for an empty addend."""
    if addend.shape[0] == 0:
        dA_prev[i] = 0.0
        return
    _, n_H_prev, n_W_prev, n_C = dA_prev.shape
    for r in range(n_H_prev):
        for c in range(n_W_prev):
            for k in range(n_C):
                dA_prev[i, r, c, k] = addend[i, r, c, k]


@njit(inline="always")
def _maxpool_backward(i, dA, argmax, dA_prev, addend):
    _, n_H_prev, n_W_prev, n_C = dA_prev.shape
    n_H, n_W = dA.shape[1], dA.shape[2]
    _start_rows(i, addend, dA_prev)
    # flat, unsigned: the position p = r n_W_prev + c is the cell's index in example i
    g, where, d = dA.reshape(-1), argmax.reshape(-1), dA_prev.reshape(-1)
    C, base = uint64(n_C), uint64(i * n_H_prev * n_W_prev)
    o = uint64(i * n_H * n_W * n_C)
    for _ in range(n_H * n_W):
        for k in range(C):
            d[(base + uint64(where[o + k])) * C + k] += g[o + k]
        o += C


@njit(cache=True)
def maxpool_backward(dA, argmax, dA_prev, addend):
    """dA_prev = addend + each cell's gradient at its maximum; addend of shape (0, 1, 1, 1):
    none. The addend (a skip_concat's gradient of its input, detect/layers.py) is written as
    dA_prev's start instead of zeros: no pass of its own over dA_prev."""
    for i in range(dA.shape[0]):
        _maxpool_backward(i, dA, argmax, dA_prev, addend)


@njit(parallel=True, cache=True)
def maxpool_backward_parallel(dA, argmax, dA_prev, addend):
    for i in prange(dA.shape[0]):
        _maxpool_backward(i, dA, argmax, dA_prev, addend)


@njit
def _avgpool_forward(i, A_prev, f, stride, pad_top, pad_left, A):
    _, n_H_prev, n_W_prev, n_C = A_prev.shape
    n_H, n_W = A.shape[1], A.shape[2]
    for h in range(n_H):
        r0 = max(h * stride - pad_top, 0)
        r1 = min(h * stride - pad_top + f, n_H_prev)
        for w in range(n_W):
            c0 = max(w * stride - pad_left, 0)
            c1 = min(w * stride - pad_left + f, n_W_prev)
            for k in range(n_C):
                A[i, h, w, k] = 0.0
            for r in range(r0, r1):
                for c in range(c0, c1):
                    for k in range(n_C):
                        A[i, h, w, k] += A_prev[i, r, c, k]
            scale = 1.0 / ((r1 - r0) * (c1 - c0))
            for k in range(n_C):
                A[i, h, w, k] *= scale


@njit(cache=True)
def avgpool_forward(A_prev, f, stride, pad_top, pad_left, A):
    for i in range(A_prev.shape[0]):
        _avgpool_forward(i, A_prev, f, stride, pad_top, pad_left, A)


@njit(parallel=True, cache=True)
def avgpool_forward_parallel(A_prev, f, stride, pad_top, pad_left, A):
    for i in prange(A_prev.shape[0]):
        _avgpool_forward(i, A_prev, f, stride, pad_top, pad_left, A)


@njit
def _avgpool_backward(i, dA, f, stride, pad_top, pad_left, dA_prev):
    _, n_H_prev, n_W_prev, n_C = dA_prev.shape
    n_H, n_W = dA.shape[1], dA.shape[2]
    dA_prev[i] = 0.0
    for h in range(n_H):
        r0 = max(h * stride - pad_top, 0)
        r1 = min(h * stride - pad_top + f, n_H_prev)
        for w in range(n_W):
            c0 = max(w * stride - pad_left, 0)
            c1 = min(w * stride - pad_left + f, n_W_prev)
            scale = 1.0 / ((r1 - r0) * (c1 - c0))
            for r in range(r0, r1):
                for c in range(c0, c1):
                    for k in range(n_C):
                        dA_prev[i, r, c, k] += dA[i, h, w, k] * scale


@njit(cache=True)
def avgpool_backward(dA, f, stride, pad_top, pad_left, dA_prev):
    for i in range(dA.shape[0]):
        _avgpool_backward(i, dA, f, stride, pad_top, pad_left, dA_prev)


@njit(parallel=True, cache=True)
def avgpool_backward_parallel(dA, f, stride, pad_top, pad_left, dA_prev):
    for i in prange(dA.shape[0]):
        _avgpool_backward(i, dA, f, stride, pad_top, pad_left, dA_prev)
