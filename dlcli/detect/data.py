"""Box and mask sources, the scenes generators, and augmentation that moves targets too.

Sources (SPEC "Detection and segmentation"):
- `{path: FILE.npz|h5, x: KEY, boxes: KEY}`: boxes (m, K, 5) rows `[class, b_x, b_y, b_h, b_w]`,
  class -1 for padding rows;
- `{path: ..., x: KEY, masks: KEY}`: masks (m, n_H, n_W) class ids, 0 for background;
- `{builtin: shapes_detection, n, size, max_objects, classes}` and
  `{builtin: shapes_segmentation, n, size, max_objects, classes}`: scenes of the same kind as
  ${DLCLI_DATA}/scenes (1..max_objects circles, squares, triangles on a colour gradient, the
  later on top), drawn with array operations from the recipe's seed.
The targets ride along as the split's `y`, so shuffling, carving and augmentation keep them
with their images, and mAP is measured against the exact boxes (not a grid's encoding).
"""

from __future__ import annotations

import numpy as np

from ..data.shapes import MASKS, NAMES
from ..errors import BadInput

DENSE_BUILTINS = {"shapes_detection": "boxes", "shapes_segmentation": "masks",
                  "shapes_landmarks": "landmarks"}
DEFAULTS = {"n": 1000, "size": 64, "max_objects": 3, "classes": 3, "empty": 0.0}


def is_dense_source(src) -> bool:
    """A source whose targets are boxes or masks (read here, not as class labels)."""
    return isinstance(src, dict) and (src.get("builtin") in DENSE_BUILTINS
                                      or src.get("boxes") is not None or src.get("masks") is not None)


def target_kind(y) -> str | None:
    """"boxes" for (m, K, 5) float rows, "masks" for (m, n_H, n_W) integers, else None."""
    y = np.asarray(y)
    if y.ndim == 3 and y.shape[2] == 5 and y.dtype.kind == "f":
        return "boxes"
    if y.ndim == 3 and y.dtype.kind in "iu":
        return "masks"
    return None


def class_names(kind: str, classes: int) -> list:
    names = list(NAMES[:classes])
    return ["background"] + names if kind == "masks" else names


# -- reading ----------------------------------------------------------------------------------
def read_dense_source(src: dict, key: str, rng):
    """(x, y, class_names, origin) of a box / mask source, checked."""
    if src.get("builtin") is not None:
        x, y, names, origin = _generate(src, key, rng)
        if DENSE_BUILTINS[src["builtin"]] != "landmarks":
            x, y = check_dense(x, y, DENSE_BUILTINS[src["builtin"]], key, origin, key)
        return x, y, names, origin
    from ..data.files import READERS, read_file_source
    if (src.get("boxes") is None) == (src.get("masks") is None):
        raise BadInput("a detection source names boxes: KEY, a segmentation source masks: KEY, "
                       "not both", key=key)
    kind = "boxes" if src.get("boxes") is not None else "masks"
    x, y, names, origin = read_file_source({**src, "y": src[kind]}, key)
    x, y = check_dense(x, y, kind, f"{key}.{kind}", origin, key)
    return x, y, names, origin


