"""New inputs for a trained run, prepared exactly as its training data were.

Training saves `RUN/preprocessing.npz` (`save_input_spec`): one raw example's shape, the raw
data's largest value, the train mean and std where `normalize` is on, the class names where
the data had them. `load_input_spec` reads it back without loading the training data (that is
what makes `dlcli predict` fast); a run saved before this file existed falls back to loading
its dataset once, which gives the same statistics, slowly.

`read_inputs` turns the command line's INPUTs into one batch of model inputs:
- an image file (PNG, JPEG, anything Pillow reads): converted to the run's channels (L or
  RGB), resized to the training images' height and width (bilinear, antialiased when
  shrinking, as Pillow does it), brought to the training data's range (0..255, or 0..1 where
  the raw training data were at most 1), then the run's scale / flatten / normalize;
- a data file in a recipe source's format: `.npz`, `.h5`/`.hdf5` (`--x` names the array,
  default: the recipe's x key, then `x`, then the file's only array), `.csv` (a header row;
  `--x` names the columns, comma-separated, default every column but the recipe's label
  column), or an MNIST IDX file (gzip or not). Every example of the file is predicted.
Anything else names the input in a BadInput (exit 2).
"""

from __future__ import annotations

import csv
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .errors import BadInput

SPEC_FILE = "preprocessing.npz"
DATA_SUFFIXES = (".npz", ".h5", ".hdf5", ".csv")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


@dataclass
class InputSpec:
    """How the run's training examples looked before and after preprocessing."""
    example_shape: tuple          # one raw example, e.g. (64, 64, 3) for the cat images
    input_shape: tuple            # what the model takes, e.g. (12288,) after flatten
    preprocessing: object         # data.preprocess.Preprocessing, fitted on the train split
    raw_max: float | None = None
    class_names: list | None = None
    n_classes: int | None = None

    @property
    def is_image(self) -> bool:
        return len(self.example_shape) == 3

    def label(self, c) -> str | None:
        names = self.class_names
        return str(names[c]) if names and 0 <= c < len(names) else None


def save_input_spec(run_dir, dataset) -> None:
    """Write RUN/preprocessing.npz from a loaded Dataset (called at the end of training)."""
    from .runs import atomic_write_npz
    pre = dataset.preprocessing
    arrays = {"example_shape": np.array(pre.example_shape or dataset.input_shape, np.int64),
              "input_shape": np.array(dataset.input_shape, np.int64),
              "raw_max": np.array(np.nan if pre.raw_max is None else pre.raw_max),
              "n_classes": np.array(-1 if dataset.n_classes is None else dataset.n_classes)}
    if pre.normalize:
        arrays["mean"], arrays["std"] = pre.mean, pre.std
    if dataset.class_names:
        arrays["class_names"] = np.array([str(n) for n in dataset.class_names])
    atomic_write_npz(Path(run_dir) / SPEC_FILE, arrays)


def load_input_spec(run_dir, recipe) -> InputSpec:
    from .data.preprocess import Preprocessing
    data = recipe.to_dict()["data"]
    path = Path(run_dir) / SPEC_FILE
    if not path.exists():
        return _spec_from_dataset(recipe)
    try:
        with np.load(path, allow_pickle=False) as f:
            a = {k: f[k] for k in f.files}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise BadInput(f"cannot read the run's preprocessing: {err}", file=path)
    pre = Preprocessing(np.dtype(recipe.dtype), float(data.get("scale") or 1),
                        bool(data.get("flatten")), bool(data.get("normalize")),
                        a.get("mean"), a.get("std"))
    raw_max = float(a["raw_max"])
    n = int(a["n_classes"])
    return InputSpec(tuple(int(d) for d in a["example_shape"]), tuple(int(d) for d in a["input_shape"]),
                     pre, None if np.isnan(raw_max) else raw_max,
                     [str(s) for s in a["class_names"]] if "class_names" in a else None,
                     None if n < 0 else n)


def _spec_from_dataset(recipe) -> InputSpec:
    """A run trained before preprocessing.npz existed: its dataset gives the same figures."""
    from .api import load_data
    ds = load_data(recipe)
    pre = ds.preprocessing
    shape = pre.example_shape or ds.input_shape
    if pre.example_shape is None and pre.flatten:
        shape = _square_image(ds.input_shape[0]) or ds.input_shape
    return InputSpec(tuple(shape), tuple(ds.input_shape), pre, pre.raw_max, ds.class_names,
                     ds.n_classes)


