"""Recurrent time loops (forward and backprop through time) as Numba kernels.

Algorithm (the cuDNN layout, written for a CPU):
- Everything is time-major inside: x (T, m, n_x), states (T, m, n_a), so one step's slice is a
  contiguous (m, n) matrix that BLAS takes without a copy.
- The input half of every gate, W_x x<t> + b for all t, is ONE large GEMM before the loop
  (`(T m, n_x) @ (n_x, G n_a)`, done by the caller in numpy): it does not depend on the state.
- Inside the loop a step costs one GEMM for all its gates, `a<t-1> @ Wa_T` with the gates'
  recurrent weights stacked at build time ([Wf; Wi; Wc; Wo] for the LSTM), then one fused
  elementwise pass (sigmoids, tanh, the cell update) over (m, n_a). The lectures' GRU needs a
  second GEMM per step: its candidate reads Gr * c<t-1>, known only after the first.
- Backward runs the loop in reverse and leaves dZ, the gradient of every gate's
  pre-activation at every step; the weight gradients are then again ONE GEMM each outside the
  loop (dWx = dZ^T X, dWa = dZ^T A_prev, db = sum dZ), done by the caller.
- A masked step (mask[t, i] == 0, a padded step) leaves example i's state as it was: its
  output is the carried state, its gates are 0 and its dZ is 0, and in backward the gradient
  flows through it to the state before (Keras' masking).

No prange: a step's elementwise work at m = 32, n_a = 128 is 4096 elements (~15-30 us), about
the cost of waking the other core; BLAS (the per-step GEMM) uses its own threads.
Kernels take float32 or float64 arrays (one compiled version each), C-contiguous.
Measured (benchmarks/rnn.py, char LM T 40, 128 units, float32, at load average 11-14 on the
2-core machine): a training step's LSTM forward + backward 167 ms at batch 32 and 445 ms at
128 (GRU 72 / 273 ms), the whole step 3.4-7.9x PyTorch's nn.LSTM / nn.GRU on that machine.
Activation codes of the simple RNN: 0 tanh, 1 relu, 2 sigmoid, 3 linear, 4 leaky_relu.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

ACTIVATION_CODES = {"tanh": 0, "relu": 1, "sigmoid": 2, "linear": 3, "leaky_relu": 4}


@njit(inline="always")
def _sigmoid(v):
    if v >= 0:
        return 1.0 / (1.0 + math.exp(-v))
    e = math.exp(v)
    return e / (1.0 + e)


@njit(inline="always")
def _act(code, v):
    if code == 0:
        return math.tanh(v)
    if code == 1:
        return v if v > 0 else 0.0
    if code == 2:
        return _sigmoid(v)
    if code == 4:
        return v if v > 0 else 0.01 * v
    return v


@njit(inline="always")
def _act_grad(code, a):
    """g'(z) from a = g(z)."""
    if code == 0:
        return 1.0 - a * a
    if code == 1:
        return 1.0 if a > 0 else 0.0
    if code == 2:
        return a * (1.0 - a)
    if code == 4:
        return 1.0 if a > 0 else 0.01
    return 1.0


# -- simple RNN: a<t> = g(Waa a<t-1> + Wax x<t> + ba) ------------------------------------------
@njit(cache=True)
def rnn_forward(XZ, Waa_T, a0, mask, code, A):
    """XZ (T, m, n) = Wax x<t> + ba; Waa_T (n, n); a0 (m, n); mask (T, m) uint8; A (T, m, n) out."""
    T, m, n = XZ.shape
    z = np.empty((m, n), dtype=XZ.dtype)
    a_prev = a0
    for t in range(T):
        np.dot(a_prev, Waa_T, z)
        At = A[t]
        for i in range(m):
            if mask[t, i]:
                for j in range(n):
                    At[i, j] = _act(code, z[i, j] + XZ[t, i, j])
            else:
                for j in range(n):
                    At[i, j] = a_prev[i, j]
        a_prev = At


@njit(cache=True)
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
        np.dot(dZt, Waa, back)
        for i in range(m):
            if mask[t, i]:
                for j in range(n):
                    da_next[i, j] = back[i, j]


