"""dlcli analyze errors / bias-variance over run directories built by hand (SPEC layout)."""

import csv
import json
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from PIL import Image
from sklearn import metrics as sk
from typer.testing import CliRunner

from dlcli import analyze, contact_sheet
from dlcli.cli import app


def make_run(root, split="dev", *, y_true, y_pred, probabilities, index=None, errors=None,
             data=None, name="run"):
    run = root / name
    (run / "predictions").mkdir(parents=True)
    m = len(y_true)
    index = np.arange(100, 100 + m) if index is None else index
    errors = errors or {"train": 0.0, "train_dev": None, "dev": None, "test": None,
                        split: float(np.mean(np.any(np.reshape(y_true != y_pred, (m, -1)), axis=1)))}
    (run / "summary.json").write_text(json.dumps(
        {"name": name, "status": "completed", "errors": errors, "human_level_error": None}))
    (run / "recipe.yaml").write_text(yaml.safe_dump(
        {"name": name, "seed": 0, "data": data or {"scale": 1, "flatten": False, "normalize": False}}))
    np.savez(run / "predictions" / f"{split}.npz", y_true=y_true, y_pred=y_pred,
             probabilities=probabilities, index=index)
    return run


def binary_run(root, **kw):
    """20 examples: rows 3, 7, 10 and 15 are mistakes, with known confidences."""
    y_true = np.array([1, 0] * 10)
    p = np.where(y_true == 1, 0.9, 0.2)
    p[[3, 7, 10, 15]] = [0.6, 0.97, 0.3, 0.8]   # labelled 0, 0, 1, 0
    p = p.reshape(-1, 1)
    return make_run(root, y_true=y_true.reshape(-1, 1), y_pred=(p >= 0.5).astype(int),
                    probabilities=p, **kw)


def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
    assert "Traceback" not in result.output + result.stderr
    return result


def test_json_has_the_fields_and_the_mistakes_most_confident_first(tmp_path):
    run = binary_run(tmp_path)
    result = invoke("analyze", "errors", run, "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert list(doc) == ["split", "error", "classes", "confusion_matrix", "per_class", "macro",
                         "weighted", "errors", "suspected_label_errors"]
    assert doc["split"] == "dev" and doc["error"] == pytest.approx(0.2)
    assert doc["classes"] == [0, 1]
    y_true = np.array([1, 0] * 10)
    y_pred = y_true.copy()
    y_pred[[3, 7, 15]], y_pred[10] = 1, 0
    assert doc["confusion_matrix"] == sk.confusion_matrix(y_true, y_pred).tolist()
    assert set(doc["per_class"][0]) == {"class", "precision", "recall", "f1", "support"}
    assert doc["macro"]["f1"] == pytest.approx(sk.f1_score(y_true, y_pred, average="macro"))
    assert doc["weighted"]["recall"] == pytest.approx(
        sk.recall_score(y_true, y_pred, average="weighted"))
    assert doc["errors"] == [
        {"index": 107, "true": 0, "predicted": 1, "probability": pytest.approx(0.97)},
        {"index": 115, "true": 0, "predicted": 1, "probability": pytest.approx(0.8)},
        {"index": 110, "true": 1, "predicted": 0, "probability": pytest.approx(0.7)},
        {"index": 103, "true": 0, "predicted": 1, "probability": pytest.approx(0.6)}]


