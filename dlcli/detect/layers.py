"""Layers of the detection family: `skip_concat` (U-Net's skip) and the reshape-only `yolo` head."""

from __future__ import annotations

import numpy as np

from ..nn import register
from ..nn.base import Scratch
from ..nn.conv import MaxPool
from ..nn.conv_blocks import Branches
from ..nn.conv_blocks import _run, _run_back
from ..nn.conv_transpose import Conv2DTranspose


@register("skip_concat")
class SkipConcat(Branches):
    """`{type: skip_concat, layers: [...]}`: [input, layers(input)] along channels.

    A U-Net level: the block's input is the skip, `layers` go down (pool, convs), deeper
    levels, and back up (a transpose conv) to the input's height and width. It is `branches`
    with an identity first path; parameters are named `<i>.layers.<j>.<name>`.
    """

    def __init__(self, layers):
        super().__init__([[], layers])
        self.scratch = Scratch()  # the output of the last training step, when the last layer fuses

    def children(self):
        return [(f"layers.{j}", layer) for j, layer in enumerate(self.paths[1])]

    def build(self, input_shape, ctx):
        try:
            return super().build(input_shape, ctx)
        except ValueError:
            inner = self.paths[1][-1].output_shape
            raise ValueError(f"skip_concat: its layers map {tuple(input_shape)} to {inner}; "
                             "heights and widths must agree with the input") from None

    def _fused(self):
        """The last inner layer when it writes into the concatenation itself (a linear
        conv2d_transpose, the U-Net's up-sampling: nn/conv_transpose.py `fuses`), else None."""
        inner = self.paths[1]
        last = inner[-1] if inner else None
        return last if isinstance(last, Conv2DTranspose) and last.fuses() else None

    def forward(self, A_prev, training):
        """[A_prev, layers(A_prev)]: with a fusing last layer, it writes its channels straight
        into the output (no copy of them, no bias pass), which a training step keeps from
        step to step as the conv layers keep theirs."""
        last = self._fused()
        if last is None:
            return super().forward(A_prev, training)
        shape = (A_prev.shape[0],) + self.output_shape
        dtype = last.params["W"].dtype
        out = self.scratch.get("A", shape, dtype, training)
        n_C = self.input_shape[-1]
        last.into = (out, n_C)
        first = self.paths[1][0]
        pool = first if training and isinstance(first, MaxPool) else None
        if pool is not None:  # it copies the skip into out as it reads it (MaxPool.copy_into)
            pool.copy_into = out
        try:
            _run(self.paths[1], A_prev, training)
            copied = pool is not None and pool.copy_into is None
        finally:
            last.into = None
            if pool is not None:
                pool.copy_into = None
        if not copied:
            out[..., :n_C] = A_prev
        return out

    def backward(self, dA):
        """The skip's gradient added into the layers' input gradient in place: one pass over
        the skip's channels, where branches' split-and-sum copied them three times; or, with
        a max pool first (the U-Net's levels), written by the pool's backward as its dA_prev's
        start (nn/conv.py MaxPool.addend: no pass of its own). A fusing last layer reads its
        gradient from dA's channels (no copy of them)."""
        n_C = self.input_shape[-1]
        last = self._fused()
        first = self.paths[1][0] if self.paths[1] else None
        pool = first if isinstance(first, MaxPool) else None
        if pool is not None:
            pool.addend = dA[..., :n_C]
        try:
            if last is None:
                dA_prev = _run_back(self.paths[1], np.ascontiguousarray(dA[..., n_C:]))
            else:
                dA = np.ascontiguousarray(dA, dtype=last.params["W"].dtype)
                last.grad_at = (dA, n_C)
                try:
                    dA_prev = _run_back(self.paths[1], dA[..., n_C:])
                finally:
                    last.grad_at = None
            if pool is not None and pool.addend is None:  # the pool took it
                return dA_prev
        finally:
            if pool is not None:
                pool.addend = None
        if dA_prev.flags.writeable and dA_prev.flags.c_contiguous:
            return np.add(dA_prev, dA[..., :n_C], out=dA_prev)
        return dA_prev + dA[..., :n_C]

    def describe(self):
        inner = self.paths[1]
        return (f"skip_concat input + [{inner[0].describe()} ... {inner[-1].describe()}] "
                f"({len(inner)} layers)")


from . import yolo  # noqa: E402,F401  (registers the "yolo" head)
