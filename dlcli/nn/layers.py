"""Fully connected layers: dense, activation, dropout, batchnorm, flatten.

Examples are rows: x is (m, n_prev), or (m, ..., n_prev) with the layer applied along the
last axis (sequences (m, T, n) need nothing more). Dense keeps the notes' W (n, n_prev) and
b (n, 1), so z = x W^T + b^T. Gradients are sums over the batch (the loss divides by m, never
a layer) written into the arrays `build` puts in `self.grads`, which the optimizer may hold.

Training steps write into arrays kept from the step before (`Scratch`): a fresh array per
step costs page faults and zeroing on every large allocation. Inference returns new arrays,
as callers keep outputs across batches.

Dense keeps W (and so dW, Adam's v and s) in Fortran order, W.T C-contiguous: OpenBLAS runs
x @ W.T and dW^T = x^T dz from that layout 1.2-1.35x faster than from a C-ordered W at batch
64 (784 -> 512: forward 394 -> 295 us, dW 331 -> 287 us; dx = dz W, which the first layer
skips, 280 -> 352 us). Its GEMM writes z into one buffer and the bias + activation pass
reads z and writes a into another: in place, the kernel's runtime alias check sends LLVM to
its scalar loop (64 x 512 relu: 11.8 against 3.9 us). The GEMMs go through
kernels/blas_late.py's `matmul`: np.matmul, or on one BLAS thread with the two-thread results
while a loaded machine makes two threads late (dlcli/train.py `small_step_blas`).
"""

from __future__ import annotations

import numpy as np

from . import activations, register
from .base import SMALL_GEMM, Layer, NoGemm, Scratch, zeros_like_params
from .inits import initialize
from ..kernels import batchnorm as kbn
from ..kernels.blas_late import matmul


def _positive_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


@register("dense")
class Dense(Layer):
    regularized = ("W",)

    def __init__(self, units, activation="linear", bias=True, init=None):
        super().__init__()
        self.units = _positive_int(units, "units")
        self.activation = activations.check(activation or "linear")
        self.bias, self.init = bool(bias), init
        self.scratch = Scratch()

    def build(self, input_shape, ctx):
        if not input_shape:
            raise ValueError("dense needs inputs with a feature axis, got scalars")
        n_prev = int(input_shape[-1])
        # Fortran order (module docstring); the same values as a C-ordered draw
        self.params["W"] = np.asfortranarray(initialize(self.init or ctx.init, (self.units, n_prev),
                                                        n_prev, self.units, ctx.rng, ctx.dtype))
        if self.bias:
            self.params["b"] = np.zeros((self.units, 1), dtype=ctx.dtype)
        zeros_like_params(self)
        self.input_shape = tuple(input_shape)
        self.output_shape = self.input_shape[:-1] + (self.units,)
        return self.output_shape

    def forward(self, x, training):
        W = self.params["W"]
        x2 = np.ascontiguousarray(x, dtype=W.dtype).reshape(-1, W.shape[1])
        shape = (x2.shape[0], self.units)
        z2 = self.scratch.get("z", shape, W.dtype, training)
        matmul(x2, W.T, z2)  # W.T is a view: BLAS reads W transposed, nothing is copied
        # inference may overwrite z (nothing keeps it); training keeps z and a apart (docstring)
        a2 = self.scratch.get("a", shape, W.dtype) if training else z2
        activations.forward(self.activation, z2, self.params.get("b"), out=a2)
        if training:
            self.cache = (x.shape, x2, a2)
        return a2.reshape(x.shape[:-1] + (self.units,))

    def backward(self, da):
        shape, x2, a2 = self.cache
        da2 = np.ascontiguousarray(da, dtype=a2.dtype).reshape(a2.shape)
        dz2 = activations.backward(self.activation, da2, a2, self.scratch.get("dz", a2.shape, a2.dtype),
                                   self.grads.get("b"))
        dW = self.grads["W"]
        if dW.flags.f_contiguous:  # dW^T = x^T dz into dW's C-ordered transpose
            matmul(x2.T, dz2, dW.T)
        else:  # a W someone replaced with a C-ordered array
            matmul(dz2.T, x2, dW)
        self.cache = None
        if not self.needs_input_grad:
            return None
        dx2 = matmul(dz2, self.params["W"], self.scratch.get("dx", x2.shape, x2.dtype))
        return dx2.reshape(shape)

    def small_gemms(self, m):
        rows = m * int(np.prod(self.input_shape[:-1], dtype=np.int64))
        return rows * self.input_shape[-1] * self.units < SMALL_GEMM

    def describe(self):
        parts = ["dense", str(self.units)]
        if self.activation != "linear":
            parts.append(self.activation)
        if not self.bias:
            parts.append("no bias")
        return " ".join(parts)


