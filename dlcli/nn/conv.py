"""Convolutional layers (NHWC): conv2d, depthwise_conv2d, pools (residual and branches, which
hold layers, are in nn/conv_blocks.py; conv2d_transpose in nn/conv_transpose.py).

The arithmetic lives in `dlcli.kernels` (Numba) and in BLAS GEMMs; this module holds shapes,
parameters, caches and the wiring of nested layers. A conv2d picks its path when built
(nn/conv_paths.py): direct kernels (few input channels, stride 1, nn/conv_direct.py, with a
2x2 max pool after them fused in), plain GEMMs on the input (1x1 unpadded,
nn/conv_pointwise.py; on blocks of pixels when narrow and large, nn/conv_narrow.py), Winograd
F(2x2, 3x3) or F(4x4, 3x3) (3x3 stride 1 with many channels, nn/conv_winograd.py; few filters
on a large image split its backward, nn/conv_split.py), or else im2col + GEMM: in blocks of a
few examples from 3 input channels (nn/conv_patches.py, a 2x2 max pool after it fused in),
batch-wide and transposed below. Gradients are sums over the batch (the loss divides by m,
never a layer) and are written into the arrays `build` puts in `self.grads`, because the
optimizer holds on to those arrays.
"""

from __future__ import annotations

import numpy as np

from . import activations, register
from . import conv_direct, conv_narrow, conv_paths, conv_patches, conv_pointwise, conv_split
from . import conv_winograd
from .base import Layer, NoGemm, Scratch, zeros_like_params
from .inits import initialize
from .layers import _positive_int
from ..kernels import conv as kconv
from ..kernels import depthwise as kdepthwise
from ..kernels import global_pool as kglobal
from ..kernels import pool as kpool


# Examples are unrolled a few at a time, holding at most this many patch elements (1 MB of
# float32), so the GEMM reads, and col2im sums, patches still in the core's cache: a 3x3x32
# layer at batch 64 measured 16% faster forward, and a 1024-example predict 25% faster,
# than batch-wide passes (which also took gigabytes at inference).
CHUNK_COLS = 1 << 18
# Inference keeps no patches for a backward pass, and more examples a chunk measured faster
# there: LeNet-5 predicting 4096 examples, 157 ms at 1 MB chunks, 137 ms at 4 MB, 143 at 16.
INFERENCE_CHUNK_COLS = 1 << 20
# A training cache's markers in the place of the patches: these paths keep A_prev instead
WINOGRAD, POINTWISE, PATCHES = "winograd", "pointwise", "patches"
# The im2col path in cache-sized blocks (nn/conv_patches.py) for what no other path takes
# from 3 input channels; False: the batch-wide unrolling below, which keeps every patch.
BLOCKED_PATCHES = True
# A fused MaxPool's cache (nn/conv_direct.py runs its pass)
FUSED = "fused"


# Elements from which a kernel runs its parallel driver. Under 2M, LeNet's layers measured
# no faster in parallel (5% slower at batch 64) on this shared 2-core machine: the second
# thread is often busy elsewhere and every pass waits for it.
PARALLEL_MIN = 1 << 21
# A max pool's pass already pays in parallel from 1M input elements (LeNet's first pool at
# batch 256, 1.2M: 0.73 against 1.33 ms forward, 0.54 against 0.97 backward; at batch 128 it
# lost), so it counts its work double.
MAXPOOL_WORK = 2


def kernel(module, name: str, work: int):
    """The kernel's parallel driver for `work` elements and more, else its serial one:
    waking the threads costs more than a small pass (kernels/conv.py). Inside a training step
    with kernels/duo.py's helper, a per-example pass that has a driver in kernels/conv_duo.py
    runs there instead: runs of examples that the main thread and the helper take."""
    if work < PARALLEL_MIN:
        return getattr(module, name)
    from ..kernels import duo
    helper = duo.for_step()
    if helper is not None:
        from ..kernels import conv_duo
        driver = getattr(conv_duo, name + "_duo", None)
        if driver is not None:
            return lambda *args: helper.run(driver, min(duo.PARTS, args[0].shape[0]), *args)
    return getattr(module, name + "_parallel")


