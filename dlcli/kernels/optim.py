"""Fused optimizer updates: one pass over a tensor, state and parameter updated in place.

Each kernel takes flat (1-D, contiguous) views and scalars already cast to the arrays' dtype.
Two things decide whether LLVM vectorizes these loops (measured on the 2-core znver4 box,
Adam over 401k float32: 1.7 ms scalar -> 0.12 ms vectorized):
- `error_model="numpy"`: Python's error model guards every division with a ZeroDivisionError
  check, a branch that stops vectorization;
- no Python float or int literal in the loop: one would promote float32 to float64.
The loops are serial on purpose: a prange launch on Numba's workqueue layer cost ~100 us here,
more than a whole Adam step over a 535k-parameter MLP, and two threads on a memory-bound loop
gained nothing even at 4M elements.

Measured again for issue 14: Adam over the MLP's 535,818 float32 parameters (28 bytes a
parameter: W, dW, v, s read, W, v, s written) takes 291-294 us alone (2026-12-04, branch
s10-mlp), the same with the sqrt and the division taken out and whatever the caches held
before, so it is bound by memory, not by the arithmetic; at load 2.6-3.6 (others' work on the
2 cores, 06:39 UTC) 314-565 us, median 348, alone (15 medians of 50 calls) and 321-581, median
504, right after a forward and backward at batch 64. (An earlier 151-169 us, Dec 3, was not
reproduced.) Split over two threads it took 768 us with prange (load 2.4: the
other core was busy) and 152 us with two Python threads on a nogil kernel, against 152 serial.
Fusing each layer's update into its backward, while dW is in cache, gained 1-3%: not kept.
The kernels take flat views in either memory order (dense W is Fortran-ordered, nn/layers.py).
"""

import math

from numba import njit


@njit(cache=True, error_model="numpy")
def gd_step(W, dW, learning_rate):
    for i in range(W.size):
        W[i] -= learning_rate * dW[i]


@njit(cache=True, error_model="numpy")
def momentum_step(W, dW, v, learning_rate, beta, one_minus_beta):
    for i in range(W.size):
        vi = beta * v[i] + one_minus_beta * dW[i]
        v[i] = vi
        W[i] -= learning_rate * vi


@njit(cache=True, error_model="numpy")
def rmsprop_step(W, dW, s, learning_rate, beta2, one_minus_beta2, epsilon):
    for i in range(W.size):
        g = dW[i]
        si = beta2 * s[i] + one_minus_beta2 * g * g
        s[i] = si
        W[i] -= learning_rate * g / (math.sqrt(si) + epsilon)


@njit(cache=True, error_model="numpy")
def adam_step(W, dW, v, s, step, beta1, one_minus_beta1, beta2, one_minus_beta2, epsilon,
              inv_sqrt_correction2):
    """`step` = a / (1 - beta1^t) and `inv_sqrt_correction2` = 1 / sqrt(1 - beta2^t) fold the
    bias corrections into two scalars: a v_hat / (sqrt(s_hat) + epsilon) without v_hat, s_hat."""
    for i in range(W.size):
        g = dW[i]
        vi = beta1 * v[i] + one_minus_beta1 * g
        si = beta2 * s[i] + one_minus_beta2 * g * g
        v[i] = vi
        s[i] = si
        W[i] -= step * vi / (math.sqrt(si) * inv_sqrt_correction2 + epsilon)
