"""The backward pass of Winograd F(4x4, 3x3) (kernels/winograd4.py) in Winograd's domain, as
kernels/winograd_grad.py does for F(2x2, 3x3): both gradients from ONE transform of dZ.

    dM = A dY A^T  (6x6 from 4x4)    dU[k] = sum over tiles V[k]^T dM[k]    dW = G^T dU G
    dV[k] = dM[k] U[k]^T             dA_prev = sum of B dV B^T (6x6 windows overlapping by 2)

How it runs: the forward's blocks (a few tile rows of one example, or whole examples), a run
of whole examples a thread (an example's windows overlap), one parallel region a pass, BLAS
on one thread meanwhile. The windows' overlap is summed in the scratch: along a window row
by the column-phase layout of kernels/winograd4.py (a tile's columns 4, 5 are the next
tile's 0, 1), down the rows by keeping a tile row's window rows 4, 5 for the next tile
row's 0, 1; each row of dA_prev is then stored once. Every loop stores one stream: with
more, LLVM's runtime alias checks outgrew its limit and the loops stayed scalar.

Measured (one 32x32x32 example, one thread, float32, load ~2.7): dM 15.5 us against F(2x2)'s
18.0, the dA_prev scatter 21.9 against 23.0; the layer (64x32x32x32 -> 32, both gradients
and a residual addend, 2 threads, alternating with F(2x2) in one process, load ~3): 13.4 ->
11.6 ms. Then (Dec 4 2026, s10-resnet): each block's dU[k] += part had been an array
expression, 21.5 us an example of its 36 (one thread; the 72 GEMMs around it ~60): now one
flat loop (kernels/winograd_tiles.py `add_part`), ~2 us.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, uint64

from .winograd import position_stride
from .winograd4 import P, _constants, input_tiles, out_scratch
from .winograd_tiles import add_part, gather_tile_row


@njit(inline="always")
def _output_grad_tiles(i, th0, th1, dZ, tiles_W, ps, t, y, dm, A, slope, db):
    """dM = A dY A^T of example i's tiles of rows th0:th1 into the flat dm (position k of
    tile t, channel n at k ps + t K + n); outputs past the edge count as 0. y (16 tiles_W
    K): the tile row's dY, output row r and column j of tile tw at (4 r + j) N + tw K + n;
    t (24 tiles_W K): A down the rows, window row a and column j at (4 a + j) N."""
    _, n_H, n_W, K = dZ.shape
    z, za = dZ.reshape(-1), A.reshape(-1)
    N = tiles_W * K
    # uint64 all: an int64 times a uint64 is a float64 in Numba
    n4, n8, n12 = uint64(4 * N), uint64(8 * N), uint64(12 * N)
    n16, n20 = uint64(16 * N), uint64(20 * N)
    c2, c4, c8 = _constants(y, 2.0, 4.0, 8.0)
    for th in range(th0, th1):
        gather_tile_row(i, th, 4, z, n_H, n_W, K, tiles_W, y, za, slope, db)
        # A = A^T's transpose: (y0..y3) -> y0, y0 + y1 + y2 + y3, y0 - y1 + y2 - y3,
        # y0 + 2 y1 + 4 y2 + 8 y3, y0 - 2 y1 + 4 y2 - 8 y3, y3; one store stream a loop
        for j in range(4):
            u0 = uint64(j * N)
            for x in range(N):
                u = u0 + uint64(x)
                t[u] = y[u]
            for x in range(N):
                u = u0 + uint64(x)
                t[u + n4] = y[u] + y[u + n4] + y[u + n8] + y[u + n12]
            for x in range(N):
                u = u0 + uint64(x)
                t[u + n8] = y[u] - y[u + n4] + y[u + n8] - y[u + n12]
            for x in range(N):
                u = u0 + uint64(x)
                t[u + n12] = y[u] + c2 * y[u + n4] + c4 * y[u + n8] + c8 * y[u + n12]
            for x in range(N):
                u = u0 + uint64(x)
                t[u + n16] = y[u] - c2 * y[u + n4] + c4 * y[u + n8] - c8 * y[u + n12]
            for x in range(N):
                u = u0 + uint64(x)
                t[u + n20] = y[u + n12]
        base = uint64((th - th0) * N)
        uN, n2, n3 = uint64(N), uint64(2 * N), uint64(3 * N)
        for a in range(6):
            g = uint64(4 * a * N)
            o0 = base + uint64(6 * a * ps)
            for b in range(6):
                o = o0 + uint64(b * ps)
                if b == 0:
                    for x in range(N):
                        u = g + uint64(x)
                        dm[o + uint64(x)] = t[u]
                elif b == 1:
                    for x in range(N):
                        u = g + uint64(x)
                        dm[o + uint64(x)] = t[u] + t[u + uN] + t[u + n2] + t[u + n3]
                elif b == 2:
                    for x in range(N):
                        u = g + uint64(x)
                        dm[o + uint64(x)] = t[u] - t[u + uN] + t[u + n2] - t[u + n3]
                elif b == 3:
                    for x in range(N):
                        u = g + uint64(x)
                        dm[o + uint64(x)] = (t[u] + c2 * t[u + uN] + c4 * t[u + n2]
                                             + c8 * t[u + n3])
                elif b == 4:
                    for x in range(N):
                        u = g + uint64(x)
                        dm[o + uint64(x)] = (t[u] - c2 * t[u + uN] + c4 * t[u + n2]
                                             - c8 * t[u + n3])
                else:
                    for x in range(N):
                        dm[o + uint64(x)] = t[g + n3 + uint64(x)]


@njit(inline="always")
def _flush_row(i, r, row, pad_left, tiles_W, q, add, e, dA):
    """dA_prev[i, r] = (add: +=) window row `row` of the flat q (4 column phases of L values
    each), plus the flat e's row where stored (if e is not empty); nothing for a row of the
    padding."""
    _, H, W, C = dA.shape
    if r < 0 or r >= H:
        return
    d = dA.reshape(-1)
    plus = e.shape[0] > 0
    L = (tiles_W + 1) * C
    start = (i * H + r) * W
    for t in range(tiles_W + 1):
        for j in range(4):
            col = 4 * t - pad_left + j
            if col < 0 or col >= W:
                continue
            s0, o = uint64((start + col) * C), uint64(((row * 4 + j) * L) + t * C)
            if add:
                for c in range(C):
                    d[s0 + uint64(c)] += q[o + uint64(c)]
            elif plus:
                for c in range(C):
                    d[s0 + uint64(c)] = q[o + uint64(c)] + e[s0 + uint64(c)]
            else:
                for c in range(C):
                    d[s0 + uint64(c)] = q[o + uint64(c)]


@njit(inline="always")
def covers(H, W, tiles_H, tiles_W, pad_top, pad_left):
    """Whether the 6x6 windows reach every input row and column (each row of dA_prev then
    stored whole once, no zeroing first)."""
    return (pad_top >= 0 and pad_left >= 0 and 4 * tiles_H + 1 - pad_top >= H - 1
            and 4 * tiles_W + 1 - pad_left >= W - 1)


@njit(inline="always")
def _input_grad_tiles(i, th0, th1, tiles_H, dv, tiles_W, ps, pad_top, pad_left, p, q, zeroed,
                      e, dA):
    """dA_prev of example i from dV of its tiles of rows th0:th1 (flat dv, position k of tile
    t at k ps + t C). p (6, 4, L): B^T along each window row b, in column phases (tile t's
    columns 4, 5 summed into t + 1's phases 0, 1); q (6, 4, L): B down the rows, window
    rows 4, 5 kept for the next tile row's 0, 1 (the block before left them, for th0 > 0).
    L = (tiles_W + 1) C."""
    C = dA.shape[3]
    L, N = (tiles_W + 1) * C, tiles_W * C
    pf, qf = p.reshape(-1), q.reshape(-1)
    uC, uL = uint64(C), uint64(L)
    c2, c4, c5 = _constants(p, 2.0, 4.0, 5.0)
    q1, q2, q3, q4, q5 = (uint64(ps), uint64(2 * ps), uint64(3 * ps), uint64(4 * ps),
                          uint64(5 * ps))
    # the columns, B^T's columns: x0 = 4 v0, x1 = -4 v1 + 4 v2 - 2 v3 + 2 v4 + 4 v5,
    # x2 = -5 v0 - 4 v1 - 4 v2 - v3 - v4, x3 = v1 - v2 + 2 v3 - 2 v4 - 5 v5,
    # x4 = v0 + v1 + v2 + v3 + v4, x5 = v5
    for th in range(th0, th1):
        base = uint64((th - th0) * N)
        for b in range(6):
            o = base + uint64(6 * b * ps)
            g = uint64(b * 4 * L)
            g1, g2, g3 = g + uL, g + uint64(2 * L), g + uint64(3 * L)
            for x in range(N):  # phase 2 at t' = tw
                u = o + uint64(x)
                pf[g2 + uint64(x)] = (-c5 * dv[u] - c4 * (dv[u + q1] + dv[u + q2]) - dv[u + q3]
                                      - dv[u + q4])
            for x in range(N):  # phase 3
                u = o + uint64(x)
                pf[g3 + uint64(x)] = (dv[u + q1] - dv[u + q2] + c2 * (dv[u + q3] - dv[u + q4])
                                      - c5 * dv[u + q5])
            for x in range(C):
                pf[g2 + uint64(N + x)] = 0.0
            for x in range(C):
                pf[g3 + uint64(N + x)] = 0.0
            for x in range(C):  # phase 0 at t' = 0: x0 alone
                pf[g + uint64(x)] = c4 * dv[o + uint64(x)]
            for x in range(N - C):  # x0 of tile t' plus x4 of tile t' - 1
                u, w = o + uC + uint64(x), o + uint64(x)
                pf[g + uC + uint64(x)] = (c4 * dv[u] + dv[w] + dv[w + q1] + dv[w + q2] + dv[w + q3]
                                          + dv[w + q4])
            for x in range(C):  # t' = tiles_W: x4 of the last tile alone
                w = o + uint64(N - C + x)
                pf[g + uint64(N + x)] = dv[w] + dv[w + q1] + dv[w + q2] + dv[w + q3] + dv[w + q4]
            for x in range(C):  # phase 1 likewise with x1 and x5
                u = o + uint64(x)
                pf[g1 + uint64(x)] = (c4 * (dv[u + q2] - dv[u + q1] + dv[u + q5])
                                      + c2 * (dv[u + q4] - dv[u + q3]))
            for x in range(N - C):
                u, w = o + uC + uint64(x), o + uint64(x)
                pf[g1 + uC + uint64(x)] = (c4 * (dv[u + q2] - dv[u + q1] + dv[u + q5])
                                           + c2 * (dv[u + q4] - dv[u + q3]) + dv[w + q5])
            for x in range(C):
                pf[g1 + uint64(N + x)] = dv[o + uint64(N - C + x) + q5]
        # down the rows (the same combinations of the six window rows b)
        R, R2, R3, R4, R5 = (uint64(4 * L), uint64(8 * L), uint64(12 * L), uint64(16 * L),
                             uint64(20 * L))
        fresh = th == 0  # an example's first tile row: no rows 4, 5 before it
        if fresh:
            for x in range(4 * L):
                qf[uint64(x)] = c4 * pf[uint64(x)]
            for x in range(4 * L):
                u = uint64(x)
                qf[R + u] = (c4 * (pf[R2 + u] - pf[R + u] + pf[R5 + u])
                             + c2 * (pf[R4 + u] - pf[R3 + u]))
        else:
            for x in range(4 * L):
                u = uint64(x)
                qf[u] = c4 * pf[u] + qf[R4 + u]
            for x in range(4 * L):
                u = uint64(x)
                qf[R + u] = (c4 * (pf[R2 + u] - pf[R + u] + pf[R5 + u])
                             + c2 * (pf[R4 + u] - pf[R3 + u]) + qf[R5 + u])
        for x in range(4 * L):
            u = uint64(x)
            qf[R2 + u] = (-c5 * pf[u] - c4 * (pf[R + u] + pf[R2 + u]) - pf[R3 + u]
                             - pf[R4 + u])
        for x in range(4 * L):
            u = uint64(x)
            qf[R3 + u] = (pf[R + u] - pf[R2 + u] + c2 * (pf[R3 + u] - pf[R4 + u])
                             - c5 * pf[R5 + u])
        for x in range(4 * L):
            u = uint64(x)
            qf[R4 + u] = pf[u] + pf[R + u] + pf[R2 + u] + pf[R3 + u] + pf[R4 + u]
        for x in range(4 * L):
            u = uint64(x)
            qf[R5 + u] = pf[R5 + u]
        for a in range(4 if th < tiles_H - 1 else 6):
            _flush_row(i, 4 * th + a - pad_top, a, pad_left, tiles_W, qf, zeroed, e, dA)


@njit(inline="always")
def _grad_run(p, parts, A_prev, dZ, UT, pad_top, pad_left, examples_a_block, rows, dU, dA,
              input_grad, addend, A, slope, db):
    """kernels/winograd_grad.py's `_grad_run` for F(4x4, 3x3): the p-th of `parts` runs of
    whole examples; dU (36, C, K) its filter gradient in Winograd's domain, dA its
    examples' input gradient (if input_grad) plus addend if that is not empty."""
    m, n_H, n_W, K = dZ.shape
    C = A_prev.shape[3]
    tiles_H, tiles_W = (n_H + 3) // 4, (n_W + 3) // 4
    per_example = tiles_H * tiles_W
    T_max = max(rows * tiles_W, examples_a_block * per_example)
    V = np.empty(P * position_stride(T_max * C), dtype=dZ.dtype)
    M = np.empty(P * position_stride(T_max * K), dtype=dZ.dtype)
    part = np.empty((C, K), dtype=dZ.dtype)
    L = (tiles_W + 1) * C
    D = np.empty((2, 6, 4, L), dtype=dZ.dtype)  # input_tiles' scratch
    ps_, qs_ = np.empty((6, 4, L), dtype=dZ.dtype), np.empty((6, 4, L), dtype=dZ.dtype)
    t, y = out_scratch(tiles_W, K, dZ.dtype)
    dU[:] = 0.0
    i_lo, i_hi = p * m // parts, (p + 1) * m // parts
    db[:] = 0.0
    zeroed = not covers(A_prev.shape[1], A_prev.shape[2], tiles_H, tiles_W, pad_top, pad_left)
    e = addend.reshape(-1)
    if input_grad and zeroed:
        if e.shape[0] > 0:
            dA[i_lo:i_hi] = addend[i_lo:i_hi]
            e = e[:0]
        else:
            dA[i_lo:i_hi] = 0.0
    i = i_lo
    while i < i_hi:
        i1 = min(i + examples_a_block, i_hi) if examples_a_block > 1 else i + 1
        th0 = 0
        while th0 < tiles_H:
            th1 = tiles_H if examples_a_block > 1 else min(th0 + rows, tiles_H)
            T = (i1 - i) * (th1 - th0) * tiles_W
            pv, pm = position_stride(T * C), position_stride(T * K)
            for j in range(i, i1):
                t0 = (j - i) * (th1 - th0) * tiles_W
                input_tiles(j, th0, th1, A_prev, pad_top, pad_left, tiles_W, pv, D, V[t0 * C:])
                _output_grad_tiles(j, th0, th1, dZ, tiles_W, pm, t, y, M[t0 * K:], A, slope, db)
            for k in range(P):
                vk = V[k * pv:k * pv + T * C].reshape((T, C))
                mk = M[k * pm:k * pm + T * K].reshape((T, K))
                np.dot(vk.T, mk, part)
                add_part(dU, k, part)
                if input_grad:  # dV[k] = dM[k] U[k]^T over V[k], spent
                    np.dot(mk, UT[k], vk)
            if input_grad:
                for j in range(i, i1):
                    t0 = (j - i) * (th1 - th0) * tiles_W
                    _input_grad_tiles(j, th0, th1, tiles_H, V[t0 * C:], tiles_W, pv, pad_top,
                                      pad_left, ps_, qs_, zeroed, e, dA)
            th0 = th1
        i = i1


@njit(cache=True)
def backward_blocks(A_prev, dZ, UT, pad_top, pad_left, examples_a_block, rows, dU_parts, dA,
                    input_grad, addend, A, slope, db_parts):
    """kernels/winograd_grad.py's `backward_blocks` for F(4x4, 3x3): UT (36, K, C)."""
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


@njit(cache=True)
def filter_grad_transform(dU, dW):
    """dW[:, :, c, n] = G^T dU[:, c, n] G (3x3 from the 6x6 dU; G as kernels/winograd4.py's
    `filter_transform`), in float64."""
    _, C, K = dU.shape
    t = np.empty((3, 6, K), dtype=np.float64)
    for c in range(C):
        for b in range(6):  # G^T dU down the columns
            for n in range(K):
                u0, u1 = np.float64(dU[b, c, n]), np.float64(dU[6 + b, c, n])
                u2, u3 = np.float64(dU[12 + b, c, n]), np.float64(dU[18 + b, c, n])
                u4, u5 = np.float64(dU[24 + b, c, n]), np.float64(dU[30 + b, c, n])
                t[0, b, n] = u0 / 4.0 - (u1 + u2) / 6.0 + (u3 + u4) / 24.0
                t[1, b, n] = (u2 - u1) / 6.0 + (u3 - u4) / 12.0
                t[2, b, n] = (u3 + u4 - u1 - u2) / 6.0 + u5
        for a in range(3):  # then along the rows
            for n in range(K):
                u0, u1, u2 = t[a, 0, n], t[a, 1, n], t[a, 2, n]
                u3, u4, u5 = t[a, 3, n], t[a, 4, n], t[a, 5, n]
                dW[a, 0, c, n] = u0 / 4.0 - (u1 + u2) / 6.0 + (u3 + u4) / 24.0
                dW[a, 1, c, n] = (u2 - u1) / 6.0 + (u3 - u4) / 12.0
                dW[a, 2, c, n] = (u3 + u4 - u1 - u2) / 6.0 + u5
