"""`dlcli predict`: the same classes as the run's own predictions/<split>.npz, inputs read as
training read them (image files resized, scale / normalize with the saved train statistics),
every bad input exit 2 naming it, and the registry of output kinds."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import course_data, mnist_cut
from dlcli import api
from dlcli.cli import app


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def predict_json(run_dir, *inputs, extra=()):
    result = invoke("predict", run_dir, *inputs, "--json", *extra)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def saved(run_dir, split):
    with np.load(run_dir / "predictions" / f"{split}.npz") as f:
        return {k: f[k] for k in f.files}


def source_rows(run_dir, split):
    """Each example of the split's row in its source file (the carve, from the run's recipe)."""
    from dlcli.recipe import load_recipe
    return api.load_data(load_recipe(run_dir / "recipe.yaml")).splits[split].index


# -- the course's runs --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lenet_run(tmp_path_factory):
    """LeNet-5 for one epoch on 600 MNIST images (IDX files cut from the course's)."""
    root = tmp_path_factory.mktemp("lenet")
    data, x = mnist_cut(root)
    result = api.train("recipes/lenet5.yaml", runs_dir=root / "runs", overrides=[
        *data, "training.epochs=1", "training.batch_size=32"])
    return result.run_dir, root, x


def test_lenet_on_the_idx_file_gives_the_runs_own_test_predictions(lenet_run):
    run_dir, root, _ = lenet_run
    doc = predict_json(run_dir, root / "images.gz")
    assert doc["run"] == str(run_dir)
    classes = np.array([p["class"] for p in doc["predictions"]])
    assert len(classes) == 600
    pred = saved(run_dir, "test")
    rows = source_rows(run_dir, "test")
    np.testing.assert_array_equal(classes[rows], pred["y_pred"])
    p = np.array([doc["predictions"][r]["probabilities"] for r in rows])
    np.testing.assert_allclose(p, pred["probabilities"], rtol=1e-5, atol=1e-6)
    assert set(doc["predictions"][0]) == {"input", "class", "label", "probabilities"}


def test_lenet_on_png_images_cut_from_the_idx_file(lenet_run):
    run_dir, root, x = lenet_run
    rows = source_rows(run_dir, "dev")[:6]
    files = []
    for r in rows:
        Image.fromarray(x[r]).save(root / f"digit{r}.png")
        files.append(root / f"digit{r}.png")
    doc = predict_json(run_dir, *files)
    assert [p["input"] for p in doc["predictions"]] == [str(f) for f in files]
    assert [p["class"] for p in doc["predictions"]] == saved(run_dir, "dev")["y_pred"][:6].tolist()


def test_a_larger_rgb_image_is_resized_and_greyed_as_training_read_it(lenet_run):
    run_dir, root, x = lenet_run
    r = int(source_rows(run_dir, "dev")[0])
    Image.fromarray(x[r]).resize((112, 112), Image.NEAREST).convert("RGB").save(root / "big.png")
    Image.fromarray(x[r]).save(root / "small.png")
    big, small = predict_json(run_dir, root / "big.png", root / "small.png")["predictions"]
    assert big["class"] == small["class"]
    # bilinear shrinking of a 4x nearest-neighbour enlargement is close to the original
    np.testing.assert_allclose(big["probabilities"], small["probabilities"], atol=0.05)


def test_top_k_lists_the_k_most_probable_classes(lenet_run):
    run_dir, root, x = lenet_run
    Image.fromarray(x[0]).save(root / "first.png")
    entry = predict_json(run_dir, root / "first.png", extra=["--top", "3"])["predictions"][0]
    p = np.array(entry["probabilities"])
    assert [t["class"] for t in entry["top"]] == np.argsort(-p)[:3].tolist()
    assert entry["top"][0]["class"] == entry["class"]
    human = invoke("predict", run_dir, root / "first.png", "--top", "3")
    assert human.exit_code == 0 and "first.png" in human.stdout
    assert f"{p.max():.4f}" in human.stdout


@pytest.fixture(scope="module")
def cat_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cat")
    result = api.train("recipes/cat_4layer.yaml", runs_dir=root / "runs",
                       overrides=["training.epochs=40", "optimizer.name=adam",
                                  "optimizer.learning_rate=0.001",
                                  f"data.train.path={course_data('catvnoncat', 'train_catvnoncat.h5')}",
                                  f"data.test.path={course_data('catvnoncat', 'test_catvnoncat.h5')}"])
    return result.run_dir, root


def test_cat_on_the_test_file_and_its_images_with_class_names(cat_run):
    import h5py
    run_dir, root = cat_run
    test_file = course_data("catvnoncat", "test_catvnoncat.h5")
    pred = saved(run_dir, "test")
    doc = predict_json(run_dir, test_file)   # the array is found: the only one of (64, 64, 3)
    assert [p["class"] for p in doc["predictions"]] == pred["y_pred"].ravel().tolist()
    assert {p["label"] for p in doc["predictions"]} <= {"non-cat", "cat"}
    with h5py.File(test_file) as f:
        images = f["test_set_x"][:4]
    files = []
    for i, image in enumerate(images):
        Image.fromarray(image).save(root / f"cat{i}.png")
        files.append(root / f"cat{i}.png")
    doc = predict_json(run_dir, *files)
    assert [p["class"] for p in doc["predictions"]] == pred["y_pred"].ravel()[:4].tolist()
    p1 = [p["probabilities"][1] for p in doc["predictions"]]   # sigmoid: [P(non-cat), P(cat)]
    np.testing.assert_allclose(p1, pred["probabilities"].ravel()[:4], rtol=1e-6)


def test_cat_out_npz_and_csv_hold_every_prediction(cat_run):
    run_dir, root = cat_run
    test_file = course_data("catvnoncat", "test_catvnoncat.h5")
    pred = saved(run_dir, "test")
    assert invoke("predict", run_dir, test_file, "--x", "test_set_x", "--out", root / "p.npz").exit_code == 0
    with np.load(root / "p.npz") as f:
        np.testing.assert_array_equal(f["y_pred"], pred["y_pred"].ravel())
        np.testing.assert_allclose(f["probabilities"], pred["probabilities"])
    assert invoke("predict", run_dir, test_file, "--out", root / "p.csv").exit_code == 0
    rows = list(csv.DictReader(open(root / "p.csv")))
    assert [int(r["class"]) for r in rows] == pred["y_pred"].ravel().tolist()
    assert rows[0]["input"].endswith("test_catvnoncat.h5[0]")
    assert {"p_non-cat", "p_cat", "label"} <= set(rows[0])


# -- the quick start (features, built-in data) ------------------------------------------------
@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("quick")
    result = api.train("recipes/quickstart.yaml", runs_dir=root / "runs",
                       overrides=["training.epochs=15", "data.normalize=true"])
    return result.run_dir, root, result.dataset


def write_csv(path, x, y=None):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["x1", "x2"] + (["y"] if y is not None else []))
        for i, row in enumerate(x):
            w.writerow(list(row) + ([int(y[i])] if y is not None else []))


