"""Conv2D's direct path (kernels/direct.py): few input channels at stride 1, a model's first layer.

No unrolling: the kernels convolve padded input planes directly, the bias and a piecewise
activation (linear, relu, leaky_relu) fused into their last pass, and g'(z) and db into the
filter gradient's first. `Conv2D.build` takes this path for fewer than 4 input channels at
stride 1, for inference always and for training where no input gradient is wanted (so its
backward computes dW and db only).

A 2x2 stride-2 max pool right after such a layer (LeNet's) runs inside it (`fuse`): the
forward writes the pooled output and each window's argmax instead of the activation, and the
backward takes the pool's gradient, so the activation is never written nor read back and the
pool's own passes go (LeNet-5 at batch 64, load ~2: conv + pool 2.96 -> 1.27 ms a step). The
MaxPool layer stays in the model, with its name and shapes, and passes its input on when it
is already pooled (its output shape).

Inside a training step of small GEMMs the pooled pair runs in up to 16 runs of examples that
the main thread and kernels/duo.py's helper thread take in turn (`_duo`), as the blocked
path's pooled pair does (nn/conv_patches.py). Whole LeNet-5 steps, both layers so, against
the serial passes, interleaved in one process (Dec 3 2026, 18:06 UTC, load 3.1-3.4 from
other jobs): with the helper given a core (the process at real-time priority, `chrt -f 1`,
as on an idle machine) batch 64 3.10 -> 1.95 ms, 256 11.7 -> 6.9 ms; at normal priority
beside the other jobs, where the second core was not free, 3.10 -> 3.15 ms and 11.57 ->
11.62 ms (the helper left out of all but 15 of 1,020 and 10 of 540 passes).
"""

from __future__ import annotations

import numpy as np

from . import activations

# A training cache's marker where the patches would be: the pooled output and argmax follow
POOLED = "pooled"

# From this much work the direct kernels take their parallel drivers (a batch of ~9,000 for
# LeNet's first layer: none of LeNet's batches, inference's 1,024 included). At LeNet's sizes
# they did not pay on this shared 2-core machine (Dec 3, load 1.4-3): batch 64 forward 0.51
# against 0.46 ms serial, backward 0.87 against 0.60; batch 256 forward 2.14 against 2.06,
# backward 2.09 against 2.76; evaluating 8,000 images 0.37-0.42 s against 0.22-0.23 s, and
# the training epoch after it 0.69-0.80 s against 0.58-0.64 s. In a whole batch-256 step the
# OpenBLAS GEMMs after them ran up to 10x slower (the next conv's forward 120 ms against 13.5
# with the serial drivers): the two thread pools fought for the cores. They also take 3-6 s
# more to compile.
DIRECT_PARALLEL_MIN = 1 << 30


def _kernel(name: str, work: int):
    from ..kernels import direct as kdirect
    return getattr(kdirect, name + "_parallel" if work >= DIRECT_PARALLEL_MIN else name)


def _duo(m, work):
    """(the Duo, runs of examples) when a pooled pass inside a step of small GEMMs goes to
    both threads (kernels/duo.py), else (None, 1)."""
    if work >= DIRECT_PARALLEL_MIN:
        return None, 1
    from ..kernels.duo import for_pass
    return for_pass(work, m)


def fuse(layer, after) -> bool:
    """Take `after`'s pass into `layer`'s if it is a 2x2 stride-2 unpadded max pool and the
    layer runs the direct path with a piecewise activation to an even output size."""
    from .conv import MaxPool
    if (isinstance(after, MaxPool) and after.f == 2 and after.stride == 2 and layer.direct
            and after.pad_top == 0 and after.pad_left == 0 and layer.n_H % 2 == 0
            and layer.n_W % 2 == 0 and layer.activation in activations.PIECEWISE):
        layer.pool, after.fused = after, True
    return layer.pool is not None


def forward(layer, A_prev, Z, training):
    """The layer's output (pooled if fused) from A_prev, Z its buffer; the cache for backward."""
    work = Z.size * layer.f * layer.f * layer.n_C_prev
    W = layer.params["W"]
    if layer.activation not in activations.PIECEWISE:  # sigmoid, tanh: numpy's (nn/activations.py)
        _kernel("direct_forward", work)(A_prev, W, layer.pad_top, layer.pad_left, Z)
        A = layer._activate(Z, training)
        if training:
            layer.cache = (A_prev, None) + layer.cache
        return A
    b = layer.params["b"] if layer.bias else np.zeros(layer.n_C, dtype=Z.dtype)
    code = activations.CODES[layer.activation]
    if layer.pool is None:
        _kernel("direct_forward_act", work)(A_prev, W, b, code, layer.pad_top, layer.pad_left, Z)
        if training:
            layer.cache = (A_prev, None, Z)
        return Z
    A = np.empty((Z.shape[0],) + layer.pool.output_shape, dtype=Z.dtype)
    argmax = np.empty(A.shape, dtype=np.int8)
    duo, runs = _duo(Z.shape[0], work)
    if duo is not None:
        from ..kernels import direct_duo
        duo.run(direct_duo.direct_forward_pool_duo, runs, A_prev, W, b, code, layer.pad_top,
                layer.pad_left, A, argmax)
    else:
        _kernel("direct_forward_pool", work)(A_prev, W, b, code, layer.pad_top, layer.pad_left,
                                             A, argmax)
    if training:
        layer.cache = (A_prev, POOLED, A, argmax)
    return A


def backward(layer, A_prev, pooled, dA):
    """dW and db into layer.grads from the cache the forward left (its first two items taken
    off); no input gradient, so None."""
    work = A_prev.shape[0] * layer.n_H * layer.n_W * layer.n_C * layer.f * layer.f * layer.n_C_prev
    if layer.activation not in activations.PIECEWISE:
        dZ = np.ascontiguousarray(layer._dZ(dA))
        _kernel("direct_filter_grad", work)(A_prev, dZ, layer.pad_top, layer.pad_left, layer.grads["W"])
        layer.cache = None
        return None
    A, *argmax = layer.cache
    layer.cache = None
    db = layer.grads["b"] if layer.bias else np.empty(layer.n_C, dtype=A.dtype)
    dA = np.ascontiguousarray(dA, dtype=A.dtype)
    code = activations.CODES[layer.activation]
    if pooled is None:
        _kernel("direct_backward_act", work)(A_prev, dA, A, code, layer.pad_top, layer.pad_left,
                                             layer.grads["W"], db)
    else:
        duo, runs = _duo(A_prev.shape[0], work)
        if duo is not None:
            from ..kernels import direct_duo
            dW = layer.grads["W"]
            dW_part = np.empty((runs, dW.size // layer.n_C, layer.n_C), dtype=A.dtype)
            db_part = np.empty((runs, layer.n_C), dtype=A.dtype)
            duo.run(direct_duo.direct_backward_pool_duo, runs, A_prev, dA, A, argmax[0], code,
                    layer.pad_top, layer.pad_left, layer.f, dW_part, db_part)
            direct_duo.fold_parts(dW_part, db_part, dW, db)
        else:
            _kernel("direct_backward_pool", work)(A_prev, dA, A, argmax[0], code, layer.pad_top,
                                                  layer.pad_left, layer.grads["W"], db)
    return None
