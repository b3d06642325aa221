"""Losses. A Loss owns the network's output activation where the two belong together, so it
works on the last layer's pre-activation `z` (logits) and never takes log(0) at saturation:

    class Loss:
        name: str                 # "binary_crossentropy" | "categorical_crossentropy" | "mse" | "multi_label"
        output_activation: str    # "sigmoid" | "softmax" | "linear"
        def check(self, output_shape)      # ValueError when the network's output cannot feed it
        def forward(self, z, y) -> float   # mean cost over the m examples of the batch; caches for backward
        def backward(self) -> np.ndarray   # d cost / d z, same shape as z (so already divided by m)
        def output(self, z) -> np.ndarray  # what the network outputs (probabilities for classifiers)
        def predict(self, out) -> np.ndarray   # labels, in the same layout as y
        def error(self, out, y) -> float   # 1 - accuracy (multi_label: mean over present labels)

    make_loss(name, last_activation) -> Loss   # name "auto": sigmoid -> binary_crossentropy,
                                               # softmax -> categorical_crossentropy, linear -> mse

A new loss subclasses Loss and registers itself with `@register`. Costs are the course's
-(1/m) sum(...) over the examples; gradients keep z's dtype.
"""

from __future__ import annotations

import numpy as np

from ..kernels import losses as k
from .activations import sigmoid, softmax

LOSSES: dict[str, type] = {}


def register(cls):
    LOSSES[cls.name] = cls
    return cls


def _labels(y) -> np.ndarray:
    """Class labels (m,) from (m,) or (m, 1)."""
    y = np.asarray(y)
    return y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y


class Loss:
    name = "loss"
    output_activation = "linear"

    def check(self, output_shape: tuple) -> None:
        pass

    def forward(self, z, y) -> float:
        raise NotImplementedError

    def backward(self) -> np.ndarray:
        raise NotImplementedError

    def output(self, z) -> np.ndarray:
        return z

    def predict(self, out) -> np.ndarray:
        raise NotImplementedError

    def error(self, out, y) -> float:
        return float(np.mean(self.predict(out) != _labels(y)))


class _CrossEntropy(Loss):
    """A cross-entropy whose kernel leaves d cost / d z while it computes the cost."""

    def _cost(self, kernel, z, y) -> float:
        z = np.ascontiguousarray(z)
        self.cache = np.empty_like(z)
        return float(kernel(z, np.ascontiguousarray(y), self.cache))

    def backward(self):
        return self.cache


@register
class BinaryCrossentropy(_CrossEntropy):
    """-(1/m) sum(y log a + (1 - y) log(1 - a)), a = sigmoid(z), z (m, 1), y (m,) in {0, 1}.

    From the logits: -log a = softplus(-z) and -log(1 - a) = softplus(z), finite for any z.
    """

    name = "binary_crossentropy"
    output_activation = "sigmoid"

    def check(self, output_shape):
        if tuple(output_shape)[-1:] != (1,):
            raise ValueError(f"binary cross-entropy needs one sigmoid unit, the network gives "
                             f"{tuple(output_shape)}: use softmax with one unit per class, or "
                             "loss: multi_label for several yes/no labels")

    def forward(self, z, y):
        y = _labels(y)
        if z.shape[-1] != 1 or y.shape != z.shape[:1]:
            raise ValueError(f"binary cross-entropy needs logits (m, 1) and labels (m,), "
                             f"got {z.shape} and {y.shape}")
        return self._cost(k.sigmoid_crossentropy, z, y.astype(z.dtype).reshape(z.shape))

    def output(self, z):
        return sigmoid(z)

    def predict(self, out):
        return (out.reshape(-1) > 0.5).astype(np.int64)


@register
class CategoricalCrossentropy(_CrossEntropy):
    """-(1/m) sum log a[y], a = softmax(z) over z (m, C), y (m,) in 0..C-1; log-softmax from the logits."""

    name = "categorical_crossentropy"
    output_activation = "softmax"

    def forward(self, z, y):
        self._shape = None
        if z.ndim == 3:  # a sequence (m, T, C): the sum over unmasked steps (nn/sequence.py)
            from .sequence import sequence_crossentropy
            cost, self.cache = sequence_crossentropy(z, y)
            return cost
        y = _labels(y).astype(np.intp, copy=False)
        if z.ndim > 2 and y.shape == z.shape[:-1]:
            # per pixel (segmentation, SPEC): every pixel a row, the mean over pixels and
            # examples; many rows of few classes run across the rows (kernels/segment.py)
            from ..kernels.segment import pixel_crossentropy
            self._shape = z.shape
            return self._cost(pixel_crossentropy, z.reshape(-1, z.shape[-1]), y.reshape(-1))
        if z.ndim != 2 or y.shape != z.shape[:1]:
            raise ValueError(f"categorical cross-entropy needs logits (m, C) and labels (m,), "
                             f"got {z.shape} and {y.shape}")
        return self._cost(k.softmax_crossentropy, z, y)

    def backward(self):
        return self.cache if self._shape is None else self.cache.reshape(self._shape)

    def output(self, z):
        return softmax(z)

    def predict(self, out):
        return out.argmax(axis=-1)

    def error(self, out, y):
        if out.ndim == 3:  # token error over the unmasked steps
            from .sequence import token_error
            return token_error(out, y)
        return super().error(out, y)


