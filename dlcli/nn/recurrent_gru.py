"""The lectures' full GRU cell over whole time-major sequences (nn/recurrent_cells.py's
machinery: stacked gates, spare arrays, split kernels; the loops in kernels/gru.py)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .recurrent_cells import _k, _loop_threads, _parts, _StackedCell


class GRURun(NamedTuple):
    X: np.ndarray
    C: np.ndarray  # c<t> = a<t>
    G: np.ndarray  # (T, m, 3 n_a): Gu, Gr, c~
    RC: np.ndarray  # Gr * c<t-1>
    c0: np.ndarray
    mask: np.ndarray


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
