"""The attention decoder's time loop (the course's one_step_attention + post-attention LSTM).

Why this algorithm:
- The score network's first layer splits: W1 [s<t-1>, a<t'>] = W1s s<t-1> + W1a a<t'>. The a
  part does not change with t, so the layer computes Pa = a W1a^T + b1 once per forward (one
  GEMM over m Tx rows) and each step adds only s<t-1> W1s^T, an (m, n_s) x (n_s, A) product;
  concatenating s<t-1> beside every a<t'> as the course's RepeatVector does would cost Tx times
  that at every step, forwards and backwards.
- The whole loop over t runs inside one kernel (no Python per step). The four LSTM gates are
  one GEMM per step, [Wf; Wi; Wc; Wo] stacked (the recipe's names stay in params.npz); BLAS
  does the products (np.dot), the elementwise gate and attention math runs as plain loops.
- Backward mirrors it: the weights are shared by every step, so their gradients accumulate
  (dW += ...) from zero; dPa sums the score network's gradient at a<t'> over the steps and
  the layer turns it into dW1a, db1 and da with two GEMMs after the loop.

Shapes (batch first): a (m, Tx, n_a), Pa (m, Tx, A), S and C (Ty + 1, m, n_s) with S[0] =
C[0] = 0 (s<0>, c<0>), H (Ty, m, Tx, A) the tanh layer, E (Ty, m, Tx) the relu scores,
ALPHA (Ty, m, Tx), CTX (Ty, m, n_a) the contexts, G (Ty, m, 4 n_s) the gates after their
activations (f, i, c~, o), TC (Ty, m, n_s) tanh(c<t>).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _sigmoid(x):
    if x >= 0:
        return 1.0 / (1.0 + np.exp(-x))
    z = np.exp(x)
    return z / (1.0 + z)


@njit(cache=True)
def attention_forward(a, Pa, W1sT, W2, b2, WT, b, S, C, H, E, ALPHA, CTX, G, TC):
    """Fill S[1..Ty] (the outputs s<t>) and every cache array; see the module doc."""
    m, Tx, n_a = a.shape
    A = Pa.shape[2]
    n_s = S.shape[2]
    Ty = ALPHA.shape[0]
    concat = np.empty((m, n_s + n_a), dtype=a.dtype)
    for t in range(Ty):
        s_prev = S[t]
        Ps = np.dot(s_prev, W1sT)  # (m, A)
        for i in range(m):
            e_max = -np.inf
            for j in range(Tx):
                e = b2
                for k in range(A):
                    h = np.tanh(Pa[i, j, k] + Ps[i, k])
                    H[t, i, j, k] = h
                    e += W2[k] * h
                e = max(e, 0.0)  # relu
                E[t, i, j] = e
                e_max = max(e_max, e)
            total = 0.0
            for j in range(Tx):
                w = np.exp(E[t, i, j] - e_max)
                ALPHA[t, i, j] = w
                total += w
            for n in range(n_a):
                CTX[t, i, n] = 0.0
            for j in range(Tx):
                w = ALPHA[t, i, j] / total
                ALPHA[t, i, j] = w
                for n in range(n_a):
                    CTX[t, i, n] += w * a[i, j, n]
            for n in range(n_s):
                concat[i, n] = s_prev[i, n]
            for n in range(n_a):
                concat[i, n_s + n] = CTX[t, i, n]
        Z = np.dot(concat, WT)  # (m, 4 n_s): f, i, c~, o
        for i in range(m):
            for n in range(n_s):
                gf = _sigmoid(Z[i, n] + b[n])
                gi = _sigmoid(Z[i, n_s + n] + b[n_s + n])
                cc = np.tanh(Z[i, 2 * n_s + n] + b[2 * n_s + n])
                go = _sigmoid(Z[i, 3 * n_s + n] + b[3 * n_s + n])
                c = gf * C[t, i, n] + gi * cc
                tc = np.tanh(c)
                G[t, i, n] = gf
                G[t, i, n_s + n] = gi
                G[t, i, 2 * n_s + n] = cc
                G[t, i, 3 * n_s + n] = go
                C[t + 1, i, n] = c
                TC[t, i, n] = tc
                S[t + 1, i, n] = go * tc


@njit(cache=True)
def attention_backward(dS, a, W1s, W2, W, S, C, H, E, ALPHA, CTX, G, TC,
                       da, dPa, dW1sT, dW2, db2, dWT, db):
    """Back through the steps from dS (m, Ty, n_s), d cost / d s<t> from above.

    Writes da (the attention's part; the layer adds dPa's), and ADDS into dPa, dW1sT, dW2,
    db2 (1,), dWT (n_s + n_a, 4 n_s) and db (4 n_s,), which the caller zeroes.
    """
    m, Tx, n_a = a.shape
    A = H.shape[3]
    n_s = S.shape[2]
    Ty = ALPHA.shape[0]
    ds_next = np.zeros((m, n_s), dtype=a.dtype)
    dc = np.zeros((m, n_s), dtype=a.dtype)
    dz = np.empty((m, 4 * n_s), dtype=a.dtype)
    concat = np.empty((m, n_s + n_a), dtype=a.dtype)
    dPs = np.empty((m, A), dtype=a.dtype)
    dalpha = np.empty(Tx, dtype=a.dtype)
    for i in range(m):
        for j in range(Tx):
            for n in range(n_a):
                da[i, j, n] = 0.0
    for t in range(Ty - 1, -1, -1):
        # the post-attention LSTM
        for i in range(m):
            for n in range(n_s):
                gf, gi = G[t, i, n], G[t, i, n_s + n]
                cc, go = G[t, i, 2 * n_s + n], G[t, i, 3 * n_s + n]
                tc = TC[t, i, n]
                ds = dS[i, t, n] + ds_next[i, n]
                dct = dc[i, n] + ds * go * (1.0 - tc * tc)
                dz[i, n] = dct * C[t, i, n] * gf * (1.0 - gf)
                dz[i, n_s + n] = dct * cc * gi * (1.0 - gi)
                dz[i, 2 * n_s + n] = dct * gi * (1.0 - cc * cc)
                dz[i, 3 * n_s + n] = ds * tc * go * (1.0 - go)
                dc[i, n] = dct * gf  # dc<t-1>
                concat[i, n] = S[t, i, n]
            for n in range(n_a):
                concat[i, n_s + n] = CTX[t, i, n]
        dWT += np.dot(concat.T, dz)
        for i in range(m):
            for n in range(4 * n_s):
                db[n] += dz[i, n]
        dconcat = np.dot(dz, W)  # (m, n_s + n_a): ds<t-1>, dcontext<t>
        # attention: context = sum alpha a, alpha = softmax(e), e = relu(W2 h + b2),
        # h = tanh(Pa + W1s s<t-1>)
        for i in range(m):
            weighted = 0.0
            for j in range(Tx):
                g = 0.0
                w = ALPHA[t, i, j]
                for n in range(n_a):
                    dctx = dconcat[i, n_s + n]
                    g += dctx * a[i, j, n]
                    da[i, j, n] += w * dctx
                dalpha[j] = g
                weighted += w * g
            for k in range(A):
                dPs[i, k] = 0.0
            for j in range(Tx):
                if E[t, i, j] <= 0.0:  # relu's flat side (its derivative at 0 taken as 0)
                    continue
                de = ALPHA[t, i, j] * (dalpha[j] - weighted)
                db2[0] += de
                for k in range(A):
                    h = H[t, i, j, k]
                    dW2[k] += de * h
                    dpre = de * W2[k] * (1.0 - h * h)
                    dPa[i, j, k] += dpre
                    dPs[i, k] += dpre
        dW1sT += np.dot(S[t].T, dPs)
        ds_prev = np.dot(dPs, W1s)
        for i in range(m):
            for n in range(n_s):
                ds_next[i, n] = dconcat[i, n] + ds_prev[i, n]
