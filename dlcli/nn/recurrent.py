"""Recurrent layers: `rnn`, `gru`, `lstm` (one `Recurrent` loop over a cell) and `bidirectional`.

Sequences are batch-first (m, T, n) outside, time-major (T, m, n) inside the cells.

    {type: lstm, units: 64, return_sequences: false}
    {type: gru, units: 64}          {type: rnn, units: 50, activation: tanh}
    {type: bidirectional, layer: {type: lstm, units: 32, return_sequences: true}}

Parameters keep SPEC's names and the course's shapes (params.npz `"<i>.Wf"` ...):
    rnn   Waa (n_a, n_a), Wax (n_a, n_x), ba (n_a, 1)
    gru   Wu, Wr, Wc (n_a, n_a + n_x), bu, br, bc (n_a, 1)      (columns: [c<t-1>, x<t>])
    lstm  Wf, Wi, Wc, Wo (n_a, n_a + n_x), bf, bi, bc, bo (n_a, 1)  (columns: [a<t-1>, x<t>])
The gate matrices of one cell are row blocks of ONE stacked array built once ([Wf; Wi; Wc; Wo],
[Wu; Wr; Wc]): `params["Wf"]` is a view of it, so the optimizer, init_from and the gradient
check change the stacked array in place, and the kernels read the gates with one GEMM a step.

The cell API (stable: `attention_decoder` builds on it)
    cell = LSTMCell(units); cell.build(n_x, ctx)        # params / grads dicts, SPEC names
    cell.zero_state(m) -> tuple of (m, n_a) arrays       # (a0,) or (a0, c0)
    A, run = cell.forward(X, state0, mask)             # X (T, m, n_x) time-major; A (T, m, n_a)
    dX, dstate0 = cell.backward(dA, run, dstate_last)  # grads += ; dstate_last may be None
    cell.zero_grad()
  and, for loops that need one step at a time (attention), LSTMCell only:
    a, c, step = cell.step(xt, a_prev, c_prev)          # numpy, (m, n) rows; step: LSTMStep
    dxt, da_prev, dc_prev = cell.step_backward(da, dc, step)   # grads +=
`mask` is (T, m) uint8 (0: a padded step, where the state is carried unchanged) or None.
The time loop and BPTT run in `dlcli.kernels.recurrent`; per-run caches are NamedTuples of
whole-sequence arrays (the kernels fill them for all steps at once, not a list per step).

Masks: a model whose inputs are token ids (m, T) marks padding with id -1; `nn.sequence.set_mask` hands
`ids != -1` to every layer with `uses_mask` before each forward pass.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import build_layer, register
from .base import Layer
from .inits import initialize

RNN_ACTIVATIONS = ("tanh", "relu", "sigmoid", "linear", "leaky_relu")  # kernels' codes
GATE_NAMES = {"lstm": ("f", "i", "c", "o"), "gru": ("u", "r", "c")}


def _k():
    from ..kernels import recurrent  # numba loads at the first forward, not at import
    return recurrent


_BLAS = []


def _loop_threads():
    """BLAS limited to DLCLI_RNN_BLAS_THREADS (default 1) while a time loop runs.

    A step's GEMM, (m, n_a) x (n_a, 4 n_a), is too small to share: with OpenBLAS on 2 threads
    a training step of the dinos LSTM (batch 32, T 27, 128 units) took 1.6-4.2 s on the loaded
    2-core machine, against 0.13-0.18 s on one thread. From batch 8 the `*_split` kernels use
    the second core instead (see `_parts`). The layer's large GEMMs outside the loop (inputs,
    weight gradients) run on the process's BLAS threads: at load ~2 (Dec 3 2026) the char-LM
    LSTM at batch 128 ran 0.92x PyTorch with them on one thread, 1.13-1.19x on two; at batch 32
    one thread was worse too (0.52-0.57x against 0.68-0.76x, load 1.4-2.2).
    Entering and leaving costs about 16 us.
    """
    import contextlib
    import os
    if not _BLAS:
        try:
            import scipy.linalg.cython_blas  # noqa: F401  the BLAS numba's np.dot calls: loaded first
            from threadpoolctl import ThreadpoolController
            _BLAS.append(ThreadpoolController())
        except ImportError:
            _BLAS.append(None)
    if _BLAS[0] is None:
        return contextlib.nullcontext()
    return _BLAS[0].limit(limits=int(os.environ.get("DLCLI_RNN_BLAS_THREADS", "1")), user_api="blas")


SPLIT_MIN_EXAMPLES = 8  # the crossover measured for an LSTM of 128 units (kernels/recurrent.py)


def _parts(m):
    """Blocks of examples whose time loops run on their own threads (`*_split` kernels).

    Examples never meet inside a recurrent layer, so each thread runs the whole loop over its
    rows, a GEMM of its own a step on one BLAS thread: the threads meet once per pass, where
    2-thread BLAS met twice a step. Only while the loop's BLAS runs on one thread (the default).
    """
    import os
    if m < SPLIT_MIN_EXAMPLES or os.environ.get("DLCLI_RNN_BLAS_THREADS", "1") != "1":
        return 1
    from numba import get_num_threads
    return max(1, min(get_num_threads(), m // (SPLIT_MIN_EXAMPLES // 2)))


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
    a0: np.ndarray
    c0: np.ndarray
    mask: np.ndarray


class GRURun(NamedTuple):
    X: np.ndarray
    C: np.ndarray  # c<t> = a<t>
    G: np.ndarray  # (T, m, 3 n_a): Gu, Gr, c~
    RC: np.ndarray  # Gr * c<t-1>
    c0: np.ndarray
    mask: np.ndarray


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

    def forward(self, X, state0, mask):
        k = _k()
        T, m, _ = X.shape
        n = self.units
        XZ = self._input_part(X)
        A = self.spare.take((T, m, n), X.dtype)
        C = self.spare.take((T, m, n), X.dtype)
        G = self.spare.take((T, m, 4 * n), X.dtype)
        a0, c0 = (np.ascontiguousarray(s, dtype=X.dtype) for s in state0)
        Wa_T = np.ascontiguousarray(self.W[:, :n].T)
        parts = _parts(m)
        with _loop_threads():
            if parts > 1:
                k.lstm_forward_split(XZ, Wa_T, a0, c0, mask, A, C, G, parts)
            else:
                k.lstm_forward(XZ, Wa_T, a0, c0, mask, A, C, G)
        self.spare.give(XZ)
        return A, LSTMRun(X, A, C, G, a0, c0, mask)

    def release(self, run):
        """The run's arrays may be reused: its outputs were copied and its backward is done."""
        self.spare.give(run.A, run.C, run.G)

    def backward(self, dA, run, dstate=None):
        k = _k()
        T, m, n = dA.shape
        if dstate is None:
            da, dc = np.zeros((m, n), dtype=dA.dtype), np.zeros((m, n), dtype=dA.dtype)
        else:
            da, dc = (np.array(s, dtype=dA.dtype) for s in dstate)
        dZ = self.spare.take((T, m, 4 * n), dA.dtype)
        W = self.W
        args = (dA, run.C, run.G, run.c0, np.ascontiguousarray(W[:, :n]), run.mask, da, dc, dZ)
        parts = _parts(m)
        with _loop_threads():
            if parts > 1:
                k.lstm_backward_split(*args, parts)
            else:
                k.lstm_backward(*args)
        dZ2 = dZ.reshape(T * m, 4 * n)
        A_prev = np.concatenate([run.a0[None], run.A[:-1]]).reshape(T * m, n)
        self.dW[:, :n] += dZ2.T @ A_prev
        self.dW[:, n:] += dZ2.T @ run.X.reshape(T * m, -1)
        self.db += dZ2.sum(axis=0)[:, None]
        dX = (dZ2 @ W[:, n:]).reshape(T, m, -1)
        self.spare.give(dZ)
        return dX, (da, dc)

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


