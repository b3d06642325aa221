"""Text data: vocabularies, text sources, padding and the strings <-> model inputs of a run.

Sources (SPEC "Sequences"):
- `{text: FILE, unit: char|word, task: language_model, lower: false}`: one example per line;
  x = [no token] + ids, y = ids + [end-of-line] (the course's X = [None] + ids, Y = ids + ["\\n"]).
- `{path: FILE.csv|.tsv, x: COLUMN, y: COLUMN, unit: word|char, lower: false}`: a text column
  and a label column (integers 0..C-1, or names, numbered in sorted order).

Inputs are token ids (m, T) int64, padded to the longest example with -1 (a masked step);
-2 is "no token" (the zero vector the course starts a language model with). Sequence labels are
(m, T) with -1 at padded steps. The vocabulary is built from the training split only: a language
model's is the end-of-line token "\\n" (id 0, the course's) then the tokens in sorted order (the
course's 27 characters for its lower-cased dinosaur names); a word vocabulary, or a split with a
token the training split lacks, adds "<unk>". It is saved as `vocab.json` in the run and read
back by `sample` and `predict`:

    {"unit": "char", "tokens": ["\\n", "a", ...], "lower": true, "end": "\\n", "unk": null,
     "pad_id": -1, "start_id": -2, "task": "language_model", "classes": null}

`Vocabulary.encode/decode` is the one place strings become ids and back (seq2seq pair sources
reuse it); `encode_texts` turns a run's input strings into model inputs (predict's text path).
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import BadInput

PAD, START = -1, -2
END, UNK = "\n", "<unk>"
_WORD = re.compile(r"[\w']+|[^\w\s]")


def split_tokens(text: str, unit: str, lower: bool = False) -> list[str]:
    text = text.lower() if lower else text
    return list(text) if unit == "char" else _WORD.findall(text)


@dataclass
class Vocabulary:
    tokens: list
    unit: str = "char"
    lower: bool = False
    task: str = "language_model"  # language_model | classify (a CSV text column)
    classes: list | None = None  # label names of a classifier

    def __post_init__(self):
        self.index = {t: i for i, t in enumerate(self.tokens)}

    def __len__(self):
        return len(self.tokens)

    @property
    def end_id(self):
        return self.index.get(END)

    @property
    def unk_id(self):
        return self.index.get(UNK)

    def split(self, text: str) -> list[str]:
        return split_tokens(text, self.unit, self.lower)

    def encode(self, text) -> list[int]:
        """Token ids of a string (or of a token list); unknown tokens -> <unk>, else an error."""
        tokens = self.split(text) if isinstance(text, str) else text
        ids = []
        for t in tokens:
            i = self.index.get(t, self.unk_id)
            if i is None:
                raise KeyError(t)
            ids.append(i)
        return ids

    def decode(self, ids, stop_at_end=True) -> str:
        out = []
        for i in ids:
            i = int(i)
            if i < 0:
                continue
            if stop_at_end and i == self.end_id:
                break
            out.append(self.tokens[i])
        return ("" if self.unit == "char" else " ").join(out)

    def to_json(self) -> dict:
        return {"unit": self.unit, "tokens": self.tokens, "lower": self.lower,
                "end": END if END in self.index else None, "unk": UNK if UNK in self.index else None,
                "pad_id": PAD, "start_id": START, "task": self.task, "classes": self.classes}

    @classmethod
    def from_json(cls, d: dict) -> "Vocabulary":
        return cls(list(d["tokens"]), d.get("unit", "char"), bool(d.get("lower")),
                   d.get("task", "language_model"), d.get("classes"))

    def save(self, path) -> None:
        from .runs import atomic_write_json
        atomic_write_json(Path(path), self.to_json())

    @classmethod
    def load(cls, path) -> "Vocabulary":
        path = Path(path)
        if not path.is_file():
            raise BadInput("the run has no vocab.json (it was not trained on text)", file=path)
        return cls.from_json(json.loads(path.read_text()))


def build_vocabulary(train_tokens, other_tokens, unit, lower, task, classes=None) -> Vocabulary:
    seen = Counter(t for seq in train_tokens for t in seq)
    tokens = ([END] if task == "language_model" else []) + sorted(t for t in seen if t != END)
    unseen = any(t not in seen for seq in other_tokens for t in seq)
    if unit == "word" or unseen:
        tokens.insert(1 if task == "language_model" else 0, UNK)
    return Vocabulary(tokens, unit, lower, task, classes)


# -- sources ----------------------------------------------------------------------------------
def is_text_source(src) -> bool:
    return isinstance(src, dict) and (src.get("text") is not None or src.get("unit") is not None)


def _read_lines(src, key) -> list[str]:
    path = Path(src["text"])
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"no such file: {path}", key=f"{key}.text")
    except (OSError, UnicodeDecodeError) as err:
        raise BadInput(f"cannot read {path} as UTF-8 text: {err}", key=f"{key}.text")
    lines = [line.rstrip("\r") for line in text.split("\n") if line.strip()]
    if not lines:
        raise BadInput(f"{path} has no non-empty line", key=f"{key}.text")
    return lines


def _read_csv_text(src, key):
    """(texts, labels as strings) of a CSV/TSV source with a text column x and a label column y."""
    path = Path(src["path"])
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"no such file: {path}", key=f"{key}.path")
    except (OSError, UnicodeDecodeError) as err:
        raise BadInput(f"cannot read {path} as UTF-8 text: {err}", key=f"{key}.path")
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    rows = [r for r in csv.reader(text.splitlines(), delimiter=delimiter) if r]
    if not rows:
        raise BadInput(f"{path} is empty", key=f"{key}.path")
    header = [h.strip() for h in rows[0]]
    x_col, y_col = src.get("x") or "x", src.get("y") or "y"
    for col, sub in ((x_col, "x"), (y_col, "y")):
        if col not in header:
            raise BadInput(f"{path} has no column {col!r}; its columns: {', '.join(header)}",
                           key=f"{key}.{sub}")
    xi, yi = header.index(x_col), header.index(y_col)
    texts, labels = [], []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise BadInput(f"{path}: row {line} has {len(row)} fields but the header has "
                           f"{len(header)}", key=f"{key}.path")
        texts.append(row[xi])
        labels.append(row[yi].strip())
    if not texts:
        raise BadInput(f"{path} has a header but no rows", key=f"{key}.path")
    return texts, labels


def _examples(src, key, unit, lower):
    """(token lists, labels or None) of one text source."""
    if src.get("text") is not None:
        return [split_tokens(line, unit, lower) for line in _read_lines(src, key)], None
    if src.get("path") is None:
        raise BadInput("a text source needs text: FILE or path: FILE.csv", key=key)
    texts, labels = _read_csv_text(src, key)
    return [split_tokens(t, unit, lower) for t in texts], labels


def _pad(rows, T, fill=PAD) -> np.ndarray:
    out = np.full((len(rows), T), fill, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


def load_text_dataset(cfg: dict, seed: int, dtype="float32"):
    """The recipe's `data` mapping with a text train source -> a Dataset of token ids."""
    from .data.carving import ORDER, carve
    from .data.dataset import Dataset, Split
    from .data.preprocess import Preprocessing
    from .rng import stream

    train_src = cfg["train"]
    unit = train_src.get("unit") or "char"
    lower = bool(train_src.get("lower"))
    task = "language_model" if train_src.get("text") is not None else "classify"
    train_tokens, train_labels = _examples(train_src, "data.train", unit, lower)
    fractions, held = {}, {}
    for name in ORDER:
        value = cfg.get(name)
        if isinstance(value, dict):
            if not is_text_source(value) or (value.get("text") is not None) != (task == "language_model"):
                raise BadInput("a held-out source of a text run must be a text source of the same "
                               "kind as data.train", key=f"data.{name}")
            held[name] = _examples(value, f"data.{name}", unit, lower)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            fractions[name] = value
    rows = carve(len(train_tokens), fractions, stream(seed, "split"))
    parts = {name: ([train_tokens[i] for i in r],
                    None if train_labels is None else [train_labels[i] for i in r], r)
             for name, r in rows.items()}
    for name, (tokens, labels) in held.items():
        parts[name] = (tokens, labels, np.arange(len(tokens), dtype=np.int64))

    classes = None
    if task == "classify":
        all_labels = [lab for _, labels, _ in parts.values() for lab in labels]
        if all(re.fullmatch(r"\d+", lab) for lab in all_labels):
            label_of = {lab: int(lab) for lab in set(all_labels)}
        else:
            classes = sorted(set(parts["train"][1]))
            unknown = sorted(set(all_labels) - set(classes))
            if unknown:
                raise BadInput(f"label {unknown[0]!r} is not among the training labels", key="data")
            label_of = {c: i for i, c in enumerate(classes)}
    vocab = build_vocabulary(parts["train"][0],
                             [t for n, (toks, _, _) in parts.items() if n != "train" for t in toks],
                             unit, lower, task, classes)
    encoded = {name: [vocab.encode(t) for t in tokens] for name, (tokens, _, _) in parts.items()}
    if task == "language_model":
        T = 1 + max(len(e) for seqs in encoded.values() for e in seqs)
        splits = {name: Split(_pad([[START] + e for e in seqs], T),
                              _pad([e + [vocab.end_id] for e in seqs], T), parts[name][2])
                  for name, seqs in encoded.items()}
        n_classes = len(vocab)
    else:
        T = max(1, max(len(e) for seqs in encoded.values() for e in seqs))
        splits = {name: Split(_pad(seqs, T), np.array([label_of[lab] for lab in parts[name][1]],
                                                      dtype=np.int64), parts[name][2])
                  for name, seqs in encoded.items()}
        n_classes = max(2, len(classes) if classes else 1 + max(int(s.y.max()) for s in splits.values()))
    order = [n for n in ("train", "train_dev", "dev", "test") if n in splits]
    return Dataset({n: splits[n] for n in order}, (T,), n_classes, classes, False,
                   Preprocessing(np.dtype(dtype)), vocab=vocab)


