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

import numpy as np

from . import build_layer, register
from .base import Layer
# the cells and their helpers (attention_decoder and the tests import them from here)
from .recurrent_cells import (GATE_NAMES, RNN_ACTIVATIONS, LSTMCell, LSTMStep,  # noqa: F401
                              RNNCell, _loop_threads, _ones_mask)
from .recurrent_gru import GRUCell  # noqa: F401


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
        self.embedding = None  # the embedding fused in, which hands its ids on (nn/embedding.py)

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
        m, T = np.shape(x)[:2]
        state0, mask = self.cell.zero_state(m), self._mask_tm(m, T)
        if not isinstance(self.cell, LSTMCell):
            A, run = self.cell.forward(self._time_major(np.asarray(x, dtype=dtype)), state0, mask)
            y = self._batch_first(A) if self.return_sequences else A[-1].copy()  # reversal undone
        else:  # the LSTM writes A batch-first, in the inputs' time order (its `order`)
            order = 2 if self.reverse else 1
            if self.embedding is not None and np.ndim(x) == 2:  # token ids: the table's rows
                A, run = self.cell.forward_tokens(self._time_major(np.asarray(x)),
                                                  self.embedding.params["E"], state0, mask, order)
            else:
                A, run = self.cell.forward(self._time_major(np.asarray(x, dtype=dtype)), state0, mask,
                                           order)
            # the state after the last step read: step 0 of the inputs when reading backwards
            y = A if self.return_sequences else A[:, 0 if self.reverse else -1].copy()
        if training:
            self.cache = run
        elif hasattr(self.cell, "release"):
            self.cell.release(run)
        return y

    def backward(self, dy):
        run, self.cache = self.cache, None
        T, m = run.mask.shape
        dtype = self.cell.params[self.cell.weights[0]].dtype
        if getattr(run, "order", 0):  # the LSTM's batch-first dA (its forward's `order`)
            if self.return_sequences:
                dA = np.ascontiguousarray(dy, dtype=dtype)
            else:
                dA = np.zeros((m, T, self.cell.units), dtype=dtype)
                dA[:, 0 if self.reverse else -1] = dy
        elif self.return_sequences:
            dA = self._time_major(np.asarray(dy, dtype=dtype))
        else:
            dA = np.zeros((T, m, self.cell.units), dtype=dtype)
            dA[-1] = dy
        self.cell.zero_grad()
        if isinstance(self.cell, LSTMCell):  # its dX GEMM only where a layer before wants it
            dX, _ = self.cell.backward(dA, run, input_grad=self.needs_input_grad)
        else:
            dX, _ = self.cell.backward(dA, run)
        if hasattr(self.cell, "release"):
            self.cell.release(run)
        if getattr(run, "E", None) is not None:  # the fused embedding's dE (its backward: nothing)
            self.embedding.grads["E"][...] = dX
            return None
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
