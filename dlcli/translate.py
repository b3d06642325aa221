"""Translation with a trained sequence-to-sequence run, and the course's beam error analysis.

Jobs only: they return dataclasses (`to_json()`), and `dlcli.translate_render` draws them.

    vocab = read_vocab(run_dir)                       # vocab.json: source and target vocabularies
    out = translate(model, vocab, ["3 May 1979"], beam=3, alpha=0.7)
    out[0].text, out[0].probability, out[0].attention  # "1979-05-03", P(y|x), (T_y, T_x)

    analyze_beam(run_dir, split="dev", beam=3)        # BeamAnalysis: search vs model faults

The course's date model never reads its own outputs (its decoder LSTM sees only the
contexts), so P(y|x) = prod_t P(y<t>|x) with every step's distribution fixed by x: decoding
runs over those per-step distributions (`decode.fixed_steps`). With `<eos>` in the target
vocabulary (targets of several lengths) beam search and length normalization still choose
where a translation ends; without it every translation has T_y tokens.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .decode import beam_search, fixed_steps, normalized, sequence_log_prob
from .errors import BadInput

VOCAB_FILE = "vocab.json"


# -- vocabularies in the run ------------------------------------------------------------------
def save_vocab(run_dir, vocab: dict) -> None:
    from .data.pairs import PairVocab
    PairVocab(vocab).save(Path(run_dir) / VOCAB_FILE)


def read_vocab(run_dir) -> dict:
    from .data.pairs import PairVocab
    path = Path(run_dir) / VOCAB_FILE
    try:
        return PairVocab.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        raise BadInput("the run has no vocab.json: it was not trained on sequence pairs", file=path.parent)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise BadInput(f"cannot read the vocabularies: {err}", file=path)


def is_seq2seq_run(run_dir) -> bool:
    path = Path(run_dir) / VOCAB_FILE
    if not path.exists():
        return False
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "source" in data and "target" in data


# -- translation ------------------------------------------------------------------------------
@dataclass
class Translation:
    input: str
    source_tokens: list          # the input's tokens as the model read them (cut to T_x)
    tokens: list                 # the translation's tokens (<eos> left out)
    text: str
    probability: float           # P(y|x) of the whole output (its <eos> included)
    log_prob: float
    score: float                 # the normalized score the search ranked by
    step_probabilities: list     # P(y<t>|x, ...) of each emitted token
    attention: np.ndarray | None = field(default=None, repr=False)  # (T_y out, T_x in) weights

    def to_json(self) -> dict:
        out = {"input": self.input, "tokens": self.tokens, "text": self.text,
               "probability": self.probability, "log_probability": self.log_prob,
               "score": self.score, "probabilities": self.step_probabilities}
        if self.attention is not None:
            out["attention"] = {"source": self.source_tokens, "target": self.tokens_with_end(),
                                "weights": self.attention.tolist()}
        return out

    def tokens_with_end(self) -> list:
        n = len(self.step_probabilities)
        return self.tokens + ["<eos>"] * (n - len(self.tokens))


def attention_layer(model):
    from .nn.attention import AttentionDecoder
    for _, layer in model.named_layers():
        if isinstance(layer, AttentionDecoder):
            return layer
    return None


def translate(model, vocab: dict, texts, beam: int = 1, alpha: float = 0.7,
              batch_size: int = 256) -> list[Translation]:
    """Each text translated: beam search (beam = 1: greedy) over the model's per-step outputs."""
    from .data.pairs import EOS, encode_sources
    src, tgt = vocab["source"], vocab["target"]
    if beam < 1:
        raise BadInput(f"must be at least 1, got {beam}", key="--beam")
    texts = list(texts)
    x = encode_sources(texts, src, dtype=model.dtype, ids=getattr(model.layers[0], "needs_ids", False))
    layer = attention_layer(model)
    probs, attention = [], []
    for i in range(0, len(texts), batch_size):
        probs.append(model.loss.output(model.forward(x[i:i + batch_size], False)))
        if layer is not None:
            attention.append(layer.attention)
    probs = np.concatenate(probs).astype(np.float64)
    attention = np.concatenate(attention) if attention else None
    eos = tgt.ids.get(EOS)
    with np.errstate(divide="ignore"):
        log_probs = np.log(probs)
    out = []
    for r, text in enumerate(texts):
        hyp = beam_search(fixed_steps(log_probs[r]), 0, probs.shape[1], beam, eos=eos, alpha=alpha)[0]
        source_tokens = src.split(text)[:src.length]
        steps = [float(probs[r, t, v]) for t, v in enumerate(hyp.tokens)]
        tokens = [tgt.tokens[v] for v in hyp.tokens if v != eos]
        att = None
        if attention is not None:
            att = attention[r, :len(hyp.tokens), :max(1, len(source_tokens))]
        out.append(Translation(text, source_tokens, tokens, tgt.join(tokens),
                               math.exp(hyp.log_prob), hyp.log_prob, hyp.score, steps, att))
    return out


