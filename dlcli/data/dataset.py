"""`load_dataset`: a recipe's `data` mapping -> checked, carved, preprocessed splits.

Sources are read (files or builtin generators), checked, carved into the held-out sets the
recipe asks for, made consistent with each other (same example shape, same kind of label),
then preprocessed with statistics from the training split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from numbers import Real
from typing import NamedTuple

import numpy as np

from ..errors import BadInput
from ..rng import stream
from .augment import parse_augment
from .builtin import generate
from .carving import ORDER, carve
from .examples import check_examples
from .files import read_file_source
from .pairs import is_pair_source, read_pairs
from .preprocess import Preprocessing

SPLIT_ORDER = ("train", "train_dev", "dev", "test")  # the order of the errors table


class Source(NamedTuple):
    x: np.ndarray
    y: np.ndarray
    class_names: list | None
    origin: str  # the file(s) or generator, for messages
    pair_vocab: dict | None = None  # sequence pairs: {"source": Vocabulary, "target": Vocabulary}


@dataclass
class Split:
    x: np.ndarray
    y: np.ndarray
    index: np.ndarray  # each example's row in its source (int64)


@dataclass
class Dataset:
    splits: dict
    input_shape: tuple
    n_classes: int | None
    class_names: list | None
    is_image: bool
    preprocessing: Preprocessing = field(repr=False)
    # held-out splits read from their own source: split -> its file or generator, for messages
    origins: dict = field(default_factory=dict, repr=False)
    vocab: object = field(default=None, repr=False)  # a text run's dlcli.text.Vocabulary
    # (sequence pairs: a dlcli.data.pairs.PairVocab, source and target)

    def preprocess(self, x_raw) -> np.ndarray:
        """Raw examples as the source holds them -> model inputs, with the train statistics."""
        x = np.asarray(x_raw)
        return self.preprocessing(x[..., None] if x.ndim in (1, 3) else x)


def load_dataset(cfg: dict, seed: int, dtype="float32", targets: str = "auto",
                 token_ids: bool = False) -> Dataset:
    """The recipe's data. targets: "auto" (class labels, or multi-label (m, k)) or "real".
    token_ids: sequence pairs give token ids (m, T) (the model starts with embedding or
    one_hot), else one-hot vectors (m, T, V)."""
    from ..text import is_text_source, load_text_dataset
    if is_text_source(cfg.get("train")) and not is_pair_source(cfg.get("train")):
        return load_text_dataset(cfg, seed, dtype)  # token ids and a vocabulary (dlcli/text.py)
    missing = cfg.get("missing")
    train = read_source(cfg.get("train"), "data.train", stream(seed, "data"), targets, missing,
                        token_ids=token_ids)
    fractions, sources = _held_out(cfg, seed, targets, missing, train.pair_vocab, token_ids)
    raw = {name: Split(train.x[rows], train.y[rows], rows)
           for name, rows in carve(len(train.x), fractions, stream(seed, "split")).items()}
    for name, source in sources.items():
        source = sources[name] = _align_classes(source, train, f"data.{name}")
        _check_compatible(source, train, f"data.{name}")
        raw[name] = Split(source.x, source.y, np.arange(len(source.x), dtype=np.int64))
    n_classes = _n_classes(raw, train, sources, targets)
    scale = cfg.get("scale")
    preprocessing = Preprocessing(np.dtype(dtype), _scale(1 if scale is None else scale),
                                  bool(cfg.get("flatten")), bool(cfg.get("normalize")))
    preprocessing.fit(raw["train"].x)
    splits = {name: Split(preprocessing(raw[name].x), _as_targets(raw[name].y, dtype, targets),
                          raw[name].index)
              for name in SPLIT_ORDER if name in raw}
    input_shape = splits["train"].x.shape[1:]
    is_image = len(input_shape) == 3
    if parse_augment(cfg.get("augment")) and not is_image:
        raise BadInput(f"augmentation needs images (m, n_H, n_W, n_C) but the examples have shape "
                       f"{input_shape}" + (" (drop flatten: true and flatten in the model)"
                                           if preprocessing.flatten else ""), key="data.augment")
    if train.pair_vocab:  # a sequence's classes: the target vocabulary (for units: auto)
        n_classes = len(train.pair_vocab["target"].tokens)
    return Dataset(splits, input_shape, n_classes, train.class_names, is_image, preprocessing,
                   {name: source.origin for name, source in sources.items()}, vocab=train.pair_vocab)


def _held_out(cfg, seed, targets, missing=None, vocab=None, token_ids=False):
    """({split: fraction}, {split: Source}) for the test, dev and train-dev the recipe names."""
    # each builtin held-out source gets its own draw, whichever others the recipe has
    rngs = dict(zip(ORDER, stream(seed, "test_data").spawn(len(ORDER))))
    fractions, sources = {}, {}
    for name in ORDER:
        value = cfg.get(name)
        if isinstance(value, dict):
            sources[name] = read_source(value, f"data.{name}", rngs[name], targets, missing, vocab,
                                        token_ids)
        elif _is_fraction(value):
            fractions[name] = value
        elif value is not None:
            raise BadInput(f"must be a source ({{path: FILE}} or {{builtin: NAME}}) or a fraction "
                           f"in (0, 1), got {value!r}", key=f"data.{name}")
    return fractions, sources


def read_source(src, key: str, rng, targets: str = "auto", missing=None, vocab=None,
                token_ids=False) -> Source:
    """One source mapping, read and checked; `missing` (data.missing) is for CSV files,
    `vocab` the train source's, for held-out pairs."""
    if not isinstance(src, dict):
        raise BadInput("must be a source: {path: FILE, x: KEY, y: KEY} or {builtin: NAME}"
                       + (", and the train source is required" if src is None else ""), key=key)
    if is_pair_source(src):  # sequence to sequence: one-hot sources, target ids (pairs.py)
        x, y, vocab, origin = read_pairs(src, key, rng, vocab, token_ids)
        return Source(x, y, list(vocab["target"].tokens), origin, vocab)
    from ..detect.data import is_dense_source, read_dense_source
    if is_dense_source(src):  # boxes or masks ride as y (dlcli/detect/data.py)
        return Source(*read_dense_source(src, key, rng))
    if src.get("builtin") is not None:
        if src.get("path") is not None:
            raise BadInput("a source is either builtin: or path:, not both", key=key)
        x, y, names = generate(src, rng, key)
        origin = f"builtin {src['builtin']}"
    elif src.get("path") is None and (src.get("x") is None or src.get("y") is None):
        raise BadInput("a source needs builtin: NAME, path: FILE, or x: and y: IDX files", key=key)
    else:
        x, y, names, origin = read_file_source({**src, "missing": missing}, key, targets)
        if src.get("keep_labels") is not None:  # a subset of the classes (identities) only
            keep = np.isin(np.asarray(y).reshape(len(y), -1)[:, 0], src["keep_labels"])
            if not keep.any():
                raise BadInput(f"{origin}: no example has a label in {src['keep_labels']}",
                               key=f"{key}.keep_labels")
            x, y = x[keep], y[keep]
    x, y = check_examples(x, y, key, origin, targets)
    return Source(x, y, names, origin)


