"""The moves between an NHWC image and a tile row's scratch that Winograd F(2x2, 3x3)
(kernels/winograd.py, kernels/winograd_grad.py) and F(4x4, 3x3) (kernels/winograd4.py,
kernels/winograd4_grad.py) share, the tile side (2 or 4) a constant of the caller.

The scratch layout: a tile row's output row r (0..side-1) and column j of tile tw, channel n,
at (side r + j) N + tw K + n, N = tiles_W K; each tile position of the row is then one loop
over N values in the transforms. Inlined into each caller (`inline="always"`), where the side
is a literal: LLVM folds it, the copies keep their runs of K contiguous values. Numba's cache
does not see edits here from its callers' cache entries: clear the cache after changing this.

With a batch norm after the conv, the scatter also takes Z's moments (`moments_rows`): a tile
row's output rows in one loop, their deviations summed before they go to the float64 sums,
where kernels/batchnorm.py's `moments_add` loaded and stored those sums once an output row.
F(4x4)'s output transform of one 32x32x32 example (one thread, interleaved with main's,
median of 61, load 2.1, Dec 4 2026): 24.4 -> 19.7 us, the moments' share 9.7 -> 4.3 us.
A conv with a piecewise-linear activation (and no batch norm after it) has the scatter write
A = g(Z + b) itself (its epilogue: the bias, then the slope where z + b <= 0), the same select
as kernels/activations.py's forward, so the same bits, and that pass over Z (read Z, write A:
0.7-0.9 ms a 96x128x16 layer of the U-Net inside its step, against 0.42 alone) is gone, and
with it the layer's second output array. The U-Net's whole step at batch 8 (its 18 3x3 convs
all on Winograd), the epilogue on and off in turn in one process, 20 rounds of 4 steps (Dec 4
2026, 06:11 UTC, load 0.8-1.2): 181.4 -> 169.4 ms, faster in 17 of 20.
The backward's gather of dZ's tiles (`gather_tile_row`) likewise takes dA and the layer's
output A for a relu or leaky relu conv: dZ = dA where A > 0, else dA times the slope (the
select of kernels/activations.py's backward, so the same dZ bits, the same dA_prev and dW),
db summed as it goes. kernels/activations.py's pass (read dA and A, write dZ, sum db) and the
dZ array are gone for the U-Net's 14 Winograd-domain convs (48x64 and below). The whole step
at batch 8, the fold on and off in turn in one process (nn/conv_winograd.py `FOLD`), 20 rounds
of 4 steps (Dec 4 2026, 06:56 UTC, load 2.7-3.2): 204.3 -> 199.3 ms, faster in 20 of 20.
And the backward's sum of each block's filter gradient into its run's dU (`add_part`).
Whole resnet_small training steps at batch 64 with these and kernels/winograd4.py's ring and
blocks, alternating epochs of 8 steps with main's in one process (median of 25, load 1.9):
90.5 -> 83.2 ms.
"""

from __future__ import annotations

import numpy as np
from numba import njit, uint64

from .batchnorm import moments_add


@njit(inline="always")
def scatter_tile_row(i, th, side, o, tiles_W, z, n_H, n_W, K, acc, epilogue):
    """Z[i]'s output rows of tile row th (z: Z (m, n_H, n_W, K) flat, taken once by the caller)
    from the scratch o (rows and columns past Z's edge, a cropped last tile, dropped); a
    non-empty acc takes the rows' moments for a batch norm after the conv while they are in
    cache (`moments_rows`). A non-empty epilogue (K + 1 values: the bias, then the slope
    where z + b <= 0: relu 0, leaky relu's, linear 1) writes A = g(Z + b) instead of Z, the
    select of kernels/activations.py's forward (`epilogue`)."""
    N = tiles_W * K
    fused = epilogue.shape[0] > 0
    slope = epilogue[K] if fused else o[0]
    for r in range(side):
        h = side * th + r
        if h >= n_H:
            continue
        for tw in range(tiles_W):
            for j in range(side):
                w = side * tw + j
                if w >= n_W:
                    continue
                z0 = uint64(((i * n_H + h) * n_W + w) * K)
                y0 = uint64((side * r + j) * N + tw * K)
                if fused:
                    for n in range(K):
                        v = o[y0 + uint64(n)] + epilogue[uint64(n)]
                        z[z0 + uint64(n)] = v if v > 0 else v * slope
                else:
                    for n in range(K):
                        z[z0 + uint64(n)] = o[y0 + uint64(n)]
    if acc.shape[1] > 0:
        h0 = side * th
        if h0 + side <= n_H:  # the tile row's output rows, consecutive in Z: one loop
            moments_rows(z, uint64((i * n_H + h0) * n_W * K), side, n_W * K, K, acc)
        else:
            for h in range(h0, n_H):
                moments_add(z, uint64((i * n_H + h) * n_W * K), n_W * K, K, acc)