class GRUCell(_StackedCell):
    """The lectures' full GRU: Gr inside the candidate, c~ = tanh(Wc [Gr * c<t-1>, x<t>] + bc)."""

    kind = "gru"

    def zero_state(self, m):
        return (np.zeros((m, self.units), dtype=self.W.dtype),)

    def forward(self, X, state0, mask):
        k = _k()
        T, m, _ = X.shape
        n = self.units
        XZ = self._input_part(X)
        C = self.spare.take((T, m, n), X.dtype)
        RC = self.spare.take((T, m, n), X.dtype)
        G = self.spare.take((T, m, 3 * n), X.dtype)
        c0 = np.ascontiguousarray(state0[0], dtype=X.dtype)
        W = self.W
        args = (XZ, np.ascontiguousarray(W[:2 * n, :n].T), np.ascontiguousarray(W[2 * n:, :n].T),
                c0, mask, C, G, RC)
        parts = _parts(m)
        with _loop_threads():
            if parts > 1:
                k.gru_forward_split(*args, parts)
            else:
                k.gru_forward(*args)
        self.spare.give(XZ)
        return C, GRURun(X, C, G, RC, c0, mask)

    def release(self, run):
        self.spare.give(run.C, run.G, run.RC)

    def backward(self, dA, run, dstate=None):
        k = _k()
        T, m, n = dA.shape
        dc = np.zeros((m, n), dtype=dA.dtype) if dstate is None else np.array(dstate[0], dtype=dA.dtype)
        dZur = self.spare.take((T, m, 2 * n), dA.dtype)
        dZc = self.spare.take((T, m, n), dA.dtype)
        W = self.W
        args = (dA, run.C, run.G, run.c0, np.ascontiguousarray(W[:2 * n, :n]),
                np.ascontiguousarray(W[2 * n:, :n]), run.mask, dc, dZur, dZc)
        parts = _parts(m)
        with _loop_threads():
            if parts > 1:
                k.gru_backward_split(*args, parts)
            else:
                k.gru_backward(*args)
        C_prev = np.concatenate([run.c0[None], run.C[:-1]]).reshape(T * m, n)
        dZur2, dZc2 = dZur.reshape(T * m, 2 * n), dZc.reshape(T * m, n)
        self.dW[:2 * n, :n] += dZur2.T @ C_prev
        self.dW[2 * n:, :n] += dZc2.T @ run.RC.reshape(T * m, n)
        dZ2 = np.concatenate([dZur2, dZc2], axis=1)
        self.dW[:, n:] += dZ2.T @ run.X.reshape(T * m, -1)
        self.db += dZ2.sum(axis=0)[:, None]
        self.spare.give(dZur, dZc)
        return (dZ2 @ W[:, n:]).reshape(T, m, -1), (dc,)