def check_dense(x, y, kind, y_key, origin, key):
    x, y = np.asarray(x), np.asarray(y)
    if x.dtype.kind not in "biuf" or x.ndim not in (3, 4):
        raise BadInput(f"{origin}: x must be images (m, n_H, n_W, n_C), got {x.dtype} {x.shape}",
                       key=f"{key}.x")
    if x.ndim == 3:
        x = x[..., None]
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise BadInput(f"{origin}: x holds NaN or infinite values", key=f"{key}.x")
    if len(y) != len(x):
        raise BadInput(f"{origin}: x has {len(x)} examples but {kind} has {len(y)}", key=y_key)
    if kind == "boxes":
        if y.ndim != 3 or y.shape[2] != 5 or y.dtype.kind not in "biuf":
            raise BadInput(f"{origin}: boxes must be numbers (m, K, 5) rows [class, b_x, b_y, b_h, "
                           f"b_w], got {y.dtype} {y.shape}", key=y_key)
        y = y.astype(np.float32)
        if not np.isfinite(y).all():
            raise BadInput(f"{origin}: boxes hold NaN or infinite values", key=y_key)
        cls = y[..., 0]
        if (cls != np.round(cls)).any() or (cls < -1).any():
            raise BadInput(f"{origin}: a box's class must be an integer >= 0 (-1 for padding)",
                           key=y_key)
        real = y[cls >= 0]
        if ((real[:, 1:] < -1e-6) | (real[:, 1:] > 1 + 1e-6)).any() or (real[:, 3:] <= 0).any():
            raise BadInput(f"{origin}: box coordinates must be fractions of the image in [0, 1] "
                           "with positive height and width", key=y_key)
        return x, y
    if y.ndim != 3 or y.shape[1:] != x.shape[1:3] or y.dtype.kind not in "biuf":
        raise BadInput(f"{origin}: masks must be (m, n_H, n_W) = (m, {x.shape[1]}, {x.shape[2]}) "
                       f"class ids, got {y.dtype} {y.shape}", key=y_key)
    if (y != np.round(y)).any() or (y < 0).any():
        raise BadInput(f"{origin}: mask values must be class ids 0, 1, 2, ...", key=y_key)
    return x, y.astype(np.int64)


def _generate(src, key, rng):
    name = src["builtin"]
    p = {**DEFAULTS, **{k: src[k] for k in DEFAULTS if src.get(k) is not None}}
    if src.get("noise") is not None:
        raise BadInput(f"builtin {name} takes no 'noise' (its parameters: {', '.join(DEFAULTS)})",
                       key=f"{key}.noise")
    size = p["size"]
    if isinstance(size, list) and len(size) == 2:  # [n_H, n_W]: the course's U-Net is 96x128
        p["size"], p["width"] = size
    empty = p.pop("empty")
    if isinstance(empty, bool) or not isinstance(empty, (int, float)) or not 0 <= empty < 1:
        raise BadInput(f"must be a fraction in [0, 1), got {empty!r}", key=f"{key}.empty")
    lows = {"n": 1, "size": 16, "max_objects": 1, "classes": 1}
    if "width" in p:
        lows["width"] = 16
    for k, lo in lows.items():
        v = p[k]
        hi = 3 if k == "classes" else None
        if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi and v > hi):
            bound = f"between {lo} and {hi}" if hi else f"at least {lo}"
            raise BadInput(f"must be an integer {bound}, got {v!r}", key=f"{key}.{k}")
    kind = DENSE_BUILTINS[name]
    if kind == "landmarks":
        x, y = triangles(rng, p["n"], p["size"])
        return x, y, None, f"builtin {name}"
    x, boxes, masks = scenes(rng, p["n"], (p["size"], p.get("width", p["size"])),
                             p["max_objects"], p["classes"], empty)
    return x, boxes if kind == "boxes" else masks, class_names(kind, p["classes"]), f"builtin {name}"


