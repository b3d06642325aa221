"""Winograd F(4x4, 3x3) convolution, NHWC, stride 1 (Lavin and Gray 2016, points 0, +-1,
+-2): each 4x4 output tile from a 6x6 input tile, 36 multiplies per (input, output) channel
pair where F(2x2, 3x3) (kernels/winograd.py) spends 64 on the same 16 outputs.

Why: in resnet_small's 3x3x32 layers the F(2x2) GEMMs ran near BLAS's speed (~140 GFLOP/s)
and were most of each pass, so fewer multiplies is what was left: 36 GEMMs a block (one a
tile position) of 1.78x fewer multiply-adds in all, and 2.25 transformed values an output
instead of 4 (less to write and read back). Its transforms hold 4, 5, 1/6 and 1/24: float64
results equal im2col's to ~1e-14, float32 to ~1e-5 relative.

    V = B^T d B  (6x6)   U = G g G^T (6x6)   M[k] = V[k] U[k]   Y = A^T M A (4x4)

The layout and the blocks follow kernels/winograd.py: a tile row at a time, each input row
split by column phase (mod 4) so that every tile position is one loop over the row's tiles
and channels; a block (tile rows of one example, or whole examples) is transformed,
multiplied and transformed back while in cache; one parallel region a pass. The backward
(both gradients from one transform of dZ, as kernels/winograd_grad.py) is
kernels/winograd4_grad.py. The layer picks this where it measured faster
(nn/conv_winograd.py `four`).

Two things kept the first version slower than F(2x2) (one 32x32x32 example, one thread,
float32, load ~2, input / output transform): the constants 4, 5, 2, 8 as float64 literals
made every float32 loop run in float64 (105 / 59 us); and loops storing four to six streams
stayed scalar, LLVM's runtime alias checks past its limit (47 / 38 us); each loop now
stores one stream, and an int64 times a uint64 offset (a float64 in Numba) is gone: 22-26 /
18-21 us against F(2x2)'s 25-28 / 14-19. The 36 GEMMs 34-39 us against F(2x2)'s 16 of
51-60. The layer (64x32x32x32 -> 32 with a batch norm's moments, 2 threads, alternating in
one process, load ~3): 7.7 -> 6.3 ms forward. Whole resnet_small steps at batch 64,
alternating in one process (Dec 3 2026, load ~1): its four 3x3x32 convs on F(4x4) 107.3 ->
98.7 ms; with its stem too (nn/conv_winograd.py FOUR_STEM_CHANNELS), against the direct stem
and F(2x2), 115.4 -> 100.0 ms. benchmarks/cnn.py --only resnet64: main 0.94x (617 against
PyTorch's 650 ex/s, load 1.6), this 1.09x and 1.06x (689 / 632, 679 / 642, load 1.2-1.6).
Then (Dec 4 2026, s10-resnet, interleaved with the kernels before in one process): the input
rows in a ring (a tile row's window rows 0, 1 are the last one's 4, 5: 4 rows copied, not 6)
and the B^T loops one store stream each on the flat ring, 18.1 -> 15.9 us an example (one
thread, median of 41, load 2.0; a 4-D D[1, b, j, x] store loop with ring slots took 24);
blocks of two examples (BLOCK_ELEMENTS), backward 4.92 -> 4.64 ms. Pieces of one example
then (one thread, load ~1): input transform 16-19 us, the 36 GEMMs 29-32, output transform
14-15 + 4 for the batch norm's moments (kernels/winograd_tiles.py); backward dM 15, the 72
GEMMs 55-57, the dA_prev scatter 21. The GEMMs run at ~150-170 GFLOP/s. Tried and dropped:
the output transform's last step straight into Z (no scratch o): no faster (16.1 / 16.2 us);
the input copies one store stream a loop; AVX-512 vectors (NUMBA_CPU_FEATURES without
prefer-256-bit): no faster.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, uint64

from .batchnorm import moments as batch_moments
from .threads import shared
from .winograd import PARALLEL_MIN, position_stride
from .winograd_tiles import scatter_tile_row

P = 36  # tile positions


def tiles(n_H: int, n_W: int) -> tuple[int, int]:
    """Output tiles along each axis: 4x4 outputs a tile, the last one cropped."""
    return -(-n_H // 4), -(-n_W // 4)


@njit(cache=True)
def filter_transform(W, U):
    """U[6 a + b, c, n] = (G g G^T)[a, b] for g = W[:, :, c, n], G = [[1/4, 0, 0], [-1/6,
    -1/6, -1/6], [-1/6, 1/6, -1/6], [1/24, 1/12, 1/6], [1/24, -1/12, 1/6], [0, 0, 1]]; the
    output channel innermost."""
    _, _, C, K = W.shape
    t = np.empty((6, 3, K), dtype=np.float64)  # G g, in float64: 1/6 and 1/24 round once
    for c in range(C):
        for j in range(3):
            for n in range(K):
                g0, g1 = np.float64(W[0, j, c, n]), np.float64(W[1, j, c, n])
                g2 = np.float64(W[2, j, c, n])
                t[0, j, n] = g0 / 4.0
                t[1, j, n] = -(g0 + g1 + g2) / 6.0
                t[2, j, n] = -(g0 - g1 + g2) / 6.0
                t[3, j, n] = g0 / 24.0 + g1 / 12.0 + g2 / 6.0
                t[4, j, n] = g0 / 24.0 - g1 / 12.0 + g2 / 6.0
                t[5, j, n] = g2
        for a in range(6):
            for n in range(K):
                g0, g1, g2 = t[a, 0, n], t[a, 1, n], t[a, 2, n]
                U[6 * a + 0, c, n] = g0 / 4.0
                U[6 * a + 1, c, n] = -(g0 + g1 + g2) / 6.0
                U[6 * a + 2, c, n] = -(g0 - g1 + g2) / 6.0
                U[6 * a + 3, c, n] = g0 / 24.0 + g1 / 12.0 + g2 / 6.0
                U[6 * a + 4, c, n] = g0 / 24.0 - g1 / 12.0 + g2 / 6.0
                U[6 * a + 5, c, n] = g2


@njit(inline="always")
def _constants(like, a, b, c):
    """a, b, c in like's dtype: a float64 literal times a float32 value is a float64 in
    Numba, and the transforms' loops ran in float64 and converted every value (the input
    transform 4x slower than F(2x2)'s, which has no multiplies)."""
    k = np.empty(3, dtype=like.dtype)
    k[0], k[1], k[2] = a, b, c
    return k[0], k[1], k[2]