def _square_image(n: int):
    import math
    for c in (3, 1):
        s = math.isqrt(n // c)
        if s * s * c == n:
            return (s, s, c)
    return None


class Batch(NamedTuple):
    """The inputs of one `dlcli predict`, ready for the model."""
    names: list          # what each example's "input" says: the file, or "file[row]"
    x: np.ndarray        # model inputs (preprocessed), one row per name
    images: list         # per example: the image as read (uint8 H x W x C, at the size the model
                         # got) where it came from an image file, else None; for kinds that draw
    paths: list          # per example: the file it came from (kinds that reopen the original)


@dataclass
class InputOptions:
    x_key: str | None = None
    label_key: str | None = None   # the recipe's label column / array, left out of a CSV
    default_x: str | None = None   # the recipe's x key, tried before "x"
    extra: dict = field(default_factory=dict)


def read_inputs(spec: InputSpec, inputs: list, options: InputOptions, resize: bool = True) -> Batch:
    """Every INPUT read and prepared; all-or-nothing (the first bad input is the error).

    `resize=False` keeps each image at its own size (sliding windows over a larger image);
    such images are then one per call, as their sizes may differ."""
    if not inputs:
        raise BadInput("give at least one INPUT: an image file or a data file", key="INPUT")
    names, xs, images, paths = [], [], [], []
    for text in inputs:
        path = Path(text)
        if not path.is_file():
            what = "a directory, not a file" if path.is_dir() else "no such file"
            raise BadInput(f"{what}; this run takes image files (PNG / JPEG) or data files "
                           f"({', '.join(DATA_SUFFIXES)}, MNIST IDX)", file=text)
        if is_image_file(path):
            image = read_image(path, spec, resize)
            names.append(str(text))
            raw = image_to_raw(image, spec)[None]
            xs.append(prepare(spec, raw, text) if resize else spec.preprocessing(raw))
            images.append(image)
            paths.append(path)
        else:
            raw = read_data_file(path, options, spec.example_shape)
            x = prepare(spec, fit_examples(raw, spec, text), text)
            names.extend(f"{text}[{i}]" for i in range(len(x)))
            xs.append(x)
            images.extend([None] * len(x))
            paths.extend([path] * len(x))
    if not resize and len({x.shape[1:] for x in xs}) > 1:
        raise BadInput("images of different sizes: give them one at a time", key="INPUT")
    return Batch(names, np.concatenate(xs), images, paths)


def is_image_file(path: Path) -> bool:
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return True
    with open(path, "rb") as f:
        head = f.read(8)
    return head.startswith(b"\x89PNG") or head.startswith(b"\xff\xd8\xff")


def read_image(path: Path, spec: InputSpec, resize: bool = True) -> np.ndarray:
    """The picture as uint8 (H, W, C) with the run's channels, at the training images' size
    (or its own, with resize=False)."""
    if not spec.is_image:
        raise BadInput(f"an image, but the run takes {_features(spec)}, not images: give a data "
                       "file", file=path)
    from PIL import Image, UnidentifiedImageError
    h, w, c = spec.example_shape
    mode = {1: "L", 3: "RGB", 4: "RGBA"}.get(c)
    if mode is None:
        raise BadInput(f"the run's images have {c} channels; image files give 1, 3 or 4", file=path)
    try:
        with Image.open(path) as im:
            im = im.convert(mode)
            if resize and im.size != (w, h):
                im = im.resize((w, h), Image.BILINEAR)
            a = np.asarray(im, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise BadInput(f"cannot read the image: {err}", file=path)
    return a[..., None] if a.ndim == 2 else a


def image_to_raw(image: np.ndarray, spec: InputSpec) -> np.ndarray:
    """0..255 pixels in the range the training data had before `scale`."""
    x = image.astype(np.float64)
    return x / 255.0 if spec.raw_max is not None and spec.raw_max <= 1.0 else x


def _features(spec) -> str:
    shape = spec.example_shape
    return f"{shape[0]} features" if len(shape) == 1 else f"examples of shape {shape}"


def fit_examples(x: np.ndarray, spec: InputSpec, name) -> np.ndarray:
    """A data file's examples in the run's raw example shape, or a BadInput naming the file."""
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise BadInput(f"the inputs must be numbers, got {x.dtype}", file=name)
    want = tuple(spec.example_shape)
    if x.ndim == 1 and len(want) == 1:
        x = x[:, None] if want[0] == 1 else x[None]   # a single example's features
    if x.ndim == len(want) and x.shape == want:
        x = x[None]                                    # one example without its batch axis
    if x.ndim == 3 and len(want) == 3 and want[2] == 1:
        x = x[..., None]                               # greyscale images without n_C
    if x.shape[1:] != want:
        if spec.preprocessing.flatten and x.ndim == 2 and x.shape[1] == int(np.prod(want)):
            x = x.reshape((len(x),) + want)
        else:
            hint = " (an image file would be resized; a data file is not)" if spec.is_image else ""
            raise BadInput(f"examples of shape {tuple(x.shape[1:])}, but the run was trained on "
                           f"{want}{hint}", file=name)
    if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
        raise BadInput("the inputs hold NaN or infinite values", file=name)
    return x


def prepare(spec: InputSpec, raw: np.ndarray, name) -> np.ndarray:
    x = spec.preprocessing(raw)
    if tuple(x.shape[1:]) != tuple(spec.input_shape):
        raise BadInput(f"prepared inputs of shape {tuple(x.shape[1:])}, but the model takes "
                       f"{tuple(spec.input_shape)}", file=name)
    return np.ascontiguousarray(x)


# -- data files -------------------------------------------------------------------------------
def read_data_file(path: Path, options: InputOptions, example_shape=()) -> np.ndarray:
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _read_npz(path, options, example_shape)
    if suffix in (".h5", ".hdf5"):
        return _read_h5(path, options, example_shape)
    if suffix == ".csv":
        return _read_csv(path, options)
    from .data.idx import read_idx
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:2] in (b"\x1f\x8b", b"\0\0"):
        try:
            return read_idx(path, "INPUT")
        except BadInput as err:
            raise BadInput(err.message.replace(f"{path}: ", "").replace(f"{path} ", ""), file=path)
    raise BadInput(f"not an image or a data file this run can read ({', '.join(DATA_SUFFIXES)}, "
                   "PNG / JPEG, MNIST IDX)", file=path)


def _pick(path, shapes: dict, options: InputOptions, example_shape) -> str:
    """The input array: --x, else the recipe's x key, "x", the only array, or the only array
    whose examples have the run's shape (a test file's test_set_x for a train_set_x run)."""
    names = list(shapes)
    if options.x_key is not None:
        if options.x_key not in names:
            raise BadInput(f"no array {options.x_key!r}; it holds: {', '.join(names) or 'nothing'}",
                           file=path, key="--x")
        return options.x_key
    for name in (options.default_x, "x"):
        if name in names:
            return name
    if len(names) == 1:
        return names[0]
    size = int(np.prod(example_shape)) if example_shape else -1
    fits = [n for n, shape in shapes.items()
            if tuple(shape[1:]) in (tuple(example_shape), (size,), tuple(example_shape)[:-1])]
    if len(fits) == 1:
        return fits[0]
    raise BadInput(f"name the input array with --x; it holds: {', '.join(names) or 'nothing'}",
                   file=path)


def _read_npz(path, options, example_shape) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as f:
            if not isinstance(f, np.lib.npyio.NpzFile):
                return np.asarray(f)
            arrays = {k: f[k] for k in f.files}
            return arrays[_pick(path, {k: a.shape for k, a in arrays.items()}, options, example_shape)]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise BadInput(f"cannot read: {err}", file=path)


def _read_h5(path, options, example_shape) -> np.ndarray:
    import h5py
    try:
        with h5py.File(path, "r") as f:
            shapes = {k: f[k].shape for k in f.keys() if isinstance(f.get(k), h5py.Dataset)}
            return f[_pick(path, shapes, options, example_shape)][()]
    except OSError as err:
        raise BadInput(f"cannot read: not a readable HDF5 file ({err})", file=path)


def _read_csv(path, options) -> np.ndarray:
    try:
        rows = [row for row in csv.reader(path.read_text().splitlines()) if row]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise BadInput(f"cannot read as CSV text: {err}", file=path)
    if len(rows) < 2:
        raise BadInput("needs a header row and at least one row of values", file=path)
    header = [h.strip() for h in rows[0]]
    if options.x_key is not None:
        columns = [c.strip() for c in options.x_key.split(",")]
        missing = [c for c in columns if c not in header]
        if missing:
            raise BadInput(f"no column {missing[0]!r}; its columns: {', '.join(header)}",
                           file=path, key="--x")
    else:
        columns = [h for h in header if h != (options.label_key or "y")]
    keep = [header.index(c) for c in columns]
    values = np.empty((len(rows) - 1, len(keep)))
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise BadInput(f"row {line} has {len(row)} fields but the header has {len(header)}",
                           file=path)
        for j, k in enumerate(keep):
            try:
                values[line - 2, j] = float(row[k])
            except ValueError:
                raise BadInput(f"row {line}, column {header[k]!r}: {row[k]!r} is not a number",
                               file=path)
    return values
