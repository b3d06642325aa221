"""Translation (dlcli.translate): decoding a model's outputs, the attention it kept, and the
course's beam search error analysis on planted cases."""

import json
import math

import numpy as np
import pytest

from dlcli.data.pairs import EOS, Vocabulary, encode_sources, source_vocabulary
from dlcli.nn.model import build_model
from dlcli.translate import (analyze_beam, beam_error_analysis, save_vocab, split_bleu,
                             translate)


def small_model(V_src, Tx, V_tgt, steps, seed=0):
    cfg = {"init": "xavier", "layers": [
        {"type": "attention_decoder", "units": 6, "steps": steps, "attention_units": 3},
        {"type": "dense", "units": V_tgt, "activation": "softmax"}]}
    return build_model(cfg, input_shape=(Tx, V_src), dtype="float64",
                       rng=np.random.default_rng(seed))


def test_translate_decodes_the_models_outputs():
    src = source_vocabulary(["abc", "cab", "b a"], "char", length=5)
    tgt = Vocabulary("char", list("xyz"), 4)
    model = small_model(len(src.tokens), 5, 3, 4)
    texts = ["abc", "ba", "abq"]  # q is unknown: <unk>
    out = translate(model, {"source": src, "target": tgt}, texts, beam=1)
    probs = model.predict_proba(encode_sources(texts, src, np.float64))
    for t, p in zip(out, probs):
        best = p.argmax(axis=1)
        assert t.text == "".join(tgt.tokens[v] for v in best)
        assert t.probability == pytest.approx(np.prod(p.max(axis=1)), rel=1e-12)
        assert t.step_probabilities == pytest.approx(list(p.max(axis=1)))
        assert t.attention.shape == (4, len(t.source_tokens))
    # the attention kept by the layer for the full padded input sums to one per output step
    assert np.allclose(model.layers[0].attention.sum(axis=2), 1)
    assert out[2].source_tokens == ["a", "b", "q"]
    # no <eos>: every path has 4 steps and its probability is a product of fixed per-step
    # distributions, so a wider beam finds the same answer
    wide = translate(model, {"source": src, "target": tgt}, texts, beam=5)
    assert [w.text for w in wide] == [t.text for t in out]


def test_attention_png_and_heatmap(tmp_path):
    from rich.console import Console

    from dlcli.translate_render import attention_heatmap, attention_png
    src = source_vocabulary(["3 may 1979"], "char", length=12)
    tgt = Vocabulary("char", list("-0123456789"), 10)
    model = small_model(len(src.tokens), 12, 11, 10)
    t = translate(model, {"source": src, "target": tgt}, ["3 may 1979"])[0]
    png = attention_png(t, tmp_path / "map.png")
    from PIL import Image
    with Image.open(png) as im:
        assert im.size[0] > 100 and im.size[1] > 100
    console = Console(record=True, width=80)
    attention_heatmap(t, console)
    text = console.export_text()
    assert "attention" in text and len(text.splitlines()) >= 11


def planted_step(first, after):
    """P(y1) = first; P(y2 | y1) = after[y1]: greedy takes the likelier first token."""
    def step(state, token):
        return np.log(first if token is None else after[token]), state
    return step


def test_beam_error_analysis_planted_search_and_model_faults():
    first = np.array([0.6, 0.4, 1e-12])
    after = {0: np.array([0.33, 0.33, 0.34]), 1: np.array([0.05, 0.05, 0.9]),
             2: np.array([1 / 3] * 3)}
    step = planted_step(first, after)
    problems = [
        (0, step, None, [1, 2]),   # P(y*) = 0.36 > greedy's (0, 2) 0.204: the search's fault
        (1, step, None, [0, 0]),   # P(y*) = 0.198 < the output's: the model's fault
        (2, step, None, [0, 2]),   # greedy gets it right
    ]
    greedy = beam_error_analysis(problems, 2, beam=1, alpha=0.0)
    assert greedy.examples == 3 and greedy.errors == 2
    assert [c.fault for c in greedy.cases] == ["search", "model"]
    assert greedy.search_faults == 1 and greedy.share(greedy.search_faults) == 0.5
    assert greedy.cases[0].log_p_reference == pytest.approx(math.log(0.36))
    assert greedy.cases[0].log_p_output == pytest.approx(math.log(0.6 * 0.34))
    wide = beam_error_analysis(problems, 2, beam=2, alpha=0.0)
    # beam 2 finds (1, 2): example 0 is right now; 1 and 2 are wrong and the model's fault
    assert [c.index for c in wide.cases] == [1, 2]
    assert wide.search_faults == 0 and wide.focus == "model"
    assert json.loads(json.dumps(wide.to_json()))["model_share"] == 1.0


