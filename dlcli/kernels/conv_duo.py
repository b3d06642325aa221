"""The conv layers' blocked passes (Winograd F(2x2) and F(4x4), by blocks or by tile positions,
the split filter gradient, conv2d_transpose, max pools) as kernels/duo.py drivers: inside a
training step whose GEMMs all run on one BLAS thread (dlcli/train.py `small_step_blas`), the
main thread and the duo helper take the same runs that a Numba parallel region would hand
its two workers.

Why: each of those passes was a `prange` region on the workqueue layer, whose workers sleep
between regions and whose main thread sleeps until they finish: three wake-ups on KVM vCPUs
for every pass. An empty 2-thread region costs 100-190 us here (median 136 back to back, 188
after 3 ms of serial work); the U-Net's step has 49 such passes. The duo helper waits between
jobs without sleeping (yielding its core), so a pass reaches it at once, and the main thread
runs a part itself instead of sleeping. Measured on the Intel guest (2 vCPUs, AVX-512, Dec 5
2026, 01:30 UTC, load ~1): whole U-Net training steps (benchmarks/cnn.py's unet16, batch 8),
both ways alternating in one process, 36-48 steps each: 160.9 -> 131.9 ms and 168.7 -> 135.0
ms (medians), the parameters after the same steps equal bit for bit.

Each driver runs the same inlined run of its module as that module's serial and parallel
drivers, on the same `parts`: run p writes its own examples' rows and its own partial sums
(added in part order afterwards), so the results never depend on which thread ran which run,
nor on the helper being there at all. The max pools' per-example passes (nn/conv.py's
`kernel`) run examples in runs of kernels/duo.py's PARTS. The position-split passes
(kernels/winograd_positions.py) claim their units from their own counters: a part that
arrives after the other has claimed them all finds nothing left and returns.
"""

from __future__ import annotations

from numba import njit

from . import filter_grad as kf
from . import pool as kpool
from . import transpose as ktr
from . import winograd as kw
from . import winograd4 as k4
from . import winograd4_grad as k4g
from . import winograd_grad as kg
from . import winograd_positions as kp
from .duo import finish, go, next_part, part_done


@njit(cache=True, nogil=True)
def convolve_blocks_duo(ctrl, gen, counter, parts, A_prev, U, pad_top, pad_left, Z, rows,
                        examples, acc, epilogue):
    """kernels/winograd.py's `convolve_blocks_parallel`, its runs taken by both threads."""
    go(ctrl, gen)
    p, own = next_part(counter), 0
    while p < parts:
        kw._convolve_run(p, parts, A_prev, U, pad_top, pad_left, Z, rows, examples, acc,
                         epilogue)
        part_done(counter)
        p, own = next_part(counter), own + 1
    finish(ctrl, gen, counter, parts, own)


@njit(cache=True, nogil=True)
def convolve4_blocks_duo(ctrl, gen, counter, parts, A_prev, U, pad_top, pad_left, Z, rows,
                         examples, acc, epilogue):
    """kernels/winograd4.py's `convolve_blocks_parallel`, its runs taken by both threads."""
    go(ctrl, gen)
    p, own = next_part(counter), 0
    while p < parts:
        k4._convolve_run(p, parts, A_prev, U, pad_top, pad_left, Z, rows, examples, acc,
                         epilogue)
        part_done(counter)
        p, own = next_part(counter), own + 1
    finish(ctrl, gen, counter, parts, own)


@njit(cache=True, nogil=True)
def backward_blocks_duo(ctrl, gen, counter, parts, A_prev, dZ, UT, pad_top, pad_left,
                        examples_a_block, rows, dU_parts, dA, input_grad, addend, A, slope,
                        db_parts):
    """kernels/winograd_grad.py's `backward_blocks_parallel`, its runs taken by both threads."""
    go(ctrl, gen)
    p, own = next_part(counter), 0
    while p < parts:
        kg._grad_run(p, parts, A_prev, dZ, UT, pad_top, pad_left, examples_a_block, rows,
                     dU_parts[p], dA, input_grad, addend, A, slope, db_parts[p])
        part_done(counter)
        p, own = next_part(counter), own + 1
    finish(ctrl, gen, counter, parts, own)


@njit(cache=True, nogil=True)
def backward4_blocks_duo(ctrl, gen, counter, parts, A_prev, dZ, UT, pad_top, pad_left,
                         examples_a_block, rows, dU_parts, dA, input_grad, addend, A, slope,
                         db_parts):
    """kernels/winograd4_grad.py's `backward_blocks_parallel`, its runs taken by both threads."""
    go(ctrl, gen)
    p, own = next_part(counter), 0
    while p < parts:
        k4g._grad_run(p, parts, A_prev, dZ, UT, pad_top, pad_left, examples_a_block, rows,
                      dU_parts[p], dA, input_grad, addend, A, slope, db_parts[p])
        part_done(counter)
        p, own = next_part(counter), own + 1
    finish(ctrl, gen, counter, parts, own)


