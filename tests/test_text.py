"""Text data, the sequence loss and masks, clipping, units/vocab auto, sample, show and
gradcheck on recurrent recipes."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import course_data, numerical_grad
from dlcli.cli import app

runner = CliRunner()


def _cli(*args):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def _dinos_recipe(tmp_path, extra="", layers=None, name="dinos"):
    path = tmp_path / f"{name}.yaml"
    layers = layers or """
    - {type: one_hot, vocab: auto}
    - {type: rnn, units: 8, return_sequences: true}
    - {type: dense, units: auto, activation: softmax}"""
    path.write_text(f"""
name: {name}
data:
  train: {{text: "{course_data('text', 'dinos.txt')}", unit: char, task: language_model, lower: true}}
  dev: 0.1
model:
  init: xavier
  layers:{layers}
optimizer: {{name: adam, learning_rate: 0.01, clip: {{value: 5}}}}
training: {{epochs: 1, batch_size: 256}}
{extra}""")
    return path


# -- data ---------------------------------------------------------------------------------------
def test_dinos_language_model_data():
    from dlcli.data import load_dataset
    ds = load_dataset({"train": {"text": str(course_data("text", "dinos.txt")), "unit": "char",
                                 "task": "language_model", "lower": True}}, 0)
    vocab = ds.vocab
    assert len(vocab) == 27 and vocab.tokens[0] == "\n" and vocab.tokens[1:] == list("abcdefghijklmnopqrstuvwxyz")
    tr = ds.splits["train"]
    assert tr.x.shape[0] == 1536 and tr.x.dtype == np.int64
    # the course's X = [None] + ids, Y = ids + ["\n"]: "aachenosaurus" first
    n = len("aachenosaurus")
    assert tr.x[0, 0] == -2 and list(tr.x[0, 1:n + 1]) == vocab.encode("aachenosaurus")
    assert list(tr.y[0, :n + 1]) == vocab.encode("aachenosaurus") + [0]
    assert np.all(tr.y[0, n + 1:] == -1) and np.all(tr.x[0, n + 1:] == -1)
    assert vocab.decode(tr.y[0]) == "aachenosaurus"


def test_dinos_rnn_starts_at_the_courses_loss_of_ln_27_per_character():
    # COURSE_NUMBERS §16: weights randn x 0.01 give near-uniform softmaxes at the start, so the
    # course's loss (summed over a name's characters) begins at -ln(1/27) per character
    from dlcli import api
    recipe = api.as_recipe("recipes/dinos_rnn.yaml", [f"data.train.text={course_data('text', 'dinos.txt')}"])
    model, ds = api.prepare(recipe)
    tr = ds.splits["train"]
    characters = int((tr.y >= 0).sum())
    cost = model.cost(tr.x, tr.y)  # (1/m) sum_i sum_t L<t>: per name, summed over characters
    np.testing.assert_allclose(cost, np.log(27) * characters / len(tr.y), rtol=1e-3)


def test_csv_text_classification_and_unknown_words():
    from dlcli.data import load_dataset
    src = {"path": str(course_data("emojify", "train.csv")), "x": "sentence", "y": "emoji",
           "unit": "word", "lower": True}
    test = {**src, "path": str(course_data("emojify", "test.csv"))}
    ds = load_dataset({"train": src, "test": test}, 0)
    assert ds.splits["train"].x.shape[0] == 132 and ds.splits["test"].x.shape[0] == 56
    assert ds.n_classes == 5 and ds.vocab.tokens[0] == "<unk>"
    assert ds.splits["train"].y.tolist()[:2] == [3, 2]
    x = ds.splits["train"].x[0]
    assert ds.vocab.decode(x) == "never talk to me again" and np.all(x[5:] == -1)
    test_ids = ds.splits["test"].x
    assert (test_ids == ds.vocab.unk_id).any()  # words the training split never saw


def test_vocabulary_json_round_trip_and_encode_texts(tmp_path):
    from dlcli.text import Vocabulary, encode_texts
    v = Vocabulary(["<unk>", "i", "love", "you"], "word", True, "classify")
    v.save(tmp_path / "vocab.json")
    w = Vocabulary.load(tmp_path / "vocab.json")
    assert w.tokens == v.tokens and w.unit == "word" and w.lower
    assert encode_texts(["I love YOU", "love pizza"], w).tolist() == [[1, 2, 3], [2, 0, -1]]


# -- the sequence loss --------------------------------------------------------------------------
def test_sequence_cost_is_the_sum_over_unmasked_steps_over_m():
    from dlcli.nn.losses import CategoricalCrossentropy
    rng = np.random.default_rng(0)
    z = rng.standard_normal((2, 4, 5))
    y = np.array([[1, 2, 3, -1], [4, 0, -1, -1]])
    loss = CategoricalCrossentropy()
    cost = loss.forward(z, y)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    expected = -sum(logp[i, t, y[i, t]] for i in range(2) for t in range(4) if y[i, t] >= 0) / 2
    assert cost == pytest.approx(expected, rel=1e-12)
    dz = loss.backward()
    assert np.all(dz[0, 3] == 0) and np.all(dz[1, 2:] == 0)
    np.testing.assert_allclose(dz, numerical_grad(lambda: loss.forward(z, y), z), rtol=1e-6, atol=1e-9)
    out = np.exp(logp)
    pred = out.argmax(-1)
    present = y >= 0
    assert loss.error(out, y) == pytest.approx(np.mean(pred[present] != y[present]))


@pytest.mark.parametrize("trim", [True, False])
def test_padding_adds_nothing_to_cost_or_gradients(trim, monkeypatch):
    """An example padded with more steps gives the same cost and gradients (many-to-many,
    bidirectional), with the batch trimmed to its longest example and without (the masks alone)."""
    from dlcli.nn import sequence
    from dlcli.nn.model import build_model
    if not trim:
        monkeypatch.setattr(sequence, "TRIM_SAFE", set())
    for last in ({"type": "dense", "units": 6, "activation": "softmax"},):
        for rnn in ({"type": "lstm", "units": 4, "return_sequences": True},
                    {"type": "bidirectional", "layer": {"type": "gru", "units": 3, "return_sequences": True}}):
            results = []
            for T in (4, 7):
                model = build_model({"layers": [{"type": "embedding", "dim": 3, "vocab": 6}, rnn, last]},
                                    input_shape=(T,), dtype="float64", rng=np.random.default_rng(0))
                x = np.full((2, T), -1)
                y = np.full((2, T), -1)
                x[0, :4], y[0, :4] = [-2, 1, 2, 3], [1, 2, 3, 0]
                x[1, :2], y[1, :2] = [-2, 5], [5, 0]
                cost = model.cost(x, y)
                model.backward()
                results.append((cost, {n: l.grads[k].copy() for n, l, k in model.trainable()}))
            assert results[0][0] == pytest.approx(results[1][0], rel=1e-12)
            for name in results[0][1]:
                np.testing.assert_allclose(results[0][1][name], results[1][1][name], rtol=1e-10, atol=1e-14)


# -- clipping -----------------------------------------------------------------------------------
def test_clip_value_is_the_course_clip_and_norm_is_global():
    from dlcli.clipping import clip_gradients
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal((5, 3)) * 10, rng.standard_normal((5, 1)) * 10]
    course = [np.clip(g, -5, 5) for g in grads]  # the course's clip(gradients, maxValue=5)
    assert clip_gradients(grads, {"value": 5})
    for g, c in zip(grads, course):
        np.testing.assert_array_equal(g, c)
    assert not clip_gradients(grads, {"value": 5})
    norm = np.sqrt(sum((g ** 2).sum() for g in grads))
    expected = [g * (2 / norm) for g in grads]
    assert clip_gradients(grads, {"norm": 2})
    for g, e in zip(grads, expected):
        np.testing.assert_allclose(g, e, rtol=1e-12)
    assert np.sqrt(sum((g ** 2).sum() for g in grads)) == pytest.approx(2)


def test_clip_needs_exactly_one_setting(tmp_path):
    recipe = _dinos_recipe(tmp_path)
    result = _cli("show", recipe, "--set", "optimizer.clip.norm=3")
    assert result.exit_code == 2 and "optimizer.clip" in result.output


# -- commands -----------------------------------------------------------------------------------
def test_show_prints_sequence_shapes_and_lstm_parameter_count(tmp_path):
    recipe = _dinos_recipe(tmp_path, layers="""
    - {type: embedding, dim: 16, vocab: auto}
    - {type: lstm, units: 32, return_sequences: true}
    - {type: bidirectional, layer: {type: gru, units: 8, return_sequences: true}}
    - {type: dense, units: auto, activation: softmax}""")
    result = _cli("show", recipe)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "(m, 27, 16)" in out and "(m, 27, 32)" in out and "(m, 27, 16)" in out
    assert f"{4 * 32 * (32 + 16 + 1):,}" in out  # 4 n_a (n_a + n_x + 1)
    assert f"{2 * 3 * 8 * (8 + 32 + 1):,}" in out
    assert f"{16 * 27:,}" in out and f"{27 * 16 + 27:,}" in out


def test_train_sample_deterministic_per_seed(tmp_path):
    recipe = _dinos_recipe(tmp_path)
    result = _cli("train", recipe, "--quiet", "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    run = next((tmp_path / "runs").iterdir())
    summary = json.loads((run / "summary.json").read_text())
    seq = summary["sequence_metrics"]
    assert seq["dev"]["perplexity"] > 1 and seq["dev"]["bleu"] is None and seq["test"] is None
    assert 0 <= seq["train"]["sequence_error"] <= 1
    assert json.loads((run / "vocab.json").read_text())["tokens"][0] == "\n"
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert "clipped" in record
    one = _cli("sample", run, "--n", 6, "--seed", 4, "--json")
    two = _cli("sample", run, "--n", 6, "--seed", 4, "--json")
    other = _cli("sample", run, "--n", 6, "--seed", 5, "--json")
    assert one.exit_code == 0, one.output
    a, b, c = (json.loads(r.stdout)["samples"] for r in (one, two, other))
    assert a == b and a != c and len(a) == 6
    assert all(set(s) <= set("abcdefghijklmnopqrstuvwxyz") for s in a)
    short = json.loads(_cli("sample", run, "--n", 6, "--max-length", 3, "--json").stdout)["samples"]
    assert all(len(s) <= 3 for s in short)
    assert _cli("sample", run, "--temperature", 0).exit_code == 2
    # error analysis treats each unmasked step as a token to classify: the token error
    analysis = _cli("analyze", "errors", run, "--json")
    assert analysis.exit_code == 0, analysis.output
    assert json.loads(analysis.stdout)["error"] == pytest.approx(summary["errors"]["dev"])


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_gradcheck_on_a_recurrent_recipe(tmp_path, kind):
    recipe = _dinos_recipe(tmp_path, layers=f"""
    - {{type: embedding, dim: 4, vocab: auto}}
    - {{type: bidirectional, layer: {{type: {kind}, units: 3, return_sequences: true}}}}
    - {{type: {kind}, units: 5, return_sequences: true}}
    - {{type: dense, units: auto, activation: softmax}}""")
    result = _cli("gradcheck", recipe, "--examples", 3, "--max-per-tensor", 15, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout.strip().splitlines()[-1])
    assert doc["passed"] and doc["overall"] < 1e-6
    names = {t["name"] for t in doc["tensors"]}
    assert {"0.E", "1.forward.W" + ("aa" if kind == "rnn" else "c"), "1.backward.b" + ("a" if kind == "rnn" else "c")} <= names


def test_integer_ids_from_npz_feed_an_embedding(tmp_path):
    from dlcli import api
    rng = np.random.default_rng(0)
    x = rng.integers(0, 9, size=(40, 5))
    np.savez(tmp_path / "ids.npz", x=x, y=(x.sum(1) % 2))
    (tmp_path / "r.yaml").write_text("""
