"""The gate activations of the recurrent kernels: sigmoid and tanh written to vectorize.

Gate loops vectorize (AVX-512 on this machine): sigmoid and tanh are written on a branch-free
exp of our own (`_exp_parts`: Cody-Waite reduction, Taylor to r^13, 2^n by bit cast; 1-3 ulp of
float64, computed in float64 for float32 arrays too), the kernels use error_model="numpy" (no
zero-division test) and each example's row is a contiguous 1D view indexed by uint64 (no
negative-index test). Numba's calls to libm's exp/tanh and those tests had kept the loops
scalar: 105 ns an LSTM cell element, then 8-13 ns. The LSTM's float32 gates are now computed in
float32 (`_gate_sigmoid`, `_gate_tanh`: Cephes' expf, 1-2 ulp of float32, 16 lanes a vector;
float64 values keep the float64 functions): the serial forward pass at batch 32 went 3.8 ->
2.85 ms, backward 2.64 -> 2.55 ms.
Activation codes of the simple RNN (`_act`, `_act_grad`): 0 tanh, 1 relu, 2 sigmoid,
3 linear, 4 leaky_relu.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, types
from numba.extending import intrinsic, overload

LOG2E = 1.4426950408889634
LN2_HI = 6.93147180369123816490e-01  # ln 2 split (fdlibm): n * LN2_HI is exact for |n| < 2^20
LN2_LO = 1.90821492927058770002e-10
# 1 / k! for k = 1..13: Taylor of expm1 on |r| <= ln2 / 2 (remainder < 2e-16 relative)
C2, C3, C4, C5, C6, C7 = 1 / 2, 1 / 6, 1 / 24, 1 / 120, 1 / 720, 1 / 5040
C8, C9, C10, C11 = 1 / 40320, 1 / 362880, 1 / 3628800, 1 / 39916800
C12, C13 = 1 / 479001600, 1 / 6227020800


@intrinsic
def _bits_as_float64(typingctx, bits):
    """The float64 whose IEEE bits are the int64 `bits` (LLVM bitcast; vectorizes)."""
    from llvmlite import ir

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


@njit(inline="always")
def _exp_parts(x):
    """(s, q) with exp(x) = s (1 + q): s = 2^n, q = expm1(r), x = n ln2 + r. x in [-708, 708].

    Written without calls or branches so that LLVM vectorizes the gate loops around it (libm's
    exp and tanh are scalar calls: at 5 a cell they were most of an LSTM step). Float64 inside
    whatever the arrays' type: 1-3 ulp of float64, so float64 runs equal PyTorch to 1e-9."""
    n = math.floor(x * LOG2E + 0.5)
    r = (x - n * LN2_HI) - n * LN2_LO
    p = C12 + r * C13
    p = C11 + r * p
    p = C10 + r * p
    p = C9 + r * p
    p = C8 + r * p
    p = C7 + r * p
    p = C6 + r * p
    p = C5 + r * p
    p = C4 + r * p
    p = C3 + r * p
    p = C2 + r * p
    q = r + r * r * p
    s = _bits_as_float64((np.int64(n) + np.int64(1023)) << np.int64(52))
    return s, q


@njit(inline="always")
def _sigmoid(v):
    x = min(abs(float(v)), 708.0)
    s, q = _exp_parts(-x)
    e = s * q + s  # exp(-|v|): no cancellation on either side
    # 1 for v >= 0 (e + 1 >= 1), else e (< 1): exact, and no branch, whose phi inlined into the
    # LSTM loops made Numba's IR check warn (NumbaIRAssumptionWarning, "not in scope")
    num = min(1.0, e + np.float64(v >= 0))
    return num / (1.0 + e)


@njit(inline="always")
def _tanh(v):
    x = min(abs(float(v)), 20.0)  # tanh(20) is 1 in float64
    s, q = _exp_parts(-2.0 * x)
    e = s * q + (s - 1.0)  # expm1(-2|v|), exact near 0
    return math.copysign(-e / (2.0 + e), float(v))


# float32 gates in float32: Cephes' expf (Cody-Waite, degree-5 polynomial, 1-2 ulp of float32)
# on 16 lanes a vector instead of 8 float64 ones. The float64 path is the one above.
F32 = np.float32
LOG2E_32, HALF_32, ONE_32, TWO_32 = F32(LOG2E), F32(0.5), F32(1.0), F32(2.0)
LN2_HI_32, LN2_LO_32 = F32(0.693359375), F32(-2.12194440e-4)
E0, E1, E2 = F32(1.9875691500e-4), F32(1.3981999507e-3), F32(8.3334519073e-3)
E3, E4, E5 = F32(4.1665795894e-2), F32(1.6666665459e-1), F32(5.0000001201e-1)
SIG_MAX_32, TANH_MAX_32 = F32(87.0), F32(9.0)  # exp(-87) > the smallest normal; tanh(9) is 1


@intrinsic
def _bits_as_float32(typingctx, bits):
    from llvmlite import ir

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.int32), codegen


@njit(inline="always")
def _exp_parts_32(x):
    """_exp_parts for a float32 x in [-87, 0], in float32."""
    n = np.floor(x * LOG2E_32 + HALF_32)
    r = (x - n * LN2_HI_32) - n * LN2_LO_32
    p = E0 * r + E1
    p = p * r + E2
    p = p * r + E3
    p = p * r + E4
    p = p * r + E5
    q = r + r * r * p
    s = _bits_as_float32((np.int32(n) + np.int32(127)) << np.int32(23))
    return s, q


@njit(inline="always")
def _sigmoid_32(v):
    s, q = _exp_parts_32(-min(abs(v), SIG_MAX_32))
    e = s * q + s  # exp(-|v|)
    positive = F32(v >= 0)  # arithmetic, not a branch: Numba's inliner keeps these loops whole
    return (e + positive * (ONE_32 - e)) / (ONE_32 + e)


@njit(inline="always")
def _tanh_32(v):
    s, q = _exp_parts_32(-TWO_32 * min(abs(v), TANH_MAX_32))
    e = s * q + (s - ONE_32)  # expm1(-2|v|)
    return (-e / (TWO_32 + e)) * (F32(v >= 0) * TWO_32 - ONE_32)


def _gate_sigmoid(v):
    """The sigmoid in v's own precision: float32 math for float32 values (the LSTM's gates)."""
    return 1.0 / (1.0 + math.exp(-v))


def _gate_tanh(v):
    return math.tanh(v)


@overload(_gate_sigmoid, inline="always")
def _gate_sigmoid_typed(v):
    if v == types.float32:
        def sigmoid_32(v):
            return _sigmoid_32(v)
        return sigmoid_32

    def sigmoid_64(v):
        return _sigmoid(v)
    return sigmoid_64


@overload(_gate_tanh, inline="always")
def _gate_tanh_typed(v):
    if v == types.float32:
        def tanh_32(v):
            return _tanh_32(v)
        return tanh_32

    def tanh_64(v):
        return _tanh(v)
    return tanh_64


@njit(inline="always")
def _act(code, v):
    if code == 0:
        return _tanh(v)
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
