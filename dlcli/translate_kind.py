"""`dlcli predict` for sequence-to-sequence runs: the output kind "translation".

    dlcli predict RUN "3 May 1979" "Tuesday, June 5, 2018" --beam 3 --attention map.png

Each INPUT is a text in the source language, lower-cased where the run's source vocabulary
has no capitals (the course's dates are lower-case without commas, so "Tuesday, June 5, 2018"
reads as "tuesday june 5 2018"). JSON per input: `tokens`, `text`, `probability` (P(y|x)),
`log_probability`, `score` (the length-normalized objective), per-step `probabilities`, and
`attention` ({source, target, weights (T_y x T_x)}). `--attention FILE.png` draws the first
input's map there and the k-th input's at FILE-k.png.
"""

from __future__ import annotations

from pathlib import Path

from .predict import OutputKind, register_kind
from .predict_inputs import Batch


def normalize_text(text: str, vocab) -> str:
    """The course's preparation of a date: lower-case (where the vocabulary has no capitals),
    commas dropped (where it has no comma)."""
    tokens = set(vocab.tokens)
    if not any(t.isupper() for t in tokens if len(t) == 1 or vocab.unit == "word"):
        text = text.lower()
    if vocab.unit == "char" and "," not in tokens:
        text = text.replace(",", "")
    return text


@register_kind
class TranslationKind(OutputKind):
    name = "translation"
    priority = 20
    options = frozenset({"beam", "length_alpha", "attention"})

    @classmethod
    def applies(cls, run) -> bool:
        from .translate import is_seq2seq_run
        return is_seq2seq_run(run.path)

    def read(self, run, inputs) -> Batch:
        from .translate import read_vocab
        self.vocab = read_vocab(run.path)
        texts = [normalize_text(t, self.vocab["source"]) for t in inputs]
        return Batch(list(inputs), texts, [None] * len(inputs), [None] * len(inputs))

    def outputs(self, run, batch) -> dict:
        from .translate import translate
        alpha = 0.7 if self.length_alpha is None else float(self.length_alpha)
        return {"translations": translate(run.model, self.vocab, batch.x, beam=self.beam or 1,
                                          alpha=alpha)}

    def entries(self, run, batch, outputs) -> list:
        self.translations = outputs["translations"]
        entries = []
        for name, t in zip(batch.names, self.translations):
            e = t.to_json()
            e["input"] = name
            e["read_as"] = t.input
            entries.append(e)
        if self.attention:
            self.maps = self._draw_maps(Path(self.attention))
        return entries

    def _draw_maps(self, path: Path) -> list:
        from .translate_render import attention_png
        maps = []
        for k, t in enumerate(self.translations, start=1):
            target = path if k == 1 else path.with_name(f"{path.stem}-{k}{path.suffix or '.png'}")
            maps.append(attention_png(t, target))
        return maps

    def render(self, result, console) -> None:
        from .translate_render import attention_heatmap, translations_table
        translations_table(self.translations, console)
        for t in self.translations:
            console.print()
            attention_heatmap(t, console)
        for path in getattr(self, "maps", []):
            console.print(f"attention map written to {path}")

    def table_rows(self, run, names, entries):
        return (["input", "translation", "probability"],
                [[n, e["text"], e["probability"]] for n, e in zip(names, entries)])