@njit(cache=True, nogil=True)
def convolve_positions_duo(ctrl, gen, counter, parts, A_prev, U, pad_top, pad_left, Z, V, M,
                           chunks, acc, epilogue, sync):
    """kernels/winograd_positions.py's `convolve_positions_parallel` on both threads."""
    go(ctrl, gen)
    p, own = next_part(counter), 0
    while p < parts:
        kp._forward_part(A_prev, U, pad_top, pad_left, Z, V, M, chunks, acc, epilogue, sync)
        part_done(counter)
        p, own = next_part(counter), own + 1
    finish(ctrl, gen, counter, parts, own)


@njit(cache=True, nogil=True)
def backward_positions_duo(ctrl, gen, counter, parts, A_prev, dZ, UT, pad_top, pad_left, V, M,
                           dU, dW, dA, input_grad, addend, A, slope, db, zeroed, sync):
    """kernels/winograd_positions.py's `backward_positions_parallel` on both threads."""
    go(ctrl, gen)
    p, own = next_part(counter), 0
    while p < parts:
        kp._backward_part(A_prev, dZ, UT, pad_top, pad_left, V, M, dU, dW, dA, input_grad,
                          addend, A, slope, db, zeroed, sync)
        part_done(counter)
        p, own = next_part(counter), own + 1
    finish(ctrl, gen, counter, parts, own)


@njit(cache=True, nogil=True, error_model="numpy", fastmath=kf.REDUCE)  # as its drivers
def filter_grad_duo(ctrl, gen, counter, parts, A_prev, dZ, pad_top, pad_left, block_rows,
                    dW_parts, dA, A, slope, db_parts):
    """kernels/filter_grad.py's `filter_grad_parallel`, its runs taken by both threads."""
    go(ctrl, gen)
    p, own = next_part(counter), 0
    while p < parts:
        kf._grad_run(p, parts, A_prev, dZ, pad_top, pad_left, block_rows, dW_parts[p], dA, A,
                     slope, db_parts[p])
        part_done(counter)
        p, own = next_part(counter), own + 1
    finish(ctrl, gen, counter, parts, own)


@njit(cache=True, nogil=True)
def transpose_forward_duo(ctrl, gen, counter, parts, A2, W_rows, f, stride, crop, n_H_prev,
                          n_W_prev, block_rows, Z, b, k0):
    """kernels/transpose.py's `forward_blocks_parallel`, its runs taken by both threads."""
    go(ctrl, gen)
    p, own = next_part(counter), 0
    while p < parts:
        ktr._forward_run(p, parts, A2, W_rows, f, stride, crop, n_H_prev, n_W_prev, block_rows,
                         Z, b, k0)
        part_done(counter)
        p, own = next_part(counter), own + 1
    finish(ctrl, gen, counter, parts, own)


@njit(cache=True, nogil=True)
def transpose_backward_duo(ctrl, gen, counter, parts, dZ, A2, W_rowsT, f, stride, crop,
                           n_H_prev, n_W_prev, block_rows, dW_parts, dA2, input_grad, k0,
                           db_parts):
    """kernels/transpose.py's `backward_blocks_parallel`, its runs taken by both threads."""
    go(ctrl, gen)
    p, own = next_part(counter), 0
    while p < parts:
        ktr._backward_run(p, parts, dZ, A2, W_rowsT, f, stride, crop, n_H_prev, n_W_prev,
                          block_rows, dW_parts[p], dA2, input_grad, k0, db_parts[p])
        part_done(counter)
        p, own = next_part(counter), own + 1
    finish(ctrl, gen, counter, parts, own)


# -- per-example passes: each example's body is independent of the others, so the runs
# (kernels/duo.py's PARTS, nn/conv.py `kernel`) change nothing but who computes what
@njit(cache=True, nogil=True)
def maxpool_forward_duo(ctrl, gen, counter, parts, A_prev, f, stride, pad_top, pad_left, A,
                        argmax, into):
    """kernels/pool.py's `maxpool_forward_parallel`, runs of examples on both threads."""
    go(ctrl, gen)
    m = A_prev.shape[0]
    p, own = next_part(counter), 0
    while p < parts:
        for i in range(p * m // parts, (p + 1) * m // parts):
            kpool._maxpool_forward_any(i, A_prev, f, stride, pad_top, pad_left, A, argmax, into)
        part_done(counter)
        p, own = next_part(counter), own + 1
    finish(ctrl, gen, counter, parts, own)


@njit(cache=True, nogil=True)
def maxpool_backward_duo(ctrl, gen, counter, parts, dA, argmax, dA_prev, addend):
    """kernels/pool.py's `maxpool_backward_parallel`, runs of examples on both threads."""
    go(ctrl, gen)
    m = dA.shape[0]
    p, own = next_part(counter), 0
    while p < parts:
        for i in range(p * m // parts, (p + 1) * m // parts):
            kpool._maxpool_backward(i, dA, argmax, dA_prev, addend)
        part_done(counter)
        p, own = next_part(counter), own + 1
    finish(ctrl, gen, counter, parts, own)
