"""`{builtin: glyphs}`: synthetic symbols for one-shot learning, like ${DLCLI_DATA}/glyphs.

Each identity is a fixed random symbol of 2-4 smooth strokes (quadratic Bezier curves); each
example draws it anew: control points jittered, then rotated +-15 degrees, scaled 0.85-1.15,
sheared, shifted, a stroke width of 1.5-3 px, pixel noise. White on black, uint8
(n, size, size, 1). Strokes are rendered as the distance of each pixel to the curve's segments,
anti-aliased over one pixel, a few hundred images at a time (the (images, segments, pixels)
distances are the memory).

Labels: identities 0..classes-1 in `data.train`; a held-out source draws other symbols (its own
random stream) and numbers them from 100,000 (test), 200,000 (dev), 300,000 (train_dev), so that
they are never taken for training identities.
"""

from __future__ import annotations

import numpy as np

FIRST_LABEL = {"data.train": 0, "data.test": 100_000, "data.dev": 200_000, "data.train_dev": 300_000}
POINTS = 10   # samples along each stroke: 9 segments
BLOCK = 256   # images rendered at once


def glyphs(rng, n: int, noise: float, classes: int, size: int, key: str = "data.train"):
    strokes = rng.integers(2, 5, classes)                       # 2-4 strokes per symbol
    control = rng.uniform(0.12, 0.88, (classes, 4, 3, 2))       # quadratic Bezier control points
    y = np.arange(n) % classes
    rng.shuffle(y)
    x = np.empty((n, size, size, 1), dtype=np.uint8)
    for s in range(0, n, BLOCK):
        ids = y[s:s + BLOCK]
        x[s:s + BLOCK, :, :, 0] = _render(rng, control[ids], strokes[ids], noise, size)
    return x, (y + FIRST_LABEL.get(key, 0)).astype(np.int64)


def _render(rng, control, strokes, noise, size):
    m = len(control)
    pts = control + rng.normal(0, 0.03, control.shape)          # stroke jitter
    t = np.linspace(0, 1, POINTS)[:, None]
    # B(t) = (1-t)^2 P0 + 2 t (1-t) P1 + t^2 P2, for every image and stroke: (m, 4, POINTS, 2)
    curve = ((1 - t) ** 2 * pts[:, :, None, 0] + 2 * t * (1 - t) * pts[:, :, None, 1]
             + t ** 2 * pts[:, :, None, 2])
    angle = np.deg2rad(rng.uniform(-15, 15, m))
    scale = rng.uniform(0.85, 1.15, m)
    shear = rng.uniform(-0.15, 0.15, m)
    shift = rng.uniform(-0.08, 0.08, (m, 2))
    c, s_ = np.cos(angle), np.sin(angle)
    A = np.stack([np.stack([c, -s_ + shear * c], -1), np.stack([s_, c + shear * s_], -1)], -2)
    A = A * scale[:, None, None]
    curve = np.einsum("mij,mkpj->mkpi", A, curve - 0.5) + 0.5 + shift[:, None, None, :]
    curve = curve * size                                            # to pixels
    a, b = curve[:, :, :-1], curve[:, :, 1:]                        # segments (m, 4, 9, 2)
    used = np.arange(4)[None, :] < strokes[:, None]                 # (m, 4)
    a, b = a.reshape(m, -1, 2), b.reshape(m, -1, 2)
    valid = np.repeat(used, POINTS - 1, axis=1)                     # (m, segments)
    grid = (np.stack(np.meshgrid(np.arange(size), np.arange(size), indexing="xy"), -1)
            .reshape(-1, 2) + 0.5)                                  # (pixels, 2) as (x, y)
    ab = (b - a)[:, :, None, :]                                     # (m, S, 1, 2)
    ap = grid[None, None] - a[:, :, None, :]                        # (m, S, P, 2)
    u = np.clip(np.sum(ap * ab, -1) / np.maximum(np.sum(ab * ab, -1), 1e-9), 0, 1)
    d = np.linalg.norm(ap - u[..., None] * ab, axis=-1)             # (m, S, P)
    d = np.where(valid[:, :, None], d, np.inf).min(axis=1)          # (m, P)
    width = rng.uniform(1.5, 3.0, (m, 1))
    ink = np.clip(width / 2 + 0.5 - d, 0, 1)
    ink = ink + rng.normal(0, noise, ink.shape) if noise else ink
    return (np.clip(ink, 0, 1) * 255).round().astype(np.uint8).reshape(m, size, size)