@register("activation")
class Activation(NoGemm, Layer):
    def __init__(self, activation):
        super().__init__()
        self.activation = activations.check(activation)
        self.scratch = Scratch()

    fused = False  # set by the batch norm before it that applies this relu (BatchNorm.fuse_next)

    def build(self, input_shape, ctx):
        self.fused = False  # a model built again decides again
        return super().build(input_shape, ctx)

    def forward(self, x, training):
        if self.activation == "linear" or self.fused:
            return x
        a = activations.forward(self.activation, x,
                                out=self.scratch.get("a", x.shape, x.dtype, training))
        if training:
            self.cache = a
        return a

    def backward(self, da):
        if self.activation == "linear" or self.fused:
            return da
        a, self.cache = self.cache, None
        return activations.backward(self.activation, da, a, self.scratch.get("dz", a.shape, a.dtype))

    def describe(self):
        return f"activation {self.activation}"


@register("dropout")
class Dropout(NoGemm, Layer):
    """Inverted dropout: a = a * mask / keep_prob with mask = rand < keep_prob, training only.

    `keep_prob` is read at every forward, so a gradient check may set it to 1 for a while.
    """

    def __init__(self, keep_prob):
        super().__init__()
        if isinstance(keep_prob, bool) or not 0 < keep_prob <= 1:
            raise ValueError(f"keep_prob must be a number in (0, 1], got {keep_prob!r}")
        self.keep_prob = float(keep_prob)
        self.rng = None

    def build(self, input_shape, ctx):
        self.rng = ctx.dropout_rng
        return super().build(input_shape, ctx)

    def forward(self, x, training):
        if not training or self.keep_prob == 1:
            self.cache = None
            return x
        dtype = np.result_type(x.dtype, np.float32)  # rng.random draws float32 or float64 only
        # the kept units' scale folded into the mask: one multiply each way
        scaled_mask = (self.rng.random(x.shape, dtype=dtype) < self.keep_prob) \
            * dtype.type(1 / self.keep_prob)
        self.cache = scaled_mask
        return x * scaled_mask

    def backward(self, da):
        scaled_mask, self.cache = self.cache, None
        return da if scaled_mask is None else da * scaled_mask

    def describe(self):
        return f"dropout keep_prob {self.keep_prob:g}"


