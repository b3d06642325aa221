"""Small RGB images of simple shapes, labelled by shape: a data set a CNN can learn in seconds.

Every image has a random background colour, one shape of random size, position and colour,
and optional pixel noise. Whole batches are drawn with array operations (no per-image loop)
so thousands of images take milliseconds.
"""

from __future__ import annotations

import numpy as np

NAMES = ("circle", "square", "triangle", "cross")
MIN_CONTRAST = 64  # each channel of the shape differs from the background by at least this


def circle(dx, dy, h):
    return dx * dx + dy * dy <= h * h


def square(dx, dy, h):
    # 0.8 h makes its area close to the circle's
    return np.maximum(np.abs(dx), np.abs(dy)) <= 0.8 * h


def triangle(dx, dy, h):
    # apex up at dy = -h, base 2h wide at dy = +h (image rows grow downwards)
    return (np.abs(dy) <= h) & (np.abs(dx) <= (dy + h) / 2)


def cross(dx, dy, h):
    ax, ay, arm = np.abs(dx), np.abs(dy), h / 3
    return ((ax <= arm) & (ay <= h)) | ((ay <= arm) & (ax <= h))


MASKS = (circle, square, triangle, cross)


def shapes(rng, n, noise, classes, size):
    """x (n, size, size, 3) uint8 0..255, y (n,) int64 in NAMES order, balanced classes."""
    y = rng.permutation(np.arange(n) % classes).astype(np.int64)
    h = rng.uniform(0.15, 0.4, n) * size  # half the shape's extent, in pixels
    cy, cx = (h + rng.random((2, n)) * (size - 1 - 2 * h))[:, :, None, None]
    grid = np.arange(size, dtype=np.float64)
    dy = grid[None, :, None] - cy
    dx = grid[None, None, :] - cx
    h = h[:, None, None]
    inside = np.zeros((n, size, size), dtype=bool)
    for k in range(classes):
        sel = y == k
        inside[sel] = MASKS[k](dx[sel], dy[sel], h[sel])
    background = rng.integers(0, 256, (n, 3))
    foreground = (background + rng.integers(MIN_CONTRAST, 257 - MIN_CONTRAST, (n, 3))) % 256
    x = np.where(inside[..., None], foreground[:, None, None, :].astype(np.uint8),
                 background[:, None, None, :].astype(np.uint8))
    if noise:
        x = np.clip(x + rng.normal(scale=noise * 255, size=x.shape), 0, 255).astype(np.uint8)
    return x, y