def _is_fraction(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and 0 < value < 1


def _scale(value):
    if isinstance(value, bool) or not isinstance(value, Real) or not value > 0 or value == np.inf:
        raise BadInput(f"must be a positive number, got {value!r}", key="data.scale")
    return float(value)


def _align_classes(source, train, key) -> Source:
    """A held-out source whose labels were named (CSV text or 1/2 labels) takes the train
    source's class numbers for the same names; a name the train source lacks is bad input."""
    if source.class_names is None or train.class_names is None \
            or list(source.class_names) == list(train.class_names) or source.y.ndim != 1 \
            or source.y.max(initial=0) >= len(source.class_names):  # left to the range check
        return source
    codes = {name: k for k, name in enumerate(train.class_names)}
    unknown = [name for name in source.class_names if name not in codes]
    if unknown:
        raise BadInput(f"{source.origin}: label {unknown[0]!r} is not a class of the train "
                       f"source ({', '.join(map(str, train.class_names))})", key=f"{key}.y")
    remap = np.array([codes[name] for name in source.class_names], dtype=np.int64)
    return source._replace(y=remap[source.y], class_names=list(train.class_names))


def _check_compatible(source, train, key) -> None:
    """A held-out source must look like the train source to the same model."""
    if source.x.shape[1:] != train.x.shape[1:]:
        raise BadInput(f"{source.origin}: examples of shape {source.x.shape[1:]} but the train "
                       f"source's are {train.x.shape[1:]}", key=f"{key}.x")
    if source.y.shape[1:] != train.y.shape[1:]:
        raise BadInput(f"{source.origin}: labels of shape {_label_shape(source.y)} but the train "
                       f"source's are {_label_shape(train.y)}", key=f"{key}.y")


def _label_shape(y) -> str:
    return "(m, " + ", ".join(map(str, y.shape[1:])) + ")" if y.ndim > 1 else "(m,)"


def _n_classes(raw, train, sources, targets):
    """Classes of integer labels: the train source's named classes, else max label + 1."""
    if targets == "real" or train.y.ndim != 1:
        return None
    if train.class_names is None:
        return max(2, max(int(split.y.max()) + 1 for split in raw.values()))
    n = max(2, len(train.class_names))
    for name, split in raw.items():
        if split.y.max() >= n:
            source = sources.get(name, train)
            key = f"data.{name}.y" if name in sources else "data.train.y"
            raise BadInput(f"{source.origin}: label {int(split.y.max())} is out of range: the train "
                           f"source names {n} classes ({', '.join(train.class_names)})", key=key)
    return n


def _as_targets(y, dtype, targets):
    return y.astype(dtype) if targets == "real" else y