@njit(inline="always")
def row_scratch(tiles_W, C, dtype):
    """Scratch of `input_tiles`: (2, 6, 4, (tiles_W + 1) C), window rows in column-phase
    layout."""
    return np.empty((2, 6, 4, (tiles_W + 1) * C), dtype=dtype)


@njit(inline="always")
def input_tiles(i, th0, th1, A_prev, pad_top, pad_left, tiles_W, ps, D, v):
    """Example i's tiles of tile rows th0:th1 into the flat v: position k (0..35) of tile
    t = (th - th0) tiles_W + tw, channel c, at k ps + t C + c. D[0] is a ring of 6 input
    rows (row r + pad_top in slot (r + pad_top) mod 6), D[0, slot, j] the row's columns
    4 t' - pad_left + j (t' = 0..tiles_W, a run of C each, 0 outside); D[1, b] the window's
    B^T combinations down the rows. A tile row's window rows 0, 1 are the last one's 4, 5,
    still in the ring: 4 rows copied a tile row, not 6. Tile tw's window columns 0..3 are
    then the phases 0..3 at t' = tw, its 4 and 5 the phases 0, 1 at tw + 1: each position of
    a tile row is one loop of tiles_W C values."""
    _, n_H_prev, n_W_prev, C = A_prev.shape
    src = A_prev.reshape(-1)
    L, N = (tiles_W + 1) * C, tiles_W * C
    Df = D.reshape(-1)
    uC = uint64(C)
    c4, c5, c2 = _constants(D, 4.0, 5.0, 2.0)
    for th in range(th0, th1):
        for a in range(0 if th == th0 else 2, 6):
            r = 4 * th + a - pad_top
            w0 = uint64((4 * th + a) % 6 * 4 * L)  # D[0, slot, 0]
            if r < 0 or r >= n_H_prev:
                for x in range(4 * L):
                    Df[w0 + uint64(x)] = 0.0
                continue
            row = (i * n_H_prev + r) * n_W_prev
            for t in range(tiles_W + 1):
                q, o = 4 * t - pad_left, w0 + uint64(t * C)
                if 0 <= q and q + 3 < n_W_prev:
                    s0 = uint64((row + q) * C)
                    for c in range(C):
                        u = uint64(c)
                        Df[o + u] = src[s0 + u]
                        Df[o + uint64(L) + u] = src[s0 + uC + u]
                        Df[o + uint64(2 * L) + u] = src[s0 + uint64(2 * C) + u]
                        Df[o + uint64(3 * L) + u] = src[s0 + uint64(3 * C) + u]
                else:
                    for j in range(4):
                        oj = o + uint64(j * L)
                        if 0 <= q + j < n_W_prev:
                            s0 = uint64((row + q + j) * C)
                            for c in range(C):
                                Df[oj + uint64(c)] = src[s0 + uint64(c)]
                        else:
                            for c in range(C):
                                Df[oj + uint64(c)] = 0.0
        # B^T d down the window's rows, B^T = [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0],
        # [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]]
        # (the ring's slots in the flat Df; the four phases of a row one run of 4 L values,
        # one store stream a loop)
        R = 4 * L
        r0, r1, r2 = uint64((4 * th) % 6 * R), uint64((4 * th + 1) % 6 * R), uint64((4 * th + 2) % 6 * R)
        r3, r4, r5 = uint64((4 * th + 3) % 6 * R), uint64((4 * th + 4) % 6 * R), uint64((4 * th + 5) % 6 * R)
        h = uint64(6 * R)  # D[1, 0] in the flat Df
        uR = uint64(R)
        _bt_six(Df, r0, r1, r2, r3, r4, r5, Df, h, uR, R, c2, c4, c5)
        # then (B^T d) B along the columns: positions 6 b .. 6 b + 5 of the tile row
        base = uint64((th - th0) * N)
        for b in range(6):
            o0 = base + uint64(6 * b * ps)
            g0 = uint64((24 + 4 * b) * L)  # D[1, b, 0] in the flat Df
            g1, g2, g3 = g0 + uint64(L), g0 + uint64(2 * L), g0 + uint64(3 * L)
            g4, g5 = g0 + uC, g1 + uC
            _bt_six(Df, g0, g1, g2, g3, g4, g5, v, o0, uint64(ps), N, c2, c4, c5)