def raw_split(run_dir, split):
    """The split's examples as the source gave them (before normalize)."""
    from dlcli.recipe import load_recipe
    recipe = load_recipe(run_dir / "recipe.yaml", ["data.normalize=false"])
    return api.load_data(recipe).splits[split]


@pytest.mark.parametrize("fmt", ["csv", "npz", "h5"])
def test_quickstart_data_files_give_the_runs_own_dev_predictions(quick_run, fmt):
    import h5py
    run_dir, root, _ = quick_run
    dev = raw_split(run_dir, "dev")
    path = root / f"dev.{fmt}"
    if fmt == "csv":
        write_csv(path, dev.x, dev.y)         # the label column is left out
    elif fmt == "npz":
        np.savez(path, features=dev.x, y=dev.y)
    else:
        with h5py.File(path, "w") as f:
            f["features"], f["y"] = dev.x, dev.y
    extra = [] if fmt == "csv" else ["--x", "features"]
    doc = predict_json(run_dir, path, extra=extra)
    assert [p["class"] for p in doc["predictions"]] == saved(run_dir, "dev")["y_pred"].ravel().tolist()


def test_normalization_uses_the_saved_train_statistics_without_loading_the_data(quick_run, monkeypatch):
    run_dir, root, dataset = quick_run
    dev = raw_split(run_dir, "dev")
    write_csv(root / "few.csv", dev.x[:5])
    import dlcli.api
    monkeypatch.setattr(dlcli.api, "load_data", lambda *a, **k: pytest.fail("loaded the data"))
    from dlcli.predict import predict
    result = predict(run_dir, [root / "few.csv"])
    assert [e["class"] for e in result.entries] == saved(run_dir, "dev")["y_pred"].ravel()[:5].tolist()