# -- the layers ---------------------------------------------------------------------------------
def _positive_int(value, what):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


class Recurrent(Layer):
    """The time loop of one cell over (m, T, n_x): outputs (m, T, n_a) with return_sequences,
    else the last state (m, n_a) (with masks: the state after the last unmasked step).
    `reverse` reads the sequence from T to 1 and gives outputs aligned by step."""

    uses_mask = True

    def __init__(self, cell, return_sequences=False, reverse=False):
        super().__init__()
        self.cell = cell
        self.return_sequences, self.reverse = bool(return_sequences), bool(reverse)
        self.mask = None  # (m, T) set by `set_mask` before each forward pass, or None

    @property
    def regularized(self):
        return self.cell.weights

    def build(self, input_shape, ctx):
        if len(input_shape) != 2:
            raise ValueError(f"{self.kind} needs sequences (m, T, n_x), got examples of shape "
                             f"{tuple(input_shape)} (an embedding turns token ids into vectors)")
        self.cell.build(int(input_shape[-1]), ctx)
        self.params, self.grads = self.cell.params, self.cell.grads
        self.input_shape = tuple(input_shape)
        T = input_shape[0]
        self.output_shape = (T, self.cell.units) if self.return_sequences else (self.cell.units,)
        return self.output_shape

    def _time_major(self, a):
        a = a.transpose(1, 0, *range(2, a.ndim))
        return np.ascontiguousarray(a[::-1] if self.reverse else a)

    def _batch_first(self, a):
        a = a[::-1] if self.reverse else a
        return a.transpose(1, 0, *range(2, a.ndim)).copy()  # always a copy: A goes back to spare

    def _mask_tm(self, m, T):
        mask = self.mask
        if mask is None or mask.shape[0] != m or mask.shape[1] > T:
            return _ones_mask(T, m)
        if mask.shape[1] < T:  # the mask of a trimmed batch: the steps beyond it are padding
            mask = np.concatenate([mask, np.zeros((m, T - mask.shape[1]), dtype=mask.dtype)], axis=1)
        return self._time_major(mask.astype(np.uint8, copy=False))

    def forward(self, x, training):
        self.params = self.cell.params
        dtype = self.cell.params[self.cell.weights[0]].dtype
        x = np.asarray(x, dtype=dtype)
        m, T = x.shape[:2]
        A, run = self.cell.forward(self._time_major(x), self.cell.zero_state(m), self._mask_tm(m, T))
        y = self._batch_first(A) if self.return_sequences else A[-1].copy()  # reversal undone
        if training:
            self.cache = run
        elif hasattr(self.cell, "release"):
            self.cell.release(run)
        return y

    def backward(self, dy):
        run, self.cache = self.cache, None
        T, m = run.mask.shape
        if self.return_sequences:
            dA = self._time_major(np.asarray(dy, dtype=run.X.dtype))
        else:
            dA = np.zeros((T, m, self.cell.units), dtype=run.X.dtype)
            dA[-1] = dy
        self.cell.zero_grad()
        dX, _ = self.cell.backward(dA, run)
        if hasattr(self.cell, "release"):
            self.cell.release(run)
        if not self.needs_input_grad:
            return None
        return self._batch_first(dX)

    def describe(self):
        parts = [self.kind, str(self.cell.units)]
        if getattr(self.cell, "activation", "tanh") != "tanh":
            parts.append(self.cell.activation)
        if self.return_sequences:
            parts.append("sequences")
        return " ".join(parts)