# -- a run's strings <-> model inputs (predict's text path, sample) ----------------------------
def encode_texts(texts, vocab: Vocabulary, T: int | None = None) -> np.ndarray:
    """Model inputs (n, T) for strings of a text classifier run: ids, unknown tokens as <unk>
    (dropped where the vocabulary has none), padded with -1 to T (the run's length; longer
    texts are cut to it) or to the longest."""
    rows = []
    for text in texts:
        tokens = vocab.split(text)
        rows.append([vocab.index.get(t, vocab.unk_id) for t in tokens
                     if t in vocab.index or vocab.unk_id is not None])
    T = T or max(1, max(len(r) for r in rows))
    return _pad([r[:T] for r in rows], T)


def decode_sequences(probabilities, vocab: Vocabulary) -> list[dict]:
    """Per example: the argmax tokens and text of a sequence output (m, T, V)."""
    ids = probabilities.argmax(axis=-1)
    return [{"tokens": [vocab.tokens[i] for i in row], "text": vocab.decode(row)} for row in ids]


def load_word_vectors(path, vocab: Vocabulary, E: np.ndarray) -> int:
    """Copy GloVe-format vectors (`word v1 v2 ...` a line) into E's columns; returns how many
    words were found. Words missing from the file keep their initial draw."""
    found = 0
    dim = E.shape[0]
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                parts = line.rstrip().split(" ")
                j = vocab.index.get(parts[0])
                if j is None or len(parts) != dim + 1:
                    continue
                E[:, j] = np.asarray(parts[1:], dtype=np.float64)
                found += 1
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise BadInput(f"cannot read word vectors from {path}: {err}", key="model.layers")
    return found


