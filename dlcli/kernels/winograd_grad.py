"""The backward pass of Winograd F(2x2, 3x3) in Winograd's own domain: the filter gradient
and the input gradient of a 3x3 stride-1 convolution from ONE transform of dZ.

The forward (kernels/winograd.py) computes each 2x2 output tile as Y = A^T M A with
M[k] = V[k] U[k] (k = 0..15, V = B^T d B the input tile, U = G g G^T the filter). Its
gradient, tile by tile, is the same chain backwards:

    dM = A dY A^T           (4x4 from the 2x2 output gradient)        -- `_output_grad_tiles`
    dU[k] = sum over tiles V[k]^T dM[k]   (one GEMM a position)       -- np.dot in `_grad_run`
    dW = G^T dU G           (3x3 from 4x4, once a layer)              -- `filter_grad_transform`
    dV[k] = dM[k] U[k]^T    (one GEMM a position)
    dA_prev += B dV B^T     (4x4 tiles overlapping by 2, summed)      -- `_input_grad_tiles`

Why: the filter gradient had stayed an unrolled GEMM (im2col of the input, 9 C x K
multiply-adds an output pixel) while the forward and the input gradient ran in Winograd's
domain (16 C K / 4 a pixel, 2.25x fewer); and the input gradient ran as a second Winograd
convolution of dZ with the rotated filter, transforming dZ (padded, 4x4 windows) a second
time. Here the input V is transformed again from A_prev (nothing kept from the forward: V
is 4x the input), dZ once, and both gradients come out of the same blocks while they are in
cache. The transforms hold 0, +-1 and +-1/2 only: float64 results equal im2col's to ~1e-15.

How it runs: as the forward, in blocks (a few tile rows of one example, or several whole
examples where an example has few tiles) each transformed, multiplied and transformed back
before the next, one parallel region a pass, a run of whole examples a Numba thread (the
input-gradient tiles of one example overlap, so an example is never split between threads),
each thread summing its own dU; BLAS held to one thread meanwhile (threads.one_blas_thread).

What it measured (Dec 3 2026, float32, 2 threads, the machine shared, load 2-3; dW + dA_prev
ms, against the unrolled dW GEMM + the rotated-filter convolution before): resnet_small's
64x32x32x32 -> 32 18.0 against 27.5 (one thread 28.4 against 37.2); the U-Net's
8x96x128x16 -> 16 12.0 against 13.6; 8x12x16x128 -> 128 6.1 against 10.5; 8x6x8x256 -> 256
7.5 against 14.2 (with several examples a block and the filter transform vectorized, both
in kernels/winograd.py). One 32x32x32 example on one thread: input transform 75-100 us, dM
46 (324 us when it wrote the 16 positions from one loop: 20 store streams did not
vectorize), the dU GEMMs 92, the dV GEMMs 90, the overlapping scatter 120-156. Whole
benchmark: resnet_small 315 -> 352-395 ex/s, the U-Net 18 -> 20-23 (benchmarks/cnn.py,
benchmarks/HISTORY.md). The 32 -> 16 channel layer at 96x128 lost (18.4 against 13.5 ms): the transforms
run on its 32-channel side there. Then (Dec 3 2026, s6-resnet, one thread, load ~3, the
same example): the dV GEMMs on each position's U transposed and contiguous (`transposed`)
92-95 -> 61-64 us, where U[k].T as a view took OpenBLAS's transposed-B path; the scatter
of dA_prev a tile row at a time, each input row stored once (`_input_grad_tiles`)
62-69 -> 31-33 us; the input transform 47-58 -> 25-28 (kernels/winograd.py). The layer
(64x32x32x32 -> 32, 2 threads, 21 interleaved with main's kernels, load 7.5-7.9): CPU
forward 9.35 -> 7.70 ms, backward 21.15 -> 14.98. The GEMMs (dU 62, dV 61-64 us) are
now most of the pass; dM 21-23. A run's first block's dU GEMMs store straight into its dU
(no zeroing of dU, no `add_part`: the U-Net's 6x8 and 12x16 runs are one or two blocks),
bitwise equal; the pass alone (2 threads, float32, 41 alternations, load ~3, Dec 4 2026):
8x6x8x256 -> 256 3.21 -> 3.00 ms, 6x8x128 -> 256 1.65 -> 1.48, 12x16x256 -> 128 3.87 -> 3.75.
A relu or leaky relu layer passes dA and its output A in place of dZ (and A empty
otherwise): the gather of dZ's tiles makes dZ = dA g'(A) and db itself
(kernels/winograd_tiles.py `gather_tile_row`), with no activation-backward pass before.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, uint64

from .winograd import _input_tiles, out_scratch, position_stride, row_scratch
from .winograd_filters import filter_grad_parts
from .winograd_tiles import add_part, gather_tile_row


@njit(inline="always")
def _output_grad_tiles(i, th0, th1, dZ, tiles_W, ps, y, dm, A, slope, db):
    """dM = A dY A^T of example i's output tiles of rows th0:th1 into the flat dm: position
    k of tile t = (th - th0) tiles_W + tw, channel n, at k ps + t K + n. Outputs past the
    edge (a cropped last tile) count as 0. y (kernels/winograd.py's `out_scratch`, 4 tiles_W
    K) holds a tile row's dY, output row r and column parity j of tile tw at (2 r + j)
    tiles_W K + tw K + n, so that each position of the tile row is one loop of tiles_W K
    values; per tile, loops over K (32) took 21-23 us an example of 32x32x32, one thread,
    these 14-15."""
    _, n_H, n_W, K = dZ.shape
    z, za = dZ.reshape(-1), A.reshape(-1)
    N = tiles_W * K
    n1, n2, n3 = uint64(N), uint64(2 * N), uint64(3 * N)  # uint64 all: int64 * uint64 is float64
    for th in range(th0, th1):
        gather_tile_row(i, th, 2, z, n_H, n_W, K, tiles_W, y, za, slope, db)
        # A dY down the columns, A = [[1, 0], [1, 1], [1, -1], [0, -1]]: dY = [[p, q], [r, s]]
        # gives the rows (p, q), (p + r, q + s), (p - r, q - s), (-r, -s); then each row
        # (x0, x1) along: x0, x0 + x1, x0 - x1, -x1, positions 4 a .. 4 a + 3
        base = uint64((th - th0) * N)
        for a in range(4):
            o0 = base + uint64(4 * a * ps)
            o1, o2, o3 = o0 + uint64(ps), o0 + uint64(2 * ps), o0 + uint64(3 * ps)
            for x in range(N):
                u = uint64(x)
                p, q, r, s = y[u], y[u + n1], y[u + n2], y[u + n3]
                if a == 0:
                    x0, x1 = p, q
                elif a == 1:
                    x0, x1 = p + r, q + s
                elif a == 2:
                    x0, x1 = p - r, q - s
                else:
                    x0, x1 = -r, -s
                dm[o0 + u] = x0
                dm[o1 + u] = x0 + x1
                dm[o2 + u] = x0 - x1
                dm[o3 + u] = -x1


@njit(inline="always")
def _flush_row(i, r, slot, pad_left, tiles_W, Df, add, e, dA):
    """dA_prev[i, r] = (add: +=) the input row summed in the ring slot `slot` of the flat
    scratch Df (D[0, slot] of `_input_grad_tiles`, parity layout as kernels/winograd.py's
    `_input_tiles`), plus the flat e's row where stored (if e is not empty: `backward_blocks`'
    addend); nothing for a row outside the input (the padding)."""
    _, H, W, C = dA.shape
    if r < 0 or r >= H:
        return
    d = dA.reshape(-1)
    plus = e.shape[0] > 0
    L = (tiles_W + 1) * C
    row = (i * H + r) * W
    for t in range(tiles_W + 1):
        q, o = 2 * t - pad_left, uint64(slot * 2 * L + t * C)
        if 0 <= q and q + 1 < W:
            s0 = uint64((row + q) * C)
            if add:
                for c in range(C):
                    d[s0 + uint64(c)] += Df[o + uint64(c)]
                    d[s0 + uint64(C + c)] += Df[o + uint64(L + c)]
            elif plus:
                for c in range(C):
                    u = s0 + uint64(c)
                    d[u] = Df[o + uint64(c)] + e[u]
                    d[u + uint64(C)] = Df[o + uint64(L + c)] + e[u + uint64(C)]
            else:
                for c in range(C):
                    d[s0 + uint64(c)] = Df[o + uint64(c)]
                    d[s0 + uint64(C + c)] = Df[o + uint64(L + c)]
        else:
            for j in range(2):
                if 0 <= q + j < W:
                    s0, oj = uint64((row + q + j) * C), o + uint64(j * L)
                    if add:
                        for c in range(C):
                            d[s0 + uint64(c)] += Df[oj + uint64(c)]
                    elif plus:
                        for c in range(C):
                            d[s0 + uint64(c)] = Df[oj + uint64(c)] + e[s0 + uint64(c)]
                    else:
                        for c in range(C):
                            d[s0 + uint64(c)] = Df[oj + uint64(c)]


@njit(inline="always")
def covers(H, W, tiles_H, tiles_W, pad_top, pad_left):
    """Whether the tiles' 4x4 windows reach every input row and column: then each row of
    dA_prev is written whole by `_flush_row` and needs no zeroing first."""
    return (pad_top >= 0 and pad_left >= 0 and 2 * tiles_H + 1 - pad_top >= H - 1
            and 2 * tiles_W + 1 - pad_left >= W - 1)


@njit(inline="always")
def _input_grad_tiles(i, th0, th1, dv, tiles_W, ps, pad_top, pad_left, D, zeroed, e, dA):
    """dA_prev of example i += B dV B^T of its tiles of rows th0:th1 (position k of tile t
    = (th - th0) tiles_W + tw, channel c, at k ps + t C + c in the flat dv); the 4x4 input
    windows overlap by 2 and sum, the parts over the padding are dropped.

    The transpose of kernels/winograd.py's `_input_tiles`, in the same scratch D (`row_scratch`):
    (dV B^T) along each window row a into D[1, a] in parity layout (tile tw's columns 0, 1
    at t' = tw, its 2, 3 at t' = tw + 1 where the next tile's 0, 1 land too), each one loop
    of tiles_W C values; then B down the rows into the ring D[0] of input rows (rows 0, 1
    of a window continue the last tile row's 2, 3); a row goes into dA_prev once no later
    tile row of the block reaches it: stored, unless dA_prev was zeroed first (`zeroed`,
    where the windows do not cover the input: `covers`) or the block before reached it
    too. The tile-at-a-time loops (over C, two vectors behind
    runtime alias checks, and 16 read-modify-writes of dA_prev a tile and channel) took
    62-69 us an example of 32x32x32, one thread; these 31-33."""
    C = dA.shape[3]
    L, N = (tiles_W + 1) * C, tiles_W * C
    Df = D.reshape(-1)  # unsigned offsets into it: no wraparound tests (those kept loops scalar)
    uC = uint64(C)
    for th in range(th0, th1):
        # B = [[1, 0, 0, 0], [0, 1, -1, 1], [-1, 1, 1, 0], [0, 0, 0, -1]]: along the row,
        # column 0 gets v0, 1 gets v1 - v2 + v3, 2 gets v1 + v2 - v0, 3 gets -v3
        base = uint64((th - th0) * N)
        for a in range(4):
            o0 = base + uint64(4 * a * ps)
            o1, o2, o3 = o0 + uint64(ps), o0 + uint64(2 * ps), o0 + uint64(3 * ps)
            g0 = uint64((4 + a) * 2 * L)  # D[1, a, 0]; D[1, a, 1] is L on
            g1 = g0 + uint64(L)
            for x in range(C):  # t' = 0: the first tile's columns 0, 1 alone
                u = uint64(x)
                Df[g0 + u] = dv[o0 + u]
                Df[g1 + u] = dv[o1 + u] - dv[o2 + u] + dv[o3 + u]
            for y in range(N - C):  # tile t' and the columns 2, 3 of tile t' - 1
                w = uint64(y)
                u = w + uC
                Df[g0 + u] = dv[o0 + u] + dv[o1 + w] + dv[o2 + w] - dv[o0 + w]
                Df[g1 + u] = dv[o1 + u] - dv[o2 + u] + dv[o3 + u] - dv[o3 + w]
            for y in range(C):  # t' = tiles_W: the last tile's columns 2, 3 alone
                w = uint64(N - C + y)
                u = w + uC
                Df[g0 + u] = dv[o1 + w] + dv[o2 + w] - dv[o0 + w]
                Df[g1 + u] = -dv[o3 + w]
        # then B down the rows into the ring: rows 0, 1 of the window add to the last tile
        # row's 2, 3 (within the block), rows 2, 3 start here
        s0, s1, s2, s3 = (2 * th) % 4, (2 * th + 1) % 4, (2 * th + 2) % 4, (2 * th + 3) % 4
        for j in range(2):
            if th == th0:
                for x in range(L):
                    e0, e1, e2, e3 = D[1, 0, j, x], D[1, 1, j, x], D[1, 2, j, x], D[1, 3, j, x]
                    D[0, s0, j, x] = e0
                    D[0, s1, j, x] = e1 - e2 + e3
                    D[0, s2, j, x] = e1 + e2 - e0
                    D[0, s3, j, x] = -e3
            else:
                for x in range(L):
                    e0, e1, e2, e3 = D[1, 0, j, x], D[1, 1, j, x], D[1, 2, j, x], D[1, 3, j, x]
                    D[0, s0, j, x] += e0
                    D[0, s1, j, x] += e1 - e2 + e3
                    D[0, s2, j, x] = e1 + e2 - e0
                    D[0, s3, j, x] = -e3
        add = zeroed or (th == th0 and th0 > 0)  # rows 0, 1 flushed by the block before
        _flush_row(i, 2 * th - pad_top, s0, pad_left, tiles_W, Df, add, e, dA)
        _flush_row(i, 2 * th + 1 - pad_top, s1, pad_left, tiles_W, Df, add, e, dA)
        if th == th1 - 1:  # the block's last rows: the next block (if any) adds to them
            _flush_row(i, 2 * th + 2 - pad_top, s2, pad_left, tiles_W, Df, zeroed, e, dA)
            _flush_row(i, 2 * th + 3 - pad_top, s3, pad_left, tiles_W, Df, zeroed, e, dA)


@njit(inline="always")
def _grad_run(p, parts, A_prev, dZ, UT, pad_top, pad_left, examples_a_block, rows, dU, dA,
              input_grad, addend, A, slope, db):
    """The p-th of `parts` runs of whole examples: each block (`rows` tile rows of one
    example, or `examples_a_block` whole examples) transformed, multiplied and transformed
    back while in cache; dU (16, C, K) this run's filter gradient in Winograd's domain,
    dA its examples' input gradient (if input_grad), plus addend if that is not empty; UT
    (16, K, C) the transformed filter with each position transposed (`transposed`)."""
    m, n_H, n_W, K = dZ.shape
    C = A_prev.shape[3]
    tiles_H, tiles_W = (n_H + 1) // 2, (n_W + 1) // 2
    per_example = tiles_H * tiles_W
    T_max = max(rows * tiles_W, examples_a_block * per_example)
    V = np.empty(16 * position_stride(T_max * C), dtype=dZ.dtype)
    M = np.empty(16 * position_stride(T_max * K), dtype=dZ.dtype)
    part = np.empty((C, K), dtype=dZ.dtype)
    D = row_scratch(tiles_W, C, dZ.dtype)
    y = out_scratch(tiles_W, K, dZ.dtype)
    i_lo, i_hi = p * m // parts, (p + 1) * m // parts
    db[:] = 0.0
    if i_lo == i_hi:
        dU[:] = 0.0
    first = True  # the run's first block's GEMMs store into dU: no zeroing, no add_part
    zeroed = not covers(A_prev.shape[1], A_prev.shape[2], tiles_H, tiles_W, pad_top, pad_left)
    e = addend.reshape(-1)
    if input_grad and zeroed:
        if e.shape[0] > 0:
            dA[i_lo:i_hi] = addend[i_lo:i_hi]
            e = e[:0]  # in dA_prev already: every row is added to from here
        else:
            dA[i_lo:i_hi] = 0.0
    i = i_lo
    while i < i_hi:
        # a block: examples i:i1 whole, or tile rows th0:th1 of example i
        i1 = min(i + examples_a_block, i_hi) if examples_a_block > 1 else i + 1
        th0 = 0
        while th0 < tiles_H:
            th1 = tiles_H if examples_a_block > 1 else min(th0 + rows, tiles_H)
            T = (i1 - i) * (th1 - th0) * tiles_W
            pv, pm = position_stride(T * C), position_stride(T * K)
            for j in range(i, i1):  # each example's tiles at its offset in the block
                t0 = (j - i) * (th1 - th0) * tiles_W
                _input_tiles(j, th0, th1, A_prev, pad_top, pad_left, tiles_W, pv, D,
                             V[t0 * C:])
                _output_grad_tiles(j, th0, th1, dZ, tiles_W, pm, y, M[t0 * K:], A, slope, db)
            for k in range(16):
                vk = V[k * pv:k * pv + T * C].reshape((T, C))
                mk = M[k * pm:k * pm + T * K].reshape((T, K))
                if first:
                    np.dot(vk.T, mk, dU[k])
                else:
                    np.dot(vk.T, mk, part)
                    add_part(dU, k, part)
                if input_grad:  # dV[k] = dM[k] U[k]^T over V[k], spent
                    np.dot(mk, UT[k], vk)
            first = False
            if input_grad:
                for j in range(i, i1):
                    t0 = (j - i) * (th1 - th0) * tiles_W
                    _input_grad_tiles(j, th0, th1, V[t0 * C:], tiles_W, pv, pad_top, pad_left,
                                      D, zeroed, e, dA)
            th0 = th1
        i = i1


@njit(cache=True)
def backward_blocks(A_prev, dZ, UT, pad_top, pad_left, examples_a_block, rows, dU_parts, dA,
                    input_grad, addend, A, slope, db_parts):
    """dU_parts[0] = the filter gradient in Winograd's domain (16, C, K), and dA (if
    input_grad) the input gradient, block by block, on this thread; UT = `transposed` U.
    addend (dA's shape, or empty: (0, 1, 1, 1)) is added to dA in its passes: a residual
    block's shortcut gradient (nn/conv_blocks.py), one pass over dA_prev fewer."""
    _grad_run(0, 1, A_prev, dZ, UT, pad_top, pad_left, examples_a_block, rows, dU_parts[0],
              dA, input_grad, addend, A, slope, db_parts[0])


@njit(parallel=True, cache=True)
def backward_blocks_parallel(A_prev, dZ, UT, pad_top, pad_left, examples_a_block, rows,
                             dU_parts, dA, input_grad, addend, A, slope, db_parts):
    """`backward_blocks` in one parallel region: a run of whole examples a thread, each
    summing its own dU_parts[p]; the caller adds the parts."""
    parts = dU_parts.shape[0]
    for p in prange(parts):
        _grad_run(p, parts, A_prev, dZ, UT, pad_top, pad_left, examples_a_block, rows,
                  dU_parts[p], dA, input_grad, addend, A, slope, db_parts[p])


def transposed(U):
    """U (16, C, K) with each position's C x K transposed, contiguous: the dV GEMMs' B operand.
    dM[k] U[k]^T with U[k]^T a transposed view ran OpenBLAS's transposed-B path: 92-95 us an
    example of resnet_small's 32x32x32 against 61-64 us on UT[k] (one thread, load ~3)."""
    return np.ascontiguousarray(U.transpose(0, 2, 1))


def filter_grad_transform(dU, dW):
    """dW[:, :, c, n] = G^T dU[:, c, n] G (3x3 from the 4x4 dU), G = [[1, 0, 0], [1/2, 1/2,
    1/2], [1/2, -1/2, 1/2], [0, 0, 1]]: the gradient through U = G g G^T. One part of
    kernels/winograd_filters.py's `filter_grad_parts`, which the layers call with their
    threads' parts."""
    filter_grad_parts(np.ascontiguousarray(dU).reshape((1,) + dU.shape), dW)
