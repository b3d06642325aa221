"""The GRU's time loops (the lectures' full GRU, gates stacked [u, r, c~]): forward and backprop
through time, serial and split by blocks of examples. The algorithm, layouts and threads are
kernels/recurrent.py's (its docstring): the input half W_x x<t> + b comes in as XZ, one GEMM
before the loop; a step is one GEMM for Gu and Gr, then one for the candidate, which reads
Gr * c<t-1>.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .gates import _sigmoid, _tanh
from .small_gemm import _dot_rows


# -- GRU (the lectures' full GRU), gates stacked [u, r, c~] -----------------------------------
@njit(inline="always")
def _gru_gates_row(zur, xz, c_prev, g, rc):
    n = np.uint64(rc.shape[0])
    for j in range(n):
        u = _sigmoid(zur[j] + xz[j])
        r = _sigmoid(zur[n + j] + xz[n + j])
        g[j] = u
        g[n + j] = r
        rc[j] = r * c_prev[j]


@njit(inline="always")
def _gru_state_row(zc, xz, c_prev, g, c):
    n = np.uint64(c.shape[0])
    n2 = n + n
    for j in range(n):
        cc = _tanh(zc[j] + xz[n2 + j])
        u = g[j]
        g[n2 + j] = cc
        c[j] = u * cc + (1.0 - u) * c_prev[j]


@njit(cache=True, error_model="numpy", fastmath={"contract"})  # as the LSTM's
def _gru_forward_rows(XZ, Wur_T, Wc_T, c0, mask, C, G, RC, lo, hi):
    T, n = XZ.shape[0], C.shape[2]
    zur = np.empty((hi - lo, 2 * n), dtype=XZ.dtype)
    zc = np.empty((hi - lo, n), dtype=XZ.dtype)
    for t in range(T):
        c_prev = C[t - 1, lo:hi] if t > 0 else c0[lo:hi]
        _dot_rows(c_prev, Wur_T, zur)
        for i in range(hi - lo):
            r = lo + i
            if mask[t, r]:
                _gru_gates_row(zur[i], XZ[t, r], c_prev[i], G[t, r], RC[t, r])
            else:
                G[t, r] = 0.0
                RC[t, r] = 0.0
        _dot_rows(RC[t, lo:hi], Wc_T, zc)
        for i in range(hi - lo):
            r = lo + i
            if mask[t, r]:
                _gru_state_row(zc[i], XZ[t, r], c_prev[i], G[t, r], C[t, r])
            else:
                C[t, r] = c_prev[i]


@njit(inline="always")
def _gru_row_backward(da_out, dc_next, c_prev, g, dc, dzur, dzc):
    n = np.uint64(dc.shape[0])
    n2 = n + n
    for j in range(n):
        u, cc = g[j], g[n2 + j]
        d = da_out[j] + dc_next[j]
        dc[j] = d
        dzur[j] = d * (cc - c_prev[j]) * u * (1.0 - u)
        dzc[j] = d * u * (1.0 - cc * cc)


@njit(inline="always")
def _gru_reset_row_backward(drc, c_prev, g, dzur):
    n = np.uint64(drc.shape[0])
    for j in range(n):
        r = g[n + j]
        dzur[n + j] = drc[j] * c_prev[j] * r * (1.0 - r)


@njit(inline="always")
def _gru_state_row_backward(dc, drc, back, g, dc_next):
    n = np.uint64(dc.shape[0])
    for j in range(n):
        dc_next[j] = dc[j] * (1.0 - g[j]) + drc[j] * g[n + j] + back[j]


@njit(cache=True, error_model="numpy", fastmath={"contract"})  # as the LSTM's
def _gru_backward_rows(dA, C, G, c0, Wur, Wc, mask, dc_next, dZur, dZc, lo, hi):
    T, n = dA.shape[0], dA.shape[2]
    drc = np.empty((hi - lo, n), dtype=dA.dtype)
    back = np.empty((hi - lo, n), dtype=dA.dtype)
    dc = np.empty((hi - lo, n), dtype=dA.dtype)
    for t in range(T - 1, -1, -1):
        for i in range(hi - lo):
            r = lo + i
            if mask[t, r]:
                c_prev = C[t - 1, r] if t > 0 else c0[r]
                _gru_row_backward(dA[t, r], dc_next[r], c_prev, G[t, r], dc[i], dZur[t, r], dZc[t, r])
            else:
                dc[i] = 0.0
                dZur[t, r] = 0.0
                dZc[t, r] = 0.0
        _dot_rows(dZc[t, lo:hi], Wc, drc)  # d (Gr * c<t-1>)
        for i in range(hi - lo):
            r = lo + i
            if mask[t, r]:
                c_prev = C[t - 1, r] if t > 0 else c0[r]
                _gru_reset_row_backward(drc[i], c_prev, G[t, r], dZur[t, r])
        _dot_rows(dZur[t, lo:hi], Wur, back)
        for i in range(hi - lo):
            r = lo + i
            if mask[t, r]:
                _gru_state_row_backward(dc[i], drc[i], back[i], G[t, r], dc_next[r])
            else:
                dc_next[r] += dA[t, r]


@njit(cache=True, error_model="numpy")
def gru_forward(XZ, Wur_T, Wc_T, c0, mask, C, G, RC):
    """XZ (T, m, 3n) = Wx x<t> + b for [u, r, c~]; Wur_T (n, 2n) the recurrent weights of Gu and
    Gr; Wc_T (n, n) the candidate's (it reads Gr * c<t-1>); out: C (T, m, n) = a<t>,
    G (T, m, 3n) the gates [Gu, Gr, c~], RC (T, m, n) = Gr * c<t-1>."""
    for lo in range(1):
        _gru_forward_rows(XZ, Wur_T, Wc_T, c0, mask, C, G, RC, lo, XZ.shape[1])


@njit(cache=True, error_model="numpy", parallel=True)
def gru_forward_split(XZ, Wur_T, Wc_T, c0, mask, C, G, RC, parts):
    m = XZ.shape[1]
    for p in prange(parts):
        _gru_forward_rows(XZ, Wur_T, Wc_T, c0, mask, C, G, RC, p * m // parts, (p + 1) * m // parts)


@njit(cache=True, error_model="numpy")
def gru_backward(dA, C, G, c0, Wur, Wc, mask, dc_next, dZur, dZc):
    """dA (T, m, n); Wur (2n, n), Wc (n, n); dc_next (m, n) in: on the last state, out: on c0;
    out: dZur (T, m, 2n) the pre-activation gradients of [Gu, Gr], dZc (T, m, n) the candidate's."""
    for lo in range(1):
        _gru_backward_rows(dA, C, G, c0, Wur, Wc, mask, dc_next, dZur, dZc, lo, dA.shape[1])


@njit(cache=True, error_model="numpy", parallel=True)
def gru_backward_split(dA, C, G, c0, Wur, Wc, mask, dc_next, dZur, dZc, parts):
    m = dA.shape[1]
    for p in prange(parts):
        _gru_backward_rows(dA, C, G, c0, Wur, Wc, mask, dc_next, dZur, dZc, p * m // parts,
                           (p + 1) * m // parts)