@njit(inline="always")
def _bt_six(src, s0, s1, s2, s3, s4, s5, dst, d0, step, n, c2, c4, c5):
    """B^T's six rows applied to six runs of n values (src at s0..s5), result j at dst[d0 + j
    step:][:n]: down a window's rows (runs of a ring's slots) and along its columns (runs of
    phases). One store stream a loop: with six in one, LLVM's runtime alias checks outgrew
    its limit and the loop stayed scalar (31 -> 8 us an example of 32x32x32)."""
    for x in range(n):
        u = uint64(x)
        dst[d0 + u] = c4 * src[s0 + u] - c5 * src[s2 + u] + src[s4 + u]
    d = d0 + step
    for x in range(n):
        u = uint64(x)
        dst[d + u] = src[s3 + u] + src[s4 + u] - c4 * (src[s1 + u] + src[s2 + u])
    d += step
    for x in range(n):
        u = uint64(x)
        dst[d + u] = c4 * (src[s1 + u] - src[s2 + u]) + src[s4 + u] - src[s3 + u]
    d += step
    for x in range(n):
        u = uint64(x)
        dst[d + u] = c2 * (src[s3 + u] - src[s1 + u]) + src[s4 + u] - src[s2 + u]
    d += step
    for x in range(n):
        u = uint64(x)
        dst[d + u] = c2 * (src[s1 + u] - src[s3 + u]) + src[s4 + u] - src[s2 + u]
    d += step
    for x in range(n):
        u = uint64(x)
        dst[d + u] = c4 * src[s1 + u] - c5 * src[s3 + u] + src[s5 + u]


@njit(inline="always")
def out_scratch(tiles_W, K, dtype):
    """The two scratch arrays of `_output_tiles` (and the dM transform): 24 and 16 tiles_W K
    values, apart (one array read and written in the same loop kept it scalar)."""
    return np.empty(24 * tiles_W * K, dtype=dtype), np.empty(16 * tiles_W * K, dtype=dtype)