@njit(inline="always")
def moments_rows(z, z0, rows, n, C, acc):
    """kernels/batchnorm.py's `moments_add` of the `rows` (2 or 4) runs z[z0 + r n:z0 + (r + 1)
    n], in one loop: each run's deviations from the shift summed (in float64, as there)
    before they go to acc's sums, so that acc's two rows of float64 sums are loaded and
    stored once a tile row, not once an output row; acc the same as that many
    `moments_add` calls give, up to the order of the float64 additions."""
    shift, s1, s2 = acc[0], acc[1], acc[2]
    if shift[n] == 0:
        for j in range(n):
            shift[j] = z[z0 + uint64(j % C)]
    shift[n] += rows
    un = uint64(n)
    if rows == 4:
        for j in range(n):
            u = z0 + uint64(j)
            d0 = np.float64(z[u]) - shift[j]
            d1 = np.float64(z[u + un]) - shift[j]
            d2 = np.float64(z[u + un + un]) - shift[j]
            d3 = np.float64(z[u + un + un + un]) - shift[j]
            s1[j] += (d0 + d1) + (d2 + d3)
            s2[j] += (d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3)
    else:
        for j in range(n):
            u = z0 + uint64(j)
            d0 = np.float64(z[u]) - shift[j]
            d1 = np.float64(z[u + un]) - shift[j]
            s1[j] += d0 + d1
            s2[j] += d0 * d0 + d1 * d1


@njit(inline="always")
def gather_tile_row(i, th, side, z, n_H, n_W, K, tiles_W, y, a, slope, db):
    """The scratch y from dZ[i]'s output rows of tile row th (z: dZ flat); outputs past dZ's
    edge (a cropped last tile) count as 0. A non-empty a (the layer's output A flat, z then
    dA) folds the relu / leaky relu backward in: dZ = dA where A > 0, else dA slope (the
    select of kernels/activations.py's backward, the same bits), each value added to db (K
    values) as it goes, so dZ never exists as an array."""
    N = tiles_W * K
    fused = a.shape[0] > 0
    for r in range(side):
        h = side * th + r
        for tw in range(tiles_W):
            for j in range(side):
                w = side * tw + j
                y0 = uint64((side * r + j) * N + tw * K)
                if h < n_H and w < n_W:
                    z0 = uint64(((i * n_H + h) * n_W + w) * K)
                    if fused:
                        for n in range(K):
                            v = z[z0 + uint64(n)]
                            g = v if a[z0 + uint64(n)] > 0 else v * slope
                            y[y0 + uint64(n)] = g
                            db[uint64(n)] += g
                    else:
                        for n in range(K):
                            y[y0 + uint64(n)] = z[z0 + uint64(n)]
                else:
                    for n in range(K):
                        y[y0 + uint64(n)] = 0.0


@njit(inline="always")
def add_part(dU, k, part):
    """dU[k] += part, dU (P, C, K) and part (C, K) contiguous, in one flat loop: the backward's
    `dU[k] += part` as an array expression took 21.5 us an example of resnet_small's
    32x32x32 (36 of them, one thread), this ~1 (kernels/winograd4_grad.py)."""
    n = part.size
    d, q = dU.reshape(-1), part.reshape(-1)
    o = uint64(k * n)
    for x in range(n):
        d[o + uint64(x)] += q[uint64(x)]
