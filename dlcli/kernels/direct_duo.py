"""kernels/direct.py's pooled pair as `_duo` drivers: runs of examples that the main thread and
kernels/duo.py's helper thread take from a shared counter inside a training step of small GEMMs
(LeNet-5's first layer; nn/conv_direct.py picks them), each run's filter and bias sums apart,
added in run order (`fold_parts`), so the result never depends on which thread ran a run.

Same per-example bodies as direct.py's serial and parallel drivers (its inlined helpers), the
same flags; only the loop over examples differs: parts from kernels/duo.py's counter instead
of a range or a prange. Kept apart from direct.py by idea (the work sharing between two
threads without a Numba parallel region).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .direct import (REDUCE, _backward_pooled_block, _convolve, _fold, _geometry, _pad_planes,
                     _to_pooled)
from .duo import finish, go, next_part, part_done


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def direct_forward_pool_duo(ctrl, gen, counter, parts, A_prev, W, b, code, pad_top, pad_left, A,
                            argmax):
    """direct_forward_pool in `parts` runs of examples taken by both threads (kernels/duo.py)."""
    go(ctrl, gen)
    m, n_H, n_W, n_C = A.shape[0], 2 * A.shape[1], 2 * A.shape[2], A.shape[3]
    Wp, plane, offsets = _geometry(A_prev, W.shape[0], n_H, n_W)
    W2 = W.reshape(-1, n_C)
    P = np.zeros(A_prev.shape[3] * plane, dtype=A.dtype)
    Zw = np.empty(n_C * n_H * Wp, dtype=A.dtype)
    p, own = next_part(counter), 0
    while p < parts:
        for i in range(p * m // parts, (p + 1) * m // parts):
            _pad_planes(i, A_prev, pad_top, pad_left, Wp, plane, P)
            _convolve(W2, offsets, n_H * Wp, P, Zw)
            _to_pooled(i, Zw, b, code, Wp, A, argmax)
        part_done(counter)
        p, own = next_part(counter), own + 1
    finish(ctrl, gen, counter, parts, own)


@njit(cache=True, nogil=True, error_model="numpy", fastmath=REDUCE)
def direct_backward_pool_duo(ctrl, gen, counter, parts, A_prev, dA, A, argmax, code, pad_top,
                             pad_left, f, dW_part, db_part):
    """direct_backward_pool of an f x f filter in `parts` runs taken by both threads: run p's
    sums in dW_part[p] (f f n_C_prev, n_C) and db_part[p], added in run order by `fold_parts`."""
    go(ctrl, gen)
    m, n_H, n_W = dA.shape[0], 2 * dA.shape[1], 2 * dA.shape[2]
    Wp, plane, offsets = _geometry(A_prev, f, n_H, n_W)
    p, own = next_part(counter), 0
    while p < parts:
        dW_part[p] = 0.0
        db_part[p] = 0.0
        _backward_pooled_block(p * m // parts, (p + 1) * m // parts, A_prev, dA, A, argmax, code,
                               pad_top, pad_left, Wp, plane, offsets, dW_part[p], db_part[p])
        part_done(counter)
        p, own = next_part(counter), own + 1
    finish(ctrl, gen, counter, parts, own)


@njit(cache=True, error_model="numpy")
def fold_parts(dW_part, db_part, dW, db):
    """dW, db (overwritten) = the runs' partial sums, in run order."""
    _fold(dW_part, db_part, dW.reshape(-1, db.shape[0]), db)
