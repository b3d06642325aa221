"""`{builtin: NAME, n, noise, classes, size}` sources: checked parameters, defaults, a generator."""

from __future__ import annotations

from ..errors import BadInput
from . import toy2d
from .glyphs import glyphs
from .shapes import NAMES as SHAPE_NAMES, shapes

# name: (generator, defaults, the classes it allows)
GENERATORS = {
    "planar": (toy2d.planar, {"n": 400, "noise": 0.2, "classes": 2}, (2, 2)),
    "moons": (toy2d.moons, {"n": 300, "noise": 0.2, "classes": 2}, (2, 2)),
    "circles": (toy2d.circles, {"n": 300, "noise": 0.05, "classes": 2}, (2, 2)),
    "blobs": (toy2d.blobs, {"n": 300, "noise": 1.0, "classes": 3}, (2, 20)),
    "spiral": (toy2d.spiral, {"n": 300, "noise": 0.2, "classes": 3}, (2, 20)),
    "shapes": (shapes, {"n": 1200, "noise": 0.0, "classes": 3, "size": 28}, (2, len(SHAPE_NAMES))),
    # identities for one-shot learning (faces): classes = identities, n examples in all
    "glyphs": (glyphs, {"n": 10000, "noise": 0.05, "classes": 1000, "size": 28}, (2, 100_000)),
}
MIN_IMAGE_SIZE = 8


def generate(src: dict, rng, key: str):
    """(x, y, class_names) of a builtin source; `key` is its recipe path, e.g. data.train."""
    name = src.get("builtin")
    if name not in GENERATORS:
        raise BadInput(f"unknown builtin data set {name!r}; choose one of {', '.join(GENERATORS)}",
                       key=f"{key}.builtin")
    fn, defaults, (lo, hi) = GENERATORS[name]
    given = {p: src[p] for p in ("n", "noise", "classes", "size") if src.get(p) is not None}
    unused = set(given) - set(defaults)
    if unused:
        raise BadInput(f"builtin {name} takes no {sorted(unused)[0]!r} "
                       f"(its parameters: {', '.join(defaults)})", key=f"{key}.{sorted(unused)[0]}")
    p = {**defaults, **given}
    classes = _int(p["classes"], lo, hi, f"{key}.classes")
    n = _int(p["n"], classes, None, f"{key}.n")
    noise = _number(p["noise"], f"{key}.noise")
    if name == "shapes":
        size = _int(p["size"], MIN_IMAGE_SIZE, None, f"{key}.size")
        x, y = fn(rng, n, noise, classes, size)
        return x, y, list(SHAPE_NAMES[:classes])
    if name == "glyphs":
        size = _int(p["size"], MIN_IMAGE_SIZE, None, f"{key}.size")
        return (*fn(rng, n, noise, classes, size, key), None)
    x, y = fn(rng, n, noise, classes)
    return x, y, None


def with_defaults(src: dict) -> dict:
    """A builtin source with the values it is generated with written out and the keys it does
    not take dropped: what a run's recipe.yaml records."""
    entry = GENERATORS.get(src.get("builtin"))
    if entry is None:
        return src
    out = {"builtin": src["builtin"]}
    for k, default in entry[1].items():
        out[k] = src[k] if src.get(k) is not None else default
    out.update({k: v for k, v in src.items() if k not in out and v is not None})
    return out


def _int(value, lo, hi, key):
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        bounds = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise BadInput(f"must be an integer {bounds}, got {value!r}", key=key)
    return value


def _number(value, key):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise BadInput(f"must be a number >= 0, got {value!r}", key=key)
    return float(value)