# -- the scenes generator ----------------------------------------------------------------------
def scenes(rng, n: int, size, max_objects: int = 3, classes: int = 3, empty: float = 0.0):
    """x (n, n_H, n_W, 3) uint8, boxes (n, max_objects, 5) float32, masks (n, n_H, n_W) uint8;
    `size` is n_H = n_W or a pair (n_H, n_W).

    Each image holds 1..max_objects shapes of half-extent 8-22% of the image, the later drawn
    on top; a box bounds its shape's visible pixels; an object hidden entirely is a padding row.
    A fraction `empty` of the images holds no object (localization's p_c = 0 examples).
    """
    size_h, size_w = (size, size) if np.isscalar(size) else size
    size = min(size_h, size_w)
    rows_grid = np.arange(size_h, dtype=np.float64)
    grid = np.arange(size_w, dtype=np.float64)
    angle = rng.uniform(0, 2 * np.pi, n)[:, None, None]
    ramp = ((grid[None, None, :] - size_w / 2) * np.cos(angle)
            + (rows_grid[None, :, None] - size_h / 2) * np.sin(angle)) / size + 0.5  # ~0..1 across
    c0 = rng.uniform(40, 215, (n, 3))
    c1 = np.clip(c0 + rng.uniform(-40, 40, (n, 3)), 0, 255)
    image = c0[:, None, None, :] + (c1 - c0)[:, None, None, :] * ramp[..., None]
    count = rng.integers(1, max_objects + 1, n)
    if empty:
        count[rng.random(n) < empty] = 0
    owner = np.full((n, size_h, size_w), -1, dtype=np.int64)  # the object on top at each pixel
    cls = np.full((n, max_objects), -1, dtype=np.int64)
    for j in range(max_objects):
        present = count > j
        cls[present, j] = rng.integers(0, classes, int(present.sum()))
        h = rng.uniform(0.08, 0.22, n) * size
        cy = h + rng.random(n) * (size_h - 1 - 2 * h)
        cx = h + rng.random(n) * (size_w - 1 - 2 * h)
        dy = rows_grid[None, :, None] - cy[:, None, None]
        dx = grid[None, None, :] - cx[:, None, None]
        inside = np.zeros((n, size_h, size_w), dtype=bool)
        for k in range(classes):
            sel = cls[:, j] == k
            inside[sel] = MASKS[k](dx[sel], dy[sel], h[sel, None, None])
        centre = image[np.arange(n), cy.astype(int), cx.astype(int)]
        colour = (centre + rng.integers(64, 193, (n, 3))) % 256
        image = np.where(inside[..., None], colour[:, None, None, :], image)
        owner[inside] = j
    image += rng.normal(0, 3, image.shape)
    x = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    boxes = np.full((n, max_objects, 5), -1, dtype=np.float32)
    boxes[..., 1:] = 0
    for j in range(max_objects):
        boxes[:, j] = boxes_of(owner == j, np.where(cls[:, j] >= 0, cls[:, j], -1))
    masks = np.where(owner >= 0, np.take_along_axis(cls, np.maximum(owner, 0).reshape(n, -1), 1)
                     .reshape(owner.shape) + 1, 0).astype(np.uint8)
    return x, boxes, masks


def boxes_of(visible, classes) -> np.ndarray:
    """(n, 5) `[class, b_x, b_y, b_h, b_w]` bounding each (n, H, W) boolean mask; -1 when empty."""
    n, size_h, size_w = visible.shape
    rows, cols = visible.any(axis=2), visible.any(axis=1)
    top, bottom = rows.argmax(1), size_h - 1 - rows[:, ::-1].argmax(1)
    left, right = cols.argmax(1), size_w - 1 - cols[:, ::-1].argmax(1)
    out = np.column_stack([classes, (left + right + 1) / 2 / size_w, (top + bottom + 1) / 2 / size_h,
                           (bottom - top + 1) / size_h, (right - left + 1) / size_w]).astype(np.float32)
    empty = ~rows.any(axis=1) | (np.asarray(classes) < 0)
    out[empty] = [-1, 0, 0, 0, 0]
    return out