def write_planted_run(path, probabilities, y_true, vocab):
    (path / "predictions").mkdir(parents=True)
    np.savez(path / "predictions" / "dev.npz", y_true=y_true, y_pred=probabilities.argmax(-1),
             probabilities=probabilities, index=np.arange(len(y_true)))
    (path / "recipe.yaml").write_text("name: planted\n")
    save_vocab(path, vocab)


def test_analyze_beam_on_a_planted_run(tmp_path):
    # targets a | b | <eos>, at most one token then <eos>; the reference of example 0 is the
    # empty translation (<eos> at once, P = 0.4); greedy takes "a" (0.5) then "a" (0.45):
    # P = 0.225 < 0.4, a search fault that beam 2 repairs. Example 1: the model is wrong.
    tgt = Vocabulary("char", ["a", "b", EOS], 2)
    src = Vocabulary("char", ["x", "<unk>", "<pad>"], 3)
    p = np.array([[[0.5, 0.1, 0.4], [0.45, 0.45, 0.1]],
                  [[0.7, 0.2, 0.1], [0.05, 0.05, 0.9]],
                  [[0.1, 0.8, 0.1], [0.05, 0.05, 0.9]]])
    y = np.array([[2, -1], [1, 2], [1, 2]])
    write_planted_run(tmp_path / "run", p, y, {"source": src, "target": tgt})
    greedy = analyze_beam(tmp_path / "run", beam=1, alpha=0.0)
    assert (greedy.examples, greedy.errors, greedy.search_faults, greedy.model_faults) == (3, 2, 1, 1)
    assert greedy.to_json()["cases"][0]["reference_text"] == ""
    assert greedy.to_json()["cases"][1]["output_text"] == "a"
    wide = analyze_beam(tmp_path / "run", beam=2, alpha=0.0)
    assert (wide.errors, wide.search_faults, wide.model_faults) == (1, 0, 1)


def test_analyze_beam_cli_json(tmp_path):
    from typer.testing import CliRunner

    from dlcli.cli import app
    tgt = Vocabulary("char", ["a", "b", EOS], 2)
    src = Vocabulary("char", ["x", "<unk>", "<pad>"], 3)
    p = np.array([[[0.5, 0.1, 0.4], [0.45, 0.45, 0.1]], [[0.1, 0.8, 0.1], [0.05, 0.05, 0.9]]])
    write_planted_run(tmp_path / "run", p, np.array([[2, -1], [1, 2]]), {"source": src, "target": tgt})
    result = CliRunner().invoke(app, ["analyze", "beam", str(tmp_path / "run"), "--beam", "1",
                                      "--length-alpha", "0", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["errors"] == 1 and doc["search_faults"] == 1 and doc["search_share"] == 1.0
    table = CliRunner().invoke(app, ["analyze", "beam", str(tmp_path / "run"), "--beam", "1"])
    assert table.exit_code == 0 and "beam search at fault" in table.stdout
    missing = CliRunner().invoke(app, ["analyze", "beam", str(tmp_path / "run"), "--split", "test"])
    assert missing.exit_code == 2


def test_split_bleu_word_targets_only():
    words = Vocabulary("word", ["the", "cat", "sat", "on", "mat", EOS], 7)
    y = np.array([[0, 1, 2, 3, 0, 4, 5]])
    p = np.eye(6)[[0, 1, 2, 3, 0, 4, 5]][None]
    assert split_bleu(p, y, words) == pytest.approx(1.0)
    chars = Vocabulary("char", list("ab"), 2)
    assert split_bleu(np.eye(2)[[[0, 1]]], np.array([[0, 1]]), chars) is None
