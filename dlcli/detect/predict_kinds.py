"""`dlcli predict` for detection and segmentation runs: two output kinds in predict.py's registry.

- detection (a yolo run): each input's boxes after score filtering and per-class NMS,
  `"boxes": [{"class", "label", "score", "box": [b_x, b_y, b_h, b_w]}]` (SPEC); with --out DIR,
  each image with its boxes drawn, labelled with class and score (`<input>_boxes.png`).
- segmentation (a per-pixel softmax run): the pixels of each class; with --out DIR each mask as
  a colour-coded PNG (`<input>_mask.png`, background black) and the mask over the image
  (`<input>_overlay.png`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..predict import OutputKind, _generic_table, register_kind

# background, then one colour per class (tab10-like, distinct on dark and light)
PALETTE = np.array([[0, 0, 0], [230, 25, 75], [60, 180, 75], [0, 130, 200], [245, 130, 48],
                    [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212],
                    [0, 128, 128], [220, 190, 255], [170, 110, 40], [255, 250, 200], [128, 0, 0],
                    [170, 255, 195], [128, 128, 0], [255, 215, 180], [0, 0, 128], [128, 128, 128],
                    [255, 255, 255], [255, 225, 25], [100, 100, 255]], dtype=np.uint8)


def colour_of(c: int) -> tuple:
    return tuple(int(v) for v in PALETTE[c % len(PALETTE)])


def _picture(run, batch, i) -> np.ndarray:
    """The input as an RGB uint8 image: the file as read, else the model input rescaled."""
    if batch.images and batch.images[i] is not None:
        img = np.asarray(batch.images[i])
    else:
        scale = float(run.config["data"].get("scale") or 1)
        img = np.clip(np.asarray(batch.x[i]) * scale, 0, 255).astype(np.uint8)
    if img.ndim == 2 or img.shape[-1] == 1:
        img = np.repeat(img.reshape(img.shape[0], img.shape[1], 1), 3, axis=2)
    return img[..., :3].astype(np.uint8)


def _stem(name: str, i: int) -> str:
    """`cat.png` -> `cat`; a data file's row `digits.npz[3]` -> `digits_3`."""
    base, _, row = name.partition("[")
    stem = Path(base).stem or f"input{i}"
    return f"{stem}_{row.rstrip(']')}" if row else stem


def draw_boxes(image, boxes, names=None, min_side=256):
    """A PIL image: `image` enlarged to at least `min_side`, each box drawn with class and score.
    boxes: dicts with class, score, box (b_x, b_y, b_h, b_w) as fractions."""
    from PIL import Image, ImageDraw
    h, w = image.shape[:2]
    k = max(1, int(np.ceil(min_side / min(h, w))))
    pic = Image.fromarray(image).resize((w * k, h * k), Image.NEAREST)
    draw = ImageDraw.Draw(pic)
    W, H = pic.size
    for b in boxes:
        b_x, b_y, b_h, b_w = b["box"]
        x1, y1, x2, y2 = (b_x - b_w / 2) * W, (b_y - b_h / 2) * H, (b_x + b_w / 2) * W, (b_y + b_h / 2) * H
        colour = (255, 255, 255) if b["class"] < 0 else colour_of(b["class"] + 1)  # -1: the truth
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=2)
        text = f"{b.get('label') or b['class']} {b['score']:.2f}"
        tw = draw.textlength(text)
        top = max(0, y1 - 12)
        draw.rectangle([x1, top, x1 + tw + 4, top + 12], fill=colour)
        draw.text((x1 + 2, top), text, fill=(0, 0, 0))
    return pic