data: {train: {path: ids.npz}}
model:
  layers:
    - {type: embedding, dim: 3}
    - {type: gru, units: 4}
    - {type: dense, units: auto, activation: softmax}
training: {epochs: 2}
""")
    model, _ = api.prepare(api.as_recipe(tmp_path / "r.yaml"))
    assert model.layers[0].params["E"].shape == (3, 9)
    assert model.layers[-1].params["W"].shape == (2, 4)


def test_missing_text_file_is_bad_input(tmp_path):
    (tmp_path / "r.yaml").write_text("""
data: {train: {text: nothing.txt}}
model: {layers: [{type: one_hot}, {type: rnn, units: 3, return_sequences: true}, {type: dense, units: auto, activation: softmax}]}
""")
    result = _cli("train", tmp_path / "r.yaml", "--quiet", "--runs-dir", tmp_path)
    assert result.exit_code == 2 and "nothing.txt" in result.output and "data.train.text" in result.output


def test_predict_text_classifier_gives_the_runs_own_predictions(tmp_path):
    import csv
    recipe = tmp_path / "emo.yaml"
    recipe.write_text(f"""
data:
  train: {{path: "{course_data('emojify', 'train.csv')}", x: sentence, y: emoji, unit: word, lower: true}}
  test: {{path: "{course_data('emojify', 'test.csv')}", x: sentence, y: emoji, unit: word, lower: true}}
