"""Recurrent time loops (forward and backprop through time) as Numba kernels.

Algorithm (the cuDNN layout, written for a CPU):
- Everything is time-major inside: x (T, m, n_x), states (T, m, n_a), so one step's slice is a
  contiguous (m, n) matrix that BLAS takes without a copy.
- The RNN and GRU: the input half of every gate, W_x x<t> + b for all t, is ONE large GEMM
  before the loop (`(T m, n_x) @ (n_x, G n_a)`, done by the caller in numpy). Inside the loop
  a step costs one GEMM for all its gates, `a<t-1> @ Wa_T` with the gates' recurrent weights
  stacked at build time, then one fused elementwise pass over (m, n_a). The lectures' GRU needs
  a second GEMM per step: its candidate reads Gr * c<t-1>, known only after the first.
- The LSTM reads H[t] = [a<t-1>, x<t>] (T, m, n_a + n_x), the course's concat, which the kernel
  fills as it goes: a step is ONE GEMM `H[t] @ [Wf; Wi; Wc; Wo]^T` (K = n_a + n_x) and the
  bias is added in the gate pass. The input half riding in the step's GEMM cost ~12% more per
  step (K 144 against 128) and saved the GEMM before the loop, its bias pass and, in backward,
  the [a0, A[:-1]] concat and a second weight GEMM: dW = dZ^T H is one.
- An embedding right before the LSTM is fused in (Dec 3 2026, s7-lstm; kernels/embedded.py):
  x<t> = E[:, id], so W_x x<t> + b is a row of the table E^T W_x^T + b, which the gate pass
  adds where it added b (`xb`, `idx`); H is then [a<t-1>] alone (K = n_a) and backward
  scatters dZ's rows by token instead of a dX GEMM. Char-LM step at batch 32 6.23 -> 5.53 ms.
- The LSTM's A and dA may be batch-first, the layer's own layout (`order`), so that the layer
  neither copies its output to batch-first nor its dy to time-major (35-50 us each at batch
  32; the wrapper around the two kernels 328 -> 161 us a step with the table, load ~6).
- Backward runs the loop in reverse and leaves dZ, the gradient of every gate's
  pre-activation at every step; the weight gradients are then ONE GEMM each outside the loop
  (dW = dZ^T [A_prev, X], db = sum dZ), done by the caller.
- A step's product goes through `_dot_rows` (kernels/small_gemm.py): blocks of 8 rows, which
  OpenBLAS multiplies on its small-matrix path (M N K <= 1e6, no packing): (8, 128) @ (128, 512)
  runs at 114 GFLOP/s on a core, (16, 128) @ (128, 512) at 53. It made the LSTM's split forward
  pass at batch 32 2.88 -> 1.73 ms and at 128 9.9 -> 7.4 ms (load ~1). Where OpenBLAS has no
  such path (its Haswell kernels, as on an AMD Zen 2) it packs all of W at every call, and a
  block's product is `_rows_dot`, two rows by four terms along the columns, W read in place
  (16 rows of the LSTM's 128 x 512: 37-39 against 63-64 us; the char-LM LSTM at batch 32
  0.89x -> 1.27x PyTorch; kernels/small_gemm.py).
- A masked step (mask[t, i] == 0, a padded step) leaves example i's state as it was: its
  output is the carried state, its gates are 0 and its dZ is 0, and in backward the gradient
  flows through it to the state before (Keras' masking).

Gate activations: kernels/gates.py (branch-free exp, vectorized; float32 gates in float32).
The GRU's loops are in kernels/gru.py (imported here).
A first LSTM (no input gradient wanted) passes a dX of no rows, and no dZ Wx GEMM is done.
The loops compile with fastmath "contract" (multiply-adds fused in the gates' polynomials).
Together (s7-lstm, Dec 3 2026): benchmarks/rnn.py at batch 32, the branch and main in turn,
load 2-3.9, runs where PyTorch did not collapse: 1.05x, 1.01x, 1.10x, 0.94x, 1.12x, 1.07x,
1.13x against main's 0.92x, 0.88x, 0.92x, 0.99x, 0.90x, 0.93x (dlcli 5,800-6,680 against
5,120-5,910 ex/s); at 128 1.28x, 1.35x against 1.25x, 1.27x; GRU 1.59x, 1.64x / 1.18x, 1.20x.
Threads: examples never meet inside a layer, so the `*_split` kernels (prange over blocks of
rows, one per thread) run each block's WHOLE time loop, its own one-thread GEMM a step, and the
threads meet once per pass; 2-thread BLAS per step would meet twice a step (and 2-thread
OpenBLAS made steps 10-30x slower on the loaded machine). The layer uses them from batch 8, the
crossover measured below. The LSTM's split kernels go further (Dec 3 2026, issue 11):
- its backward region also does each block's share of dW = dZ^T H, db and dX = dZ Wx, right
  after the block's loop: H and dZ are laid out BLOCKED (see `lstm_forward`) so that a block's
  rows are one contiguous matrix. One parallel region a step fewer (`stacked_grads_split` was
  the third): char-LM LSTM at batch 32 0.98 / 1.00 / 1.10x PyTorch against 1.01 / 0.88 / 0.92x
  (3 interleaved pairs, load 1.8-2.4);
- the examples come in blocks of 8, or 16 without the small-matrix path (up to 4 a thread;
  nn/recurrent_cells.py `_lstm_block`) that the threads take from a shared
  counter (`kernels/threads.next_block`): with static halves, a thread whose core another
  process shared made the other wait. The partial dW and db are per block and summed in block
  order, so the gradients do not depend on which thread took which block. A training step at
  batch 32: median 8.05-9.57 ms against 9.28-10.31 (4 interleaved pairs, load 1.7);
- Numba's workers are pinned one to a core (kernels/threads.py).
- ONE parallel region a pass (Dec 3 2026, s5-small): Numba had made each np.zeros and each
  `dW += part` of these parallel kernels a region of its own (11 in the split backward, 2 in
  the forward; `parallel_diagnostics` lists them); they are serial helpers now (`_add_parts`
  etc., the same sums in the same order). With BLAS on one thread for the LSTM model's whole
  step (nn/recurrent_cells.py `step_threads`), dlcli's char-LM LSTM at batch 32 trained
  2,393 / 2,625 / 2,472 ex/s against main's 1,901 / 1,598 / 1,710 (interleaved processes,
  dlcli alone, load 2.5 from other jobs); at 128 3,116 / 2,967 against 2,615 / 2,984.

Kernels take float32 or float64 arrays (one compiled version each), C-contiguous.
Measured (Dec 3 2026, load average ~2 on the 2-core machine, float32, T 40, 128 units, LSTM
kernels alone, ms a pass forward / backward): batch 4 serial 0.35 / 0.28, split 0.58 / 0.50;
batch 8 0.69 / 0.54 against split 0.43 / 0.35; batch 32 3.9 / 3.8 against 2.9 / 2.6;
batch 128 13.6 / 12.3 against 7.2 / 7.8 (the libm version: 53 / 23 serial). The per-step GEMMs
alone (forward + backward, one thread) take 4.2 ms at batch 32 and 14 ms at 128.
benchmarks/rnn.py (whole training step against PyTorch, benchmarks/HISTORY.md; loads 0.5-2.3): LSTM
0.48x / 0.55x at batch 32 / 128 before, 0.54-0.80x / 0.91-1.27x after; GRU 1.42x / 0.98x
before, 1.47-2.13x / 1.13-1.45x after. With the H concat, `_dot_rows`, float32 gates and
OpenBLAS's idle threads put to sleep sooner (dlcli/__init__.py): README.md's table.
Activation codes of the simple RNN: 0 tanh, 1 relu, 2 sigmoid, 3 linear, 4 leaky_relu.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .embedded import scatter_rows
from .gates import _act, _act_grad, _gate_sigmoid, _gate_tanh, _sigmoid, _tanh  # noqa: F401
# the GRU's loops, kept beside the others' here (callers and tests take them from this module)
from .gru import gru_backward, gru_backward_split, gru_forward, gru_forward_split  # noqa: F401
from .small_gemm import _dot_rows
from .threads import block_counter, next_block

ACTIVATION_CODES = {"tanh": 0, "relu": 1, "sigmoid": 2, "linear": 3, "leaky_relu": 4}


# -- simple RNN: a<t> = g(Waa a<t-1> + Wax x<t> + ba) ------------------------------------------
@njit(cache=True, error_model="numpy")
def rnn_forward(XZ, Waa_T, a0, mask, code, A):
    """XZ (T, m, n) = Wax x<t> + ba; Waa_T (n, n); a0 (m, n); mask (T, m) uint8; A (T, m, n) out."""
    T, m, n = XZ.shape
    z = np.empty((m, n), dtype=XZ.dtype)
    a_prev = a0
    for t in range(T):
        _dot_rows(a_prev, Waa_T, z)
        At = A[t]
        for i in range(m):
            if mask[t, i]:
                for j in range(n):
                    At[i, j] = _act(code, z[i, j] + XZ[t, i, j])
            else:
                for j in range(n):
                    At[i, j] = a_prev[i, j]
        a_prev = At


@njit(cache=True, error_model="numpy")
def rnn_backward(dA, A, Waa, mask, code, da_next, dZ):
    """dA (T, m, n) gradients on the outputs; da_next (m, n) in: on the last state, out: on a0.
    dZ (T, m, n) out: gradients of the pre-activations (0 at masked steps)."""
    T, m, n = dA.shape
    back = np.empty((m, n), dtype=dA.dtype)
    for t in range(T - 1, -1, -1):
        dZt = dZ[t]
        for i in range(m):
            if mask[t, i]:
                for j in range(n):
                    dZt[i, j] = (dA[t, i, j] + da_next[i, j]) * _act_grad(code, A[t, i, j])
            else:
                for j in range(n):
                    dZt[i, j] = 0.0
                    da_next[i, j] += dA[t, i, j]
        _dot_rows(dZt, Waa, back)
        for i in range(m):
            if mask[t, i]:
                for j in range(n):
                    da_next[i, j] = back[i, j]


# -- what the split kernels do outside their prange -------------------------------------------
# In a parallel=True kernel Numba turns EVERY array expression (np.zeros, `a += b`) into a
# parallel region of its own, each waking the workers again: the LSTM's split backward had 11
# regions a pass where it meant one (np.zeros for its counter and partial db, `dW += part` and
# `db += part` per block). Timed inside training steps (char-LM, batch 32, load ~2.5), its
# two threads began their blocks 2.2 ms after the call and the call returned 6.5 ms after they
# were done, for 2.9 ms of work a thread. These serial helpers (plain functions: compiled
# without the parallel pass) keep each split kernel at one region.
@njit(cache=True, error_model="numpy")
def _column_sums(dZ, out):
    """out = the column sums of dZ (rows in order)."""
    n = np.uint64(out.shape[0])
    for j in range(n):
        out[j] = 0.0
    for i in range(dZ.shape[0]):
        row = dZ[i]
        for j in range(n):
            out[j] += row[j]


@njit(cache=True, error_model="numpy")
def _add_parts_2d(total, parts):
    """total[:, :K] += parts[0] + parts[1] + ..., parts (P, rows, K), in block order: the
    LSTM's dW, of which a fused embedding's run fills only the recurrent columns."""
    rows, K = np.uint64(parts.shape[1]), np.uint64(parts.shape[2])
    for p in range(parts.shape[0]):
        for i in range(rows):
            dst, part = total[i], parts[p, i]
            for j in range(K):
                dst[j] += part[j]


@njit(cache=True, error_model="numpy")
def _add_parts(total, parts):
    """total += parts[0] + parts[1] + ..., each element summed in block order (deterministic)."""
    n = np.uint64(total.shape[0])
    for p in range(parts.shape[0]):
        part = parts[p]
        for i in range(n):
            total[i] += part[i]


# -- LSTM, gates stacked [f, i, c~, o] ------------------------------------------------------
# Each kernel works on the example rows lo..hi: the serial kernel takes all of them, the
# `_split` one gives each thread a block of rows for the WHOLE time loop (examples never meet
# inside a layer), so the threads meet once per loop, not once per step.
# The gate loops run over one example's contiguous row with unsigned indices (no negative-index
# test) and error_model="numpy" (no zero-division test): both kept LLVM from vectorizing them.
@njit(inline="always")
def _lstm_cell_row(z, b, c_prev, a, c, g):
    n = np.uint64(a.shape[0])
    n2 = n + n
    n3 = n2 + n
    for j in range(n):
        f = _gate_sigmoid(z[j] + b[j])
        u = _gate_sigmoid(z[n + j] + b[n + j])
        cc = _gate_tanh(z[n2 + j] + b[n2 + j])
        o = _gate_sigmoid(z[n3 + j] + b[n3 + j])
        cn = f * c_prev[j] + u * cc
        c[j] = cn
        a[j] = o * _gate_tanh(cn)
        g[j] = f
        g[n + j] = u
        g[n2 + j] = cc
        g[n3 + j] = o


@njit(inline="always")
def _lstm_cell_row_backward(da_out, da_next, dc_next, c_prev, c, g, dz, one):
    """da_next, dc_next in: from step t+1, out (dc_next only): to step t-1. `one` is 1 in the
    arrays' dtype, so that float32 rows are computed in float32 (a float 1.0 made it float64)."""
    n = np.uint64(c.shape[0])
    n2 = n + n
    n3 = n2 + n
    for j in range(n):
        f, u, cc, o = g[j], g[n + j], g[n2 + j], g[n3 + j]
        tc = _gate_tanh(c[j])
        da = da_out[j] + da_next[j]
        dc = dc_next[j] + da * o * (one - tc * tc)
        dz[j] = dc * c_prev[j] * f * (one - f)
        dz[n + j] = dc * cc * u * (one - u)
        dz[n2 + j] = dc * u * (one - cc * cc)
        dz[n3 + j] = da * tc * o * (one - o)
        dc_next[j] = dc * f


