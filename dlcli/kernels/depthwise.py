"""Depthwise convolution kernels, NHWC: direct loops, the channel loop innermost.

Why this algorithm: a depthwise convolution has no channel sum to hand to BLAS (a GEMM per
channel would be f f wide), so it runs as direct loops over flat arrays, the channels of a
pixel contiguous in NHWC, so each loop over them vectorizes.
- Forward: an output pixel whose 3x3 window lies inside the input (all but the border) is one
  loop over its channels summing the nine taps in registers: 18 loads and one store per nine
  multiply-adds. The border pixels and other filter sizes add a tap at a time into the output
  pixel (its C values stay in L1).
- Input gradient at stride 1: the forward with the filter rotated 180 degrees over dZ, padded
  by f - 1 - pad (each input pixel gathers its taps: written once, no zeroing, no scatter).
  At stride 2 and more an output pixel scatters its taps into dA_prev, zeroed first, and
  sums the filter gradient in the same loop.
- Filter gradient (stride 1): per example, a tap at a time over the output rows, into that
  example's dW_per_example[i] (the caller sums over examples), so the parallel loop over
  examples never writes a shared cell.
All indices are flat and unsigned (no negative-index wraparound test). The previous loops
vectorized too; what they spent was an output load and store per multiply-add (Z[i, h, w, c]
+= ... a tap at a time) and, backward, a scatter into a zeroed dA_prev.

Measured (mobilenet_v2_small's layers, 64x16x16x64 float32, one thread, medians of 40
interleaved with the previous loops, Dec 3 2026, load 1.6-2.8): stride 1 forward 1.27 ->
0.82 ms, backward 2.23 -> 1.98 (its filter gradient ~1.1 of that, still an accumulator load
and store a multiply-add); stride 2 forward 0.32 -> 0.21, backward 0.65 -> 0.67 (same).
Whole mobilenet_v2_small steps at batch 64, old and new alternating in one process (30 a
side): CPU 56.8 -> 51.1 ms at load 2.6, 55.2 -> 52.3 at load 3.7. Tried and dropped: the
filter gradient nine taps a pixel in one channel loop (7.3 ms against 1.2), three taps a
pixel summed a row at a time (0.90 against 1.05 ms: too little for its code), and a tap's
row as one flat run into a per-row accumulator (1.54 against 1.56 ms).

Every kernel is a body for one example and two drivers over the batch, serial and `prange`
(kernels/conv.py explains why both; nn/conv.py's `kernel` picks one by size).
"""

from __future__ import annotations

from numba import njit, prange, uint64

from .conv import _inside


@njit(inline="always")
def _window3(a, p, row, wt, C, z, z0):
    """z[z0:z0 + C] = the 3x3 window at a[p] (rows `row` apart) times the taps wt, per channel."""
    p0, p1, p2 = uint64(p), uint64(p + row), uint64(p + 2 * row)
    C1, C2 = uint64(C), uint64(2 * C)
    t, t2 = uint64(3 * C), uint64(6 * C)
    for c0 in range(C):
        c = uint64(c0)
        z[z0 + c] = (a[p0 + c] * wt[c] + a[p0 + C1 + c] * wt[C1 + c] + a[p0 + C2 + c] * wt[C2 + c]
                     + a[p1 + c] * wt[t + c] + a[p1 + C1 + c] * wt[t + C1 + c]
                     + a[p1 + C2 + c] * wt[t + C2 + c]
                     + a[p2 + c] * wt[t2 + c] + a[p2 + C1 + c] * wt[t2 + C1 + c]
                     + a[p2 + C2 + c] * wt[t2 + C2 + c])


@njit(inline="always")
def _forward(i, A_prev, W, stride, pad_top, pad_left, Z):
    _, n_H_prev, n_W_prev, C = A_prev.shape
    f = W.shape[0]
    n_H, n_W = Z.shape[1], Z.shape[2]
    a, wt, z = A_prev.reshape(-1), W.reshape(-1), Z.reshape(-1)
    row = n_W_prev * C
    for h in range(n_H):
        r0 = h * stride - pad_top
        rows_inside = f == 3 and r0 >= 0 and r0 + 3 <= n_H_prev
        for w in range(n_W):
            q0 = w * stride - pad_left
            z0 = uint64(((i * n_H + h) * n_W + w) * C)
            if rows_inside and q0 >= 0 and q0 + 3 <= n_W_prev:
                _window3(a, ((i * n_H_prev + r0) * n_W_prev + q0) * C, row, wt, C, z, z0)
                continue
            for c0 in range(C):
                c = uint64(c0)
                z[z0 + c] = 0.0
            for di in range(f):
                r = r0 + di
                if r < 0 or r >= n_H_prev:
                    continue
                for dj in range(f):
                    q = q0 + dj
                    if q < 0 or q >= n_W_prev:
                        continue
                    p = uint64(((i * n_H_prev + r) * n_W_prev + q) * C)
                    t = uint64((di * f + dj) * C)
                    for c0 in range(C):
                        c = uint64(c0)
                        z[z0 + c] += a[p + c] * wt[t + c]


