"""`attention_decoder {units, steps, attention_units: 10}`: the course's translation decoder.

    recipe: {type: attention_decoder, units: 64, steps: 10, attention_units: 10}
    input:  an encoder's sequence a (m, Tx, n_a) (a bidirectional LSTM's, in the course)
    output: s (m, steps, units), one post-attention LSTM state per output step

For t = 1..steps (SPEC "Sequences"):
    e<t,t'> = relu(W2 tanh(W1 [s<t-1>, a<t'>] + b1) + b2)     alpha<t,t'> = softmax over t'
    context<t> = sum_t' alpha<t,t'> a<t'>
    s<t>, c<t> = LSTM([s<t-1>, context<t>], c<t-1>)              s<0> = c<0> = 0
Params: W1 (attention_units, n_s + n_a), b1 (attention_units, 1), W2 (1, attention_units),
b2 (1, 1); the LSTM's Wf, Wi, Wc, Wo (n_s, n_s + n_a), bf, bi, bc, bo (n_s, 1) under "lstm."
(params.npz "<i>.lstm.Wf"). The time loop is `dlcli.kernels.attention`. Cache: AttentionCache.
The attention weights of the last forward pass, (m, steps, Tx), stay in `self.attention`
(training or not) for `predict --attention`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import register
from .base import Layer, zeros_like_params
from .inits import initialize

GATES = ("f", "i", "c", "o")  # stacking order of the gates in the kernel's one GEMM


def _one_blas_thread():
    """BLAS on one thread while the layer runs (rnn's `_loop_threads`): its GEMMs are too small
    to share; batch 100 of the date model on the loaded machine: forward + backward 160 ms
    with OpenBLAS's 2 threads, 25-30 ms on one."""
    from .recurrent_cells import _loop_threads
    return _loop_threads()


class AttentionCache(NamedTuple):
    """Every step's values, stacked over t (the kernel fills them in one call)."""
    a: np.ndarray       # (m, Tx, n_a) the encoder's sequence
    S: np.ndarray       # (Ty + 1, m, n_s) s<0..Ty>
    C: np.ndarray       # (Ty + 1, m, n_s) c<0..Ty>
    H: np.ndarray       # (Ty, m, Tx, A) tanh(W1 [s<t-1>, a<t'>] + b1)
    E: np.ndarray       # (Ty, m, Tx) relu scores e<t,t'>
    ALPHA: np.ndarray   # (Ty, m, Tx)
    CTX: np.ndarray     # (Ty, m, n_a) context<t>
    G: np.ndarray       # (Ty, m, 4 n_s) gates f, i, c~, o after their activations
    TC: np.ndarray      # (Ty, m, n_s) tanh(c<t>)


def _positive_int(value, what):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


class PostAttentionLSTM(Layer):
    """Holds the decoder LSTM's parameters under their recipe names; the kernel does its math."""
    type_name = "lstm"
    regularized = tuple("W" + g for g in GATES)

    def build_params(self, n_s, n_in, init, ctx):
        n_prev = n_s + n_in
        for g in GATES:
            self.params["W" + g] = initialize(init, (n_s, n_prev), n_prev, n_s, ctx.rng, ctx.dtype)
        for g in GATES:
            self.params["b" + g] = np.zeros((n_s, 1), dtype=ctx.dtype)
        zeros_like_params(self)

    def stacked(self):
        """([Wf; Wi; Wc; Wo] (4 n_s, n_s + n_a), [bf; bi; bc; bo] (4 n_s,))."""
        W = np.concatenate([self.params["W" + g] for g in GATES])
        b = np.concatenate([self.params["b" + g] for g in GATES]).reshape(-1)
        return W, b


@register("attention_decoder")
class AttentionDecoder(Layer):
    regularized = ("W1", "W2")

    def __init__(self, units, steps, attention_units=10, init=None):
        super().__init__()
        self.units = _positive_int(units, "units")
        self.steps = _positive_int(steps, "steps")
        self.attention_units = _positive_int(attention_units, "attention_units")
        self.init = init
        self.lstm = PostAttentionLSTM()
        self.attention = None  # (m, steps, Tx) of the last forward

    def children(self):
        return [("lstm", self.lstm)]

    def build(self, input_shape, ctx):
        if len(input_shape) != 2:
            raise ValueError(f"attention_decoder needs an encoder's sequence (m, Tx, n_a), got "
                             f"(m, {', '.join(map(str, input_shape))}): give the recurrent "
                             "layer before it return_sequences: true")
        n_a, n_s, A = int(input_shape[1]), self.units, self.attention_units
        init = self.init or ctx.init
        self.params["W1"] = initialize(init, (A, n_s + n_a), n_s + n_a, A, ctx.rng, ctx.dtype)
        self.params["b1"] = np.zeros((A, 1), dtype=ctx.dtype)
        self.params["W2"] = initialize(init, (1, A), A, 1, ctx.rng, ctx.dtype)
        self.params["b2"] = np.zeros((1, 1), dtype=ctx.dtype)
        zeros_like_params(self)
        self.lstm.build_params(n_s, n_a, init, ctx)
        self.input_shape = tuple(input_shape)
        self.output_shape = (self.steps, n_s)
        return self.output_shape

    def forward(self, x, training):
        with _one_blas_thread():
            return self._forward(x, training)

    def backward(self, dy):
        with _one_blas_thread():
            return self._backward(dy)

    def _forward(self, x, training):
        from ..kernels.attention import attention_forward
        p = self.params
        dtype = p["W1"].dtype
        a = np.ascontiguousarray(x, dtype=dtype)
        m, Tx, n_a = a.shape
        n_s, A, Ty = self.units, self.attention_units, self.steps
        W1s, W1a = p["W1"][:, :n_s], p["W1"][:, n_s:]
        Pa = np.matmul(a.reshape(-1, n_a), W1a.T).reshape(m, Tx, A)
        Pa += p["b1"].reshape(-1)
        W, b = self.lstm.stacked()
        S = np.zeros((Ty + 1, m, n_s), dtype)
        C = np.zeros((Ty + 1, m, n_s), dtype)
        cache = AttentionCache(a, S, C, np.empty((Ty, m, Tx, A), dtype), np.empty((Ty, m, Tx), dtype),
                               np.empty((Ty, m, Tx), dtype), np.empty((Ty, m, n_a), dtype),
                               np.empty((Ty, m, 4 * n_s), dtype), np.empty((Ty, m, n_s), dtype))
        attention_forward(a, Pa, np.ascontiguousarray(W1s.T), np.ascontiguousarray(p["W2"][0]),
                          float(p["b2"][0, 0]), np.ascontiguousarray(W.T), b, S, C, cache.H,
                          cache.E, cache.ALPHA, cache.CTX, cache.G, cache.TC)
        self.attention = cache.ALPHA.transpose(1, 0, 2).copy()
        self.cache = cache if training else None
        return S[1:].transpose(1, 0, 2).copy()

    def _backward(self, dy):
        from ..kernels.attention import attention_backward
        k, self.cache = self.cache, None
        p, g = self.params, self.grads
        n_s, A = self.units, self.attention_units
        a = k.a
        m, Tx, n_a = a.shape
        dtype = a.dtype
        W, _ = self.lstm.stacked()
        da = np.empty_like(a)
        dPa = np.zeros((m, Tx, A), dtype)
        dW1sT = np.zeros((n_s, A), dtype)
        dW2 = np.zeros(A, dtype)
        db2 = np.zeros(1, dtype)
        dWT = np.zeros((n_s + n_a, 4 * n_s), dtype)
        db = np.zeros(4 * n_s, dtype)
        attention_backward(np.ascontiguousarray(dy, dtype=dtype), a,
                           np.ascontiguousarray(p["W1"][:, :n_s]), np.ascontiguousarray(p["W2"][0]),
                           W, k.S, k.C, k.H, k.E, k.ALPHA, k.CTX, k.G, k.TC,
                           da, dPa, dW1sT, dW2, db2, dWT, db)
        dPa2 = dPa.reshape(-1, A)
        g["W1"][:, :n_s] = dW1sT.T
        g["W1"][:, n_s:] = np.matmul(dPa2.T, a.reshape(-1, n_a))
        g["b1"][:, 0] = dPa2.sum(axis=0)
        g["W2"][0] = dW2
        g["b2"][0, 0] = db2[0]
        lg = self.lstm.grads
        for q, gate in enumerate(GATES):
            lg["W" + gate][...] = dWT[:, q * n_s:(q + 1) * n_s].T
            lg["b" + gate][:, 0] = db[q * n_s:(q + 1) * n_s]
        if not self.needs_input_grad:
            return None
        da += np.matmul(dPa2, p["W1"][:, n_s:]).reshape(m, Tx, n_a)
        return da

    def describe(self):
        return f"attention_decoder {self.units} x{self.steps} attention {self.attention_units}"