@register
class MeanSquaredError(Loss):
    """The mean of (z - y)^2 over every element, as PyTorch's MSELoss(reduction="mean").

    y is compared as numbers: (m,) labels against one output column, or one-hot against C
    columns; or targets of z's shape. Predictions: the argmax of several columns, the nearest
    integer of one; an error is a prediction off its target (an integer label, or a real
    target by more than 0.5 in some column).
    """

    name = "mse"
    output_activation = "linear"

    def _targets(self, z, y):
        y = np.asarray(y)
        if y.shape == z.shape:
            return y.astype(z.dtype)
        y = _labels(y)
        if y.shape != z.shape[:1] or z.ndim != 2:
            raise ValueError(f"mse needs targets of the output's shape {z.shape} or labels "
                             f"({z.shape[0]},), got {y.shape}")
        if z.shape[1] == 1:
            return y.astype(z.dtype).reshape(z.shape)
        onehot = np.zeros(z.shape, dtype=z.dtype)
        onehot[np.arange(z.shape[0]), y] = 1
        return onehot

    def forward(self, z, y):
        diff = z - self._targets(z, y)
        self.cache = diff
        return float(np.mean(diff * diff))

    def backward(self):
        diff = self.cache
        return diff * (2 / diff.size)

    def predict(self, out):
        if out.shape[-1] > 1:
            return out.argmax(axis=-1)
        return np.rint(out.reshape(-1)).astype(np.int64)

    def error(self, out, y):
        y = np.asarray(y)
        if y.dtype.kind in "iub":
            return super().error(out, y)
        off = np.abs(out - y.reshape(out.shape)) > 0.5
        return float(np.mean(off.reshape(off.shape[0], -1).any(axis=1)))


@register
class MultiLabel(BinaryCrossentropy):
    """(1/m) sum over examples of the binary cross-entropies of the present labels.

    y (m, k) holds 0/1, and -1 for "not labelled", which adds nothing to the cost or the
    gradient; the error is the mean over present labels of prediction != label.
    """

    name = "multi_label"

    def check(self, output_shape):
        pass  # any number of labels

    def forward(self, z, y):
        y = np.asarray(y)
        if y.shape != z.shape:
            raise ValueError(f"multi_label needs labels of the output's shape {z.shape}, got {y.shape}")
        return self._cost(k.sigmoid_crossentropy, z, y.astype(z.dtype))

    def predict(self, out):
        return (out > 0.5).astype(np.int64)

    def error(self, out, y):
        y = np.asarray(y)
        present = y >= 0
        if not present.any():
            return 0.0
        return float(np.mean(self.predict(out)[present] != y[present]))


AUTO = {"sigmoid": "binary_crossentropy", "softmax": "categorical_crossentropy", "linear": "mse"}


def make_loss(name, last_activation: str) -> Loss:
    """The loss a recipe names; `auto` picks it from the network's last activation. A loss
    with options is a mapping with `name` ({name: triplet, margin: 0.2})."""
    options = {}
    if isinstance(name, dict):
        options = {k: v for k, v in name.items() if k != "name"}
        name = name["name"]
    if name == "auto":
        if last_activation not in AUTO:
            raise ValueError(f"loss: auto needs a last activation of sigmoid, softmax or linear, "
                             f"got {last_activation}; name the loss")
        name = AUTO[last_activation]
    if name not in LOSSES:
        from ..detect import losses as _detect  # noqa: F401  (localization, yolo)
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; expected auto or one of {', '.join(LOSSES)}")
    loss = LOSSES[name](**options)
    if loss.output_activation != "linear" and last_activation not in (loss.output_activation, "linear"):
        raise ValueError(f"{name} applies {loss.output_activation} to the last layer's output "
                         f"itself: end with {loss.output_activation} or linear, not {last_activation}")
    return loss


from . import triplet  # noqa: E402,F401  (registers triplet and siamese_binary)
