"""Blocks that hold layers: `residual` (the notes' skip connection, with a 1x1 projection when
shapes differ) and `branches` (Inception's parallel paths, concatenated on channels). They wire
nested layers; every convolution's arithmetic stays in the layers they hold (nn/conv.py). A
residual block with relu adds and activates in one pass into arrays it keeps from step to step
(kernels/residual.py), and its chain fuses as a model's does (a batch norm's relu, a pool).
An identity block whose first layer is a Winograd conv has that conv add the shortcut's
gradient into its dA_prev in its own backward pass (nn/conv_winograd.py `takes_addend`)
instead of a numpy sum after it: one pass over an 8 MB array fewer a block at resnet_small's
64x32x32x32 (whole steps, 20 alternating, load 4.3-4.6: CPU 164.3 -> 161.4 ms).
A block whose last layer is a trainable batch norm (without a relu of its own) and whose
activation is relu has that batch norm add the shortcut and activate in its normalising pass
(BatchNorm.adds_into, kernels/batchnorm.py): the sum pass and the batch norm's output array
are gone (resnet_small's blocks forward 26 -> 22 ms each, load ~4, with the batch norms'
changes in kernels/batchnorm.py)."""

from __future__ import annotations

import numpy as np

from . import activations, build_layer, conv_winograd, register
from .base import Layer
from .conv import Conv2D
from ..kernels import residual as kres  # as nn/conv.py's kernels: seen by kernels/ahead.py


def _build_chain(layers, shape, ctx):
    """Build nested layers in order (recording each one's shapes); return the last output shape."""
    for layer in layers:
        in_shape, shape = shape, tuple(layer.build(shape, ctx))
        layer.input_shape, layer.output_shape = in_shape, shape
    for layer, after in zip(layers, layers[1:]):
        if hasattr(layer, "fuse_next"):  # a layer that runs the next one's pass (model.py)
            layer.fuse_next(after)
    return shape


def _run(layers, x, training):
    for layer in layers:
        x = layer.forward(x, training)
    return x


def _small_gemms(block, m) -> bool:
    """A block has no GEMM of its own: its layers' (dlcli/train.py `small_step_blas`)."""
    return all(layer.small_gemms(m) for _, layer in block.children())


def _run_back(layers, dy):
    for layer in reversed(layers):
        dy = layer.backward(dy)
    return dy


