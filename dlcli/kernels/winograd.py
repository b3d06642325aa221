"""Winograd F(2x2, 3x3) convolution, NHWC, stride 1: Lavin and Gray, "Fast Algorithms for
Convolutional Neural Networks" (2016).

Why: a 3x3 stride-1 convolution through im2col is one GEMM of m n_H n_W x 9 n_C_prev x n_C
multiply-adds. Winograd's minimal filtering computes each 2x2 output tile from a 4x4 input
tile with 16 multiplies per (input, output) channel pair instead of 36 (2.25x fewer), as 16
independent GEMMs (one per tile position) of tiles x n_C_prev x n_C:

    V = B^T d B        (input tile d, 4x4, per channel)    -- `input_transform`
    U = G g G^T        (filter g, 3x3, per channel pair)   -- `filter_transform`
    M[k] = V[k] @ U[k] (k = 0..15, BLAS)                   -- the caller's np.matmul
    Y = A^T M A        (output tile, 2x2)                   -- `output_transform`

The transforms are additions only, a few passes over memory with the channel loop innermost
(contiguous in NHWC, so they vectorize). The same kernel gives a conv layer's input gradient:
for stride 1 it is the convolution of dZ with the filter rotated 180 degrees and its channel
axes swapped, padded by f - 1 - pad (`rotated`), which replaces the dcols GEMM and col2im.
F(2x2, 3x3) loses nothing measurable to rounding (its transforms hold only 0, +-1 and
+-1/2): float64 results equal im2col's to ~1e-15.

Measured (float32, 2 threads, load 1.1-2.2; the layer's figures and where it pays are in
nn/conv_winograd.py): resnet_small's 3x3x32 over 64x32x32x32 forward 10.2 ms chunked
(2 examples a chunk) against 15.1 ms for im2col + GEMM; its pieces batch-wide 5.3 ms input
transform (8.4 before the tiles were laid out (tile, 16, C), one contiguous block each), 7.7
ms for the 16 GEMMs, 2.5 ms output transform. The input gradient takes 11-12 ms against
12.1 ms for the dcols GEMM and col2im. A Winograd filter gradient (dU = V^T dM per position,
then G^T dU G) was written and measured 12-15 ms against 12.6-15 ms for unrolling 4
examples at a time and one GEMM: no gain, not kept.
The transforms come as serial and `_parallel` drivers, as in conv.py; `convolve` runs the
serial ones, its chunks (a few examples) being far below the size where waking the threads
pays (batch-wide the parallel output transform measured 1.7-2.1 ms against 2.5-3.8 ms).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, uint64


@njit(cache=True)
def filter_transform(W, U):
    """U[k, c, n] = (G g G^T)[k // 4, k % 4] for g = W[:, :, c, n] (3x3), G = [[1, 0, 0],
    [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]."""
    _, _, C, K = W.shape
    for c in range(C):
        for n in range(K):
            t = np.empty((4, 3), dtype=U.dtype)  # G g
            for j in range(3):
                g0, g1, g2 = W[0, j, c, n], W[1, j, c, n], W[2, j, c, n]
                t[0, j] = g0
                t[1, j] = (g0 + g1 + g2) * 0.5
                t[2, j] = (g0 - g1 + g2) * 0.5
                t[3, j] = g2
            for a in range(4):
                g0, g1, g2 = t[a, 0], t[a, 1], t[a, 2]
                U[4 * a + 0, c, n] = g0
                U[4 * a + 1, c, n] = (g0 + g1 + g2) * 0.5
                U[4 * a + 2, c, n] = (g0 - g1 + g2) * 0.5
                U[4 * a + 3, c, n] = g2


def rotated(W):
    """The filter of a stride-1 conv's input gradient: W_rot[di, dj, n, c] = W[f-1-di, f-1-dj, c, n]."""
    return np.ascontiguousarray(W[::-1, ::-1].transpose(0, 1, 3, 2))


@njit(inline="always")
def _input_tiles(i, A_prev, pad_top, pad_left, tiles_H, tiles_W, t0, e, V):
    """V[t0 + tile] (16, C) for example i's tiles, tile = th tiles_W + tw."""
    _, n_H_prev, n_W_prev, C = A_prev.shape
    src, v = A_prev.reshape(-1), V.reshape(-1)  # flat, unsigned indices: no wraparound tests
    C2, C3 = 2 * C, 3 * C
    for th in range(tiles_H):
        for tw in range(tiles_W):
            q0 = 2 * tw - pad_left
            inside = 0 <= q0 and q0 + 3 < n_W_prev
            ok0, ok1 = 0 <= q0 < n_W_prev, 0 <= q0 + 1 < n_W_prev
            ok2, ok3 = 0 <= q0 + 2 < n_W_prev, 0 <= q0 + 3 < n_W_prev
            # d B, row by row of the 4x4 window (zero outside the input):
            # B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
            for a in range(4):
                r = 2 * th + a - pad_top
                if r < 0 or r >= n_H_prev:
                    e[a] = 0.0
                    continue
                row = ((i * n_H_prev + r) * n_W_prev + q0) * C  # may start left of the row
                if inside:
                    s0 = uint64(row)
                    for c in range(C):
                        u = s0 + uint64(c)
                        x0, x1 = src[u], src[u + uint64(C)]
                        x2, x3 = src[u + uint64(C2)], src[u + uint64(C3)]
                        e[a, 0, c] = x0 - x2
                        e[a, 1, c] = x1 + x2
                        e[a, 2, c] = x2 - x1
                        e[a, 3, c] = x1 - x3
                else:
                    for c in range(C):
                        x0 = src[row + c] if ok0 else 0.0
                        x1 = src[row + C + c] if ok1 else 0.0
                        x2 = src[row + C2 + c] if ok2 else 0.0
                        x3 = src[row + C3 + c] if ok3 else 0.0
                        e[a, 0, c] = x0 - x2
                        e[a, 1, c] = x1 + x2
                        e[a, 2, c] = x2 - x1
                        e[a, 3, c] = x1 - x3
            # then B^T (d B) down the columns; V[t, 4 a + b] is one contiguous run of C
            base = uint64((t0 + th * tiles_W + tw) * 16 * C)
            for b in range(4):
                o0 = base + uint64(b * C)
                o1, o2, o3 = o0 + uint64(4 * C), o0 + uint64(8 * C), o0 + uint64(12 * C)
                for c in range(C):
                    u = uint64(c)
                    d0, d1, d2, d3 = e[0, b, c], e[1, b, c], e[2, b, c], e[3, b, c]
                    v[o0 + u] = d0 - d2
                    v[o1 + u] = d1 + d2
                    v[o2 + u] = d2 - d1
                    v[o3 + u] = d1 - d3


@njit(cache=True)
def input_transform(A_prev, pad_top, pad_left, tiles_H, tiles_W, V):
    """V (m tiles_H tiles_W, 16, C): B^T d B for every 4x4 input tile d (tiles 2 apart),
    reading A_prev (m, n_H_prev, n_W_prev, C) padded by zeros."""
    e = np.empty((4, 4, A_prev.shape[3]), dtype=V.dtype)
    for i in range(A_prev.shape[0]):
        _input_tiles(i, A_prev, pad_top, pad_left, tiles_H, tiles_W, i * tiles_H * tiles_W, e, V)


@njit(parallel=True, cache=True)
def input_transform_parallel(A_prev, pad_top, pad_left, tiles_H, tiles_W, V):
    for i in prange(A_prev.shape[0]):
        e = np.empty((4, 4, A_prev.shape[3]), dtype=V.dtype)
        _input_tiles(i, A_prev, pad_top, pad_left, tiles_H, tiles_W, i * tiles_H * tiles_W, e, V)


@njit(inline="always")
def _output_tiles(i, M, tiles_H, tiles_W, y, Z):
    _, n_H, n_W, K = Z.shape
    mf, z = M.reshape(-1), Z.reshape(-1)
    for th in range(tiles_H):
        h = 2 * th
        for tw in range(tiles_W):
            base = uint64((i * tiles_H * tiles_W + th * tiles_W + tw) * 16 * K)
            # A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]: along each row a of M first
            for a in range(4):
                p0 = base + uint64(4 * a * K)
                p1, p2, p3 = p0 + uint64(K), p0 + uint64(2 * K), p0 + uint64(3 * K)
                for n in range(K):
                    u = uint64(n)
                    m1, m2 = mf[p1 + u], mf[p2 + u]
                    y[a, 0, n] = mf[p0 + u] + m1 + m2
                    y[a, 1, n] = m1 - m2 - mf[p3 + u]
            for b in range(2):
                w = 2 * tw + b
                if w >= n_W:
                    continue
                z0 = uint64(((i * n_H + h) * n_W + w) * K)
                for n in range(K):
                    z[z0 + uint64(n)] = y[0, b, n] + y[1, b, n] + y[2, b, n]
                if h + 1 < n_H:
                    z1 = z0 + uint64(n_W * K)
                    for n in range(K):
                        z[z1 + uint64(n)] = y[1, b, n] - y[2, b, n] - y[3, b, n]


@njit(cache=True)
def output_transform(M, tiles_H, tiles_W, Z):
    """Z (m, n_H, n_W, K) = A^T M A per tile (M: m tiles_H tiles_W, 16, K), the tiles past
    the output's edge cropped."""
    y = np.empty((4, 2, Z.shape[3]), dtype=Z.dtype)  # M A, per row a of the tile
    for i in range(Z.shape[0]):
        _output_tiles(i, M, tiles_H, tiles_W, y, Z)


@njit(parallel=True, cache=True)
def output_transform_parallel(M, tiles_H, tiles_W, Z):
    for i in prange(Z.shape[0]):
        y = np.empty((4, 2, Z.shape[3]), dtype=Z.dtype)
        _output_tiles(i, M, tiles_H, tiles_W, y, Z)


def tiles(n_H: int, n_W: int) -> tuple[int, int]:
    """Output tiles along each axis: 2x2 outputs a tile, the last one cropped if n is odd."""
    return -(-n_H // 2), -(-n_W // 2)


def convolve(A_prev, U, pad_top, pad_left, Z, buffers, chunk_elements):
    """Z = the 3x3 stride-1 convolution of A_prev (zero-padded by pad_top, pad_left) with the
    filter whose transform is U (16, C, K), a few examples at a time so that a chunk's
    transformed tiles (at most `chunk_elements` values) stay in cache between the passes.
    `buffers` (a dict) keeps the tile buffers from call to call."""
    m, C, K = A_prev.shape[0], U.shape[1], U.shape[2]
    tiles_H, tiles_W = tiles(Z.shape[1], Z.shape[2])
    per_example = 16 * tiles_H * tiles_W * max(C, K)
    step = max(1, chunk_elements // per_example)
    for i0 in range(0, m, step):
        i1 = min(m, i0 + step)
        T = (i1 - i0) * tiles_H * tiles_W
        V = _buffer(buffers, "V", (T, 16, C), Z.dtype)
        M = _buffer(buffers, "M", (T, 16, K), Z.dtype)
        input_transform(A_prev[i0:i1], pad_top, pad_left, tiles_H, tiles_W, V)
        # a tile's 16 positions side by side: each GEMM reads V[:, k] with a row stride of
        # 16 C, which BLAS takes as it is
        np.matmul(V.transpose(1, 0, 2), U, out=M.transpose(1, 0, 2))
        output_transform(M, tiles_H, tiles_W, Z[i0:i1])
    return Z


def _buffer(buffers, name, shape, dtype):
    size = shape[0] * shape[1] * shape[2]
    buf = buffers.get(name)
    if buf is None or buf.size < size or buf.dtype != dtype:
        buf = buffers[name] = np.empty(size, dtype=dtype)
    return buf[:size].reshape(shape)