model:
  layers:
    - {{type: embedding, dim: 8, vocab: auto}}
    - {{type: lstm, units: 6}}
    - {{type: dense, units: auto, activation: softmax}}
optimizer: {{name: adam, learning_rate: 0.01}}
training: {{epochs: 2, batch_size: 32}}
""")
    assert _cli("train", recipe, "--quiet", "--runs-dir", tmp_path / "runs").exit_code == 0
    run = next((tmp_path / "runs").iterdir())
    with open(course_data("emojify", "test.csv")) as f:
        sentences = [row["sentence"] for row in csv.DictReader(f)][:5]
    result = _cli("predict", run, *sentences, "--json")
    assert result.exit_code == 0, result.output
    got = np.array([p["probabilities"] for p in json.loads(result.stdout)["predictions"]])
    with np.load(run / "predictions" / "test.npz") as f:
        np.testing.assert_allclose(got, f["probabilities"][:5], rtol=1e-5, atol=1e-7)
    assert json.loads(result.stdout)["predictions"][0]["tokens"] == sentences[0].lower().split()


def test_predict_language_model_steps(tmp_path):
    recipe = _dinos_recipe(tmp_path)
    assert _cli("train", recipe, "--quiet", "--runs-dir", tmp_path / "runs").exit_code == 0
    run = next((tmp_path / "runs").iterdir())
    result = _cli("predict", run, "trex", "--json")
    assert result.exit_code == 0, result.output
    entry = json.loads(result.stdout)["predictions"][0]
    assert len(entry["tokens"]) == 5 and len(entry["probabilities"]) == 5
    assert all(abs(sum(p) - 1) < 1e-5 for p in entry["probabilities"]) and entry["next"] == entry["tokens"][-1]
    assert _cli("predict", run, "T-REX!").exit_code == 2  # characters the vocabulary lacks


def test_embedding_init_from_glove_file(tmp_path):
    from dlcli import api
    (tmp_path / "vectors.txt").write_text("love 1 2 3\nyou -1 -2 -3\nnotinvocab 9 9 9\nbad 1 2\n")
    (tmp_path / "train.csv").write_text("text,label\nI love you,0\nyou ok,1\n")
    (tmp_path / "r.yaml").write_text("""