@njit(inline="always")
def _output_tiles(i, th0, th1, mf, tiles_W, ps, y, o, Z, acc, epilogue):
    """Z's outputs of example i, tile rows th0:th1 (past the edge cropped), from the flat
    mf (position k of tile t, channel n at k ps + t K + n): A^T along each row a of M into
    y[(4 a + j) N ..] (output column j), then down the rows into o[(4 r + j) N ..]
    (output row r), then a run of K a pixel into Z; a non-empty acc takes each output
    row's moments for the batch norm after the conv (kernels/batchnorm.py)."""
    _, n_H, n_W, K = Z.shape
    z = Z.reshape(-1)
    N = tiles_W * K
    q1, q2, q3 = uint64(ps), uint64(2 * ps), uint64(3 * ps)
    q4, q5 = uint64(4 * ps), uint64(5 * ps)
    uN = uint64(N)
    # uint64 all: an int64 times a uint64 is a float64 in Numba
    n2, n3, n4, n8 = uint64(2 * N), uint64(3 * N), uint64(4 * N), uint64(8 * N)
    n12, n16, n20 = uint64(12 * N), uint64(16 * N), uint64(20 * N)
    c2, c4, c8 = _constants(y, 2.0, 4.0, 8.0)
    # A^T = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]
    for th in range(th0, th1):
        base = uint64((th - th0) * N)
        for a in range(6):
            p0 = base + uint64(6 * a * ps)
            t0 = uint64(4 * a * N)
            for x in range(N):  # one store stream a loop (`input_tiles`)
                u = p0 + uint64(x)
                y[t0 + uint64(x)] = mf[u] + mf[u + q1] + mf[u + q2] + mf[u + q3] + mf[u + q4]
            for x in range(N):
                u = p0 + uint64(x)
                y[t0 + uN + uint64(x)] = mf[u + q1] - mf[u + q2] + c2 * (mf[u + q3] - mf[u + q4])
            for x in range(N):
                u = p0 + uint64(x)
                y[t0 + n2 + uint64(x)] = mf[u + q1] + mf[u + q2] + c4 * (mf[u + q3] + mf[u + q4])
            for x in range(N):
                u = p0 + uint64(x)
                y[t0 + n3 + uint64(x)] = (mf[u + q1] - mf[u + q2] + c8 * (mf[u + q3] - mf[u + q4])
                                              + mf[u + q5])
        for j in range(4):
            c0 = uint64(j * N)
            for x in range(N):
                u = c0 + uint64(x)
                o[u] = y[u] + y[u + n4] + y[u + n8] + y[u + n12] + y[u + n16]
            for x in range(N):
                u = c0 + uint64(x)
                o[u + n4] = y[u + n4] - y[u + n8] + c2 * (y[u + n12] - y[u + n16])
            for x in range(N):
                u = c0 + uint64(x)
                o[u + n8] = y[u + n4] + y[u + n8] + c4 * (y[u + n12] + y[u + n16])
            for x in range(N):
                u = c0 + uint64(x)
                o[u + n12] = (y[u + n4] - y[u + n8] + c8 * (y[u + n12] - y[u + n16])
                                  + y[u + n20])
        scatter_tile_row(i, th, 4, o, tiles_W, z, n_H, n_W, K, acc, epilogue)


