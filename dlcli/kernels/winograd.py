"""Winograd F(2x2, 3x3) convolution, NHWC, stride 1: Lavin and Gray, "Fast Algorithms for
Convolutional Neural Networks" (2016).

Why: a 3x3 stride-1 convolution through im2col is one GEMM of m n_H n_W x 9 n_C_prev x n_C
multiply-adds. Winograd's minimal filtering computes each 2x2 output tile from a 4x4 input
tile with 16 multiplies per (input, output) channel pair instead of 36 (2.25x fewer), as 16
independent GEMMs (one per tile position) of tiles x n_C_prev x n_C (the backward pass, both
gradients in the same domain, is kernels/winograd_grad.py):

    V = B^T d B        (input tile d, 4x4, per channel)    -- `_input_tiles`
    U = G g G^T        (filter g, 3x3, per channel pair)   -- `filter_transform`
    M[k] = V[k] @ U[k] (k = 0..15, BLAS)                   -- np.dot in `_convolve_block`
    Y = A^T M A        (output tile, 2x2)                   -- `_output_tiles`

The transforms are additions only, a few passes over memory with the channel loop innermost
(contiguous in NHWC, so they vectorize). F(2x2, 3x3) loses nothing measurable to rounding (its transforms hold only 0, +-1 and
+-1/2): float64 results equal im2col's to ~1e-15.

How it runs (`convolve`): the batch is cut into blocks of a few tile rows of one example
(BLOCK_ELEMENTS transformed values, so a block's V, M and U stay in a core's L2), and each
block is transformed, multiplied (16 GEMMs, np.dot on this thread) and transformed back
before the next, in ONE parallel region (`convolve_blocks_parallel`): a run of consecutive
blocks a Numba thread, BLAS held to one thread while it lasts (`one_blas_thread`).

Why one region: the first version transformed 2 examples at a time on one thread and called
a 2-thread BLAS between the passes, 32 times a layer. On this shared 2-core machine, while
another process held a core, each of those 2-thread GEMMs waited for a descheduled BLAS
thread: resnet_small's 3x3x32 on 64x32x32x32 took 369-404 ms forward on im2col's 2-thread
GEMM, against 15-21 ms for the blocks here (load 2.2-2.8, Dec 3 2026); in whole steps at
load ~3 resnet_small's 3x3x32 layers took 240-280 ms forward + backward before, 76-101 ms
after. At lighter load the two are within noise of each other on resnet_small's layer
(forward 10.5-12 ms; whole benchmark runs 0.63-0.70x against 0.72-0.77x, benchmarks/HISTORY.md);
the blocks win on large images, where the old chunks (an example's tiles, 6 MB) left the
cache: the U-Net's 8x96x128x32 -> 16, forward 19-30 ms against 6-15 ms. The static split
(a run of blocks a thread) still waits for a thread whose core is taken; handing out blocks
dynamically is the next thing to try. Where an example has few tiles (the U-Net's 6x8 and
12x16 levels) a block holds several whole examples, at least as many tiles as channels and
at most a thread's share of the batch (`blocks`): one example a block made GEMMs of 12 rows
against a 256x256 U[k], which BLAS packs at every call (8x6x8x256 -> 256 forward 7.3 ->
3.1 ms with the filter transform vectorized, 0.24 ms against 7.1).
Pieces, one thread, one 32x32x32 example (CPU time): input transform 54 us, the 16 GEMMs
80-89 us, output transform 26-30 us. Dec 3 2026 (s6-resnet, load ~3): the input transform
47-58 -> 25-28 us by running a tile row at a time (`_input_tiles`: a tile's loops over C
= 32 values were two vectors each behind ~20 runtime alias checks, and a signed index
Numba cannot prove >= 0 kept a loop scalar); GEMMs 57-60, output transform 17-18.
F(4x4, 3x3) runs resnet_small's layers since (kernels/winograd4.py). Where U is large and
an example's tiles few (the U-Net's 12x16 and 6x8 levels, 128-256 channels: `by_positions`),
the whole batch is transformed at once and its 16 GEMMs split between the threads by tile
position instead, so that each thread reads half of U (kernels/winograd_positions.py).
With a batch norm after the conv (nn/conv_winograd.py `fuse`), each output row written is
also summed into its thread's moments while in cache (kernels/batchnorm.py `moments_add`):
+0.6-1.0 ms a 64x32x32x32 -> 32 forward (2 threads, load ~4), against 2.2 ms less for the
batch norm, whose pass over Z for them is gone (kernels/batchnorm.py).
A block's 16 tile positions lie `position_stride` apart, not a multiple of 1 KB: at 256
tiles x 32 channels they were 32 KB apart and the transforms' 16 streams shared one L1 set
(output transform 21 -> 13-17 us an example, dM 37 -> 16-21, the dA_prev scatter 88 -> 57).
Tried and not kept then: F(4x4, 3x3) (36 GEMMs of 4x fewer multiplies, the transforms 6x6):
its GEMMs took 48 against 80-89 us an example, but its transforms 57 + 43-75 us, a step
of resnet_small 229 against 246 ms (one thread) and the U-Net's 586 against 524 ms. With
the transforms a tile row at a time it won on resnet_small's layers (kernels/winograd4.py).
A Winograd filter gradient alone (dU = V^T dM per position, then G^T dU G) measured no
faster than unrolling (12-15 ms against 12.6-15 ms); with the input gradient from the same
dM it pays (kernels/winograd_grad.py).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, uint64

from .batchnorm import moments as batch_moments
from .threads import shared
from .winograd_tiles import scatter_tile_row

P = 16  # tile positions (kernels/winograd4.py's F(4x4, 3x3) has 36)


@njit(cache=True)
def filter_transform(W, U):
    """U[k, c, n] = (G g G^T)[k // 4, k % 4] for g = W[:, :, c, n] (3x3), G = [[1, 0, 0],
    [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]; the output channel innermost (contiguous
    in W and U: a 3x3x256x256 filter 7.1 -> 0.2 ms against a pair (c, n) at a time)."""
    _, _, C, K = W.shape
    t = np.empty((4, 3, K), dtype=U.dtype)  # G g
    for c in range(C):
        for j in range(3):
            for n in range(K):
                g0, g1, g2 = W[0, j, c, n], W[1, j, c, n], W[2, j, c, n]
                t[0, j, n] = g0
                t[1, j, n] = (g0 + g1 + g2) * 0.5
                t[2, j, n] = (g0 - g1 + g2) * 0.5
                t[3, j, n] = g2
        for a in range(4):
            for n in range(K):
                g0, g1, g2 = t[a, 0, n], t[a, 1, n], t[a, 2, n]
                U[4 * a + 0, c, n] = g0
                U[4 * a + 1, c, n] = (g0 + g1 + g2) * 0.5
                U[4 * a + 2, c, n] = (g0 - g1 + g2) * 0.5
                U[4 * a + 3, c, n] = g2


@njit(inline="always")
def _input_tiles(i, th0, th1, A_prev, pad_top, pad_left, tiles_W, ps, D, v):
    """Example i's tiles of tile rows th0:th1 into the flat v: position k (0..15) of tile
    t = (th - th0) tiles_W + tw, channel c, at k ps + t C + c.

    D (2, 4, 2, (tiles_W + 1) C) is scratch (`row_scratch`): D[0] a ring of 4 input rows
    (row r + pad_top in slot (r + pad_top) mod 4), each split by column parity: D[0, slot, j]
    holds columns 2 t' - pad_left + j, t' = 0..tiles_W, a run of C each (0 outside the
    input); D[1] their B^T combinations down a window's rows. Tile tw's window columns
    0..3 are then parity 0, 1 at t' = tw and at tw + 1, so each position of a tile row is
    ONE loop of tiles_W C values: the tile-at-a-time loops ran over C (32) values each,
    two vectors behind ~20 runtime alias checks (one thread, 32x32x32: 47-58 -> 25-28 us
    an example)."""
    _, n_H_prev, n_W_prev, C = A_prev.shape
    src = A_prev.reshape(-1)  # flat, unsigned indices: no wraparound tests (a signed index
    L, N = (tiles_W + 1) * C, tiles_W * C  # that Numba cannot prove >= 0 kept a loop scalar)
    Df = D.reshape(-1)
    for th in range(th0, th1):
        for a in range(0 if th == th0 else 2, 4):  # rows 0, 1 are the last tile row's 2, 3
            r = 2 * th + a - pad_top
            slot = (2 * th + a) % 4
            w0 = uint64(slot * 2 * L)  # D[0, slot, 0] in the flat Df (D[0, slot, 1] L on)
            if r < 0 or r >= n_H_prev:
                for x in range(2 * L):
                    Df[w0 + uint64(x)] = 0.0
                continue
            row = (i * n_H_prev + r) * n_W_prev
            for t in range(tiles_W + 1):
                q, o = 2 * t - pad_left, w0 + uint64(t * C)
                if 0 <= q and q + 1 < n_W_prev:
                    s0 = uint64((row + q) * C)
                    for c in range(C):
                        Df[o + uint64(c)] = src[s0 + uint64(c)]
                        Df[o + uint64(L + c)] = src[s0 + uint64(C + c)]
                else:
                    for j in range(2):
                        oj = o + uint64(j * L)
                        if 0 <= q + j < n_W_prev:
                            s0 = uint64((row + q + j) * C)
                            for c in range(C):
                                Df[oj + uint64(c)] = src[s0 + uint64(c)]
                        else:
                            for c in range(C):
                                Df[oj + uint64(c)] = 0.0
        # B^T d down the window's rows, B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0],
        # [0, 1, 0, -1]]
        s0, s1, s2, s3 = (2 * th) % 4, (2 * th + 1) % 4, (2 * th + 2) % 4, (2 * th + 3) % 4
        for j in range(2):
            for x in range(L):
                d0, d1, d2, d3 = D[0, s0, j, x], D[0, s1, j, x], D[0, s2, j, x], D[0, s3, j, x]
                D[1, 0, j, x] = d0 - d2
                D[1, 1, j, x] = d1 + d2
                D[1, 2, j, x] = d2 - d1
                D[1, 3, j, x] = d1 - d3
        # then (B^T d) B along the columns, a tile row's run of positions 4 a .. 4 a + 3
        base = uint64((th - th0) * N)
        for a in range(4):
            o0 = base + uint64(4 * a * ps)
            o1, o2, o3 = o0 + uint64(ps), o0 + uint64(2 * ps), o0 + uint64(3 * ps)
            g0 = uint64((4 + a) * 2 * L)  # D[1, a, 0] in the flat Df
            g1, g2, g3 = g0 + uint64(L), g0 + uint64(C), g0 + uint64(L + C)
            for x in range(N):
                u = uint64(x)
                e0, e1 = Df[g0 + u], Df[g1 + u]
                e2, e3 = Df[g2 + u], Df[g3 + u]
                v[o0 + u] = e0 - e2
                v[o1 + u] = e1 + e2
                v[o2 + u] = e2 - e1
                v[o3 + u] = e1 - e3


@njit(inline="always")
def row_scratch(tiles_W, C, dtype):
    """The scratch `_input_tiles` takes: (2, 4, 2, (tiles_W + 1) C)."""
    return np.empty((2, 4, 2, (tiles_W + 1) * C), dtype=dtype)


@njit(inline="always")
def _output_tiles(i, th0, th1, mf, tiles_W, ps, y, Z, acc, epilogue):
    """Z's outputs of example i, tile rows th0:th1 (the tiles past the output's edge
    cropped), from the flat mf: position k of tile t = (th - th0) tiles_W + tw, channel n,
    at k ps + t K + n. y (`out_scratch`, 4 tiles_W K): Y = A^T M A of a tile row, output row
    r and column parity j of tile tw at (2 r + j) tiles_W K + tw K + n, one loop of tiles_W K
    values from the 16 positions; then copied into Z's two rows, a run of K a column. Per
    tile, the loops over K (32: two vectors behind runtime alias checks) took 15-16 us an
    example of 32x32x32, one thread; these 9.6-9.9. A non-empty acc takes each output row's
    moments for the batch norm after the conv while the row is in cache
    (kernels/batchnorm.py `moments_add`)."""
    _, n_H, n_W, K = Z.shape
    z = Z.reshape(-1)
    N = tiles_W * K
    # offsets all uint64: an int64 times a uint64 is a float64 in Numba
    q1, q2, q3 = uint64(ps), uint64(2 * ps), uint64(3 * ps)
    n1, n2, n3 = uint64(N), uint64(2 * N), uint64(3 * N)
    for th in range(th0, th1):
        # A^T = [[1, 1, 1, 0], [0, 1, -1, -1]] along each row a of M (t_a0, t_a1), then down
        # the rows: one loop over the tile row's tiles and channels
        p0 = uint64((th - th0) * N)
        p1, p2, p3 = p0 + uint64(4 * ps), p0 + uint64(8 * ps), p0 + uint64(12 * ps)
        for x in range(N):
            u = uint64(x)
            m1, m2 = mf[p0 + q1 + u], mf[p0 + q2 + u]
            t00, t01 = mf[p0 + u] + m1 + m2, m1 - m2 - mf[p0 + q3 + u]
            m1, m2 = mf[p1 + q1 + u], mf[p1 + q2 + u]
            t10, t11 = mf[p1 + u] + m1 + m2, m1 - m2 - mf[p1 + q3 + u]
            m1, m2 = mf[p2 + q1 + u], mf[p2 + q2 + u]
            t20, t21 = mf[p2 + u] + m1 + m2, m1 - m2 - mf[p2 + q3 + u]
            m1, m2 = mf[p3 + q1 + u], mf[p3 + q2 + u]
            t30, t31 = mf[p3 + u] + m1 + m2, m1 - m2 - mf[p3 + q3 + u]
            y[u] = t00 + t10 + t20
            y[u + n1] = t01 + t11 + t21
            y[u + n2] = t10 - t20 - t30
            y[u + n3] = t11 - t21 - t31
        scatter_tile_row(i, th, 2, y, tiles_W, z, n_H, n_W, K, acc, epilogue)


@njit(inline="always")
def out_scratch(tiles_W, K, dtype):
    """The scratch `_output_tiles` takes."""
    return np.empty(4 * tiles_W * K, dtype=dtype)


@njit(inline="always")
def position_stride(n):
    """Elements from one tile position's run of n values to the next in V, M and dM: n
    rounded up to 32, plus 16. The transforms write (or read) all 16 positions of a tile at
    once; n a multiple of 1024 (256 tiles of 32 channels, 32 KB of float32) put those 16
    streams in one L1 set, which holds 8 lines (one example of resnet_small's 32x32x32,
    one thread: output transform 21 -> 13-17 us, dM 37 -> 16-21, the scatter of dA_prev 88
    -> 57)."""
    return (n + 31) // 32 * 32 + 16


@njit(inline="always")
def _convolve_block(i0, i1, th0, th1, A_prev, U, pad_top, pad_left, tiles_W, V, M, D, y, Z,
                    acc, epilogue):
    """Output tile rows th0:th1 of examples i0:i1, all three steps while the block's tiles
    are in cache: V and M hold each position's T = (i1 - i0) (th1 - th0) tiles_W tiles
    (T, C) and (T, K), each example's after the one before, position_stride apart."""
    C, K = U.shape[1], U.shape[2]
    per = (th1 - th0) * tiles_W
    T = (i1 - i0) * per
    pv, pm = position_stride(T * C), position_stride(T * K)
    for i in range(i0, i1):
        _input_tiles(i, th0, th1, A_prev, pad_top, pad_left, tiles_W, pv, D,
                     V[(i - i0) * per * C:])
    for k in range(16):  # one BLAS call a position, on this thread (the caller limits BLAS)
        np.dot(V[k * pv:k * pv + T * C].reshape((T, C)), U[k],
               M[k * pm:k * pm + T * K].reshape((T, K)))
    for i in range(i0, i1):
        _output_tiles(i, th0, th1, M[(i - i0) * per * K:], tiles_W, pm, y, Z, acc, epilogue)