# -- sequence metrics -------------------------------------------------------------------------
def split_bleu(probabilities, y, target_vocab) -> float | None:
    """Corpus BLEU of a split's argmax outputs against its targets; None for char targets."""
    from .bleu import corpus_bleu
    if target_vocab is None or target_vocab.unit != "word":
        return None
    refs, hyps = [], []
    for p, t in zip(np.asarray(probabilities), np.asarray(y)):
        refs.append([target_vocab.decode(t[t >= 0]).split()])
        hyps.append(target_vocab.decode(p.argmax(axis=-1)).split())
    return corpus_bleu(refs, hyps) if refs else None


# -- beam search error analysis (the notes' 5.3) -----------------------------------------------
@dataclass
class BeamCase:
    index: int                  # row in the split
    reference: list             # y* token ids
    output: list                # yhat token ids, from the beam search
    log_p_reference: float      # log P(y*|x)
    log_p_output: float         # log P(yhat|x)
    score_reference: float      # the objective the search maximizes (length-normalized)
    score_output: float
    fault: str                  # "search" (P(y*|x) > P(yhat|x)) or "model"

    def to_json(self, vocab=None) -> dict:
        out = {"index": self.index, "reference": self.reference, "output": self.output,
               "log_p_reference": self.log_p_reference, "log_p_output": self.log_p_output,
               "score_reference": self.score_reference, "score_output": self.score_output,
               "fault": self.fault}
        if vocab is not None:
            out["reference_text"] = vocab.decode(self.reference)
            out["output_text"] = vocab.decode(self.output)
        return out


@dataclass
class BeamAnalysis:
    split: str
    beam: int
    alpha: float
    examples: int
    cases: list                 # BeamCase for each error
    run: str | None = None
    vocab: object = field(default=None, repr=False)   # the target Vocabulary, for texts

    @property
    def errors(self) -> int:
        return len(self.cases)

    @property
    def search_faults(self) -> int:
        return sum(c.fault == "search" for c in self.cases)

    @property
    def model_faults(self) -> int:
        return self.errors - self.search_faults

    def share(self, n) -> float | None:
        return n / self.errors if self.errors else None

    @property
    def focus(self) -> str | None:
        """The course's conclusion: work on what causes the larger share of the errors."""
        if not self.errors:
            return None
        return "beam search" if self.search_faults > self.model_faults else "model"

    def to_json(self) -> dict:
        return {"run": self.run, "split": self.split, "beam": self.beam, "length_alpha": self.alpha,
                "examples": self.examples, "errors": self.errors,
                "sequence_error": self.errors / self.examples if self.examples else None,
                "search_faults": self.search_faults, "model_faults": self.model_faults,
                "search_share": self.share(self.search_faults),
                "model_share": self.share(self.model_faults), "focus": self.focus,
                "cases": [c.to_json(self.vocab) for c in self.cases]}


def beam_error_analysis(problems, max_length: int, beam: int, eos=None, alpha: float = 0.7,
                        split: str = "dev") -> BeamAnalysis:
    """`problems`: (index, step, state, reference ids) for each example. Each is decoded by
    beam search; for each wrong output, y* against yhat under the search's own objective:
    score(y*) > score(yhat) means the search missed a better sequence (search fault), else
    the model ranks the wrong output higher (model fault)."""
    cases, n = [], 0
    for index, step, state, reference in problems:
        n += 1
        reference = [int(v) for v in reference]
        hyp = beam_search(step, state, max_length, beam, eos=eos, alpha=alpha)[0]
        output = [int(v) for v in hyp.tokens]
        if output == reference:
            continue
        lp_ref = sequence_log_prob(step, state, reference)
        s_ref = normalized(lp_ref, len(reference), alpha)
        cases.append(BeamCase(int(index), reference, output, lp_ref, hyp.log_prob, s_ref, hyp.score,
                              "search" if s_ref > hyp.score else "model"))
    return BeamAnalysis(split, beam, alpha, n, cases)


def analyze_beam(run, split: str = "dev", beam: int = 3, alpha: float = 0.7) -> BeamAnalysis:
    """The beam error analysis of a trained run's split, from predictions/<split>.npz (the
    per-step probabilities it saved) and its vocab.json."""
    from .data.pairs import EOS
    from .runs import find_run
    path = find_run(run)
    vocab = read_vocab(path)["target"]
    file = path / "predictions" / f"{split}.npz"
    if not file.exists():
        raise BadInput(f"the run has no predictions for the {split} split", file=file)
    with np.load(file, allow_pickle=False) as f:
        probs, y, index = f["probabilities"].astype(np.float64), f["y_true"], f["index"]
    if probs.ndim != 3:
        raise BadInput("not a sequence run: its predictions are not (m, T, V)", file=file)
    with np.errstate(divide="ignore"):
        log_probs = np.log(probs)
    problems = ((index[r], fixed_steps(log_probs[r]), 0, y[r][y[r] >= 0]) for r in range(len(y)))
    result = beam_error_analysis(problems, probs.shape[1], beam, vocab.ids.get(EOS), alpha, split)
    result.run, result.vocab = str(path), vocab
    return result