@njit(inline="always")
def _step_row(A, t, r, order):
    """Example r's row at step t of a state array in `order` (see `lstm_forward`)."""
    if order == 0:
        return A[t, r]
    if order == 1:
        return A[r, t]
    return A[r, A.shape[1] - 1 - t]


# fastmath "contract" only (multiply-adds fused: the gates' polynomials, Horner's rule), no
# reassociation: the gate pass of a thread's char-LM forward share (640 rows of 128, float32)
# took 0.42 ms, 0.30 with it (load ~5.6, Dec 3 2026); float64 stays within 1e-9 of torch
@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _lstm_forward_rows(H, W_T, xb, idx, c0, mask, A, order, C, G, lo, hi):
    """H is blocked (see `lstm_forward`): rows base + t (hi - lo) + i for example lo + i."""
    T, n = mask.shape[0], A.shape[2]
    mp, base = hi - lo, T * lo
    z = np.empty((mp, W_T.shape[1]), dtype=H.dtype)
    for t in range(T):
        c_prev = C[t - 1, lo:hi] if t > 0 else c0[lo:hi]
        row = base + t * mp
        _dot_rows(H[row:row + mp], W_T, z)  # [a<t-1>, x<t>] @ [Wa; Wx]^T, all four gates
        for i in range(mp):
            r = lo + i
            a = _step_row(A, t, r, order)
            if mask[t, r]:
                _lstm_cell_row(z[i], xb[idx[t, r]], c_prev[i], a, C[t, r], G[t, r])
            else:
                a[:] = H[row + i, :n]
                C[t, r] = c_prev[i]
                G[t, r] = 0.0
            if t + 1 < T:
                H[row + mp + i, :n] = a


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _lstm_backward_rows(dA, order, C, G, c0, Wa, mask, da_next, dc_next, dZ, lo, hi):
    """dZ is blocked like H (see `lstm_forward`)."""
    T = mask.shape[0]
    mp, base = hi - lo, T * lo
    back = np.empty((mp, dA.shape[2]), dtype=dA.dtype)
    one = np.ones(1, dtype=dA.dtype)[0]
    for t in range(T - 1, -1, -1):
        row = base + t * mp
        for i in range(mp):
            r = lo + i
            if mask[t, r]:
                c_prev = C[t - 1, r] if t > 0 else c0[r]
                _lstm_cell_row_backward(_step_row(dA, t, r, order), da_next[r], dc_next[r], c_prev,
                                        C[t, r], G[t, r], dZ[row + i], one)
            else:
                da_next[r] += _step_row(dA, t, r, order)
                dZ[row + i] = 0.0
        _dot_rows(dZ[row:row + mp], Wa, back)
        for i in range(mp):
            if mask[t, lo + i]:
                da_next[lo + i] = back[i]