@register("batchnorm")
class BatchNorm(NoGemm, Layer):
    """gamma z_norm + beta per feature (per channel of images, over batch, height and width).

    Training normalises with the batch mean and biased variance (`dlcli.kernels.batchnorm`)
    and moves the running statistics, `running = momentum running + (1 - momentum) batch`;
    inference uses those.
    """

    def __init__(self, momentum=0.9, epsilon=1e-5):
        super().__init__()
        if isinstance(momentum, bool) or not 0 <= momentum <= 1:
            raise ValueError(f"momentum must be a number in [0, 1], got {momentum!r}")
        if isinstance(epsilon, bool) or not epsilon > 0:
            raise ValueError(f"epsilon must be a positive number, got {epsilon!r}")
        self.momentum, self.epsilon = float(momentum), float(epsilon)
        self.scratch = Scratch()
        self.relu = False  # the relu activation after this layer runs in its passes (fuse_next)
        # (Z, mean, var) of a training forward, left by the Winograd conv before this layer
        # that took the batch's moments in its own output pass (nn/conv_winograd.py)
        self.moments_given = None

    def fuse_next(self, layer) -> bool:
        """Apply a relu `activation` layer that follows in this layer's own passes (one pass
        over the output fewer each way, kernels/batchnorm.py); that layer passes through."""
        self.relu = isinstance(layer, Activation) and layer.activation == "relu"
        if self.relu:
            layer.fused = True
        return self.relu

    def build(self, input_shape, ctx):
        self.relu = False  # until the model fuses the next layer in again
        if not input_shape:
            raise ValueError("batchnorm needs inputs with a feature axis, got scalars")
        n = int(input_shape[-1])
        self.params = {"gamma": np.ones(n, dtype=ctx.dtype), "beta": np.zeros(n, dtype=ctx.dtype)}
        self.buffers = {"running_mean": np.zeros(n, dtype=ctx.dtype),
                        "running_var": np.ones(n, dtype=ctx.dtype)}
        zeros_like_params(self)
        return super().build(input_shape, ctx)

    def adds_into(self, x, addend, training) -> bool:
        """Whether `forward` can add `addend` (a residual block's shortcut) and apply a relu
        in its own pass (nn/conv_blocks.py): training, not frozen, no relu of its own."""
        return (training and self.trainable and not self.relu and addend.shape == x.shape
                and addend.dtype == x.dtype == self.params["gamma"].dtype)

    def forward(self, x, training, addend=None, out=None):
        """addend, out (`adds_into`): out = relu(batch norm of x + addend), this layer's
        backward still that of the batch norm alone (the block applies relu' first)."""
        gamma, beta = self.params["gamma"], self.params["beta"]
        x2 = np.ascontiguousarray(x, dtype=gamma.dtype).reshape(-1, gamma.shape[0])
        if not training or not self.trainable:
            # a frozen batch norm runs in inference mode, as Keras' does: its running
            # statistics are part of what was frozen, so they must not move
            scale = gamma / np.sqrt(self.buffers["running_var"] + self.epsilon)
            y = x2 * scale + (beta - self.buffers["running_mean"] * scale)
            if self.relu:
                np.maximum(y, 0, out=y)
            if training:
                self.cache = ("frozen", scale, y if self.relu else None)
            return y.reshape(x.shape)
        added = addend is not None
        out = (out if added else self.scratch.get("out", x2.shape, x2.dtype)).reshape(x2.shape)
        mean, var, inv_std = (np.empty_like(gamma) for _ in range(3))
        given, self.moments_given = self.moments_given, None
        if given is not None and given[0] is x:  # taken by the conv before (nn/conv_winograd.py)
            mean[:], var[:] = given[1], given[2]
            inv_std[:] = 1 / np.sqrt(var.astype(np.float64) + self.epsilon)
        else:
            kbn.batchnorm_stats(x2, self.epsilon, mean, var, inv_std)
        if added:
            kbn.batchnorm_normalize(x2, gamma, beta, mean, inv_std, out, True,
                                    np.ascontiguousarray(addend).reshape(x2.shape))
        else:
            kbn.batchnorm_normalize(x2, gamma, beta, mean, inv_std, out, self.relu)
        for key, batch in (("running_mean", mean), ("running_var", var)):
            running = self.buffers[key]
            running *= self.momentum
            running += (1 - self.momentum) * batch
        self.cache = (x2, mean, inv_std)  # z_norm computed again from x2 (kernels/batchnorm.py)
        return out.reshape(x.shape)

    def backward(self, dy):
        x2, mean, inv_std = self.cache
        self.cache = None
        if isinstance(x2, str):  # frozen: an affine map by `scale` (mean), no parameter grads
            scale, relu_out = mean, inv_std
            dy2 = np.ascontiguousarray(dy).reshape(-1, scale.shape[0])
            if relu_out is not None:
                dy2 = np.where(relu_out > 0, dy2, 0)
            return (dy2 * scale).reshape(dy.shape)
        dy2 = np.ascontiguousarray(dy, dtype=x2.dtype).reshape(x2.shape)
        dx2 = self.scratch.get("dx", x2.shape, x2.dtype)
        kbn.batchnorm_backward(dy2, x2, mean, self.params["gamma"], self.params["beta"], inv_std,
                               dx2, self.grads["gamma"], self.grads["beta"], self.relu)
        return dx2.reshape(dy.shape)


@register("flatten")
class Flatten(NoGemm, Layer):
    def build(self, input_shape, ctx):
        self.input_shape = tuple(input_shape)
        self.output_shape = (int(np.prod(input_shape, dtype=np.int64)),)
        return self.output_shape

    def forward(self, x, training):
        return x.reshape(x.shape[0], -1)

    def backward(self, da):
        return da.reshape((da.shape[0],) + self.input_shape)
