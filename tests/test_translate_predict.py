"""`dlcli predict` on a sequence-to-sequence run, and `dlcli train` on the dates builtin."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from dlcli import api
from dlcli.cli import app

RECIPE = {
    "name": "tiny-dates", "seed": 3,
    "data": {"train": {"builtin": "dates", "n": 300}, "test": 0.2, "dev": 0.2},
    "model": {"init": "xavier", "layers": [
        {"type": "attention_decoder", "units": 8, "steps": 10, "attention_units": 4},
        {"type": "dense", "units": 11, "activation": "softmax"}]},
    "optimizer": {"name": "adam", "learning_rate": 0.01},
    "training": {"epochs": 2, "batch_size": 60},
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return api.train(RECIPE, runs_dir=tmp_path_factory.mktemp("runs"))


def test_train_writes_vocabularies_and_sequence_metrics(tiny_run):
    vocab = json.loads((tiny_run.run_dir / "vocab.json").read_text())
    assert len(vocab["source"]["tokens"]) == 37 and vocab["source"]["length"] == 30
    assert vocab["target"]["tokens"] == list("-0123456789") and vocab["target"]["length"] == 10
    s = tiny_run.summary
    assert set(s["sequence_metrics"]["test"]) >= {"sequence_error", "perplexity", "bleu"}
    assert s["sequence_metrics"]["test"]["bleu"] is None  # character targets: no BLEU
    with np.load(tiny_run.run_dir / "predictions" / "test.npz") as f:
        assert f["probabilities"].shape == (60, 10, 11) and f["y_true"].shape == (60, 10)


def test_predict_gives_the_runs_own_predictions(tiny_run, tmp_path):
    test = tiny_run.dataset.splits["test"]
    src = tiny_run.dataset.vocab["source"]
    texts = [src.decode(x.argmax(axis=1)) for x in test.x[:5]]
    png = tmp_path / "map.png"
    result = CliRunner().invoke(app, ["predict", str(tiny_run.run_dir), *texts, "--json",
                                      "--attention", str(png)])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    with np.load(tiny_run.run_dir / "predictions" / "test.npz") as f:
        y_pred, probs = f["y_pred"][:5], f["probabilities"][:5]
    tgt = list("-0123456789")
    for p, yp, pr in zip(doc["predictions"], y_pred, probs):
        assert p["text"] == "".join(tgt[v] for v in yp)
        assert p["tokens"] == [tgt[v] for v in yp]
        assert p["probabilities"] == pytest.approx(pr.max(axis=1).tolist(), rel=1e-5)
        assert p["probability"] == pytest.approx(float(np.prod(pr.max(axis=1))), rel=1e-4)
        w = np.array(p["attention"]["weights"])
        assert w.shape == (10, len(p["input"]))
    assert png.exists() and (tmp_path / "map-5.png").exists()


def test_predict_table_beam_and_bad_option(tiny_run):
    runner = CliRunner()
    out = runner.invoke(app, ["predict", str(tiny_run.run_dir), "Tuesday, June 5, 2018", "--beam", "3"])
    assert out.exit_code == 0, out.output
    assert "tuesday june 5 2018" in out.stdout and "P(y|x)" in out.stdout
    assert "attention" in out.stdout
    bad = runner.invoke(app, ["predict", str(tiny_run.run_dir), "3 may 1979", "--windows"])
    assert bad.exit_code == 2


def test_show_prints_the_courses_52960_parameters():
    from pathlib import Path

    from conftest import course_data
    course_data("dates", "dates_10000.tsv")
    recipes = Path(__file__).resolve().parents[1] / "recipes"
    for name in ("dates_attention.yaml", "dates_builtin.yaml"):
        out = CliRunner().invoke(app, ["show", str(recipes / name)], env={"COLUMNS": "100"})
        assert out.exit_code == 0, out.output
        assert "52,960" in out.stdout
        assert "attention_decoder 64" in out.stdout and "(m, 10, 64)" in out.stdout
        assert "34,325" in out.stdout  # attention 1,290 + 11, post-attention LSTM 33,024


def test_gradcheck_passes_on_an_attention_recipe(tmp_path):
    recipe = tmp_path / "gc.yaml"
    recipe.write_text(
        "seed: 2\ndtype: float64\ndata: {train: {builtin: dates, n: 20}}\nmodel:\n  init: xavier\n"
        "  layers:\n    - {type: bidirectional, layer: {type: lstm, units: 3, return_sequences: true}}\n"
        "    - {type: attention_decoder, units: 4, steps: 10, attention_units: 3}\n"
        "    - {type: dense, units: 11, activation: softmax}\n")
    out = CliRunner().invoke(app, ["gradcheck", str(recipe), "--examples", "3", "--json",
                                   "--max-per-tensor", "20"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert any(k.startswith("1.lstm.") for k in json.dumps(doc).split('"'))


def test_a_model_that_starts_with_one_hot_reads_token_ids(tmp_path):
    recipe = {**RECIPE, "data": {"train": {"builtin": "dates", "n": 100}, "dev": 0.2},
              "training": {"epochs": 1, "batch_size": 50},
              "model": {"init": "xavier", "layers": [
                  {"type": "one_hot", "vocab": "auto"},
                  {"type": "attention_decoder", "units": 5, "steps": 10, "attention_units": 3},
                  {"type": "dense", "units": "auto", "activation": "softmax"}]}}
    run = api.train(recipe, runs_dir=tmp_path)
    assert run.dataset.splits["train"].x.shape == (80, 30)   # ids, not one-hot
    assert run.model.layers[0].vocab == 37 and run.model.layers[2].units == 11
    out = CliRunner().invoke(app, ["predict", str(run.run_dir), "3 may 1979", "--json"])
    assert out.exit_code == 0, out.output
    p = json.loads(out.stdout)["predictions"][0]
    assert len(p["text"]) == 10 and len(p["attention"]["weights"]) == 10


def test_word_level_pairs_get_bleu_in_the_summary(tmp_path):
    rng = np.random.default_rng(0)
    words = ["red", "blue", "green", "cat", "dog", "big", "small"]
    rows = []
    for _ in range(120):
        sentence = " ".join(rng.choice(words, size=rng.integers(5, 8)))
        rows.append(f"{sentence}\t{sentence.upper()}")   # "translate" into capitals
    f = tmp_path / "pairs.tsv"
    f.write_text("en\tcaps\n" + "\n".join(rows) + "\n")
    recipe = {**RECIPE, "data": {"train": {"path": str(f), "x": "en", "y": "caps", "unit": "word",
                                           "target_unit": "word"}, "test": 0.25},
              "training": {"epochs": 30, "batch_size": 15},
              "model": {"init": "xavier", "layers": [
                  {"type": "attention_decoder", "units": 16, "steps": 8, "attention_units": 4},
                  {"type": "dense", "units": "auto", "activation": "softmax"}]}}
    run = api.train(recipe, runs_dir=tmp_path / "runs")
    bleu = run.summary["sequence_metrics"]["test"]["bleu"]
    assert isinstance(bleu, float) and 0 < bleu <= 1  # it learns some 4-grams
    assert run.model.layers[1].units == 8  # 7 capitalised words and <eos>
    # the same figure from the saved predictions, through nltk's corpus_bleu
    nltk_bleu = pytest.importorskip("nltk.translate.bleu_score")
    tokens = json.loads((run.run_dir / "vocab.json").read_text())["target"]["tokens"]
    with np.load(run.run_dir / "predictions" / "test.npz") as f:
        y_true, y_pred = f["y_true"], f["y_pred"]

    def words_of(ids):
        out = []
        for i in ids:
            if i < 0 or tokens[i] == "<eos>":
                break
            out.append(tokens[i])
        return out
    refs = [[words_of(t)] for t in y_true]
    hyps = [words_of(p) for p in y_pred]
    if all(len(h) >= 4 for h in hyps):  # nltk's count differs on shorter ones (see test_bleu)
        assert bleu == pytest.approx(nltk_bleu.corpus_bleu(refs, hyps), abs=1e-12)
    from dlcli.bleu import corpus_bleu
    assert bleu == pytest.approx(corpus_bleu(refs, hyps), abs=1e-12)