# -- `auto` sizes and word vectors, filled in before / after the build ------------------------
def run_sizes(run_path, spec):
    """What `resolve_auto` needs when a trained run is loaded without its data: the run's
    vocab.json (where it has one) and the number of classes saved with it."""
    from types import SimpleNamespace
    path = Path(run_path) / "vocab.json"
    return SimpleNamespace(vocab=Vocabulary.load(path) if path.exists() else None,
                           n_classes=spec.n_classes, splits={})


def resolve_auto(model_cfg: dict, dataset) -> None:
    """`vocab: auto` of embedding / one_hot layers and `units: auto` of dense layers, in place:
    the text source's vocabulary (or 1 + the largest id of integer inputs), and the number of
    classes (or the target vocabulary's size)."""
    vocab = getattr(dataset, "vocab", None)
    for i, spec in enumerate(model_cfg["layers"]):
        if spec.get("type") in ("embedding", "one_hot") and spec.get("vocab") == "auto":
            if vocab is not None:
                spec["vocab"] = len(vocab)
            elif not dataset.splits:  # a re-loaded run without a vocabulary: params.npz decides
                continue
            else:
                x = np.concatenate([s.x.reshape(-1) for s in dataset.splits.values()])
                if x.size == 0 or np.any(np.mod(x, 1) != 0):
                    raise BadInput("vocab: auto needs integer token ids as inputs",
                                   key=f"model.layers.{i}.vocab")
                spec["vocab"] = int(x.max()) + 1
        if spec.get("type") == "dense" and spec.get("units") == "auto":
            n = dataset.n_classes
            if n is None and not dataset.splits:
                continue
            if n is None:
                y = dataset.splits["train"].y
                if y.dtype.kind not in "iu":
                    raise BadInput("units: auto needs class labels (or a text target)",
                                   key=f"model.layers.{i}.units")
                n = max(2, int(max(s.y.max() for s in dataset.splits.values())) + 1)
            spec["units"] = int(n)


def init_word_vectors(model, model_cfg: dict, dataset) -> None:
    """Each embedding's `init_from` GloVe file, matched by word against the vocabulary."""
    for i, spec in enumerate(model_cfg["layers"]):
        if spec.get("type") != "embedding" or not spec.get("init_from"):
            continue
        vocab = getattr(dataset, "vocab", None)
        if vocab is None:
            raise BadInput("init_from word vectors need a text source (a vocabulary of words)",
                           key=f"model.layers.{i}.init_from")
        E = model.layers[i].params["E"]
        found = load_word_vectors(spec["init_from"], vocab, E)
        if not found:
            raise BadInput(f"no word of the vocabulary has a {E.shape[0]}-dimensional vector in "
                           f"{spec['init_from']}", key=f"model.layers.{i}.init_from")