def output_size(n: int, f: int, stride: int, padding) -> tuple[int, int]:
    """(n_out, pad_before) along one axis; `same` puts the odd padding pixel after."""
    if padding == "same":
        n_out = -(-n // stride)
        return n_out, max((n_out - 1) * stride + f - n, 0) // 2
    pad = 0 if padding == "valid" else padding
    if isinstance(pad, bool) or not isinstance(pad, int) or pad < 0:
        raise ValueError(f"padding must be same, valid or a non-negative integer, got {padding!r}")
    n_out = (n + 2 * pad - f) // stride + 1
    if n_out < 1:
        raise ValueError(f"a {f}x{f} window with stride {stride} and padding {padding} "
                         f"does not fit an input of size {n}")
    return n_out, pad


def _image_shape(layer, input_shape):
    if len(input_shape) != 3:
        raise ValueError(f"{layer.kind} needs images (n_H, n_W, n_C), got shape {tuple(input_shape)}")
    return tuple(input_shape)


class _Windowed(Layer):
    """A layer that slides an f x f window with a stride and a padding over (n_H, n_W)."""

    def _geometry(self, input_shape, f, stride, padding):
        n_H_prev, n_W_prev, _ = _image_shape(self, input_shape)
        self.n_H, self.pad_top = output_size(n_H_prev, f, stride, padding)
        self.n_W, self.pad_left = output_size(n_W_prev, f, stride, padding)

    def _describe(self, what, padding=None, activation=None):
        parts = [self.kind, what] + ([f"s{self.stride}"] if self.stride != 1 else [])
        if padding is not None:
            parts.append(padding if isinstance(padding, str) else f"pad {padding}")
        if activation and activation != "linear":
            parts.append(activation)
        return " ".join(parts)


class _Unrolled:
    """A layer's reused im2col buffers: one for training steps, a bounded one for inference."""

    def __init__(self):
        self._buffers = {True: None, False: None}

    def cols(self, shape: tuple, dtype, training: bool) -> np.ndarray:
        size = shape[0] * shape[1]
        buf = self._buffers[training]
        if buf is None or buf.size < size or buf.dtype != dtype:
            buf = self._buffers[training] = np.empty(size, dtype=dtype)
        return buf[:size].reshape(shape)


def _chunks(m: int, elements_per_example: int, training: bool = True):
    """Example ranges [i0, i1) to unroll at once."""
    step = max(1, (CHUNK_COLS if training else INFERENCE_CHUNK_COLS) // max(elements_per_example, 1))
    return [(i, min(i + step, m)) for i in range(0, m, step)]


class _Weighted(_Windowed):
    regularized = ("W",)

    def __init__(self, activation, bias, init):
        super().__init__()
        self.activation = activations.check(activation or "linear")
        self.bias, self.init = bool(bias), init
        self.scratch = Scratch()  # A of the last training step (`_activate`)

    def _init_params(self, ctx, shape, fan_in, fan_out, n_C):
        self.params["W"] = initialize(self.init or ctx.init, shape, fan_in, fan_out, ctx.rng, ctx.dtype)
        if self.bias:
            self.params["b"] = np.zeros(n_C, dtype=ctx.dtype)
        zeros_like_params(self)

    def _activate(self, Z, training, bias=True):
        """A = g(Z + b); backward needs only A. Training writes A apart from Z, into an array
        kept from step to step (as the Winograd path keeps Z): in place, LLVM's runtime alias
        check sends the fused pass to its scalar loop (kernels/activations.py). The U-Net's
        19 conv outputs of a step (13M values), one thread: 23.5 ms in place, 8.7 apart."""
        b = self.params.get("b") if bias else None  # bias False: the caller added it
        identity = self.activation == "linear" and b is None  # before batch norm: no pass at all
        out = Z
        if training and not identity and self.activation in activations.PIECEWISE:
            out = self.scratch.get("A", Z.shape, Z.dtype)
        A = Z if identity else activations.forward(self.activation, Z, b, out=out)
        if training:
            self.cache = (A,)
        return A

    def _dZ(self, dA, out=None):
        """dZ from the upstream gradient (into `out` if given), and the bias gradient on the way."""
        (A,) = self.cache
        return activations.backward(self.activation, dA, A, out=out, db=self.grads.get("b"))


@register("conv2d")
class Conv2D(_Weighted):
    def __init__(self, filters, size, stride=1, padding="valid", activation="linear", bias=True,
                 init=None):
        super().__init__(activation, bias, init)
        self.n_C, self.f = _positive_int(filters, "filters"), _positive_int(size, "size")
        self.stride, self.padding = _positive_int(stride, "stride"), padding
        self.unrolled = _Unrolled()
        self.pool = None  # the MaxPool after this layer, when its pass runs in this one's

    def build(self, input_shape, ctx):
        self._geometry(input_shape, self.f, self.stride, self.padding)
        f, self.n_C_prev = self.f, input_shape[2]
        self._init_params(ctx, (f, f, self.n_C_prev, self.n_C), f * f * self.n_C_prev,
                          f * f * self.n_C, self.n_C)
        self.pool = None  # until the model fuses the next layer in again (fuse_next)
        self.winograd_buffers = {}
        self.norm = None  # a batch norm after it taking its moments here (fuse_next)
        conv_paths.choose(self)  # transposed, direct, winograd, split_backward, pointwise
        self.input_shape, self.output_shape = tuple(input_shape), (self.n_H, self.n_W, self.n_C)
        return self.output_shape

    def small_gemms(self, m):
        # the direct loops (a training step takes them only without an input gradient, as
        # forward chooses) and the blocked im2col path multiply a few examples at a time;
        # the Winograd passes (and the split backward) run their GEMMs a block at a time on
        # one BLAS thread; a narrow or small 1x1 layer keeps one BLAS thread
        return ((self.direct and not self.needs_input_grad)
                or (BLOCKED_PATCHES and not (self.transposed or self.winograd or self.pointwise))
                or self.winograd
                or (self.pointwise and conv_pointwise.one_thread(self, m * self.n_H * self.n_W)))

    def _cols(self, m, dtype, training):
        """A patch buffer for m examples, in this layer's layout."""
        rows, width = m * self.n_H * self.n_W, self.f * self.f * self.n_C_prev
        return self.unrolled.cols((width, rows) if self.transposed else (rows, width), dtype, training)

    def _rows(self, cols, r0, r1):
        """The part of a patch buffer holding outputs r0:r1."""
        return cols[:, r0:r1] if self.transposed else cols[r0:r1]

    def _patches(self, cols):
        """A patch buffer seen as (outputs, f f n_C_prev), whatever its layout."""
        return cols.T if self.transposed else cols

    def forward(self, A_prev, training):
        A_prev = np.ascontiguousarray(A_prev, dtype=self.params["W"].dtype)
        m, hw = A_prev.shape[0], self.n_H * self.n_W
        W2 = self.params["W"].reshape(-1, self.n_C)
        shape = (m, self.n_H, self.n_W, self.n_C)
        Z = (conv_winograd.buffer(self, "Z", shape, A_prev.dtype) if self.winograd and training
             else np.empty(shape, dtype=A_prev.dtype))
        if self.activation == "linear" and conv_narrow.applies(self, m * hw):
            return conv_narrow.forward(self, A_prev, Z, training)
        if self.pointwise or self.winograd:
            activated = (self.winograd and conv_winograd.EPILOGUE
                         and conv_winograd.activates(self, training))
            if self.pointwise:
                conv_pointwise.forward(self, A_prev, Z)
            else:
                conv_winograd.forward(self, A_prev, Z, training, activated)
            if activated:  # A = g(Z + b) already, from the output transform
                A = Z
                self.cache = (A,) if training else self.cache
            else:
                A = self._activate(Z, training)
            if training:
                self.cache = (A_prev, POINTWISE if self.pointwise else WINOGRAD) + self.cache
            return A
        if self.direct and not (training and self.needs_input_grad):
            return conv_direct.forward(self, A_prev, Z, training)
        if BLOCKED_PATCHES and not self.transposed:
            if self.pool is not None:  # a max pool after it, run in its blocks (conv_patches.fuse)
                return conv_patches.forward_pooled(self, A_prev, training)
            conv_patches.forward(self, A_prev, Z)
            A = self._activate(Z, training)
            if training:
                self.cache = (A_prev, PATCHES) + self.cache
            return A
        Z2 = Z.reshape(m * hw, self.n_C)
        whole = self._cols(m, A_prev.dtype, True) if training else None  # kept for dW
        unroll = "im2col_t" if self.transposed else "im2col"
        for i0, i1 in _chunks(m, hw * W2.shape[0], training):
            cols = (self._rows(whole, i0 * hw, i1 * hw) if training
                    else self._cols(i1 - i0, A_prev.dtype, False))
            kernel(kconv, unroll, cols.size)(A_prev[i0:i1], self.f, self.stride, self.pad_top,
                                             self.pad_left, self.n_H, self.n_W, cols)
            np.matmul(self._patches(cols), W2, out=Z2[i0 * hw:i1 * hw])
        A = self._activate(Z, training)
        if training:
            self.cache = (A_prev.shape, whole) + self.cache
        return A

    def backward(self, dA):
        shape, cols, *self.cache = self.cache
        if cols is None or cols is conv_direct.POOLED:  # the direct path: shape is A_prev itself
            return conv_direct.backward(self, shape, cols, dA)
        if cols is conv_patches.POOLED:
            return conv_patches.backward_pooled(self, shape, dA)
        if cols is WINOGRAD and self.split_backward and conv_split.folds(self):
            (A,) = self.cache  # dZ from dA and A in the filter gradient's pass
            self.cache = None
            return conv_split.backward_activation(self, shape, dA, A)
        if cols is WINOGRAD and not self.split_backward and conv_winograd.folds(self):
            (A,) = self.cache  # dZ from dA and A in the gather of its tiles
            self.cache = None
            return conv_winograd.backward_activation(self, shape, dA, A, CHUNK_COLS)
        if cols is WINOGRAD or cols is POINTWISE or cols is PATCHES:  # shape is A_prev itself
            out = (conv_winograd.buffer(self, "dZ", dA.shape, shape.dtype)
                   if cols is WINOGRAD and self.activation != "linear" else None)
            dZ = np.ascontiguousarray(self._dZ(dA, out))
            self.cache = None
            if cols is POINTWISE:
                if conv_narrow.applies(self, dZ.size // self.n_C):
                    return conv_narrow.backward(self, shape, dZ)
                return conv_pointwise.backward(self, shape, dZ)
            if cols is PATCHES:
                return conv_patches.backward(self, shape, dZ)
            if self.split_backward:
                return conv_split.backward(self, shape, dZ)
            return conv_winograd.backward(self, shape, dZ, CHUNK_COLS)
        dZ2 = self._dZ(dA).reshape(-1, self.n_C)
        W2 = self.params["W"].reshape(-1, self.n_C)
        np.matmul(self._patches(cols).T, dZ2, out=self.grads["W"].reshape(W2.shape))
        self.cache = None
        if not self.needs_input_grad:
            return None
        dA_prev = np.empty(shape, dtype=dZ2.dtype)
        hw = self.n_H * self.n_W
        fold = "col2im_t" if self.transposed else "col2im"
        for i0, i1 in _chunks(shape[0], hw * W2.shape[0]):
            # the patches are spent: their gradient goes over them, in the same layout
            part = self._rows(cols, i0 * hw, i1 * hw)
            np.matmul(dZ2[i0 * hw:i1 * hw], W2.T, out=self._patches(part))
            kernel(kconv, fold, part.size)(part, self.f, self.stride, self.pad_top, self.pad_left,
                                           self.n_H, self.n_W, dA_prev[i0:i1])
        return dA_prev

    def fuse_next(self, layer) -> bool:
        """Run the next layer's pass in this one's where nn/conv_direct.py or nn/conv_patches.py
        can (a 2x2 max pool after the direct or the blocked im2col path), or take a batch
        norm's moments in the Winograd output pass (nn/conv_winograd.py)."""
        return (conv_direct.fuse(self, layer) or conv_patches.fuse(self, layer)
                or conv_winograd.fuse(self, layer))

    def unfuse_next(self):
        """Run the next layer's pass apart again: for a caller that reads this layer's own
        output (style transfer's activations), not the pooled one."""
        if self.pool is not None:
            self.pool.fused, self.pool = False, None

    def describe(self):
        return self._describe(f"{self.f}x{self.f}x{self.n_C}", self.padding, self.activation)


@register("depthwise_conv2d")
class DepthwiseConv2D(_Weighted):
    def __init__(self, size, stride=1, padding="valid", activation="linear", bias=True, init=None):
        super().__init__(activation, bias, init)
        self.f, self.stride = _positive_int(size, "size"), _positive_int(stride, "stride")
        self.padding = padding

    def build(self, input_shape, ctx):
        self._geometry(input_shape, self.f, self.stride, self.padding)
        f, self.n_C = self.f, input_shape[2]
        self._init_params(ctx, (f, f, self.n_C), f * f, f * f, self.n_C)
        self.input_shape, self.output_shape = tuple(input_shape), (self.n_H, self.n_W, self.n_C)
        return self.output_shape

    # small_gemms stays False though it has no GEMM, so a step with one keeps BLAS's threads
    # and Numba's regions. In kernels/duo.py's step (its passes and the 1x1 convs' GEMMs on
    # the main thread and the helper) mobilenet_v2_small's step went 26.9 -> 28.2 ms
    # (alternating in one process, Dec 5 2026): those passes stream memory, two threads on
    # them were no faster than one, and the helper's lateness rule then ran the step's other
    # passes on one thread too.

    def forward(self, A_prev, training):
        A_prev = np.ascontiguousarray(A_prev, dtype=self.params["W"].dtype)
        Z = np.empty((A_prev.shape[0], self.n_H, self.n_W, self.n_C), dtype=A_prev.dtype)
        kernel(kdepthwise, "depthwise_forward", Z.size * self.f * self.f)(
            A_prev, self.params["W"], self.stride, self.pad_top, self.pad_left, Z)
        A = self._activate(Z, training)
        if training:
            self.cache = (A_prev,) + self.cache
        return A

    def backward(self, dA):
        A_prev, *self.cache = self.cache
        dZ = self._dZ(dA)
        dA_prev = np.empty_like(A_prev)
        W = self.params["W"]
        dW_per_example = np.empty((A_prev.shape[0],) + W.shape, dtype=dZ.dtype)
        W_rot = np.ascontiguousarray(W[::-1, ::-1])  # stride 1's input gradient (kernels/depthwise.py)
        kernel(kdepthwise, "depthwise_backward", dZ.size * self.f * self.f)(
            np.ascontiguousarray(dZ), A_prev, W, W_rot, self.stride, self.pad_top, self.pad_left,
            dA_prev, dW_per_example)
        dW_per_example.sum(axis=0, out=self.grads["W"])
        self.cache = None
        return dA_prev

    def describe(self):
        return self._describe(f"{self.f}x{self.f}", self.padding, self.activation)


class _Pool(NoGemm, _Windowed):
    def __init__(self, size, stride=None, padding="valid"):
        super().__init__()
        if padding not in ("valid", "same"):
            raise ValueError(f"a pool's padding is valid or same, got {padding!r}")
        self.f = _positive_int(size, "size")
        self.stride = self.f if stride is None else _positive_int(stride, "stride")
        self.padding = padding

    def build(self, input_shape, ctx):
        self._geometry(input_shape, self.f, self.stride, self.padding)
        self.input_shape = tuple(input_shape)
        self.output_shape = (self.n_H, self.n_W, input_shape[2])
        return self.output_shape

    def _output(self, A_prev):
        return np.empty((A_prev.shape[0],) + self.output_shape, dtype=A_prev.dtype)

    def describe(self):
        return self._describe(f"{self.f}x{self.f}", self.padding)


@register("maxpool")
class MaxPool(_Pool):
    fused = False  # set by the Conv2D before it that runs this pass in its own (fuse_next)
    # an array of the input's shape to add into the next backward's dA_prev, set by a
    # skip_concat (its gradient of the skip); left in place when this pool does not take it
    addend = None
    # (m, n_H_prev, n_W_prev, ld) to copy the input into (its first channels) in the next
    # training forward, set by a skip_concat (its concatenation); left when not taken
    copy_into = None

    def build(self, input_shape, ctx):
        self.fused = False  # a model built again decides again
        return super().build(input_shape, ctx)

    def forward(self, A_prev, training):
        if self.fused and A_prev.shape[1:] == self.output_shape:  # pooled already
            self.cache = FUSED if training else self.cache
            return A_prev
        A_prev = np.ascontiguousarray(A_prev)
        A = self._output(A_prev)
        if not training:  # no backward pass: the maxima without their positions
            kernel(kpool, "maxpool_infer", A_prev.size * MAXPOOL_WORK)(
                A_prev, self.f, self.stride, self.pad_top, self.pad_left, A)
            return A
        argmax = np.empty(A.shape, dtype=np.int32)
        if A.shape[3] < kpool.VECTOR_CHANNELS:
            kernel(kpool, "maxpool_forward_narrow", A_prev.size * MAXPOOL_WORK)(
                A_prev, self.f, self.stride, self.pad_top, self.pad_left, A, argmax)
        else:
            into = self.copy_into
            # only where the windows visit every input cell once
            tiles = (self.f == self.stride and self.pad_top == self.pad_left == 0
                     and A_prev.shape[1] == A.shape[1] * self.f
                     and A_prev.shape[2] == A.shape[2] * self.f)
            if (tiles and into is not None and into.shape[:3] == A_prev.shape[:3]
                    and into.dtype == A_prev.dtype and into.flags.c_contiguous):
                self.copy_into = None  # taken
            else:
                into = np.empty((0, 1, 1, 1), dtype=A_prev.dtype)
            kernel(kpool, "maxpool_forward", A_prev.size * MAXPOOL_WORK)(
                A_prev, self.f, self.stride, self.pad_top, self.pad_left, A, argmax, into)
        self.cache = (A_prev.shape, argmax)
        return A

    def backward(self, dA):
        if self.cache is FUSED:  # the Conv2D before runs this pass in its backward
            self.cache = None
            return dA
        shape, argmax = self.cache
        dA_prev = np.empty(shape, dtype=dA.dtype)
        addend, none = self.addend, np.empty((0, 1, 1, 1), dtype=dA.dtype)
        takes = addend is not None and addend.shape == shape and addend.dtype == dA.dtype
        if takes:
            self.addend = None  # taken: the skip_concat adds nothing after
        kernel(kpool, "maxpool_backward", dA_prev.size * MAXPOOL_WORK)(
            np.ascontiguousarray(dA), argmax, dA_prev, addend if takes else none)
        self.cache = None
        return dA_prev


@register("avgpool")
class AvgPool(_Pool):
    def forward(self, A_prev, training):
        A_prev = np.ascontiguousarray(A_prev)
        A = self._output(A_prev)
        kernel(kpool, "avgpool_forward", A_prev.size)(
            A_prev, self.f, self.stride, self.pad_top, self.pad_left, A)
        if training:
            self.cache = A_prev.shape
        return A

    def backward(self, dA):
        dA_prev = np.empty(self.cache, dtype=dA.dtype)
        kernel(kpool, "avgpool_backward", dA_prev.size)(
            np.ascontiguousarray(dA), self.f, self.stride, self.pad_top, self.pad_left, dA_prev)
        self.cache = None
        return dA_prev


@register("global_avgpool")
class GlobalAvgPool(NoGemm, Layer):
    def build(self, input_shape, ctx):
        self.input_shape = _image_shape(self, input_shape)
        self.output_shape = (input_shape[2],)
        return self.output_shape

    def forward(self, A_prev, training):
        A_prev = np.ascontiguousarray(A_prev)
        A = np.empty((A_prev.shape[0], A_prev.shape[3]), dtype=A_prev.dtype)
        kglobal.global_avgpool_forward(A_prev, A)
        return A

    def backward(self, dA):
        n_H, n_W, n_C = self.input_shape
        dA_prev = np.empty((dA.shape[0], n_H, n_W, n_C), dtype=dA.dtype)
        dA_prev[...] = (dA / (n_H * n_W))[:, None, None, :]
        return dA_prev