data: {train: {path: train.csv, x: text, y: label, unit: word, lower: true}}
model:
  layers:
    - {type: embedding, dim: 3, init_from: vectors.txt, trainable: false}
    - {type: rnn, units: 2}
    - {type: dense, units: auto, activation: softmax}
""")
    model, ds = api.prepare(api.as_recipe(tmp_path / "r.yaml"))
    E = model.layers[0].params["E"]
    np.testing.assert_array_equal(E[:, ds.vocab.index["love"]], [1, 2, 3])
    np.testing.assert_array_equal(E[:, ds.vocab.index["you"]], [-1, -2, -3])
    assert "0.E" not in {name for name, _, _ in model.trainable()}  # trainable: false


def test_npz_sequence_labels_with_padding(tmp_path):
    """Integer ids and (m, T) labels with -1 padding from an .npz: masked like text data."""
    from dlcli import api
    rng = np.random.default_rng(0)
    x = rng.integers(0, 7, (40, 6))
    y = np.roll(x, -1, 1)
    x[:20, 4:] = -1
    y[:20, 4:] = -1
    np.savez(tmp_path / "seq.npz", x=x, y=y)
    (tmp_path / "r.yaml").write_text("""
data: {train: {path: seq.npz}}
model:
  layers:
    - {type: embedding, dim: 4}
    - {type: gru, units: 5, return_sequences: true}
    - {type: dense, units: auto, activation: softmax}
""")
    model, ds = api.prepare(api.as_recipe(tmp_path / "r.yaml"), dtype="float64")
    assert model.layers[-1].params["W"].shape == (7, 5)
    train = ds.splits["train"]
    assert train.x.dtype.kind == "f"  # the .npz path reads x as numbers of the recipe's dtype
    full = model.cost(train.x, train.y)
    assert model.mask_layers[0].mask is not None and not model.mask_layers[0].mask[:20, 4:].any()
    assert model.cost(train.x.astype(np.int64), train.y) == pytest.approx(full, rel=1e-12)


def test_sequence_table_shows_perplexity_and_loss_per_token():
    import io

    from rich.console import Console

    from dlcli.report import sequence_table
    buf = io.StringIO()
    sequence_table({"train": {"sequence_error": 0.5, "perplexity": float(np.e ** 2), "bleu": None},
                    "dev": None}, Console(file=buf, width=80))
    out = buf.getvalue()
    assert "50.00%" in out and "7.389" in out and " 2 " in out and "dev" not in out