@register("residual")
class Residual(Layer):
    """a = g(z + shortcut(a_prev)): the block's layers compute z, the shortcut is the identity
    or, where shapes differ (or `projection: true`), a 1x1 conv with the stride that matches."""

    def __init__(self, layers, activation="relu", projection="auto"):
        super().__init__()
        if projection not in ("auto", True, False):
            raise ValueError(f"projection is auto, true or false, got {projection!r}")
        self.layers = [build_layer(s) for s in layers]
        self.activation, self.projection_mode = activations.check(activation), projection
        self.projection = None
        self.buffers_kept = {}  # a, dz, da_prev: reused from one training step to the next

    def _kept(self, name, shape, dtype):
        """An array kept from step to step (a fresh 8 MB one pays its page faults at first
        touch, kernels/residual.py)."""
        buf = self.buffers_kept.get(name)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = self.buffers_kept[name] = np.empty(shape, dtype=dtype)
        return buf

    def children(self):
        named = [(f"layers.{i}", layer) for i, layer in enumerate(self.layers)]
        return named + ([("projection", self.projection)] if self.projection else [])

    def small_gemms(self, m):
        return _small_gemms(self, m)

    def build(self, input_shape, ctx):
        self.input_shape = shape = tuple(input_shape)
        self.output_shape = z_shape = _build_chain(self.layers, shape, ctx)
        if self.projection_mode is True or (self.projection_mode == "auto" and z_shape != shape):
            self.projection = self._build_projection(shape, z_shape, ctx)
        elif z_shape != shape:
            raise ValueError(f"residual block maps {shape} to {z_shape}; an identity shortcut "
                             "needs equal shapes (use projection: auto or true)")
        return z_shape

    def _build_projection(self, shape, z_shape, ctx):
        if len(shape) != 3 or len(z_shape) != 3:
            raise ValueError(f"a projection shortcut needs images, got {shape} -> {z_shape}")
        stride = max(1, -(-shape[0] // z_shape[0]))
        projection = Conv2D(z_shape[2], 1, stride=stride, padding="valid", bias=True)
        out = _build_chain([projection], shape, ctx)
        if out != z_shape:
            raise ValueError(f"no 1x1 strided shortcut maps {shape} to the block's {z_shape}")
        return projection

    def forward(self, A_prev, training):
        shortcut = self.projection.forward(A_prev, training) if self.projection else A_prev
        last = self.layers[-1] if self.layers else None
        if self.activation == "relu" and hasattr(last, "adds_into"):
            x = _run(self.layers[:-1], A_prev, training)
            if last.adds_into(x, shortcut, training):
                # the last batch norm adds the shortcut and activates in its own pass
                A = self._kept("a", x.shape, x.dtype)
                last.forward(x, training, addend=shortcut, out=A)
                self.cache = A
                return A
            Z = last.forward(x, training)
        else:
            Z = _run(self.layers, A_prev, training)
        if self.activation == "relu" and Z.shape == shortcut.shape and Z.dtype == shortcut.dtype:
            A = (self._kept("a", Z.shape, Z.dtype) if training
                 else np.empty(Z.shape, dtype=Z.dtype))
            kres.add_relu(np.ascontiguousarray(Z).reshape(-1),
                          np.ascontiguousarray(shortcut).reshape(-1), A.reshape(-1))
        else:
            Z = Z + shortcut
            A = activations.forward(self.activation, Z, out=Z)
        if training:
            self.cache = A
        return A

    def backward(self, dA):
        A, self.cache = self.cache, None
        if self.activation == "relu":
            dZ = self._kept("dz", A.shape, A.dtype)
            kres.relu_backward(np.ascontiguousarray(dA, dtype=A.dtype).reshape(-1),
                               A.reshape(-1), dZ.reshape(-1))
        else:
            dZ = activations.backward(self.activation, dA, A)
        first = self.layers[0] if self.layers else None
        if (self.projection is None and isinstance(first, Conv2D)
                and conv_winograd.takes_addend(first, dZ.shape, dZ.dtype)):
            # the identity shortcut's gradient added in the first conv's own backward pass
            # (kernels/winograd_grad.py): one pass over dA_prev fewer
            first.winograd_buffers["addend"] = dZ
            return _run_back(self.layers, dZ)
        dA_prev = _run_back(self.layers, dZ)
        shortcut = self.projection.backward(dZ) if self.projection else dZ
        if dA_prev.shape != shortcut.shape or dA_prev.dtype != shortcut.dtype:
            return dA_prev + shortcut
        return np.add(dA_prev, shortcut, out=self._kept("da_prev", dA_prev.shape, dA_prev.dtype))

    def describe(self):
        inner = ", ".join(layer.describe() for layer in self.layers)
        shortcut = "projection" if self.projection else "identity"
        return f"residual [{inner}] + {shortcut} {self.activation}"


@register("branches")
class Branches(Layer):
    """Inception: every path sees the same input; outputs are concatenated on channels."""

    def __init__(self, paths):
        super().__init__()
        if not paths:
            raise ValueError("branches needs at least one path")
        self.paths = [[build_layer(s) for s in path] for path in paths]

    def children(self):
        return [(f"paths.{p}.{j}", layer)
                for p, path in enumerate(self.paths) for j, layer in enumerate(path)]

    def small_gemms(self, m):
        return _small_gemms(self, m)

    def build(self, input_shape, ctx):
        self.input_shape = tuple(input_shape)
        shapes = [_build_chain(path, self.input_shape, ctx) for path in self.paths]
        if len({s[:-1] for s in shapes}) != 1:
            raise ValueError(f"branch outputs must agree on all but channels, got {shapes}")
        self.splits = np.cumsum([s[-1] for s in shapes])[:-1]
        self.output_shape = shapes[0][:-1] + (sum(s[-1] for s in shapes),)
        return self.output_shape

    def forward(self, A_prev, training):
        return np.concatenate([_run(path, A_prev, training) for path in self.paths], axis=-1)

    def backward(self, dA):
        parts = np.split(dA, self.splits, axis=-1)
        return sum(_run_back(path, np.ascontiguousarray(d)) for path, d in zip(self.paths, parts))

    def describe(self):
        return f"branches ({len(self.paths)} paths)"