# -- LSTM, gates stacked [f, i, c~, o] ------------------------------------------------------
@njit(cache=True)
def lstm_forward(XZ, Wa_T, a0, c0, mask, A, C, G):
    """XZ (T, m, 4n) = Wx x<t> + b for the gates [f, i, c~, o]; Wa_T (n, 4n); a0, c0 (m, n);
    out: A, C (T, m, n) the states a<t>, c<t>; G (T, m, 4n) the gates after their activation."""
    T, m, n4 = XZ.shape
    n = n4 // 4
    z = np.empty((m, n4), dtype=XZ.dtype)
    a_prev, c_prev = a0, c0
    for t in range(T):
        np.dot(a_prev, Wa_T, z)
        At, Ct, Gt = A[t], C[t], G[t]
        for i in range(m):
            if mask[t, i]:
                for j in range(n):
                    f = _sigmoid(z[i, j] + XZ[t, i, j])
                    u = _sigmoid(z[i, n + j] + XZ[t, i, n + j])
                    cc = math.tanh(z[i, 2 * n + j] + XZ[t, i, 2 * n + j])
                    o = _sigmoid(z[i, 3 * n + j] + XZ[t, i, 3 * n + j])
                    c = f * c_prev[i, j] + u * cc
                    Ct[i, j] = c
                    At[i, j] = o * math.tanh(c)
                    Gt[i, j] = f
                    Gt[i, n + j] = u
                    Gt[i, 2 * n + j] = cc
                    Gt[i, 3 * n + j] = o
            else:
                for j in range(n):
                    At[i, j] = a_prev[i, j]
                    Ct[i, j] = c_prev[i, j]
                for j in range(n4):
                    Gt[i, j] = 0.0
        a_prev, c_prev = At, Ct


@njit(cache=True)
def lstm_backward(dA, C, G, c0, Wa, mask, da_next, dc_next, dZ):
    """dA (T, m, n) gradients on the outputs a<t>; Wa (4n, n); da_next, dc_next (m, n) in: the
    gradients on the last states, out: on a0 and c0; dZ (T, m, 4n) out."""
    T, m, n = dA.shape
    back = np.empty((m, n), dtype=dA.dtype)
    for t in range(T - 1, -1, -1):
        dZt = dZ[t]
        for i in range(m):
            if mask[t, i]:
                for j in range(n):
                    f, u = G[t, i, j], G[t, i, n + j]
                    cc, o = G[t, i, 2 * n + j], G[t, i, 3 * n + j]
                    c_prev = C[t - 1, i, j] if t > 0 else c0[i, j]
                    tc = math.tanh(C[t, i, j])
                    da = dA[t, i, j] + da_next[i, j]
                    dc = dc_next[i, j] + da * o * (1.0 - tc * tc)
                    dZt[i, j] = dc * c_prev * f * (1.0 - f)
                    dZt[i, n + j] = dc * cc * u * (1.0 - u)
                    dZt[i, 2 * n + j] = dc * u * (1.0 - cc * cc)
                    dZt[i, 3 * n + j] = da * tc * o * (1.0 - o)
                    dc_next[i, j] = dc * f
            else:
                for j in range(n):
                    da_next[i, j] += dA[t, i, j]
                for j in range(4 * n):
                    dZt[i, j] = 0.0
        np.dot(dZt, Wa, back)
        for i in range(m):
            if mask[t, i]:
                for j in range(n):
                    da_next[i, j] = back[i, j]


