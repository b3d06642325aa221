"""A residual block's own passes (nn/conv_blocks.py): a = relu(z + shortcut) forward, and
dz = da where a > 0 backward, each one flat loop over the block's output.

Why: the block added with numpy into a fresh array (8 MB at resnet_small's 64x32x32x32: its
page faults at first touch) and then ran relu over that array in place, where LLVM's runtime
alias check sends the activation kernel to its scalar loop (kernels/activations.py); backward
allocated dZ and the sum dA_prev afresh too. resnet_small's two blocks spent 6.5 ms forward
and ~4 ms backward each outside their layers (profile, Dec 3 2026, load ~1.2). Here the sum and
the relu are one pass into an array the block keeps from step to step, its output distinct
from both inputs so that the loop vectorizes; memory-bound, so serial (kernels/batchnorm.py).
Measured (profile, load 2.3-4): the blocks' own forward 6.5 -> 2.4 ms each; the step 170.8 ->
143.0 ms with the batch norms' fused relu (kernels/batchnorm.py).
"""

from __future__ import annotations

from numba import njit


@njit(cache=True)
def add_relu(z, shortcut, a):
    """a = max(z + shortcut, 0), all flat and of one length; a apart from both inputs."""
    for j in range(a.shape[0]):
        s = z[j] + shortcut[j]
        a[j] = s if s > 0 else s * 0


@njit(cache=True)
def relu_backward(da, a, dz):
    """dz = da where a > 0, else 0 (relu'(z) as the course has it), all flat."""
    for j in range(dz.shape[0]):
        dz[j] = da[j] if a[j] > 0 else da[j] * 0