def test_a_run_without_preprocessing_npz_falls_back_to_its_dataset(quick_run, tmp_path):
    import shutil
    run_dir, root, _ = quick_run
    old = tmp_path / run_dir.name
    shutil.copytree(run_dir, old)
    (old / "preprocessing.npz").unlink()
    dev = raw_split(run_dir, "dev")
    write_csv(tmp_path / "dev.csv", dev.x)
    doc = predict_json(old, tmp_path / "dev.csv")
    assert [p["class"] for p in doc["predictions"]] == saved(run_dir, "dev")["y_pred"].ravel().tolist()


# -- bad input: exit 2, naming the input --------------------------------------------------------
@pytest.mark.parametrize("make, says", [
    (lambda d: d / "missing.png", "no such file"),
    (lambda d: (d / "bad.png").write_bytes(b"not a png") and d / "bad.png", "cannot read the image"),
    (lambda d: np.savez(d / "small.npz", x=np.zeros((2, 20, 20))) or d / "small.npz", "(28, 28, 1)"),
    (lambda d: (d / "notes.txt").write_text("hello") and d / "notes.txt", "not an image or a data file"),
])
def test_an_input_lenet_cannot_take_is_exit_2_naming_it(lenet_run, tmp_path, make, says):
    run_dir = lenet_run[0]
    path = make(tmp_path)
    result = invoke("predict", run_dir, path)
    assert result.exit_code == 2
    assert str(path) in result.output and says in result.output
    assert "Traceback" not in result.output


def test_text_or_an_image_for_a_feature_run_is_exit_2(quick_run, lenet_run, tmp_path):
    run_dir = quick_run[0]
    Image.fromarray(lenet_run[2][0]).save(tmp_path / "d.png")
    for arg, says in (("a sentence of text", "no such file"), (tmp_path / "d.png", "not images")):
        result = invoke("predict", run_dir, arg)
        assert result.exit_code == 2 and str(arg) in result.output and says in result.output


def test_wrong_feature_count_and_unknown_array_and_foreign_options(quick_run, tmp_path):
    run_dir = quick_run[0]
    np.savez(tmp_path / "three.npz", x=np.zeros((4, 3)))
    result = invoke("predict", run_dir, tmp_path / "three.npz")
    assert result.exit_code == 2 and "three.npz" in result.output and "(2,)" in result.output
    result = invoke("predict", run_dir, tmp_path / "three.npz", "--x", "nope")
    assert result.exit_code == 2 and "--x" in result.output and "nope" in result.output
    write_csv(tmp_path / "ok.csv", np.zeros((1, 2)))
    result = invoke("predict", run_dir, tmp_path / "ok.csv", "--beam", "3")
    assert result.exit_code == 2 and "--beam" in result.output


