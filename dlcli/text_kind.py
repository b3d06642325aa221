"""`dlcli predict` for text runs: output kinds "text_classifier" and "language_model".

    dlcli predict RUN "I love you" "food is life"      # a classifier trained on a text column
    dlcli predict RUN "tyranno"                         # a language model: each step's next token

Inputs are strings, read with the run's vocab.json exactly as training read its text (same
unit, same lower-casing, unknown words as <unk>, padded with -1 to the run's length and
masked). A classifier's JSON entry is the classifier's (`class`, `label`, `probabilities`) plus
`tokens` (the tokens the model read). A language model's entry is the sequence output SPEC
describes: `tokens` and `text` (the most probable next token at every step, the first read
after the start), per-step `probabilities` (each step's distribution over the vocabulary) and
`next` (the most probable token after the whole input).
"""

from __future__ import annotations

import numpy as np

from .errors import BadInput
from .predict import OutputKind, _generic_table, register_kind
from .predict_inputs import Batch


def _vocab(run):
    from .text import Vocabulary
    path = run.path / "vocab.json"
    return Vocabulary.load(path) if path.exists() else None


@register_kind
class TextClassifier(OutputKind):
    name = "text_classifier"
    priority = 10

    @classmethod
    def applies(cls, run) -> bool:
        v = _vocab(run)
        return v is not None and v.task == "classify"

    def read(self, run, inputs) -> Batch:
        from .text import encode_texts
        self.vocab = _vocab(run)
        x = encode_texts(inputs, self.vocab, int(run.spec.input_shape[0]))
        self.read_as = [[self.vocab.tokens[i] for i in row if i >= 0] for row in x]
        return Batch(list(inputs), x, [None] * len(inputs), [None] * len(inputs))

    def entries(self, run, batch, outputs):
        return [{**e, "tokens": t} for e, t in zip(super().entries(run, batch, outputs), self.read_as)]


@register_kind
class LanguageModel(OutputKind):
    name = "language_model"
    priority = 10

    @classmethod
    def applies(cls, run) -> bool:
        v = _vocab(run)
        return v is not None and v.task == "language_model"

    def read(self, run, inputs) -> Batch:
        from .text import PAD, START
        self.vocab = _vocab(run)
        rows = []
        for text in inputs:
            try:
                rows.append([START] + self.vocab.encode(text))
            except KeyError as err:
                raise BadInput(f"{text!r}: the run's vocabulary has no token {err.args[0]!r} "
                               "and no <unk>", key="INPUT")
        T = max(len(r) for r in rows)
        x = np.full((len(rows), T), PAD, dtype=np.int64)
        for i, r in enumerate(rows):
            x[i, :len(r)] = r
        self.lengths = [len(r) for r in rows]
        return Batch(list(inputs), x, [None] * len(inputs), [None] * len(inputs))

    def entries(self, run, batch, outputs):
        p = np.asarray(outputs["probabilities"], dtype=np.float64)
        out = []
        for row, n in zip(p, self.lengths):
            ids = row[:n].argmax(axis=-1)
            tokens = [self.vocab.tokens[i] for i in ids]
            out.append({"tokens": tokens, "text": self.vocab.decode(ids, stop_at_end=False),
                        "next": tokens[-1], "probabilities": [[float(v) for v in s] for s in row[:n]]})
        return out

    def render(self, result, console):
        _generic_table(result, console, lambda e: [repr(e["next"]), e["text"]],
                       ["next token", "most probable token at each step"])

    def table_rows(self, run, names, entries):
        return (["input", "next", "text"], [[n, e["next"], e["text"]] for n, e in zip(names, entries)])