@register("rnn")
class SimpleRNN(Recurrent):
    def __init__(self, units, activation="tanh", return_sequences=False, init=None, reverse=False):
        if activation not in RNN_ACTIVATIONS:
            raise ValueError(f"rnn activation must be one of {', '.join(RNN_ACTIVATIONS)}, "
                             f"got {activation!r}")
        super().__init__(RNNCell(_positive_int(units, "units"), activation, init),
                         return_sequences, reverse)


@register("lstm")
class LSTM(Recurrent):
    def __init__(self, units, return_sequences=False, init=None, reverse=False):
        super().__init__(LSTMCell(_positive_int(units, "units"), init), return_sequences, reverse)


@register("gru")
class GRU(Recurrent):
    def __init__(self, units, return_sequences=False, init=None, reverse=False):
        super().__init__(GRUCell(_positive_int(units, "units"), init), return_sequences, reverse)


@register("bidirectional")
class Bidirectional(Layer):
    """The layer forwards and, with its own parameters, backwards; outputs concatenated on the
    last axis (forward first), the backward output at step t being its state after reading
    steps T..t (Keras' and PyTorch's alignment)."""

    def __init__(self, layer):
        super().__init__()
        spec = dict(layer)
        if spec.get("type") not in ("rnn", "gru", "lstm"):
            raise ValueError(f"bidirectional wraps an rnn, gru or lstm layer, got {spec.get('type')!r}")
        self.forward_layer = build_layer(spec)
        self.backward_layer = build_layer({**spec, "reverse": True})

    def children(self):
        return [("forward", self.forward_layer), ("backward", self.backward_layer)]

    def build(self, input_shape, ctx):
        out = self.forward_layer.build(input_shape, ctx)
        self.backward_layer.build(input_shape, ctx)
        self.input_shape = tuple(input_shape)
        self.output_shape = tuple(out[:-1]) + (2 * out[-1],)
        return self.output_shape

    @property
    def mask(self):
        return self.forward_layer.mask

    @mask.setter
    def mask(self, value):
        self.forward_layer.mask = self.backward_layer.mask = value

    uses_mask = True

    def forward(self, x, training):
        return np.concatenate([self.forward_layer.forward(x, training),
                               self.backward_layer.forward(x, training)], axis=-1)

    def backward(self, dy):
        n = dy.shape[-1] // 2
        for child in (self.forward_layer, self.backward_layer):
            child.needs_input_grad = self.needs_input_grad
        dx_f = self.forward_layer.backward(np.ascontiguousarray(dy[..., :n]))
        dx_b = self.backward_layer.backward(np.ascontiguousarray(dy[..., n:]))
        return None if dx_f is None else dx_f + dx_b

    def describe(self):
        return f"bidirectional {self.forward_layer.describe()}"


from .sequence import set_mask, trim_padding  # noqa: E402,F401  (their old home; kept importable)