@register_kind
class Detection(OutputKind):
    name = "detection"
    priority = 20

    @classmethod
    def applies(cls, run):
        return run.loss_name == "yolo"

    def outputs(self, run, batch):
        decoded = run.predict_proba(batch.x)
        return {"detections": run.model.loss.predict(decoded)}

    def entries(self, run, batch, outputs):
        out = []
        for rows in outputs["detections"]:
            out.append({"boxes": [{"class": int(r[0]), "label": run.label(int(r[0])),
                                   "score": float(r[1]), "box": [float(v) for v in r[2:6]]}
                                  for r in rows if r[0] >= 0]})
        return out

    def render(self, result, console):
        def cells(e):
            return ["; ".join(f"{b['label'] or b['class']} {b['score']:.2f} "
                              f"[{', '.join(f'{v:.3f}' for v in b['box'])}]" for b in e["boxes"]) or "—"]
        _generic_table(result, console, cells, ["boxes: class score [b_x, b_y, b_h, b_w]"])

    def table_rows(self, run, names, entries):
        rows = [[name, b["class"], b["label"] or "", b["score"], *b["box"]]
                for name, e in zip(names, entries) for b in e["boxes"]]
        return ["input", "class", "label", "score", "b_x", "b_y", "b_h", "b_w"], rows

    def write(self, run, batch, outputs, entries, out: Path):
        written = super().write(run, batch, outputs, entries, out)
        if out.suffix.lower() in (".csv", ".npz"):
            return written
        from ..runs import atomic_write_bytes
        import io
        for i, (name, e) in enumerate(zip(batch.names, entries)):
            buf = io.BytesIO()
            draw_boxes(_picture(run, batch, i), e["boxes"]).save(buf, format="PNG")
            target = out / f"{_stem(name, i)}_boxes.png"
            atomic_write_bytes(target, buf.getvalue())
            written.append(target)
        return written


@register_kind
class Segmentation(OutputKind):
    name = "segmentation"
    priority = 20

    @classmethod
    def applies(cls, run):
        return (run.loss_name == "categorical_crossentropy"
                and len(run.model.net.output_shape) == 3)

    def outputs(self, run, batch):
        return {"masks": run.predict_proba(batch.x).argmax(axis=-1).astype(np.uint8)}

    def entries(self, run, batch, outputs):
        n = run.model.net.output_shape[-1]
        out = []
        for mask in outputs["masks"]:
            counts = np.bincount(mask.reshape(-1), minlength=n) / mask.size
            out.append({"classes": [int(c) for c in np.flatnonzero(counts)],
                        "pixels": {str(run.label(c) or c): float(counts[c]) for c in np.flatnonzero(counts)}})
        return out

    def render(self, result, console):
        _generic_table(result, console, lambda e: [", ".join(f"{k} {v:.1%}" for k, v in e["pixels"].items())],
                       ["pixels per class"])

    def table_rows(self, run, names, entries):
        return ["input", "classes"], [[n, ";".join(map(str, e["classes"]))] for n, e in zip(names, entries)]

    def write(self, run, batch, outputs, entries, out: Path):
        if out.suffix.lower() in (".csv", ".npz"):
            return super().write(run, batch, outputs, entries, out)
        from PIL import Image
        import io
        from ..runs import atomic_write_bytes
        written = super().write(run, batch, outputs, entries, out)
        for i, (name, mask) in enumerate(zip(batch.names, outputs["masks"])):
            colours = PALETTE[mask % len(PALETTE)]
            picture = _picture(run, batch, i)
            if picture.shape[:2] != mask.shape:
                picture = np.asarray(Image.fromarray(picture).resize(mask.shape[::-1]))
            overlay = np.where(mask[..., None] > 0, (0.5 * picture + 0.5 * colours), picture)
            for suffix, arr in (("mask", colours), ("overlay", overlay.astype(np.uint8))):
                buf = io.BytesIO()
                Image.fromarray(arr).save(buf, format="PNG")
                target = out / f"{_stem(name, i)}_{suffix}.png"
                atomic_write_bytes(target, buf.getvalue())
                written.append(target)
        return written