@njit(cache=True, error_model="numpy")
def lstm_forward(H, W_T, xb, idx, c0, mask, A, order, C, G):
    """H (T m, n + n_x) in: [a0, x<1>], [., x<2>], ...; out: [a<t-1>, x<t>] at every step (the
    kernel writes the states in), which backward multiplies by dZ for dW in one GEMM;
    W_T (n + n_x, 4n) the stacked [Wf; Wi; Wc; Wo] transposed; xb (R, 4n) rows added to the
    gates' product, example r at step t taking row idx[t, r] (idx (T, m) intp): the bias b as
    one row and idx all 0, or, under a fused embedding, the table E^T Wx^T + b with H only
    [a<t-1>] (n_x = 0; nn/recurrent_cells.py `LSTMCell.forward_tokens`); c0 (m, n);
    out: A the states a<t>, (T, m, n) time-major (order 0), or the layer's batch-first (m, T, n)
    (order 1), or that with time reversed (order 2, a `reverse` layer: step t at T - 1 - t), so
    that the layer hands A out without a copy; C (T, m, n) the c<t>; G (T, m, 4n) the gates
    after their activation.
    H (and backward's dZ) are BLOCKED by the split's blocks of examples lo..hi: the block's
    rows T lo .. T hi, step by step (row T lo + t (hi - lo) + i is example lo + i at step t),
    so that each thread's whole share is one contiguous matrix for the weight-gradient GEMMs
    that follow its time loop. With one block (this kernel) that is time-major (T, m, .)."""
    # `range(1)`, not a constant lo = 0: with the constant, LLVM's inlining left the gate loops
    # 4x slower (52 against 13 ms a forward pass at m 128, measured)
    for lo in range(1):
        _lstm_forward_rows(H, W_T, xb, idx, c0, mask, A, order, C, G, lo, mask.shape[1])


