"""Sequence-to-sequence sources: `{builtin: dates, n}` and two text columns of a CSV/TSV file.

    {builtin: dates, n: 10000}                      the course's dates (dlcli.data.dates)
    {path: pairs.tsv, x: human, y: machine, unit: char, target_unit: char|word, max_length: 30}

Examples come out as the course's date model takes them: x one-hot (m, Tx, V_source), the
source padded with `<pad>` to Tx (the course's `string_to_int`: longer strings are cut, an
unknown token is `<unk>`); y token ids (m, Ty), -1 marking padded steps. Where the targets
are not all of one length, each ends with `<eos>` so that a translation knows where it ends.

Vocabularies are built from the train source (the file given as data.train, before dev and
test are carved from it; the dates' are the course's fixed 37 and 11 symbols) and reused for
every held-out source and for `predict`; the run saves them as vocab.json:
`{"task": "translate", "unit", "tokens", "source": {"unit", "tokens", "length"}, "target": {...}}`
(`length`: Tx, Ty; the top-level unit and tokens repeat the source's, as a text run's file).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BadInput

UNK, PAD, EOS = "<unk>", "<pad>", "<eos>"
UNITS = ("char", "word")


@dataclass
class Vocabulary:
    unit: str           # char | word
    tokens: list        # id -> token
    length: int         # the sequence length examples are padded (source) or cut to

    def __post_init__(self):
        self.ids = {t: i for i, t in enumerate(self.tokens)}

    def split(self, text: str) -> list[str]:
        return list(text) if self.unit == "char" else text.split()

    def join(self, tokens) -> str:
        return ("" if self.unit == "char" else " ").join(tokens)

    def encode(self, text: str) -> list[int]:
        """Token ids, unknown tokens as <unk> (where the vocabulary has it)."""
        unk = self.ids.get(UNK)
        out = []
        for token in self.split(text):
            i = self.ids.get(token, unk)
            if i is None:
                raise KeyError(token)
            out.append(i)
        return out

    def decode(self, ids) -> str:
        """Text of token ids, up to the first <eos>, without <pad>."""
        words = []
        for i in ids:
            token = self.tokens[int(i)]
            if token == EOS:
                break
            if token != PAD:
                words.append(token)
        return self.join(words)

    def to_json(self) -> dict:
        return {"unit": self.unit, "tokens": self.tokens, "length": self.length}

    @classmethod
    def from_json(cls, d) -> "Vocabulary":
        return cls(d["unit"], list(d["tokens"]), int(d["length"]))


class PairVocab(dict):
    """{"source": Vocabulary, "target": Vocabulary}; as a dataset's `vocab` it sizes
    `vocab: auto` (len: the source's tokens) and saves itself as the run's vocab.json."""

    def __len__(self):
        return len(self["source"].tokens)

    def to_json(self) -> dict:
        # "task", "unit", "tokens" at the top: the layout of a text run's vocab.json
        # (dlcli/text.py), so that its readers size `vocab: auto` and know the run's task
        src = self["source"]
        return {"task": "translate", "unit": src.unit, "tokens": src.tokens,
                **{k: v.to_json() for k, v in self.items()}}

    def save(self, path) -> None:
        from ..runs import atomic_write_json
        atomic_write_json(path, self.to_json())

    @classmethod
    def from_json(cls, d) -> "PairVocab":
        return cls(source=Vocabulary.from_json(d["source"]), target=Vocabulary.from_json(d["target"]))


def source_vocabulary(texts, unit: str, length: int | None = None) -> Vocabulary:
    """The course's layout: the tokens sorted, then <unk> and <pad>."""
    probe = Vocabulary(unit, [], 0)
    pieces = [probe.split(t) for t in texts]
    tokens = sorted({tok for p in pieces for tok in p})
    return Vocabulary(unit, tokens + [UNK, PAD], length or max(len(p) for p in pieces))


def target_vocabulary(texts, unit: str) -> Vocabulary:
    probe = Vocabulary(unit, [], 0)
    pieces = [probe.split(t) for t in texts]
    tokens = sorted({tok for p in pieces for tok in p})
    lengths = {len(p) for p in pieces}
    if len(lengths) == 1:
        return Vocabulary(unit, tokens, lengths.pop())
    return Vocabulary(unit, tokens + [EOS], max(lengths) + 1)


def encode_sources(texts, vocab: Vocabulary, dtype=np.float32, ids: bool = False) -> np.ndarray:
    """One-hot (m, Tx, V), or token ids (m, Tx) with `ids`: tokens cut to Tx, padded with <pad>."""
    m, V = len(texts), len(vocab.tokens)
    pad = vocab.ids[PAD]
    rows = np.full((m, vocab.length), pad, dtype=np.int64)
    for r, text in enumerate(texts):
        encoded = vocab.encode(text)[:vocab.length]
        rows[r, :len(encoded)] = encoded
    if ids:
        return rows
    x = np.zeros((m, vocab.length, V), dtype=dtype)
    np.put_along_axis(x, rows[..., None], 1, axis=2)
    return x


def encode_targets(texts, vocab: Vocabulary, origin: str, key: str) -> np.ndarray:
    y = np.full((len(texts), vocab.length), -1, dtype=np.int64)
    eos = vocab.ids.get(EOS)
    for r, text in enumerate(texts):
        try:
            ids = vocab.encode(text)
        except KeyError as err:
            raise BadInput(f"{origin}: row {r + 1}: target token {err.args[0]!r} is not in the "
                           "target vocabulary of the train source", key=key)
        if eos is not None:
            ids.append(eos)
        if len(ids) > vocab.length:
            raise BadInput(f"{origin}: row {r + 1}: the target has {len(ids)} tokens, more than "
                           f"the {vocab.length} of the train source's longest", key=key)
        y[r, :len(ids)] = ids
    return y


def is_pair_source(src) -> bool:
    return isinstance(src, dict) and (src.get("builtin") == "dates"
                                      or src.get("target_unit") is not None)


def read_pairs(src: dict, key: str, rng, vocab: dict | None = None, token_ids: bool = False):
    """(x, y, PairVocab {"source": Vocabulary, "target": Vocabulary}, origin) of a pair source.

    `vocab`: the train source's vocabularies, for a held-out source (None: build them here).
    `token_ids`: x as ids (m, Tx) for a model that starts with embedding / one_hot.
    """
    if src.get("builtin") == "dates":
        from .dates import HUMAN_VOCAB, MACHINE_VOCAB, TX, TY, date_pairs
        n = src.get("n") or 10000
        pairs = date_pairs(rng, n)
        origin = "builtin dates"
        vocab = vocab or PairVocab(source=Vocabulary("char", list(HUMAN_VOCAB), TX),
                                   target=Vocabulary("char", list(MACHINE_VOCAB), TY))
    else:
        pairs, origin = read_text_columns(src, key)
        unit, target_unit = src.get("unit") or "char", src.get("target_unit") or "char"
        for name, value in (("unit", unit), ("target_unit", target_unit)):
            if value not in UNITS:
                raise BadInput(f"must be char or word, got {value!r}", key=f"{key}.{name}")
        vocab = vocab or PairVocab(
            source=source_vocabulary([p[0] for p in pairs], unit, src.get("max_length")),
            target=target_vocabulary([p[1] for p in pairs], target_unit))
    x = encode_sources([p[0] for p in pairs], vocab["source"], ids=token_ids)
    y = encode_targets([p[1] for p in pairs], vocab["target"], origin, f"{key}.y")
    return x, y, vocab, origin


def read_text_columns(src: dict, key: str):
    """[(source text, target text)] from the columns x and y of a CSV or TSV file with a header."""
    path = Path(src["path"])
    if not path.is_file():
        raise BadInput(f"no such file: {path}", key=f"{key}.path")
    delimiter = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    try:
        rows = [row for row in csv.reader(path.read_text().splitlines(), delimiter=delimiter) if row]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise BadInput(f"cannot read {path} as text: {err}", key=f"{key}.path")
    if len(rows) < 2:
        raise BadInput(f"{path} needs a header row and at least one pair", key=f"{key}.path")
    header = [h.strip() for h in rows[0]]
    cols = []
    for name, sub in ((src.get("x") or "x", "x"), (src.get("y") or "y", "y")):
        if name not in header:
            raise BadInput(f"{path} has no column {name!r}; its columns: {', '.join(header)}",
                           key=f"{key}.{sub}")
        cols.append(header.index(name))
    pairs = []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise BadInput(f"{path}: row {line} has {len(row)} fields but the header has "
                           f"{len(header)}", key=f"{key}.path")
        pairs.append((row[cols[0]], row[cols[1]]))
    return pairs, str(path)