@njit(cache=True)
def depthwise_forward(A_prev, W, stride, pad_top, pad_left, Z):
    """Z[i, h, w, c] = sum_{di, dj} A_prev[i, h s + di - pad_top, w s + dj - pad_left, c] W[di, dj, c],
    0 outside A_prev (pads may be negative: the input gradient's call crops)."""
    for i in range(A_prev.shape[0]):
        _forward(i, A_prev, W, stride, pad_top, pad_left, Z)


@njit(parallel=True, cache=True)
def depthwise_forward_parallel(A_prev, W, stride, pad_top, pad_left, Z):
    for i in prange(A_prev.shape[0]):
        _forward(i, A_prev, W, stride, pad_top, pad_left, Z)


@njit(inline="always")
def _filter_grad(i, dZ, A_prev, stride, pad_top, pad_left, dW_per_example):
    """dW_per_example[i] (overwritten) = sum over output pixels of dZ times the tap's input."""
    _, n_H_prev, n_W_prev, C = A_prev.shape
    _, f, _, _ = dW_per_example.shape
    n_H, n_W = dZ.shape[1], dZ.shape[2]
    a, g, acc = A_prev.reshape(-1), dZ.reshape(-1), dW_per_example[i].reshape(-1)
    for j0 in range(f * f * C):
        j = uint64(j0)
        acc[j] = 0.0
    for h in range(n_H):
        for di in range(f):
            r = h * stride + di - pad_top
            if r < 0 or r >= n_H_prev:
                continue
            for dj in range(f):
                offset = dj - pad_left
                w0, w1 = _inside(offset, stride, n_W_prev, n_W)  # inputs inside the row
                t = uint64((di * f + dj) * C)
                for w in range(w0, w1):
                    p = uint64(((i * n_H_prev + r) * n_W_prev + w * stride + offset) * C)
                    q = uint64(((i * n_H + h) * n_W + w) * C)
                    for c0 in range(C):
                        c = uint64(c0)
                        acc[t + c] += g[q + c] * a[p + c]


@njit(inline="always")
def _scatter(i, dZ, A_prev, W, stride, pad_top, pad_left, dA_prev, dW_per_example):
    """dA_prev[i] (overwritten) = each output pixel's gradient times its taps, put back in
    place, and dW_per_example[i] (overwritten) in the same loop, which reads both inputs."""
    _, n_H_prev, n_W_prev, C = dA_prev.shape
    f = W.shape[0]
    n_H, n_W = dZ.shape[1], dZ.shape[2]
    g, wt, d, a = dZ.reshape(-1), W.reshape(-1), dA_prev.reshape(-1), A_prev.reshape(-1)
    acc = dW_per_example[i].reshape(-1)
    for j0 in range(f * f * C):
        acc[uint64(j0)] = 0.0
    base = uint64(i * n_H_prev * n_W_prev * C)
    for j0 in range(n_H_prev * n_W_prev * C):
        d[base + uint64(j0)] = 0.0
    for h in range(n_H):
        for w in range(n_W):
            q = uint64(((i * n_H + h) * n_W + w) * C)
            for di in range(f):
                r = h * stride + di - pad_top
                if r < 0 or r >= n_H_prev:
                    continue
                for dj in range(f):
                    x = w * stride + dj - pad_left
                    if x < 0 or x >= n_W_prev:
                        continue
                    p = uint64(((i * n_H_prev + r) * n_W_prev + x) * C)
                    t = uint64((di * f + dj) * C)
                    for c0 in range(C):
                        c = uint64(c0)
                        d[p + c] += g[q + c] * wt[t + c]
                        acc[t + c] += g[q + c] * a[p + c]


@njit(inline="always")
def _backward(i, dZ, A_prev, W, W_rot, stride, pad_top, pad_left, dA_prev, dW_per_example):
    if stride == 1:  # each input pixel gathers its taps: the forward over dZ, filter rotated
        f = W.shape[0]
        _filter_grad(i, dZ, A_prev, 1, pad_top, pad_left, dW_per_example)
        _forward(i, dZ, W_rot, 1, f - 1 - pad_top, f - 1 - pad_left, dA_prev)
    else:
        _scatter(i, dZ, A_prev, W, stride, pad_top, pad_left, dA_prev, dW_per_example)


@njit(cache=True)
def depthwise_backward(dZ, A_prev, W, W_rot, stride, pad_top, pad_left, dA_prev, dW_per_example):
    """dA_prev (overwritten) and dW_per_example[i] (overwritten; the caller sums over i).
    W_rot = W[::-1, ::-1], contiguous (stride 1's input gradient)."""
    for i in range(dZ.shape[0]):
        _backward(i, dZ, A_prev, W, W_rot, stride, pad_top, pad_left, dA_prev, dW_per_example)


@njit(parallel=True, cache=True)
def depthwise_backward_parallel(dZ, A_prev, W, W_rot, stride, pad_top, pad_left, dA_prev,
                                dW_per_example):
    for i in prange(dZ.shape[0]):
        _backward(i, dZ, A_prev, W, W_rot, stride, pad_top, pad_left, dA_prev, dW_per_example)