@njit(inline="always")
def _convolve_run(p, parts, A_prev, U, pad_top, pad_left, Z, rows, examples, acc, epilogue):
    """The p-th of `parts` runs of consecutive blocks: `rows` tile rows of one example, or
    (examples > 1) that many whole examples; acc[p] its moments (or empty)."""
    m, C, K = A_prev.shape[0], U.shape[1], U.shape[2]
    tiles_H, tiles_W = (Z.shape[1] + 1) // 2, (Z.shape[2] + 1) // 2
    per_example = (tiles_H + rows - 1) // rows
    blocks = (m + examples - 1) // examples if examples > 1 else m * per_example
    T = max(rows, examples * tiles_H) * tiles_W
    V = np.empty(16 * position_stride(T * C), dtype=Z.dtype)
    M = np.empty(16 * position_stride(T * K), dtype=Z.dtype)
    D, y = row_scratch(tiles_W, C, Z.dtype), out_scratch(tiles_W, K, Z.dtype)
    for j in range(p * blocks // parts, (p + 1) * blocks // parts):
        if examples > 1:
            i0, th0, th1 = j * examples, 0, tiles_H
            i1 = min(i0 + examples, m)
        else:
            i0, th0 = j // per_example, (j % per_example) * rows
            i1, th1 = i0 + 1, min(th0 + rows, tiles_H)
        _convolve_block(i0, i1, th0, th1, A_prev, U, pad_top, pad_left, tiles_W, V, M, D, y, Z,
                        acc[p], epilogue)


@njit(cache=True)
def convolve_blocks(A_prev, U, pad_top, pad_left, Z, rows, examples, parts, acc, epilogue):
    """Z = the 3x3 stride-1 convolution of A_prev with the filter transformed to U (16, C, K),
    block by block: each block (`rows` tile rows of an example, or `examples` whole ones) is
    transformed, multiplied (one GEMM a tile position) and transformed back before the
    next, while it is in cache. acc (parts, 3, n_W K + 1), if not empty: each run's
    moments of Z for a batch norm after it (kernels/batchnorm.py `moments`). A non-empty
    epilogue (kernels/winograd_tiles.py `scatter_tile_row`) writes g(Z + b) instead of Z."""
    for p in range(parts):
        _convolve_run(p, parts, A_prev, U, pad_top, pad_left, Z, rows, examples, acc, epilogue)


@njit(parallel=True, cache=True)
def convolve_blocks_parallel(A_prev, U, pad_top, pad_left, Z, rows, examples, parts, acc,
                             epilogue):
    """`convolve_blocks` in one parallel region: each of `parts` runs of consecutive blocks
    on its own thread, its GEMMs on that thread (the caller limits BLAS to one)."""
    for p in prange(parts):
        _convolve_run(p, parts, A_prev, U, pad_top, pad_left, Z, rows, examples, acc, epilogue)


def tiles(n_H: int, n_W: int) -> tuple[int, int]:
    """Output tiles along each axis: 2x2 outputs a tile, the last one cropped if n is odd."""
    return -(-n_H // 2), -(-n_W // 2)


# Multiply-adds of a convolution from which it runs in parallel: as kernels/conv.py's
# PARALLEL_MIN elements, far above what waking the threads costs
PARALLEL_MIN = 1 << 21
# Transformed values (V or M) a block holds: 512 KB of float32 each, so that a block's tiles,
# products and U stay in a core's L2 (2 MB here) from one pass to the next
BLOCK_ELEMENTS = 1 << 17


def parts(blocks: int) -> int:
    """Runs of blocks for the parallel driver: one a Numba thread, at most one a block."""
    from numba import get_num_threads
    return max(1, min(get_num_threads(), blocks))


def blocks(m: int, n_H: int, n_W: int, C: int, K: int, block_elements: int) -> tuple[int, int]:
    """(tile rows, examples) a block holds: as many tile rows of one example as
    `block_elements` transformed values allow, else whole examples, several when an example
    has few tiles: at least as many tiles as channels (fewer rows than that, and packing
    U[k] costs BLAS more than the product), at most a thread's share of the batch, and that
    share cut into equal blocks: 3 of a share of 4 left a block of 1 in the backward's runs
    and 3 against 5 examples in the forward's (the U-Net's 8x12x16x64 -> 128, 2 threads,
    forward / backward ms, 81 alternations, load ~2.3, Dec 4 2026: 0.70 / 1.13 in blocks of
    3, 0.56 / 0.92 of 2; 8x12x16x128 -> 128 1.26 / 1.96 against 1.15 / 2.13)."""
    from numba import get_num_threads
    tiles_H, tiles_W = tiles(n_H, n_W)
    block = max(1, block_elements // (16 * max(C, K)))  # tiles
    rows = max(1, min(tiles_H, block // tiles_W))
    if rows < tiles_H:
        return rows, 1
    per_example = tiles_H * tiles_W
    examples = max(block // per_example, -(-max(C, K) // per_example))
    share = max(1, -(-m // get_num_threads()))  # a thread's examples
    n_blocks = -(-share // max(1, min(examples, share)))
    return rows, -(-share // n_blocks)  # the share in equal blocks


# The whole batch's 16 GEMMs split between the threads by tile position
# (kernels/winograd_positions.py), not the blocks by examples, where U is large (C K at
# least POSITIONS_MIN: 128x128 float32, 16 positions, is 1 MB, half a core's L2) and the
# whole batch's transformed tiles are not (16 T max(C, K) at most POSITIONS_MAX values, 16 MB
# of float32 each for V and M): the U-Net's 12x16 and 6x8 levels at batch 8.
POSITIONS = True
POSITIONS_MIN = 128 * 128
POSITIONS_MAX = 1 << 22


def by_positions(m: int, n_H: int, n_W: int, C: int, K: int) -> bool:
    """Whether a layer's passes split the GEMMs by tile position (above); on one Numba
    thread there is nothing to split."""
    from numba import get_num_threads
    tiles_H, tiles_W = tiles(n_H, n_W)
    return (POSITIONS and get_num_threads() >= 2 and C * K >= POSITIONS_MIN
            and 16 * m * tiles_H * tiles_W * max(C, K) <= POSITIONS_MAX
            and m * n_H * n_W * 9 * C * K >= PARALLEL_MIN)


def _convolve_positions(A_prev, U, pad_top, pad_left, Z, moments, epi):
    from . import winograd_positions as kp
    m, C, K = A_prev.shape[0], U.shape[1], U.shape[2]
    n_parts = parts(16)
    n_chunks = kp.chunks(m, n_parts)
    V, M = kp.scratch(m, Z.shape[1], Z.shape[2], C, K, Z.dtype)
    acc = np.zeros((n_chunks, 3, Z.shape[2] * K + 1 if moments else 0))
    from . import conv_duo
    sync = kp.counters()
    shared(n_parts, kp.convolve_positions_parallel,
           (A_prev, U, pad_top, pad_left, Z, V, M, n_parts, n_chunks, acc, epi, sync),
           conv_duo.convolve_positions_duo,
           (A_prev, U, pad_top, pad_left, Z, V, M, n_chunks, acc, epi, sync))
    return acc


def convolve(A_prev, U, pad_top, pad_left, Z, block_elements=BLOCK_ELEMENTS, moments=False,
             epilogue=None):
    """Z = the 3x3 stride-1 convolution of A_prev (zero-padded by pad_top, pad_left; negative
    for an input gradient's crop) with the filter whose transform is U (16, C, K), in blocks
    (`blocks`) holding about `block_elements` transformed values. moments: return (Z, mean,
    var), Z's batch mean and biased variance per channel (float64) taken as Z is written,
    for a batch norm after the conv (kernels/batchnorm.py: one pass over Z fewer). epilogue
    (K + 1 values, `epilogue`): Z = g(conv + b) written by the output transform, in place of
    a bias + activation pass over Z."""
    m, C, K = A_prev.shape[0], U.shape[1], U.shape[2]
    epi = np.empty(0, dtype=Z.dtype) if epilogue is None else epilogue
    if by_positions(m, Z.shape[1], Z.shape[2], C, K):
        acc = _convolve_positions(A_prev, U, pad_top, pad_left, Z, moments, epi)
        return (Z, *batch_moments(acc, K)) if moments else Z
    tiles_H, _ = tiles(Z.shape[1], Z.shape[2])
    rows, examples = blocks(m, Z.shape[1], Z.shape[2], C, K, block_elements)
    n_blocks = -(-m // examples) if examples > 1 else m * -(-tiles_H // rows)
    serial = Z.size * 9 * C < PARALLEL_MIN
    n_parts = 1 if serial else parts(n_blocks)
    acc = np.zeros((n_parts, 3, Z.shape[2] * K + 1 if moments else 0))
    if serial:
        convolve_blocks(A_prev, U, pad_top, pad_left, Z, rows, examples, 1, acc, epi)
    else:
        from . import conv_duo
        shared(n_parts, convolve_blocks_parallel,
               (A_prev, U, pad_top, pad_left, Z, rows, examples, n_parts, acc, epi),
               conv_duo.convolve_blocks_duo,
               (A_prev, U, pad_top, pad_left, Z, rows, examples, acc, epi))
    if not moments:
        return Z
    return (Z, *batch_moments(acc, K))
