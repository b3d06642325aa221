"""Data augmentation of training mini-batches of images (m, n_H, n_W, n_C).

The notes' common methods: mirroring, random cropping and colour shifting. Each draws one
random decision per example (or per example and channel), all at once, from the caller's
Generator, so a run's batches are reproducible.
"""

from __future__ import annotations

import numpy as np

from ..errors import BadInput

KEY = "data.augment"


def flip_horizontal(x, rng):
    """Each example mirrored left-right with probability 1/2."""
    flip = rng.random(len(x)) < 0.5
    out = x.copy()
    out[flip] = x[flip, :, ::-1]
    return out


def random_crop(x, rng, pad):
    """Zero-pad `pad` pixels on each side, then crop back to n_H x n_W at a random offset."""
    m, n_h, n_w, _ = x.shape
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    top, left = rng.integers(0, 2 * pad + 1, size=(2, m))
    rows = top[:, None, None] + np.arange(n_h)[None, :, None]
    cols = left[:, None, None] + np.arange(n_w)[None, None, :]
    return padded[np.arange(m)[:, None, None], rows, cols]


def color_shift(x, rng, limit):
    """Add to each channel of each example one shift drawn uniformly from [-limit, limit]."""
    shift = rng.uniform(-limit, limit, size=(len(x), 1, 1, x.shape[3]))
    return x + shift.astype(x.dtype)


# name: (function, its one parameter's recipe name, default, smallest value)
AUGMENTATIONS = {
    "flip_horizontal": (flip_horizontal, None, None, None),
    "random_crop": (random_crop, "pad", 4, 0),
    "color_shift": (color_shift, "max", 0.1, 0),
}
USAGE = "flip_horizontal, {random_crop: {pad: 4}} or {color_shift: {max: 0.1}}"


def parse_augment(specs) -> list:
    """The recipe's `data.augment` list as [(function, args)], checked."""
    if specs is None:
        return []
    if not isinstance(specs, list):
        raise BadInput(f"must be a list of augmentations ({USAGE}), got {specs!r}", key=KEY)
    return [_parse_one(spec, f"{KEY}.{i}") for i, spec in enumerate(specs)]


def _parse_one(spec, key):
    name, params = (spec, {}) if isinstance(spec, str) else _single_item(spec, key)
    if name not in AUGMENTATIONS:
        raise BadInput(f"unknown augmentation {name!r}; use {USAGE}", key=key)
    fn, param, default, least = AUGMENTATIONS[name]
    params = {} if params is None else params
    if not isinstance(params, dict) or set(params) - {param}:
        takes = f"{{{param}: ...}}" if param else "no parameters"
        raise BadInput(f"{name} takes {takes}, got {params!r}", key=key)
    if param is None:
        return fn, ()
    value = params.get(param, default)
    integer = isinstance(default, int)
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not value >= least:
        what = "an integer" if integer else "a number"
        raise BadInput(f"must be {what} >= {least}, got {value!r}", key=f"{key}.{name}.{param}")
    return fn, (value,)


def _single_item(spec, key):
    if not isinstance(spec, dict) or len(spec) != 1:
        raise BadInput(f"each augmentation is a name or a one-key mapping ({USAGE}), got {spec!r}",
                       key=key)
    return next(iter(spec.items()))


def augment_batch(x, specs, rng) -> np.ndarray:
    """A new array: the image batch `x` with the recipe's augmentations applied in order."""
    ops = parse_augment(specs)
    if x.ndim != 4:
        raise BadInput(f"augmentation needs images (m, n_H, n_W, n_C), got examples of shape "
                       f"{x.shape[1:]}", key=KEY)
    out = x.copy()
    for fn, args in ops:
        out = fn(out, rng, *args)
    return out
