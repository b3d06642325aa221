"""conv2d_transpose (kernels/transpose.py): each input pixel scatters its filter, the
input-gradient of a conv run forward.

The forward and the backward are each one pass of kernels/transpose.py over blocks of input
rows, in one parallel region from PARALLEL_MIN multiply-adds (a run of whole examples a Numba
thread, BLAS on one thread inside; inside a training step the main thread and
kernels/duo.py's helper take the runs, kernels/conv_duo.py), serially below it. The bias is
where each output row starts and, when the activation is linear, its gradient is summed in
the backward's region.
A linear one last in a skip_concat writes into the concatenation (`into`) and reads its
gradient there (`grad_at`): no copy of its output either way.
"""

from __future__ import annotations

import numpy as np

from . import register
from .conv import _image_shape, _Weighted
from .layers import _positive_int

# Multiply-adds of a pass (m n_H_prev n_W_prev C f f K) from which the runs of examples go to
# Numba's threads; below it waking them costs more than they save.
PARALLEL_MIN = 1 << 22


@register("conv2d_transpose")
class Conv2DTranspose(_Weighted):
    """Each input pixel scatters its filter: the input-gradient of a conv, run forward."""

    def __init__(self, filters, size, stride=1, activation="linear", bias=True, init=None,
                 padding="valid"):
        super().__init__(activation, bias, init)
        self.n_C, self.f = _positive_int(filters, "filters"), _positive_int(size, "size")
        self.stride = _positive_int(stride, "stride")
        if padding not in ("valid", "same"):
            raise ValueError(f"conv2d_transpose padding is valid or same, got {padding!r}")
        self.padding = padding
        # (array, first channel) set by a skip_concat for the next forward: write there;
        # (its gradient, first channel) for the next backward: read dZ there
        self.into = self.grad_at = None

    def build(self, input_shape, ctx):
        n_H_prev, n_W_prev, self.n_C_prev = _image_shape(self, input_shape)
        f, s = self.f, self.stride
        self.n_H, self.n_W = (n_H_prev - 1) * s + f, (n_W_prev - 1) * s + f
        # same (Keras): the full scatter cropped to n s, (f - s) // 2 rows off the top and
        # the rest off the bottom -- the mirror of a same conv's padding
        self.crop = 0
        if self.padding == "same":
            self.n_H, self.n_W, self.crop = n_H_prev * s, n_W_prev * s, max(f - s, 0) // 2
        self._init_params(ctx, (f, f, self.n_C_prev, self.n_C), f * f * self.n_C_prev,
                          f * f * self.n_C, self.n_C)
        self.input_shape, self.output_shape = tuple(input_shape), (self.n_H, self.n_W, self.n_C)
        return self.output_shape

    def _W_rows(self):
        """W as (n_C_prev, f f n_C), C-contiguous: row c' is what input channel c' scatters."""
        return np.ascontiguousarray(self.params["W"].transpose(2, 0, 1, 3).reshape(self.n_C_prev, -1))

    def _plan(self, A_prev):
        """(input rows a block, runs of examples: 1 for the serial driver)."""
        from ..kernels import transpose as ktr
        m, n_H_prev, n_W_prev, C = A_prev.shape
        width = self.f * self.f * self.n_C
        block_rows = ktr.block_rows(n_W_prev, width, C)
        if m * n_H_prev * n_W_prev * C * width < PARALLEL_MIN:
            return block_rows, 1
        from numba import get_num_threads
        return block_rows, max(1, min(get_num_threads(), m))

    def forward(self, A_prev, training):
        from ..kernels import conv_duo, transpose as ktr
        from ..kernels.threads import run_pass
        A_prev = np.ascontiguousarray(A_prev, dtype=self.params["W"].dtype)
        m, n_H_prev, n_W_prev, _ = A_prev.shape
        into, self.into = self.into, None
        Z, k0 = into if into is not None else (
            np.empty((m, self.n_H, self.n_W, self.n_C), dtype=A_prev.dtype), 0)
        # the bias is where each output row starts, before any input adds into it
        b = self.params["b"] if self.bias else np.zeros(self.n_C, dtype=A_prev.dtype)
        block_rows, parts = self._plan(A_prev)
        args = (A_prev.reshape(-1, self.n_C_prev), self._W_rows(), self.f, self.stride,
                self.crop, n_H_prev, n_W_prev, block_rows, Z, b, k0)
        run_pass(parts, ktr.forward_blocks, ktr.forward_blocks_parallel, args, (parts,),
                 conv_duo.transpose_forward_duo)
        if into is not None:  # linear (SkipConcat.fuses): the output is its channels of Z
            A = Z[..., k0:k0 + self.n_C]
            if training:
                self.cache = (A_prev, A)
            return A
        A = self._activate(Z, training, bias=False)
        if training:
            self.cache = (A_prev,) + self.cache
        return A

    def backward(self, dA):
        from ..kernels import conv_duo, transpose as ktr
        from ..kernels.threads import run_pass
        A_prev, *self.cache = self.cache
        m, n_H_prev, n_W_prev, C = A_prev.shape
        grad_at, self.grad_at = self.grad_at, None
        sums = self.bias and self.activation == "linear"  # db in the pass, from dZ = dA itself
        if grad_at is not None:  # dA is channels k0: of a skip_concat's gradient
            dZ, k0 = grad_at
        else:
            dZ, k0 = np.ascontiguousarray(dA if sums else self._dZ(dA), dtype=A_prev.dtype), 0
        W_rows = self._W_rows()
        block_rows, parts = self._plan(A_prev)
        dW_parts = np.empty((parts,) + W_rows.shape, dtype=dZ.dtype)
        db_parts = np.empty((parts, self.n_C if sums else 0), dtype=dZ.dtype)
        input_grad = self.needs_input_grad
        dA_prev = np.empty(A_prev.shape if input_grad else (0, 1, 1, C), dtype=dZ.dtype)
        args = (dZ, A_prev.reshape(-1, C), np.ascontiguousarray(W_rows.T), self.f, self.stride,
                self.crop, n_H_prev, n_W_prev, block_rows, dW_parts, dA_prev.reshape(-1, C),
                input_grad, k0, db_parts)
        run_pass(parts, ktr.backward_blocks, ktr.backward_blocks_parallel, args,
                 duo=conv_duo.transpose_backward_duo)
        dW_rows = dW_parts[0] if parts == 1 else dW_parts.sum(axis=0)
        self.grads["W"][...] = dW_rows.reshape(C, self.f, self.f, self.n_C).transpose(1, 2, 0, 3)
        if sums:
            db_parts.sum(axis=0, out=self.grads["b"])
        self.cache = None
        return dA_prev if input_grad else None

    def small_gemms(self, m):
        # a block of a few input rows a GEMM (kernels/transpose.py), on one BLAS thread
        return True

    def fuses(self) -> bool:
        """Whether a skip_concat may have this layer write its output into the concatenation
        (`into`) and read its gradient from the concatenation's (`grad_at`): linear only,
        since then A is Z and dZ is dA."""
        return self.activation == "linear"

    def describe(self):
        return self._describe(f"{self.f}x{self.f}x{self.n_C}", activation=self.activation)
