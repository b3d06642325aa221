"""Contact sheets: a run's images as captioned tiles in one PNG, for `dlcli analyze errors
--sheet`, the detection error sheets and the report page's pictures."""

from __future__ import annotations

import io
import math

import numpy as np

from .errors import BadInput

TILE = 128      # pixels of the longer image side in a tile
CAPTION = 30    # pixels of text under each tile
PAD = 6


def sheet_grid(n: int) -> tuple[int, int]:
    """(rows, columns) of a contact sheet of n tiles: near square, filled row by row."""
    cols = math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


def sheet_size(n: int) -> tuple[int, int]:
    rows, cols = sheet_grid(n)
    return cols * (TILE + PAD) + PAD, rows * (TILE + CAPTION + PAD) + PAD


def display_images(x, data_cfg: dict) -> np.ndarray:
    """Model inputs -> uint8 (n, H, W, 3) pictures, undoing what the recipe did to them."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 2 and data_cfg.get("flatten"):
        x = _unflatten(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise BadInput(f"--sheet needs image data (m, n_H, n_W, n_C), but the run's inputs have "
                       f"shape {x.shape[1:]}", key="--sheet")
    if data_cfg.get("normalize"):
        # per-tile min-max: the train mean and std are not in the run directory
        lo = x.min(axis=(1, 2, 3), keepdims=True)
        span = x.max(axis=(1, 2, 3), keepdims=True) - lo
        x = (x - lo) / np.where(span > 0, span, 1) * 255
    else:
        x = x * float(data_cfg.get("scale") or 1)
        if x.max() <= 1:
            x = x * 255  # images stored in [0, 1]
    x = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    return np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x


def _unflatten(x) -> np.ndarray:
    """Flattened square images back to (n, s, s, c), c = 3 (RGB) or 1."""
    for c in (3, 1):
        s = math.isqrt(x.shape[1] // c)
        if s * s * c == x.shape[1]:
            return x.reshape(len(x), s, s, c)
    return x


def contact_sheet(images: np.ndarray, captions: list) -> bytes:
    """A PNG of the images as tiles, row by row, each with its caption lines under it."""
    from PIL import Image, ImageDraw, ImageFont
    width, height = sheet_size(len(images))
    _, cols = sheet_grid(len(images))
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for k, (image, caption) in enumerate(zip(images, captions)):
        tile = Image.fromarray(image)
        factor = TILE / max(tile.size)
        tile = tile.resize((max(1, round(tile.width * factor)), max(1, round(tile.height * factor))),
                           Image.NEAREST if factor >= 1 else Image.BILINEAR)
        x0 = PAD + (k % cols) * (TILE + PAD)
        y0 = PAD + (k // cols) * (TILE + CAPTION + PAD)
        sheet.paste(tile, (x0 + (TILE - tile.width) // 2, y0 + (TILE - tile.height) // 2))
        draw.multiline_text((x0 + 2, y0 + TILE + 2), "\n".join(caption), fill="black", font=font)
    out = io.BytesIO()
    sheet.save(out, format="PNG")
    return out.getvalue()