# -- GRU (the lectures' full GRU), gates stacked [u, r, c~] -----------------------------------
@njit(cache=True)
def gru_forward(XZ, Wur_T, Wc_T, c0, mask, C, G, RC):
    """XZ (T, m, 3n) = Wx x<t> + b for [u, r, c~]; Wur_T (n, 2n) the recurrent weights of Gu and
    Gr; Wc_T (n, n) the candidate's (it reads Gr * c<t-1>); out: C (T, m, n) = a<t>,
    G (T, m, 3n) the gates [Gu, Gr, c~], RC (T, m, n) = Gr * c<t-1>."""
    T, m, n3 = XZ.shape
    n = n3 // 3
    zur = np.empty((m, 2 * n), dtype=XZ.dtype)
    zc = np.empty((m, n), dtype=XZ.dtype)
    c_prev = c0
    for t in range(T):
        np.dot(c_prev, Wur_T, zur)
        Ct, Gt, RCt = C[t], G[t], RC[t]
        for i in range(m):
            if mask[t, i]:
                for j in range(n):
                    u = _sigmoid(zur[i, j] + XZ[t, i, j])
                    r = _sigmoid(zur[i, n + j] + XZ[t, i, n + j])
                    Gt[i, j] = u
                    Gt[i, n + j] = r
                    RCt[i, j] = r * c_prev[i, j]
            else:
                for j in range(n):
                    Gt[i, j] = 0.0
                    Gt[i, n + j] = 0.0
                    RCt[i, j] = 0.0
        np.dot(RCt, Wc_T, zc)
        for i in range(m):
            if mask[t, i]:
                for j in range(n):
                    cc = math.tanh(zc[i, j] + XZ[t, i, 2 * n + j])
                    u = Gt[i, j]
                    Gt[i, 2 * n + j] = cc
                    Ct[i, j] = u * cc + (1.0 - u) * c_prev[i, j]
            else:
                for j in range(n):
                    Gt[i, 2 * n + j] = 0.0
                    Ct[i, j] = c_prev[i, j]
        c_prev = Ct


@njit(cache=True)
def gru_backward(dA, C, G, c0, Wur, Wc, mask, dc_next, dZur, dZc):
    """dA (T, m, n); Wur (2n, n), Wc (n, n); dc_next (m, n) in: on the last state, out: on c0;
    out: dZur (T, m, 2n) the pre-activation gradients of [Gu, Gr], dZc (T, m, n) the candidate's."""
    T, m, n = dA.shape
    drc = np.empty((m, n), dtype=dA.dtype)
    back = np.empty((m, n), dtype=dA.dtype)
    dc = np.empty((m, n), dtype=dA.dtype)
    for t in range(T - 1, -1, -1):
        dZurt, dZct = dZur[t], dZc[t]
        for i in range(m):
            if mask[t, i]:
                for j in range(n):
                    u, cc = G[t, i, j], G[t, i, 2 * n + j]
                    c_prev = C[t - 1, i, j] if t > 0 else c0[i, j]
                    d = dA[t, i, j] + dc_next[i, j]
                    dc[i, j] = d
                    dZurt[i, j] = d * (cc - c_prev) * u * (1.0 - u)
                    dZct[i, j] = d * u * (1.0 - cc * cc)
            else:
                for j in range(n):
                    dc[i, j] = 0.0
                    dZurt[i, j] = 0.0
                    dZurt[i, n + j] = 0.0
                    dZct[i, j] = 0.0
        np.dot(dZct, Wc, drc)  # d (Gr * c<t-1>)
        for i in range(m):
            if mask[t, i]:
                for j in range(n):
                    r = G[t, i, n + j]
                    c_prev = C[t - 1, i, j] if t > 0 else c0[i, j]
                    dZurt[i, n + j] = drc[i, j] * c_prev * r * (1.0 - r)
        np.dot(dZurt, Wur, back)
        for i in range(m):
            if mask[t, i]:
                for j in range(n):
                    u, r = G[t, i, j], G[t, i, n + j]
                    dc_next[i, j] = dc[i, j] * (1.0 - u) + drc[i, j] * r + back[i, j]
            else:
                for j in range(n):
                    dc_next[i, j] += dA[t, i, j]


# -- the sequence loss ----------------------------------------------------------------------
@njit(cache=True)
def masked_softmax_crossentropy(z, y, scale, dz):
    """sum over rows with y >= 0 of -log softmax(z)[y] (float64); dz = (softmax - onehot) * scale
    on those rows, 0 on rows with y < 0 (padded steps). z (N, C), y (N,)."""
    N, C = z.shape
    total = 0.0
    for r in range(N):
        label = y[r]
        if label < 0:
            for c in range(C):
                dz[r, c] = 0.0
            continue
        if label >= C:
            raise ValueError("a label is outside 0..C-1 for C output units")
        zmax = z[r, 0]
        for c in range(1, C):
            zmax = max(zmax, z[r, c])
        s = 0.0
        for c in range(C):
            e = math.exp(z[r, c] - zmax)
            dz[r, c] = e
            s += e
        total += math.log(s) + zmax - z[r, label]
        for c in range(C):
            dz[r, c] = dz[r, c] / s * scale
        dz[r, label] -= scale
    return total