def triangles(rng, n: int, size: int):
    """Landmark data: x (n, size, size, 3) uint8 with one triangle each, rotated up to 45
    degrees either way; y (n, 6) float32 its vertices (apex, then the base's two ends) as
    (x, y) fractions of the image, pixel centres at (i + 0.5) / size."""
    grid = np.arange(size, dtype=np.float64)
    h = rng.uniform(0.15, 0.3, n) * size
    cy, cx = size / 2 + rng.uniform(-1, 1, (2, n)) * (size / 2 - 1.5 * h)
    theta = rng.uniform(-np.pi / 4, np.pi / 4, n)
    cos, sin = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
    dy = grid[None, :, None] - cy[:, None, None]
    dx = grid[None, None, :] - cx[:, None, None]
    inside = MASKS[2](cos * dx + sin * dy, -sin * dx + cos * dy, h[:, None, None])
    background = rng.uniform(30, 225, (n, 3))
    colour = (background + rng.integers(64, 193, (n, 3))) % 256
    image = np.where(inside[..., None], colour[:, None, None, :], background[:, None, None, :])
    image += rng.normal(0, 3, image.shape)
    x = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    # the triangle's corners in its own frame (apex up), turned back into the image's
    local = np.array([[0.0, -1.0], [-1.0, 1.0], [1.0, 1.0]])  # (dx, dy) in units of h
    c, s_ = np.cos(theta)[:, None], np.sin(theta)[:, None]
    ux, uy = local[None, :, 0] * h[:, None], local[None, :, 1] * h[:, None]
    vx = cx[:, None] + c * ux - s_ * uy
    vy = cy[:, None] + s_ * ux + c * uy
    y = np.stack([(vx + 0.5) / size, (vy + 0.5) / size], axis=-1).reshape(n, 6)
    return x, y.astype(np.float32)


# -- augmentation that moves the targets -------------------------------------------------------
def flip_horizontal(x, y, rng):
    flip = rng.random(len(x)) < 0.5
    x, y = x.copy(), y.copy()
    x[flip] = x[flip, :, ::-1]
    if target_kind(y) == "boxes":
        sel = flip[:, None] & (y[..., 0] >= 0)
        y[..., 1][sel] = 1 - y[..., 1][sel]
    else:
        y[flip] = y[flip, :, ::-1]
    return x, y


def random_crop(x, y, rng, pad):
    """Zero-pad then crop back at a random offset; masks pad with background, boxes shift and
    are clipped to the image (a box pushed wholly out becomes a padding row)."""
    m, n_h, n_w, _ = x.shape
    top, left = rng.integers(0, 2 * pad + 1, size=(2, m))
    idx = np.arange(m)[:, None, None]
    rows = top[:, None, None] + np.arange(n_h)[None, :, None]
    cols = left[:, None, None] + np.arange(n_w)[None, None, :]
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))[idx, rows, cols]
    if target_kind(y) != "boxes":
        return x, np.pad(y, ((0, 0), (pad, pad), (pad, pad)))[idx, rows, cols]
    y = y.copy()
    dx, dy = ((pad - left) / n_w)[:, None], ((pad - top) / n_h)[:, None]
    x1 = np.clip(y[..., 1] - y[..., 4] / 2 + dx, 0, 1)
    x2 = np.clip(y[..., 1] + y[..., 4] / 2 + dx, 0, 1)
    y1 = np.clip(y[..., 2] - y[..., 3] / 2 + dy, 0, 1)
    y2 = np.clip(y[..., 2] + y[..., 3] / 2 + dy, 0, 1)
    real = y[..., 0] >= 0
    y[..., 1], y[..., 2], y[..., 3], y[..., 4] = (x1 + x2) / 2, (y1 + y2) / 2, y2 - y1, x2 - x1
    gone = real & ((y[..., 3] <= 0) | (y[..., 4] <= 0))
    y[gone] = [-1, 0, 0, 0, 0]
    return x, y


def augment_with_targets(x, y, specs, rng):
    """The recipe's augmentations on images and their boxes or masks together."""
    from ..data.augment import color_shift, parse_augment
    from ..data import augment as plain
    out_x, out_y = x, y
    for fn, args in parse_augment(specs):
        if fn is plain.flip_horizontal:
            out_x, out_y = flip_horizontal(out_x, out_y, rng)
        elif fn is plain.random_crop:
            out_x, out_y = random_crop(out_x, out_y, rng, *args)
        elif fn is color_shift:
            out_x = color_shift(out_x, rng, *args)
        else:
            raise BadInput(f"{fn.__name__} cannot move boxes or masks yet", key="data.augment")
    return out_x, out_y