# -- the registry -------------------------------------------------------------------------------
def test_a_registered_kind_takes_over_the_runs_it_applies_to(quick_run, tmp_path, monkeypatch):
    from dlcli import predict as P
    monkeypatch.setattr(P, "KINDS", list(P.KINDS))

    @P.register_kind
    class Margin(P.Classifier):
        name = "margin"
        priority = 5
        options = frozenset({"beam"})

        @classmethod
        def applies(cls, run):
            return run.spec.input_shape == (2,)

        def entries(self, run, batch, outputs):
            return [{"margin": float(abs(p[0] - 0.5)), "beam": self.beam}
                    for p in outputs["probabilities"]]

    write_csv(tmp_path / "two.csv", np.zeros((2, 2)))
    doc = predict_json(quick_run[0], tmp_path / "two.csv", extra=["--beam", "4"])
    assert [set(p) for p in doc["predictions"]] == [{"input", "margin", "beam"}] * 2
    assert doc["predictions"][0]["beam"] == 4
    with pytest.raises(ValueError):
        P.register_kind(type("Nameless", (P.OutputKind,), {}))


# -- the other kinds of run that exist today ------------------------------------------------------
def small_recipe(tmp_path, layers, loss="auto", train=None):
    return {"name": "small", "seed": 3,
            "data": {"train": train or {"builtin": "planar", "n": 300}, "dev": 0.2},
            "model": {"layers": layers}, "loss": loss,
            "optimizer": {"name": "adam", "learning_rate": 0.01},
            "training": {"epochs": 5, "batch_size": 64}}


def test_a_regression_run_gives_its_outputs_as_values(tmp_path):
    from dlcli.predict import predict
    run_dir = api.train(small_recipe(tmp_path, [{"type": "dense", "units": 4, "activation": "tanh"},
                                                {"type": "dense", "units": 1}], loss="mse"),
                        runs_dir=tmp_path / "runs").run_dir
    dev = raw_split(run_dir, "dev")
    write_csv(tmp_path / "dev.csv", dev.x)
    result = predict(run_dir, [tmp_path / "dev.csv"])
    values = np.array([e["value"] for e in result.entries])
    np.testing.assert_allclose(values, saved(run_dir, "dev")["probabilities"], rtol=1e-5, atol=1e-6)
    assert all(e["class"] is None for e in result.entries)


def test_a_multi_label_run_lists_the_labels_present(tmp_path):
    from dlcli.predict import predict
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4))
    y = np.stack([x[:, 0] > 0, x[:, 1] > 0, x[:, 0] + x[:, 2] > 0], axis=1).astype(int)
    np.savez(tmp_path / "ml.npz", x=x, y=y)
    run_dir = api.train(small_recipe(tmp_path, [{"type": "dense", "units": 3, "activation": "sigmoid"}],
                                     loss="multi_label", train={"path": str(tmp_path / "ml.npz")}),
                        runs_dir=tmp_path / "runs").run_dir
    dev = raw_split(run_dir, "dev")
    np.savez(tmp_path / "dev.npz", x=dev.x)
    result = predict(run_dir, [tmp_path / "dev.npz"])
    expected = saved(run_dir, "dev")["y_pred"]
    assert [e["class"] for e in result.entries] == [np.flatnonzero(row).tolist() for row in expected]


def test_an_ensemble_predicts_with_its_members_averaged(tmp_path):
    from dlcli.recipe import load_recipe
    recipe = load_recipe("recipes/quickstart.yaml", ["training.epochs=4"])
    run_dir = api.train_ensemble(recipe, 2, runs_dir=tmp_path / "runs").run_dir
    assert not (run_dir / "params.npz").exists()
    dev = raw_split(run_dir, "dev")
    write_csv(tmp_path / "dev.csv", dev.x)
    import shutil
    moved = Path(shutil.move(str(run_dir), str(tmp_path / "moved")))   # members move with it
    doc = predict_json(moved, tmp_path / "dev.csv")
    p1 = np.array([p["probabilities"][1] for p in doc["predictions"]])
    np.testing.assert_allclose(p1, saved(moved, "dev")["probabilities"].ravel(), rtol=1e-5, atol=1e-7)