@njit(cache=True, error_model="numpy", parallel=True)
def lstm_forward_split(H, W_T, xb, idx, c0, mask, A, order, C, G, parts, threads):
    """lstm_forward with the examples in `parts` blocks of rows, each block's whole time loop run
    by one thread; the threads take blocks from a shared counter (`next_block`), so that a
    thread whose core another process shares takes fewer of them. `threads`: Numba's count
    (numba.get_num_threads() in a kernel is a ctypes call, which Numba will not cache)."""
    m = mask.shape[1]
    counter = block_counter()
    for _ in prange(min(threads, parts)):
        p = next_block(counter)
        while p < parts:
            _lstm_forward_rows(H, W_T, xb, idx, c0, mask, A, order, C, G, p * m // parts,
                               (p + 1) * m // parts)
            p = next_block(counter)


@njit(cache=True, error_model="numpy")
def lstm_backward(dA, order, C, G, c0, Wa, mask, da_next, dc_next, dZ):
    """dA the gradients on the outputs a<t>, in `order` (as A in `lstm_forward`); Wa (4n, n);
    da_next, dc_next (m, n) in: the gradients on the last states, out: on a0 and c0; dZ (T m, 4n)
    out (time-major). The caller takes dW = dZ^T H, db, dX = dZ Wx after it."""
    for lo in range(1):
        _lstm_backward_rows(dA, order, C, G, c0, Wa, mask, da_next, dc_next, dZ, lo, mask.shape[1])


@njit(cache=True, error_model="numpy", parallel=True)
def lstm_backward_split(dA, order, C, G, c0, Wa, mask, da_next, dc_next, dZ, H, Wx, dW, db, dX,
                        part_dW, idx, part_dxb, parts, threads):
    """lstm_backward with `parts` blocks of examples taken from a shared counter (as in
    `lstm_forward_split`), and each block's share of the weight gradients done by its thread
    after the block's time loop, in the same parallel region: dW += dZ^T H, db += the column
    sums of dZ, dX = dZ Wx (dX (T m, n_x) blocked like H and dZ; Wx (4n, n_x)). One region
    where there were two (the loop's, then `stacked_grads_split`'s), and the block of dZ the
    thread just wrote is still in its core's cache. part_dW (parts, 4n, n + n_x): scratch, kept
    by the caller (a fresh 1.2 MB array a step page-faulted on its first touch).
    Under a fused embedding (H only [a<t-1>], K = n columns): dW[:, :K] alone, no dX (0 rows),
    and part_dxb (parts, R, 4n) the blocks' gradients of the forward's table rows xb (idx as
    in `lstm_forward`), summed by the caller; else part_dxb has no rows."""
    T, m = mask.shape
    # a partial dW and db per BLOCK, summed in block order after: the same sums whichever
    # thread took which block (per-thread partials made the gradients vary in the last bits)
    part_db = np.empty((parts, db.shape[0]), dtype=db.dtype)
    counter = block_counter()
    for _ in prange(min(threads, parts)):
        p = next_block(counter)
        while p < parts:
            lo, hi = p * m // parts, (p + 1) * m // parts
            _lstm_backward_rows(dA, order, C, G, c0, Wa, mask, da_next, dc_next, dZ, lo, hi)
            r0, r1 = T * lo, T * hi
            np.dot(dZ[r0:r1].T, H[r0:r1], part_dW[p])
            if dX.shape[0] > 0:  # no rows: no input gradient wanted (or a fused embedding's run)
                np.dot(dZ[r0:r1], Wx, dX[r0:r1])
            if part_dxb.shape[1] > 0:
                scatter_rows(dZ, idx, T, lo, hi, part_dxb[p])
            _column_sums(dZ[r0:r1], part_db[p])
            p = next_block(counter)
    _add_parts_2d(dW, part_dW)
    _add_parts(db, part_db)


# -- the weight gradients after BPTT ------------------------------------------------------------
@njit(cache=True, error_model="numpy", parallel=True)
def stacked_grads_split(dZ, H, Wx, dW, db, dX, parts):
    """dW += dZ^T H, db += the column sums of dZ, dX = dZ Wx, over dZ (K, G), H (K, n_a + n_x)
    (every step and example a row), Wx (G, n_x): `parts` blocks of K rows, a thread's one-thread
    GEMMs each, the blocks' dW and db summed after. One parallel region instead of two 2-thread
    OpenBLAS GEMMs, each of which met its threads again (and on a loaded machine waited for a
    descheduled one). Char-LM LSTM step (alternating epochs, quiet machine, Dec 3 2026): batch
    128 38.7 -> 33.7 and 34.8 -> 29.9 ms, batch 32 alike (12.4 / 12.6, 10.9 / 10.5 ms)."""
    K = dZ.shape[0]
    part_dW = np.empty((parts, dW.shape[0], dW.shape[1]), dtype=dW.dtype)
    part_db = np.empty((parts, dZ.shape[1]), dtype=dW.dtype)
    for p in prange(parts):
        lo, hi = p * K // parts, (p + 1) * K // parts
        np.dot(dZ[lo:hi].T, H[lo:hi], part_dW[p])
        if dX.shape[0] > 0:  # no rows: no input gradient wanted
            np.dot(dZ[lo:hi], Wx, dX[lo:hi])
        _column_sums(dZ[lo:hi], part_db[p])
    _add_parts(dW.reshape(-1), part_dW.reshape(parts, -1))
    _add_parts(db, part_db)