@njit(inline="always")
def _convolve_run(p, parts, A_prev, U, pad_top, pad_left, Z, rows, examples, acc, epilogue):
    """The p-th of `parts` runs of consecutive blocks (`rows` tile rows of one example, or
    `examples` whole ones): input transform, 36 GEMMs, output transform a block."""
    m, C, K = A_prev.shape[0], U.shape[1], U.shape[2]
    tiles_H, tiles_W = (Z.shape[1] + 3) // 4, (Z.shape[2] + 3) // 4
    per_example = (tiles_H + rows - 1) // rows
    blocks = (m + examples - 1) // examples if examples > 1 else m * per_example
    T_max = max(rows, examples * tiles_H) * tiles_W
    V = np.empty(P * position_stride(T_max * C), dtype=Z.dtype)
    M = np.empty(P * position_stride(T_max * K), dtype=Z.dtype)
    D = row_scratch(tiles_W, C, Z.dtype)
    y, o = out_scratch(tiles_W, K, Z.dtype)
    for j in range(p * blocks // parts, (p + 1) * blocks // parts):
        if examples > 1:
            i0, th0, th1 = j * examples, 0, tiles_H
            i1 = min(i0 + examples, m)
        else:
            i0, th0 = j // per_example, (j % per_example) * rows
            i1, th1 = i0 + 1, min(th0 + rows, tiles_H)
        per = (th1 - th0) * tiles_W
        T = (i1 - i0) * per
        pv, pm = position_stride(T * C), position_stride(T * K)
        for i in range(i0, i1):
            input_tiles(i, th0, th1, A_prev, pad_top, pad_left, tiles_W, pv, D,
                        V[(i - i0) * per * C:])
        for k in range(P):
            np.dot(V[k * pv:k * pv + T * C].reshape((T, C)), U[k],
                   M[k * pm:k * pm + T * K].reshape((T, K)))
        for i in range(i0, i1):
            _output_tiles(i, th0, th1, M[(i - i0) * per * K:], tiles_W, pm, y, o, Z, acc[p],
                          epilogue)


@njit(cache=True)
def convolve_blocks(A_prev, U, pad_top, pad_left, Z, rows, examples, parts, acc, epilogue):
    """Z = the 3x3 stride-1 convolution of A_prev with U (36, C, K), block by block, on this
    thread; acc and epilogue as kernels/winograd.py's `convolve_blocks`."""
    for p in range(parts):
        _convolve_run(p, parts, A_prev, U, pad_top, pad_left, Z, rows, examples, acc, epilogue)


@njit(parallel=True, cache=True)
def convolve_blocks_parallel(A_prev, U, pad_top, pad_left, Z, rows, examples, parts, acc,
                             epilogue):
    """`convolve_blocks` in one parallel region, a run of blocks a thread (BLAS on one)."""
    for p in prange(parts):
        _convolve_run(p, parts, A_prev, U, pad_top, pad_left, Z, rows, examples, acc, epilogue)


# Transformed values (V or M) a block holds, as kernels/winograd.py's BLOCK_ELEMENTS: 3 << 16
# holds two examples of resnet_small's 32x32x32 (its V, M and U 1.3 MB of float32, in a
# core's 2 MB L2), 1 << 17 one. 64x32x32x32 -> 32 (2 threads, interleaved, median of 41, load
# 0.8): backward 4.92 -> 4.64 ms (the dU GEMMs' inner dimension 64 -> 128 tiles, half the
# dU parts added), forward 3.00 -> 2.97; three examples 4.78 / 3.26, five 5.13 / 3.35. Since
# the parts' sum is one flat loop (winograd_tiles.py `add_part`), one example and two are
# even: backward 4.19 / 4.23, forward 2.63 / 2.65 (41 alternations, load 0.3).
BLOCK_ELEMENTS = 3 << 16


def blocks(m, n_H, n_W, C, K, block_elements):
    """(tile rows, examples) a block holds: kernels/winograd.py's `blocks` for 36 positions."""
    from numba import get_num_threads
    tiles_H, tiles_W = tiles(n_H, n_W)
    block = max(1, block_elements // (P * max(C, K)))
    rows = max(1, min(tiles_H, block // tiles_W))
    if rows < tiles_H:
        return rows, 1
    per_example = tiles_H * tiles_W
    examples = max(block // per_example, -(-max(C, K) // per_example))
    return rows, max(1, min(examples, -(-m // get_num_threads())))


def convolve(A_prev, U, pad_top, pad_left, Z, block_elements=BLOCK_ELEMENTS, moments=False,
             epilogue=None):
    """kernels/winograd.py's `convolve` with F(4x4, 3x3): U (36, C, K) from `filter_transform`."""
    from .winograd import parts as n_runs
    m, K = A_prev.shape[0], U.shape[2]
    tiles_H, _ = tiles(Z.shape[1], Z.shape[2])
    rows, examples = blocks(m, Z.shape[1], Z.shape[2], U.shape[1], K, block_elements)
    n_blocks = -(-m // examples) if examples > 1 else m * -(-tiles_H // rows)
    serial = Z.size * 9 * U.shape[1] < PARALLEL_MIN
    n_parts = 1 if serial else n_runs(n_blocks)
    acc = np.zeros((n_parts, 3, Z.shape[2] * K + 1 if moments else 0))
    epi = np.empty(0, dtype=Z.dtype) if epilogue is None else epilogue
    if serial:
        convolve_blocks(A_prev, U, pad_top, pad_left, Z, rows, examples, 1, acc, epi)
    else:
        from . import conv_duo
        shared(n_parts, convolve_blocks_parallel,
               (A_prev, U, pad_top, pad_left, Z, rows, examples, n_parts, acc, epi),
               conv_duo.convolve4_blocks_duo,
               (A_prev, U, pad_top, pad_left, Z, rows, examples, acc, epi))
    if not moments:
        return Z
    return (Z, *batch_moments(acc, K))
