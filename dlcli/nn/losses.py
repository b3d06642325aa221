"""Losses. (Interface stub: the nn work fills this module in.)

A Loss owns the network's output activation where the two belong together, so it works on
the last layer's pre-activation `z` (logits):

    class Loss:
        name: str                 # "binary_crossentropy" | "categorical_crossentropy" | "mse" | "multi_label"
        output_activation: str    # "sigmoid" | "softmax" | "linear"
        def forward(self, z, y) -> float   # mean cost over the m examples of the batch; caches for backward
        def backward(self) -> np.ndarray   # d cost / d z, same shape as z
        def output(self, z) -> np.ndarray  # what the network outputs (probabilities for classifiers)
        def predict(self, out) -> np.ndarray   # labels, in the same layout as y
        def error(self, out, y) -> float   # 1 - accuracy (multi_label: mean over present labels)

    make_loss(name, last_activation) -> Loss   # name "auto": sigmoid -> binary_crossentropy,
                                               # softmax -> categorical_crossentropy, linear -> mse
"""

from __future__ import annotations


class Loss:
    name = "loss"
    output_activation = "linear"


def make_loss(name: str, last_activation: str) -> Loss:
    raise NotImplementedError
