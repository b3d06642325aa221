"""The LSTM's split time loops (kernels/recurrent.py `lstm_forward_split`,
`lstm_backward_split`) as kernels/duo.py drivers: inside a training step of an LSTM model
(nn/recurrent_cells.py `step_threads`, BLAS on one thread for the whole step) the main thread
and the duo helper take the blocks of examples that a Numba parallel region would hand its
workers.

Why: each of those passes was a `prange` region on the workqueue layer, whose workers sleep
between regions and whose main thread sleeps until they finish (an empty 2-thread region
costs 100-190 us on this machine's KVM vCPUs; see kernels/conv_duo.py). A char-LM step has
two, each 1.5-2.2 ms long at batch 32. The duo helper waits for jobs without sleeping, and the
main thread takes blocks itself instead of waiting.

Each block's whole time loop is the same compiled kernel as in the split drivers
(`_lstm_forward_rows`, `_lstm_backward_rows`), its weight-gradient share kept per block and
added in block order after the pass (`add_parts`): the same bits whichever thread took which
block, and with the helper away.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .duo import finish, go, next_part, part_done
from .embedded import scatter_rows
from .recurrent import (_add_parts, _add_parts_2d, _column_sums, _lstm_backward_rows,
                        _lstm_forward_rows)


@njit(cache=True, nogil=True, error_model="numpy")
def lstm_forward_duo(ctrl, gen, counter, parts, H, W_T, xb, idx, c0, mask, A, order, C, G):
    """`lstm_forward_split`'s blocks taken by both threads."""
    go(ctrl, gen)
    m = mask.shape[1]
    p, own = next_part(counter), 0
    while p < parts:
        _lstm_forward_rows(H, W_T, xb, idx, c0, mask, A, order, C, G, p * m // parts,
                           (p + 1) * m // parts)
        part_done(counter)
        p, own = next_part(counter), own + 1
    finish(ctrl, gen, counter, parts, own)


@njit(cache=True, nogil=True, error_model="numpy")
def lstm_backward_duo(ctrl, gen, counter, parts, dA, order, C, G, c0, Wa, mask, da_next,
                      dc_next, dZ, H, Wx, dX, part_dW, idx, part_dxb, part_db):
    """`lstm_backward_split`'s blocks taken by both threads, each block's dW and db shares
    left in part_dW[p] and part_db[p] for `add_parts` (the arguments as there)."""
    go(ctrl, gen)
    T, m = mask.shape
    p, own = next_part(counter), 0
    while p < parts:
        lo, hi = p * m // parts, (p + 1) * m // parts
        _lstm_backward_rows(dA, order, C, G, c0, Wa, mask, da_next, dc_next, dZ, lo, hi)
        r0, r1 = T * lo, T * hi
        np.dot(dZ[r0:r1].T, H[r0:r1], part_dW[p])
        if dX.shape[0] > 0:
            np.dot(dZ[r0:r1], Wx, dX[r0:r1])
        if part_dxb.shape[1] > 0:
            scatter_rows(dZ, idx, T, lo, hi, part_dxb[p])
        _column_sums(dZ[r0:r1], part_db[p])
        part_done(counter)
        p, own = next_part(counter), own + 1
    finish(ctrl, gen, counter, parts, own)


@njit(cache=True, error_model="numpy")
def add_parts(dW, part_dW, db, part_db):
    """dW[:, :K] += the blocks' shares, db likewise, in block order (as the split kernel)."""
    _add_parts_2d(dW, part_dW)
    _add_parts(db, part_db)