@register_kind
class SlidingWindows(OutputKind):
    """A classifier with --windows: each image at its own size, the convolutional scan
    (windows.py); `"windows": {"window", "stride", "grid", "class", "probability"}` per image,
    and with --out DIR a heat map of each window's top probability (`<input>_windows.png`).
    Without --windows it is the classifier."""

    name = "sliding_windows"
    priority = 1  # just above the classifier's 0: any more specific kind still wins
    options = frozenset({"windows"})

    @classmethod
    def applies(cls, run):
        return run.loss_name in ("binary_crossentropy", "categorical_crossentropy") \
            and len(run.model.net.output_shape) == 1

    def _classifier(self):
        from ..predict import Classifier
        return Classifier(top=self.top, x_key=self.x_key)

    def read(self, run, inputs):
        if not self.windows:
            return self._classifier().read(run, inputs)
        import dataclasses
        from ..errors import BadInput
        from ..predict_inputs import Batch, image_to_raw, read_image
        if run.config["data"].get("normalize") or run.config["data"].get("flatten"):
            raise BadInput("--windows needs a run without normalize / flatten: the scan takes "
                           "the whole image", key="--windows")
        images, xs = [], []
        for name in inputs:
            from PIL import Image
            try:
                with Image.open(name) as im:
                    w, h = im.size
            except OSError as err:
                raise BadInput(f"--windows takes image files: {err}", file=name)
            spec = dataclasses.replace(run.spec, example_shape=(h, w, run.spec.example_shape[2]))
            image = read_image(Path(name), spec)
            images.append(image)
            xs.append(run.spec.preprocessing(image_to_raw(image, spec)[None])[0])
        return Batch([str(n) for n in inputs], xs, images, [Path(n) for n in inputs])

    def outputs(self, run, batch):
        if not self.windows:
            return self._classifier().outputs(run, batch)
        from .windows import convolutional_windows
        layers = run.config["model"]["layers"]
        scans = [convolutional_windows(run.model, layers, np.asarray(x)) for x in batch.x]
        return {"windows": [p for p, _ in scans], "stride": scans[0][1] if scans else 1}

    def entries(self, run, batch, outputs):
        if not self.windows:
            return self._classifier().entries(run, batch, outputs)
        from ..predict import class_probabilities
        window = list(run.model.input_shape[:2])
        out = []
        for p in outputs["windows"]:
            rows, cols = p.shape[:2]
            probs = class_probabilities(p.reshape(rows * cols, -1)).reshape(rows, cols, -1)
            out.append({"windows": {"window": window, "stride": int(outputs["stride"]),
                                    "grid": [rows, cols], "class": probs.argmax(-1).tolist(),
                                    "probability": probs.max(-1).round(6).tolist()}})
        return out

    def render(self, result, console):
        if not self.windows:
            return self._classifier().render(result, console)
        from rich.text import Text
        from ..predict import _heading
        _heading(result, console)
        for name, e in zip(result.names, result.entries):
            w = e["windows"]
            console.print(Text(f"{name}: {w['grid'][0]} x {w['grid'][1]} windows of "
                               f"{w['window'][0]} x {w['window'][1]}, stride {w['stride']}; class per window:"))
            for row in w["class"]:
                console.print(" ".join(str(c) for c in row))

    def table_rows(self, run, names, entries):
        if not self.windows:
            return self._classifier().table_rows(run, names, entries)
        return (["input", "row", "col", "class", "probability"],
                [[n, r, c, e["windows"]["class"][r][c], e["windows"]["probability"][r][c]]
                 for n, e in zip(names, entries) for r in range(e["windows"]["grid"][0])
                 for c in range(e["windows"]["grid"][1])])

    def write(self, run, batch, outputs, entries, out: Path):
        if not self.windows:
            return self._classifier().write(run, batch, outputs, entries, out)
        written = super().write(run, batch, {}, entries, out) if out.suffix.lower() == ".csv" else []
        if out.suffix.lower() in (".csv", ".npz"):
            return written
        from PIL import Image
        import io
        from ..runs import atomic_write_bytes
        written += super().write(run, batch, {}, entries, out)
        for i, (name, e) in enumerate(zip(batch.names, entries)):
            heat = np.asarray(e["windows"]["probability"])
            k = max(1, 256 // max(heat.shape))
            pic = Image.fromarray((heat * 255).astype(np.uint8)).resize(
                (heat.shape[1] * k, heat.shape[0] * k), Image.NEAREST)
            buf = io.BytesIO()
            pic.save(buf, format="PNG")
            target = out / f"{_stem(name, i)}_windows.png"
            atomic_write_bytes(target, buf.getvalue())
            written.append(target)
        return written
