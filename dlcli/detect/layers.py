"""Layers of the detection family: `skip_concat` (U-Net's skip) and the reshape-only `yolo` head."""

from __future__ import annotations

import numpy as np

from ..nn import register
from ..nn.conv_blocks import Branches
from ..nn.conv_blocks import _run_back


@register("skip_concat")
class SkipConcat(Branches):
    """`{type: skip_concat, layers: [...]}`: [input, layers(input)] along channels.

    A U-Net level: the block's input is the skip, `layers` go down (pool, convs), deeper
    levels, and back up (a transpose conv) to the input's height and width. It is `branches`
    with an identity first path; parameters are named `<i>.layers.<j>.<name>`.
    """

    def __init__(self, layers):
        super().__init__([[], layers])

    def children(self):
        return [(f"layers.{j}", layer) for j, layer in enumerate(self.paths[1])]

    def build(self, input_shape, ctx):
        try:
            return super().build(input_shape, ctx)
        except ValueError:
            inner = self.paths[1][-1].output_shape
            raise ValueError(f"skip_concat: its layers map {tuple(input_shape)} to {inner}; "
                             "heights and widths must agree with the input") from None

    def backward(self, dA):
        """The skip's gradient added into the layers' input gradient in place: one pass over
        the skip's channels, where branches' split-and-sum copied them three times."""
        n_C = self.input_shape[-1]
        dA_prev = _run_back(self.paths[1], np.ascontiguousarray(dA[..., n_C:]))
        if dA_prev.flags.writeable and dA_prev.flags.c_contiguous:
            return np.add(dA_prev, dA[..., :n_C], out=dA_prev)
        return dA_prev + dA[..., :n_C]

    def describe(self):
        inner = self.paths[1]
        return (f"skip_concat input + [{inner[0].describe()} ... {inner[-1].describe()}] "
                f"({len(inner)} layers)")


from . import yolo  # noqa: E402,F401  (registers the "yolo" head)
