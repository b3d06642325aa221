"""The layer contract every layer follows (Keras-like, in the course's vocabulary).

A layer maps a batch `x` of shape (m, *input_shape) to `y` of shape (m, *output_shape).
`forward(x, training)` keeps in `self.cache` what `backward(dy)` needs; `backward(dy)`
returns dx and leaves each parameter's gradient in `self.grads` under the parameter's own
name (`grads["W"]` is the course's dW). Shapes never include the batch axis, so sequences
(m, T, n) and images (m, n_H, n_W, n_C) need nothing new here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


# From this many multiply-adds (m n k) a GEMM keeps BLAS's threads in a step (`small_gemms`).
# A step whose every GEMM is smaller (LeNet-5's largest: 256 x 400 x 120 = 12.3M) runs on one
# BLAS thread: a second thread gained nothing on GEMMs of 30-300 us and, woken for each,
# took the core the step's serial Numba kernels needed next (branch s6-lenet, Dec 3 2026).
# The MLP's 64 x 784 x 512 (25.7M) keeps two.
SMALL_GEMM = 1 << 24


class Scratch:
    """A layer's arrays for one training step, reused while the shape stays the same."""

    def __init__(self):
        self._arrays: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple, dtype, training: bool = True) -> np.ndarray:
        if not training:
            return np.empty(shape, dtype=dtype)
        a = self._arrays.get(name)
        if a is None or a.shape != shape or a.dtype != dtype:
            a = self._arrays[name] = np.empty(shape, dtype=dtype)
        return a


class NoGemm:
    """Mixin of the layers with no GEMM at all (activations, pools, flatten, batch norm)."""

    def small_gemms(self, m: int) -> bool:
        return True


@dataclass
class BuildContext:
    """What a layer needs to create its parameters."""

    dtype: np.dtype = np.dtype(np.float32)
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    init: str = "he"  # the model's default initialisation; a layer's own `init` wins
    dropout_rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(1))


class Layer:
    regularized: tuple[str, ...] = ()  # parameter names L2 applies to (weights, never biases)

    def __init__(self):
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}  # saved with the params, never trained
        self.trainable = True
        self.cache = None
        self.input_shape: tuple | None = None
        self.output_shape: tuple | None = None
        # False when nothing upstream uses dx (the model's first layer): backward may then
        # skip computing it and return None, as a conv's col2im pass is costly
        self.needs_input_grad = True

    @property
    def kind(self) -> str:
        return getattr(self, "type_name", type(self).__name__.lower())

    def build(self, input_shape: tuple, ctx: BuildContext) -> tuple:
        """Create the parameters for inputs of `input_shape`; return the output shape."""
        self.input_shape = self.output_shape = tuple(input_shape)
        return self.output_shape

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dy: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def small_gemms(self, m: int) -> bool:
        """Whether every GEMM of this layer's training step at batch m is small enough to run
        on one BLAS thread (dlcli/train.py `small_step_blas`); a layer that does not say keeps
        the process's BLAS threads."""
        return False

    def children(self) -> list[tuple[str, "Layer"]]:
        """Nested layers as (name, layer); their parameters are named `<name>.<param>`."""
        return []

    def set_trainable(self, flag: bool) -> None:
        self.trainable = flag
        for _, child in self.children():
            child.set_trainable(flag)

    def parameter_count(self) -> int:
        own = sum(p.size for p in self.params.values())
        return own + sum(c.parameter_count() for _, c in self.children())

    def describe(self) -> str:
        return self.kind


def walk(layer: Layer, prefix: str = ""):
    """Yield (prefix, layer) for a layer and every layer nested in it, parents first."""
    yield prefix, layer
    for name, child in layer.children():
        yield from walk(child, f"{prefix}{name}.")


def zeros_like_params(layer: Layer) -> None:
    layer.grads = {k: np.zeros_like(v) for k, v in layer.params.items()}
