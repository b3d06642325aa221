"""The course's 2-D toy sets, generated from a numpy Generator (no download, no scikit-learn).

Each returns x (n, 2) float64 and y (n,) int64. `planar` and `spiral` keep their recipes'
class-by-class order; `moons`, `circles` and `blobs` are shuffled as scikit-learn's are.
The draws come in the course utilities' order, so given np.random.RandomState(k) in place
of the course's np.random.seed(k), planar, moons and circles give the course's very data.
"""

from __future__ import annotations

import numpy as np


def class_sizes(n: int, classes: int) -> np.ndarray:
    """n split as evenly as possible, the first classes taking the remainder."""
    return n // classes + (np.arange(classes) < n % classes)


def labels_for(sizes) -> np.ndarray:
    return np.repeat(np.arange(len(sizes)), sizes).astype(np.int64)


def shuffled(rng, x, y):
    order = rng.permutation(len(y))
    return x[order], y[order]


def planar(rng, n, noise, classes):
    """The flower of planar_utils.load_planar_dataset: two interleaved sets of petals r = a sin 4t."""
    sizes = class_sizes(n, 2)
    a = 4  # the petals' length
    x = []
    for j, size in enumerate(sizes):
        t = np.linspace(j * 3.12, (j + 1) * 3.12, size) + rng.standard_normal(size) * noise
        r = a * np.sin(4 * t) + rng.standard_normal(size) * noise
        x.append(np.c_[r * np.sin(t), r * np.cos(t)])
    return np.concatenate(x), labels_for(sizes)


def moons(rng, n, noise, classes):
    """Two interleaving half circles, as sklearn.datasets.make_moons."""
    n_out, n_in = class_sizes(n, 2)
    t_out, t_in = np.linspace(0, np.pi, n_out), np.linspace(0, np.pi, n_in)
    x = np.r_[np.c_[np.cos(t_out), np.sin(t_out)], np.c_[1 - np.cos(t_in), 1 - np.sin(t_in) - 0.5]]
    x, y = shuffled(rng, x, labels_for([n_out, n_in]))
    return x + rng.normal(scale=noise, size=x.shape), y


def circles(rng, n, noise, classes, factor=0.8):
    """A circle inside a larger one, as sklearn.datasets.make_circles: outer 0, inner 1."""
    n_out, n_in = class_sizes(n, 2)
    t_out = np.linspace(0, 2 * np.pi, n_out, endpoint=False)
    t_in = np.linspace(0, 2 * np.pi, n_in, endpoint=False)
    x = np.r_[np.c_[np.cos(t_out), np.sin(t_out)], factor * np.c_[np.cos(t_in), np.sin(t_in)]]
    x, y = shuffled(rng, x, labels_for([n_out, n_in]))
    return x + rng.normal(scale=noise, size=x.shape), y


def blobs(rng, n, noise, classes):
    """Gaussian blobs (std `noise`) around centres drawn in [-10, 10]^2, as make_blobs."""
    sizes = class_sizes(n, classes)
    centres = rng.uniform(-10, 10, size=(classes, 2))
    y = labels_for(sizes)
    x = centres[y] + rng.normal(scale=noise, size=(n, 2))
    return shuffled(rng, x, y)


def spiral(rng, n, noise, classes):
    """cs231n's spiral: one arm per class, radius 0..1, angle jittered by `noise`."""
    sizes = class_sizes(n, classes)
    x = []
    for j, size in enumerate(sizes):
        r = np.linspace(0.0, 1, size)
        t = np.linspace(j * 4, (j + 1) * 4, size) + rng.standard_normal(size) * noise
        x.append(np.c_[r * np.sin(t), r * np.cos(t)])
    return np.concatenate(x), labels_for(sizes)
