"""The course's recurrent cells (RNN, LSTM; the GRU in nn/recurrent_gru.py) over whole time-major
sequences: their stacked parameters, the per-run caches, and the calls into
`dlcli.kernels.recurrent` (the time loop and BPTT), with the BLAS-thread and example-split choices.
The layers that loop them over batch-first sequences, and the cell API, are in nn/recurrent.py."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .inits import initialize

RNN_ACTIVATIONS = ("tanh", "relu", "sigmoid", "linear", "leaky_relu")  # kernels' codes
GATE_NAMES = {"lstm": ("f", "i", "c", "o"), "gru": ("u", "r", "c")}


def _k():
    from ..kernels import recurrent  # numba loads at the first forward, not at import
    return recurrent


def _loop_threads():
    """BLAS limited to DLCLI_RNN_BLAS_THREADS (default 1) while a time loop runs.

    A step's GEMM, (m, n_a) x (n_a, 4 n_a), is too small to share: with OpenBLAS on 2 threads
    a training step of the dinos LSTM (batch 32, T 27, 128 units) took 1.6-4.2 s on the loaded
    2-core machine, against 0.13-0.18 s on one thread. From batch 8 the `*_split` kernels use
    the second core instead (see `_parts`). The layer's large GEMMs outside the loop (inputs,
    weight gradients) run on the process's BLAS threads (whose idle spinning dlcli/__init__.py
    shortens: it took a core from the split kernels): at load ~2 (Dec 3 2026) the char-LM
    LSTM at batch 128 ran 0.92x PyTorch with them on one thread, 1.13-1.19x on two; at batch 32
    one thread was worse too (0.52-0.57x against 0.68-0.76x, load 1.4-2.2).
    Entering and leaving costs a few us (threadpoolctl's limit, used then, ~16); inside another
    one (a training step's `step_threads`, where BLAS is limited already) it costs nothing: the
    LSTM's forward and backward entered it again every step, 0.11 ms of a 5.4 ms char-LM step
    at batch 32 (timed in the step, load 2.4, Dec 3 2026).
    """
    return _LoopThreads()


class _LoopThreads:
    """`_loop_threads`' context: the BLAS limit of the outermost one only (`depth`)."""

    depth = 0  # how many are entered, in the process (BLAS's limit is process-wide too)

    def __enter__(self):
        self.limit = None
        if _LoopThreads.depth == 0:
            import os
            from ..kernels.threads import blas_threads
            self.limit = blas_threads(int(os.environ.get("DLCLI_RNN_BLAS_THREADS", "1")))
            self.limit.__enter__()
        _LoopThreads.depth += 1
        return self

    def __exit__(self, *exc):
        _LoopThreads.depth -= 1
        if self.limit is not None:
            self.limit.__exit__(*exc)
        return False


def step_threads(model):
    """BLAS on the loop's thread count (`_loop_threads`) for a whole training step of a model
    whose recurrent layers are all LSTMs, else nothing.

    The LSTM's split kernels run every GEMM of the layer on their own threads; the 2-thread
    BLAS of the small layers around it (the char-LM's dense softmax: (T m, 128) x (128, 27))
    gained little and left OpenBLAS's second thread spinning on a core the LSTM's pinned
    worker needed next: the split backward ran 1.2-1.8 ms slower after them (kernel timed
    alone after the dense's three GEMMs, 2 of 3 runs; no change with BLAS on one thread), and
    `rnn.py` at batch 32 gave 0.95 / 0.97 / 0.80x with OPENBLAS_NUM_THREADS=1 against
    0.83 / 0.89 / 0.74x (interleaved, load 1.5-3.5, Dec 3 2026). At batch 128, dlcli alone:
    3,116 / 2,967 ex/s with it, 2,801 / 2,904 without (load 2.5). The GRU and RNN keep the
    process's BLAS threads for their input and weight GEMMs."""
    import contextlib
    cells = [getattr(layer, "cell", None) for layer in getattr(model, "mask_layers", ())]
    cells = [c for c in cells if c is not None]
    if cells and all(isinstance(c, LSTMCell) for c in cells):
        # and the LSTM's split passes on the main thread and kernels/duo.py's helper
        # (kernels/recurrent_duo.py): no OpenBLAS thread of the step spins on its core
        from ..kernels.duo import StepDuo
        return StepDuo(_loop_threads())
    return contextlib.nullcontext()


SPLIT_MIN_EXAMPLES = 8  # the crossover measured for an LSTM of 128 units (kernels/recurrent.py)


def _threads():
    from numba import get_num_threads
    return get_num_threads()


def _helper():
    """kernels/duo.py's helper inside a training step of an LSTM model (`step_threads`), else
    None: the split passes then run in Numba's parallel regions."""
    from ..kernels.duo import for_step
    return for_step()


def _parts(m):
    """Blocks of examples whose time loops run on their own threads (`*_split` kernels).

    Examples never meet inside a recurrent layer, so each thread runs the whole loop over its
    rows, a GEMM of its own a step on one BLAS thread: the threads meet once per pass, where
    2-thread BLAS met twice a step. Only while the loop's BLAS runs on one thread (the default).
    """
    import os
    if m < SPLIT_MIN_EXAMPLES or os.environ.get("DLCLI_RNN_BLAS_THREADS", "1") != "1":
        return 1
    parts = max(1, min(_threads(), m // (SPLIT_MIN_EXAMPLES // 2)))
    if parts > 1:  # the blocks' threads on distinct cores (kernels/threads.py), from the first
        from ..kernels.threads import pin_once
        pin_once()
    return parts


def _lstm_block():
    """Examples a block at least: one `_dot_rows` block where OpenBLAS multiplies 8 rows on its
    small-matrix path, else 16. With OpenBLAS's products (Haswell kernels) 16 rows ran at 32
    GFLOP/s against 19 for 8 (the char-LM LSTM at batch 32, two blocks of 16 against four of
    8: 2,540 / 2,321 against 2,304 / 2,071 ex/s, AMD EPYC, Dec 4 2026); with `_rows_dot`
    (kernels/small_gemm.py) the two measured alike (3,829 against 3,888 ex/s at 32, 4,484
    against 4,446 at 128, Dec 4 2026 21:50 UTC), and 16 stayed."""
    from ..kernels.small_gemm import DOT_ROWS
    return DOT_ROWS or 16


def _lstm_parts(m):
    """Blocks of examples for the LSTM's split kernels, which hand them out to the threads
    from a shared counter: up to 4 a thread, so that a thread slowed by another process's load
    takes fewer (static halves waited for the slow one)."""
    parts = _parts(m)
    return parts if parts == 1 else max(parts, min(m // _lstm_block(), 4 * parts))


class _Spare:
    """Large arrays a cell hands out again once the pass that used them is over.

    A fresh (T, m, 4 n_a) array page-faults on its first touch: at batch 128 (10 MB each) that
    cost 3-8 ms of a 46 ms LSTM step (measured). Only arrays nobody else holds come back here
    (`Recurrent` copies its outputs), and only a few shapes are kept (trimmed batches vary T)."""

    def __init__(self):
        self.free = {}

    def take(self, shape, dtype):
        spare = self.free.get((shape, np.dtype(dtype)))
        return spare.pop() if spare else np.empty(shape, dtype=dtype)

    def give(self, *arrays):
        if len(self.free) > 8:
            self.free.clear()
        for a in arrays:
            self.free.setdefault((a.shape, a.dtype), []).append(a)


def _blocks(m, parts):
    """The examples lo..hi of each block of the `*_split` kernels (their p m // parts)."""
    return [(p * m // parts, (p + 1) * m // parts) for p in range(parts)]


def _blocked(a, T, lo, hi):
    """Block lo..hi of a blocked (T m, w) array as (T, hi - lo, w), a view (kernels/recurrent.py:
    each block's rows are contiguous, step-major within it)."""
    return a[T * lo:T * hi].reshape(T, hi - lo, -1)


def _ones_mask(T, m):
    return np.ones((T, m), dtype=np.uint8)


class RNNRun(NamedTuple):
    X: np.ndarray  # (T, m, n_x)
    A: np.ndarray  # (T, m, n_a)
    a0: np.ndarray
    mask: np.ndarray


class LSTMRun(NamedTuple):
    X: np.ndarray
    A: np.ndarray
    C: np.ndarray
    G: np.ndarray  # (T, m, 4 n_a): Gf, Gi, c~, Go
    H: np.ndarray  # (T m, n_a + n_x): [a<t-1>, x<t>], the concat the gates read, blocked
    c0: np.ndarray
    mask: np.ndarray
    parts: int = 1  # the blocks of examples H is laid out by (`_blocks`)
    idx: np.ndarray = None  # (T, m) the table rows of `forward_tokens`' steps, else None
    E: np.ndarray = None  # the fused embedding's E (`forward_tokens`), else None
    order: int = 0  # A's and dA's layout: 0 time-major, 1 batch-first, 2 that reversed in time


class LSTMStep(NamedTuple):
    xt: np.ndarray
    a_prev: np.ndarray
    c_prev: np.ndarray
    Gf: np.ndarray
    Gi: np.ndarray
    cc: np.ndarray  # c~
    Go: np.ndarray
    c_next: np.ndarray


def _sigmoid(z):
    return 0.5 * (np.tanh(0.5 * z) + 1.0)


# -- cells --------------------------------------------------------------------------------------
class RNNCell:
    """a<t> = g(Waa a<t-1> + Wax x<t> + ba)."""

    weights = ("Waa", "Wax")

    def __init__(self, units, activation="tanh", init=None):
        self.units, self.activation, self.init = units, activation, init
        self.params, self.grads = {}, {}

    def build(self, n_x, ctx):
        n = self.units
        init = self.init or ctx.init
        self.params = {
            "Waa": initialize(init, (n, n), n + n_x, n, ctx.rng, ctx.dtype),
            "Wax": initialize(init, (n, n_x), n + n_x, n, ctx.rng, ctx.dtype),
            "ba": np.zeros((n, 1), dtype=ctx.dtype)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}

    def zero_state(self, m):
        return (np.zeros((m, self.units), dtype=self.params["Waa"].dtype),)

    def zero_grad(self):
        for g in self.grads.values():
            g[...] = 0

    def forward(self, X, state0, mask):
        k = _k()
        T, m, n_x = X.shape
        p = self.params
        XZ = (X.reshape(T * m, n_x) @ p["Wax"].T + p["ba"].T).reshape(T, m, self.units)
        A = np.empty((T, m, self.units), dtype=X.dtype)
        a0 = np.ascontiguousarray(state0[0], dtype=X.dtype)
        with _loop_threads():
            k.rnn_forward(XZ, np.ascontiguousarray(p["Waa"].T), a0, mask,
                          k.ACTIVATION_CODES[self.activation], A)
        return A, RNNRun(X, A, a0, mask)

    def backward(self, dA, run, dstate=None):
        k = _k()
        T, m, n = dA.shape
        da = np.zeros((m, n), dtype=dA.dtype) if dstate is None else np.array(dstate[0], dtype=dA.dtype)
        dZ = np.empty_like(dA)
        with _loop_threads():
            k.rnn_backward(dA, run.A, np.ascontiguousarray(self.params["Waa"]), run.mask,
                           k.ACTIVATION_CODES[self.activation], da, dZ)
        dZ2 = dZ.reshape(T * m, n)
        A_prev = np.concatenate([run.a0[None], run.A[:-1]]).reshape(T * m, n)
        X2 = run.X.reshape(T * m, -1)
        self.grads["Waa"] += dZ2.T @ A_prev
        self.grads["Wax"] += dZ2.T @ X2
        self.grads["ba"] += dZ2.sum(axis=0)[:, None]
        return (dZ2 @ self.params["Wax"]).reshape(T, m, -1), (da,)


class _StackedCell:
    """A gated cell whose gates are row blocks of one W (G n_a, n_a + n_x) and b (G n_a, 1)."""

    kind = ""

    def __init__(self, units, init=None):
        self.units, self.init = units, init
        self.params, self.grads = {}, {}
        self.spare = _Spare()

    @property
    def weights(self):
        return tuple("W" + g for g in GATE_NAMES[self.kind])

    def build(self, n_x, ctx):
        n, gates = self.units, GATE_NAMES[self.kind]
        init = self.init or ctx.init
        # each gate drawn as its own (n_a, n_a + n_x) matrix, in SPEC's order
        self.W = np.concatenate([initialize(init, (n, n + n_x), n + n_x, n, ctx.rng, ctx.dtype)
                                 for _ in gates])
        self.b = np.zeros((len(gates) * n, 1), dtype=ctx.dtype)
        self.dW, self.db = np.zeros_like(self.W), np.zeros_like(self.b)
        self._bind()

    def _bind(self):
        n, gates = self.units, GATE_NAMES[self.kind]
        self.params = {f"W{g}": self.W[j * n:(j + 1) * n] for j, g in enumerate(gates)}
        self.params.update({f"b{g}": self.b[j * n:(j + 1) * n] for j, g in enumerate(gates)})
        self.grads = {f"W{g}": self.dW[j * n:(j + 1) * n] for j, g in enumerate(gates)}
        self.grads.update({f"b{g}": self.db[j * n:(j + 1) * n] for j, g in enumerate(gates)})

    def _stacked(self):
        """W and b, re-stacked if someone replaced a gate's array instead of writing into it."""
        gates = GATE_NAMES[self.kind]
        if any(self.params[f"{w}{g}"].base is not s for g in gates
               for w, s in (("W", self.W), ("b", self.b))):
            self.W = np.concatenate([self.params[f"W{g}"] for g in gates])
            self.b = np.concatenate([self.params[f"b{g}"] for g in gates])
            self._bind()
        return self.W, self.b

    def zero_grad(self):
        self.dW[...] = 0
        self.db[...] = 0

    def _input_part(self, X):
        """W_x x<t> + b for every step and gate: one GEMM, (T, m, G n_a); give it back after."""
        W, b = self._stacked()
        T, m, n_x = X.shape
        XZ = self.spare.take((T, m, W.shape[0]), X.dtype)
        np.matmul(X.reshape(T * m, n_x), W[:, self.units:].T, out=XZ.reshape(T * m, -1))
        XZ += b.T
        return XZ


class LSTMCell(_StackedCell):
    """The course's LSTM: Gf, Gi (update), c~, Go over concat = [a<t-1>, x<t>]."""

    kind = "lstm"

    def zero_state(self, m):
        z = np.zeros((m, self.units), dtype=self.W.dtype)
        return z, z.copy()

    def forward(self, X, state0, mask, order=0):
        """The gates read H[t] = [a<t-1>, x<t>] times the stacked W^T, one product a step: the
        input half rides along in the step's GEMM (K = n_a + n_x) instead of a GEMM of its own
        before the loop, and backward's dW is then one GEMM over H, with no [a0, A[:-1]] concat.
        `order` 1 or 2: A comes out batch-first (m, T, n_a), 2 with time reversed, and backward's
        dA goes in alike (kernels/recurrent.py `lstm_forward`): the layer's copies to and from
        time-major (34-50 us each at the char-LM's batch 32) are gone."""
        T, m, n_x = X.shape
        W, b = self._stacked()
        idx = np.zeros((T, m), dtype=np.intp)  # every step's row of b.T: the bias
        return self._run(X, W.T, b.reshape(1, -1), idx, None, state0, mask, order)

    def forward_tokens(self, ids, E, state0, mask, order=0):
        """forward over embedded tokens, the embedding fused in (nn/embedding.py `fuse_next`):
        ids (T, m) time-major token ids (negative: a zero vector), E (n_x, vocab) the embedding.
        x<t> = E[:, id], so W_x x<t> + b is row id of the table E^T W_x^T + b (vocab + 1, 4 n_a;
        its last row, b alone, for the zero vector): the step's GEMM reads only [a<t-1>]
        (K = n_a), the table row rides in the gate pass, and backward gathers the table's
        gradient by token instead of a dX GEMM (the cell hands back dE: `backward`)."""
        W, b = self._stacked()
        n, V = self.units, E.shape[1]
        E = np.asarray(E, dtype=W.dtype)
        table = np.empty((V + 1, W.shape[0]), dtype=W.dtype)
        np.matmul(E.T, W[:, n:].T, out=table[:V])
        table[:V] += b.T
        table[V] = b[:, 0]
        idx = np.where(ids < 0, V, ids).astype(np.intp)
        return self._run(None, W[:, :n].T, table, idx, E, state0, mask, order)

    def _run(self, X, W_T, xb, idx, E, state0, mask, order):
        k = _k()
        T, m = idx.shape
        n = self.units
        n_x = 0 if X is None else X.shape[2]
        dtype = xb.dtype if X is None else X.dtype
        parts = _lstm_parts(m)
        H = self.spare.take((T * m, n + n_x), dtype)
        for lo, hi in _blocks(m, parts):  # blocked by the thread that reads it (kernels/recurrent.py)
            Hp = _blocked(H, T, lo, hi)
            if X is not None:
                Hp[:, :, n:] = X[:, lo:hi]
            Hp[0, :, :n] = state0[0][lo:hi]
        # batch-first, A is the layer's output: a fresh array, never handed out again
        A = self.spare.take((T, m, n), dtype) if order == 0 else np.empty((m, T, n), dtype)
        C = self.spare.take((T, m, n), dtype)
        G = self.spare.take((T, m, 4 * n), dtype)
        c0 = np.ascontiguousarray(state0[1], dtype=dtype)
        args = (H, np.ascontiguousarray(W_T), np.ascontiguousarray(xb), idx, c0, mask, A, order, C, G)
        with _loop_threads():
            helper = _helper() if parts > 1 else None
            if helper is not None:  # the blocks on the main thread and the duo helper
                from ..kernels.recurrent_duo import lstm_forward_duo
                helper.run(lstm_forward_duo, parts, *args)
            elif parts > 1:
                k.lstm_forward_split(*args, parts, _threads())
            else:
                k.lstm_forward(*args)
        return A, LSTMRun(X, A, C, G, H, c0, mask, parts, idx if E is not None else None, E, order)

    def release(self, run):
        """The run's arrays may be reused: its outputs were copied and its backward is done."""
        self.spare.give(*((run.A,) if run.order == 0 else ()), run.C, run.G, run.H)

    def backward(self, dA, run, dstate=None, input_grad=True):
        """(dX (T, m, n_x), (da0, dc0)); after `forward_tokens`, dE (n_x, vocab) for dX; dX None
        with input_grad False (a first layer's: its dZ Wx GEMM is not done)."""
        k = _k()
        T, m = run.mask.shape
        n = self.units
        if dstate is None:
            da, dc = np.zeros((m, n), dtype=dA.dtype), np.zeros((m, n), dtype=dA.dtype)
        else:
            da, dc = (np.array(s, dtype=dA.dtype) for s in dstate)
        dZ = self.spare.take((T * m, 4 * n), dA.dtype)  # blocked like run.H
        W = self.W
        tokens = run.E is not None
        Wa = np.ascontiguousarray(W[:, :n])
        args = (dA, run.order, run.C, run.G, run.c0, Wa, run.mask, da, dc, dZ)
        Wx = np.ascontiguousarray(W[:, n:])
        # blocked like dZ; no rows where no dX is wanted (the kernels skip its GEMM)
        dX = np.empty((T * m if input_grad and not tokens else 0, Wx.shape[1]), dtype=dA.dtype)
        rows = run.E.shape[1] + 1 if tokens else 0  # the table's (forward_tokens)
        grads = (run.H, Wx, self.dW, self.db.reshape(-1), dX)
        threads = _threads()
        split_grads = threads > 1 and T * m >= threads * SPLIT_MIN_EXAMPLES and not tokens
        with _loop_threads():
            if run.parts > 1:  # each thread's share of dW, db, dX in the loop's own region
                K = run.H.shape[1]
                part_dW = self.spare.take((run.parts, 4 * n, K), dA.dtype)
                part_dxb = self.spare.take((run.parts, rows, 4 * n), dA.dtype)
                idx = run.idx if tokens else np.zeros((T, m), dtype=np.intp)
                helper = _helper()
                if helper is not None:  # the blocks on the main thread and the duo helper
                    from ..kernels import recurrent_duo as kd
                    part_db = np.empty((run.parts, self.db.size), dtype=dA.dtype)
                    helper.run(kd.lstm_backward_duo, run.parts, *args, run.H, Wx, dX, part_dW,
                               idx, part_dxb, part_db)
                    kd.add_parts(self.dW, part_dW, self.db.reshape(-1), part_db)
                else:
                    k.lstm_backward_split(*args, *grads, part_dW, idx, part_dxb, run.parts,
                                          threads)
                dxb = part_dxb.sum(axis=0) if tokens else None  # in block order
                self.spare.give(part_dW, part_dxb)
            else:
                k.lstm_backward(*args)
                if split_grads:
                    k.stacked_grads_split(dZ, *grads, threads)
        if run.parts == 1 and not split_grads:
            self.dW[:, :run.H.shape[1]] += dZ.T @ run.H
            self.db += dZ.sum(axis=0)[:, None]
            if tokens:
                dxb = np.empty((rows, 4 * n), dtype=dA.dtype)
                k.scatter_rows(dZ, run.idx, T, 0, m, dxb)
            elif input_grad:
                np.matmul(dZ, Wx, out=dX)
        self.spare.give(dZ)
        if tokens:  # the table E^T Wx^T + b: dWx = dxb^T E^T, dE = Wx^T dxb^T (its row V is b's)
            dxb = dxb[:-1]
            self.dW[:, n:] += dxb.T @ run.E.T
            return (dxb @ Wx).T, (da, dc)
        if not input_grad:
            return None, (da, dc)
        if run.parts == 1:
            return dX.reshape(T, m, -1), (da, dc)
        dX_tm = np.empty((T, m, dX.shape[1]), dtype=dA.dtype)
        for lo, hi in _blocks(m, run.parts):
            dX_tm[:, lo:hi] = _blocked(dX, T, lo, hi)
        return dX_tm, (da, dc)

    # one step at a time, in numpy, for loops that cannot precompute their inputs (attention)
    def step(self, xt, a_prev, c_prev):
        W, b = self._stacked()
        n = self.units
        z = np.concatenate([a_prev, xt], axis=1) @ W.T + b.T
        Gf, Gi, Go = _sigmoid(z[:, :n]), _sigmoid(z[:, n:2 * n]), _sigmoid(z[:, 3 * n:])
        cc = np.tanh(z[:, 2 * n:3 * n])
        c_next = Gf * c_prev + Gi * cc
        a_next = Go * np.tanh(c_next)
        return a_next, c_next, LSTMStep(xt, a_prev, c_prev, Gf, Gi, cc, Go, c_next)

    def step_backward(self, da_next, dc_next, s: LSTMStep):
        n = self.units
        tc = np.tanh(s.c_next)
        dc = dc_next + da_next * s.Go * (1 - tc * tc)
        dz = np.concatenate([dc * s.c_prev * s.Gf * (1 - s.Gf), dc * s.cc * s.Gi * (1 - s.Gi),
                             dc * s.Gi * (1 - s.cc * s.cc), da_next * tc * s.Go * (1 - s.Go)], axis=1)
        concat = np.concatenate([s.a_prev, s.xt], axis=1)
        self.dW += dz.T @ concat
        self.db += dz.sum(axis=0)[:, None]
        dconcat = dz @ self.W
        return dconcat[:, n:], dconcat[:, :n], dc * s.Gf