def test_writes_the_tagging_sheet_in_the_same_order(tmp_path):
    run = binary_run(tmp_path)
    assert invoke("analyze", "errors", run).exit_code == 0
    with open(run / "analysis" / "dev_errors.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["index", "true", "predicted", "probability", "tags"]
    assert [r[0] for r in rows[1:]] == ["107", "115", "110", "103"]
    assert rows[3] == ["110", "1", "0", "0.7", ""]


def test_a_tagged_sheet_is_never_overwritten(tmp_path):
    run = binary_run(tmp_path)
    invoke("analyze", "errors", run)
    sheet = run / "analysis" / "dev_errors.csv"
    tagged = sheet.read_text().replace("0.97,\n", "0.97,dog\n")
    sheet.write_text(tagged)
    result = invoke("analyze", "errors", run)
    assert result.exit_code == 0 and "already tagged" in result.stdout
    assert sheet.read_text() == tagged
    sheet.write_text("index,true,predicted,probability,tags\n")   # untagged: rewritten
    invoke("analyze", "errors", run)
    assert len(sheet.read_text().splitlines()) == 5


def lecture_run(root):
    """1000 examples, 100 mistakes: the notes' 10% dev error."""
    m = 1000
    y_true = np.zeros(m, dtype=int)
    y_pred = y_true.copy()
    y_pred[:100] = 1
    probabilities = np.tile([0.9, 0.1], (m, 1))
    probabilities[:100] = [0.3, 0.7]
    return make_run(root, y_true=y_true, y_pred=y_pred, probabilities=probabilities,
                    index=np.arange(m))


def test_tag_ceilings_follow_the_notes(tmp_path):
    run = lecture_run(tmp_path)
    sheet = tmp_path / "tagged.csv"
    tags = (["dog"] * 8 + ["great cat;blurry"] * 43 + ["blurry"] * 18 + ["mislabeled"] * 6
            + [""] * 25)
    sheet.write_text("index,true,predicted,probability,tags\n"
                     + "".join(f"{i},0,1,0.7,{t}\n" for i, t in enumerate(tags)))
    result = invoke("analyze", "errors", run, "--tags", sheet, "--json")
    assert result.exit_code == 0, result.stderr
    got = {t["tag"]: t for t in json.loads(result.stdout)["tags"]}
    assert got["dog"] == {"tag": "dog", "count": 8, "fraction_of_errors": pytest.approx(0.08),
                          "ceiling_error": pytest.approx(0.092)}
    assert got["great cat"]["ceiling_error"] == pytest.approx(0.057)
    assert got["blurry"]["count"] == 61 and got["blurry"]["ceiling_error"] == pytest.approx(0.039)
    assert got["mislabeled"]["fraction_of_errors"] == pytest.approx(0.06)
    assert "label noise" in result.stderr and "small share" in result.stderr


def test_a_sampled_sheet_extrapolates_and_large_label_noise_says_fix_it(tmp_path):
    run = lecture_run(tmp_path)
    sheet = tmp_path / "sample.csv"
    # the user looked at 10 of the 100 mistakes: 4 mislabelled
    sheet.write_text("index,true,predicted,probability,tags\n"
                     + "".join(f"{i},0,1,0.7,{'mislabelled' if i < 4 else 'blurry'}\n"
                               for i in range(10)))
    result = invoke("analyze", "errors", run, "--tags", sheet)
    assert result.exit_code == 0
    tags = analyze.analyze_errors(run, tags=sheet)["tags"]
    assert tags[1] == {"tag": "mislabelled", "count": 4, "fraction_of_errors": 0.4,
                       "ceiling_error": pytest.approx(0.06)}
    assert "worth fixing those labels" in result.stdout


@pytest.mark.parametrize("body, line, says", [
    ("index,true,predicted,probability,tags\n0,0,1,0.7,dog\nseven,0,1,0.7,dog\n", 3, "not an integer"),
    ("index,true,predicted,probability,tags\n0,0,1,0.7,dog\n500,0,0,0.9,dog\n", 3, "not one of"),
    ("index,true,predicted,probability,tags\n0,0,1,0.7,\n1,0,1,0.7,\n0,0,1,0.7,x\n", 4, "twice"),
    ("true,predicted,probability,tags\n0,1,0.7,dog\n", 1, "missing column(s) index"),
])
def test_a_malformed_sheet_is_exit_2_naming_the_row(tmp_path, body, line, says):
    run = lecture_run(tmp_path)
    sheet = tmp_path / "bad.csv"
    sheet.write_text(body)
    result = invoke("analyze", "errors", run, "--tags", sheet, "--json")
    assert result.exit_code == 2
    assert result.stdout == ""
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1
    assert f"{sheet}:{line}:" in message and says in message


def test_a_split_the_run_does_not_have_is_exit_2(tmp_path):
    run = binary_run(tmp_path)
    result = invoke("analyze", "errors", run, "--split", "test")
    assert result.exit_code == 2 and "no test split" in result.stderr
    result = invoke("analyze", "errors", run, "--split", "validation")
    assert result.exit_code == 2 and "unknown split" in result.stderr


def test_categorical_matches_sklearn_and_ranks_by_the_predicted_class(tmp_path):
    rng = np.random.default_rng(3)
    m, c = 60, 4
    logits = rng.normal(size=(m, c))
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y_pred = probabilities.argmax(axis=1)
    y_true = np.where(rng.random(m) < 0.6, y_pred, rng.integers(0, c, m))
    y_true[y_true == 3] = 2                      # class 3 is never the true class
    run = make_run(tmp_path, y_true=y_true, y_pred=y_pred, probabilities=probabilities)
    doc = analyze.analyze_errors(run)
    assert doc["classes"] == [0, 1, 2, 3]
    assert doc["confusion_matrix"] == sk.confusion_matrix(y_true, y_pred, labels=range(4)).tolist()
    p, r, f, s = sk.precision_recall_fscore_support(y_true, y_pred, labels=range(4), zero_division=0)
    assert [row["f1"] for row in doc["per_class"]] == pytest.approx(f)
    assert [row["support"] for row in doc["per_class"]] == list(s)
    wrong = np.flatnonzero(y_true != y_pred)
    assert doc["error"] == pytest.approx(len(wrong) / m)
    confidence = [e["probability"] for e in doc["errors"]]
    assert confidence == sorted(confidence, reverse=True) and len(confidence) == len(wrong)
    for e in doc["errors"]:
        assert e["probability"] == pytest.approx(probabilities[e["index"] - 100, e["predicted"]])


def test_suspected_label_errors_follow_the_confident_learning_rule():
    # class thresholds: mean P(0) over labelled-0 rows = 0.7, mean P(1) over labelled-1 = 0.75
    probabilities = np.array([[0.9, 0.1], [0.9, 0.1], [0.3, 0.7],    # labelled 0
                              [0.1, 0.9], [0.1, 0.9], [0.8, 0.2], [0.0, 1.0]])  # labelled 1
    y = np.array([0, 0, 0, 1, 1, 1, 1])
    # row 2: P(0) 0.3 < 0.7 but P(1) 0.7 < 0.75, not confidently a 1; row 5: P(0) 0.8 >= 0.7
    assert analyze.suspected_label_errors(probabilities, y).tolist() == [5]
    probabilities[2] = [0.05, 0.95]   # now confidently a 1, and less trusted than row 5
    assert analyze.suspected_label_errors(probabilities, y).tolist() == [2, 5]


def test_multi_label_scores_skip_unlabelled_entries_and_ceilings_count_entries(tmp_path):
    y_true = np.array([[1, 0, -1], [0, 1, 1], [1, -1, 0], [0, 0, 1]])
    y_pred = np.array([[1, 1, 1], [0, 1, 0], [0, 0, 0], [0, 0, 1]])
    p = np.where(y_pred == 1, 0.8, 0.3)
    run = make_run(tmp_path, y_true=y_true, y_pred=y_pred, probabilities=p)
    doc = analyze.analyze_errors(run)
    assert doc["error"] == pytest.approx(3 / 10)     # 3 wrong of 10 labelled entries
    assert [e["index"] for e in doc["errors"]] == [100, 101, 102]
    assert doc["errors"][0] == {"index": 100, "true": [0], "predicted": [0, 1, 2],
                                "probability": pytest.approx(0.8)}
    row = doc["per_class"][2]
    assert (row["precision"], row["recall"], row["support"]) == (1.0, 0.5, 2)
    sheet = tmp_path / "tags.csv"
    sheet.write_text("index,true,predicted,probability,tags\n100,0,0;1;2,0.8,rare\n"
                     "101,1;2,1,0.7,\n102,0,,0.7,\n")
    tags = analyze.analyze_errors(run, tags=sheet)["tags"]
    assert tags == [{"tag": "rare", "count": 1, "fraction_of_errors": pytest.approx(1 / 3),
                     "ceiling_error": pytest.approx(2 / 10)}]


def image_run(root, n_errors, x):
    m = len(x)
    y_true = np.zeros(m, dtype=int)
    p = np.full((m, 1), 0.1)
    p[:n_errors, 0] = np.linspace(0.99, 0.6, n_errors)
    return make_run(root, y_true=y_true, y_pred=(p[:, 0] >= 0.5).astype(int), probabilities=p,
                    index=np.arange(m), data={"scale": 255, "flatten": False, "normalize": False})


def fake_load_model(monkeypatch, x, index):
    import dlcli.api
    split = SimpleNamespace(x=x, y=np.zeros(len(x)), index=index)
    dataset = SimpleNamespace(splits={"dev": split}, class_names=["non-cat", "cat"])
    monkeypatch.setattr(dlcli.api, "load_model", lambda run_dir: (None, dataset))


@pytest.mark.parametrize("n_errors, top, rows, cols", [(7, 5, 2, 3), (7, 20, 3, 3), (1, 4, 1, 1)])
def test_the_contact_sheet_has_one_tile_per_mistake(tmp_path, monkeypatch, n_errors, top, rows, cols):
    rng = np.random.default_rng(0)
    x = rng.uniform(0.2, 0.8, (12, 16, 16, 3))    # scaled by 1/255 in the recipe
    run = image_run(tmp_path, n_errors, x)
    fake_load_model(monkeypatch, x, np.arange(12))
    out = tmp_path / "mistakes.png"
    result = invoke("analyze", "errors", run, "--sheet", out, "--top", top)
    assert result.exit_code == 0, result.stderr
    n = min(n_errors, top)
    assert contact_sheet.sheet_grid(n) == (rows, cols)
    image = np.asarray(Image.open(out).convert("RGB"))
    assert image.shape[1::-1] == contact_sheet.sheet_size(n)
    tile_h = contact_sheet.TILE + contact_sheet.CAPTION + contact_sheet.PAD
    for k in range(rows * cols):
        r, c = divmod(k, cols)
        y0, x0 = contact_sheet.PAD + r * tile_h, contact_sheet.PAD + c * (contact_sheet.TILE + contact_sheet.PAD)
        picture = image[y0:y0 + contact_sheet.TILE, x0:x0 + contact_sheet.TILE]
        caption = image[y0 + contact_sheet.TILE:y0 + contact_sheet.TILE + contact_sheet.CAPTION, x0:x0 + contact_sheet.TILE]
        drawn = k < n
        assert (picture != 255).any() == drawn, k
        assert (caption != 255).any() == drawn, k   # the true/predicted caption
    # the first tile is the most confident mistake: example 100, its pixels undone by scale 255
    first = image[contact_sheet.PAD + 4, contact_sheet.PAD + 4]
    np.testing.assert_allclose(first, np.rint(x[0, 0, 0] * 255), atol=1)


def test_a_contact_sheet_of_non_image_data_is_exit_2(tmp_path, monkeypatch):
    x = np.random.default_rng(0).normal(size=(12, 5))
    run = image_run(tmp_path, 3, x)
    fake_load_model(monkeypatch, x, np.arange(12))
    result = invoke("analyze", "errors", run, "--sheet", tmp_path / "s.png")
    assert result.exit_code == 2 and "needs image data" in result.stderr
    assert not (tmp_path / "s.png").exists()


def test_display_images_unflattens_and_min_maxes_normalized_tiles():
    x = np.random.default_rng(1).normal(size=(2, 8 * 8 * 3))
    out = contact_sheet.display_images(x, {"flatten": True, "normalize": True})
    assert out.shape == (2, 8, 8, 3) and out.dtype == np.uint8
    assert [int(out[i].min()) for i in range(2)] == [0, 0]
    assert [int(out[i].max()) for i in range(2)] == [255, 255]


def test_a_run_without_predictions_is_repredicted_from_params(tmp_path, monkeypatch):
    # Goes through the real dlcli.api.load_model: recipe + data file + params.npz.
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (30, 4, 4, 3)).astype(np.uint8)
    y = rng.integers(0, 2, 30)
    np.savez(tmp_path / "data.npz", x=x, y=y)
    run = tmp_path / "old-run"
    run.mkdir()
    recipe = {"name": "old", "seed": 0, "data": {"train": {"path": str(tmp_path / "data.npz")},
                                                 "dev": 0.5, "scale": 255},
              "model": {"layers": [{"type": "flatten"},
                                   {"type": "dense", "units": 1, "activation": "sigmoid"}]}}
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    w, b = rng.normal(size=(1, 48)), np.array([[0.1]])
    np.savez(run / "params.npz", **{"1.W": w, "1.b": b})
    (run / "summary.json").write_text(json.dumps({"errors": {"train": 0.1, "dev": 0.2}}))
    doc = analyze.analyze_errors(run)
    p = 1 / (1 + np.exp(-(x.reshape(30, -1) / 255 @ w.T + b)))[:, 0]
    wrong = (p >= 0.5) != y
    from dlcli.api import load_model
    source = load_model(run)[1].splits["dev"].index  # dev row -> row in data.npz
    assert sorted(e["index"] for e in doc["errors"]) == [i for i, r in enumerate(source) if wrong[r]]
    assert sum(r["support"] for r in doc["per_class"]) == 15
    for e in doc["errors"]:
        r = source[e["index"]]
        assert e["true"] == y[r]
        assert e["probability"] == pytest.approx(max(p[r], 1 - p[r]), rel=1e-5)
    out = tmp_path / "sheet.png"
    assert invoke("analyze", "errors", run, "--sheet", out, "--top", 3).exit_code == 0
    assert Image.open(out).size == contact_sheet.sheet_size(min(3, len(doc["errors"])))


def test_bias_variance_with_a_human_level_error_given_after_the_fact(tmp_path):
    run = binary_run(tmp_path, errors={"train": 0.08, "train_dev": None, "dev": 0.1, "test": None})
    result = invoke("analyze", "bias-variance", run, "--human-level-error", "0.01", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["human_level_error"] == 0.01
    assert doc["diagnosis"]["avoidable_bias"] == pytest.approx(0.07)
    assert doc["diagnosis"]["variance"] == pytest.approx(0.02)
    assert doc["diagnosis"]["focus"] == "avoidable_bias"
    assert "0.01" not in json.dumps(json.loads((run / "summary.json").read_text()))
    result = invoke("analyze", "bias-variance", run, "--human-level-error", "1.5")
    assert result.exit_code == 2 and "--human-level-error" in result.stderr
