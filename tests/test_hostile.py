"""Issue 10, contract and hostile input: each case once gave a traceback, a wrong answer or
an unbounded allocation; each is now exit 2 with one line (or the documented behaviour)."""

import io
import json

import h5py
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from dlcli import api
from dlcli.cli import app
from dlcli.nn.model import build_model

from test_train import SMALL, only_run, train_cli, write_recipe

runner = CliRunner()


def one_line_exit_2(result, *needles):
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# -- contract and correctness ---------------------------------------------------------------
def test_early_stopping_on_dev_without_a_dev_split_is_bad_input(tmp_path):
    recipe = dict(SMALL, data={"train": {"builtin": "moons", "n": 100}},
                  training={"epochs": 3, "early_stopping": {"patience": 2}})
    result = train_cli(tmp_path, write_recipe(tmp_path, recipe))
    one_line_exit_2(result, "training.early_stopping.metric", "dev")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_frozen_batchnorm_keeps_its_running_statistics():
    cfg = {"layers": [{"type": "dense", "units": 4}, {"type": "batchnorm"},
                      {"type": "dense", "units": 1, "activation": "sigmoid"}], "freeze": [1]}
    model = build_model(cfg, input_shape=(2,), dtype="float64")
    bn = model.layers[1]
    bn.buffers["running_mean"][:] = [0.5, -0.5, 1.0, 0.0]
    before = {k: v.copy() for k, v in model.state_dict().items() if k.startswith("1.")}
    x = np.random.default_rng(0).normal(size=(16, 2))
    y = (x[:, 0] > 0).astype(np.int64)
    model.cost(x, y, training=True)
    model.backward()
    for k, v in before.items():
        np.testing.assert_array_equal(model.state_dict()[k], v, err_msg=k)
    # in inference mode, so training and inference outputs agree
    np.testing.assert_allclose(model.forward(x, True), model.forward(x, False))


@pytest.mark.torch
def test_frozen_batchnorm_backward_is_the_inference_affine_map():
    import torch
    cfg = {"layers": [{"type": "batchnorm"}, {"type": "dense", "units": 1}], "freeze": [0],
           "init": "he"}
    model = build_model(cfg, loss="mse", input_shape=(3,), dtype="float64")
    bn = model.layers[0]
    bn.buffers["running_mean"][:] = [0.1, 0.2, 0.3]
    bn.buffers["running_var"][:] = [2.0, 0.5, 1.5]
    x = np.random.default_rng(1).normal(size=(5, 3))
    dy = np.random.default_rng(2).normal(size=(5, 3))
    bn.forward(x, True)
    dx = bn.backward(dy)
    xt = torch.tensor(x, requires_grad=True)
    ref = torch.nn.functional.batch_norm(xt, torch.tensor(bn.buffers["running_mean"]),
                                         torch.tensor(bn.buffers["running_var"]),
                                         torch.tensor(bn.params["gamma"]), torch.tensor(bn.params["beta"]),
                                         training=False, eps=bn.epsilon)
    ref.backward(torch.tensor(dy))
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12)


def test_fail_on_unmet_satisficing_exits_1(tmp_path):
    evaluation = {"satisficing": {"train_error": {"max": 0.0}}}
    result = train_cli(tmp_path, write_recipe(tmp_path, dict(SMALL, evaluation=evaluation)))
    assert result.exit_code == 0, result.output  # unmet, but nobody asked to fail on it
    evaluation["fail_on_unmet"] = True
    result = train_cli(tmp_path, write_recipe(tmp_path, dict(SMALL, evaluation=evaluation)))
    assert result.exit_code == 1 and "train_error" in result.output, result.output


def test_f1_search_on_several_classes_ranks_by_macro_f1(tmp_path):
    from dlcli.metrics import macro_average, per_class
    recipe = {"name": "blobs", "seed": 1, "data": {"train": {"builtin": "blobs", "n": 150}, "dev": 0.3},
              "model": {"layers": [{"type": "dense", "units": 3, "activation": "softmax"}]},
              "optimizer": {"name": "adam", "learning_rate": 0.05}, "training": {"epochs": 3},
              "evaluation": {"metric": "f1"},
              "search": {"trials": 2, "space": {"optimizer.learning_rate": {"log_uniform": [0.01, 0.1]}}}}
    path = write_recipe(tmp_path, recipe)
    result = runner.invoke(app, ["search", str(path), "--workers", "1", "--json",
                                 "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["best"] is not None
    for t in doc["trials"]:
        with np.load(f"{doc['search']}/trials/{t['trial']}/predictions/dev.npz") as f:
            expected = macro_average(per_class(f["y_true"], f["y_pred"], np.arange(3)))["f1"]
        assert t["metric"] == pytest.approx(expected)
    assert "macro F1" in open(f"{doc['search']}/search.yaml").read()
    assert "macro F1" in open(f"{doc['search']}/trials/0/recipe.yaml").read()


def test_held_out_label_out_of_range_names_its_source(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "train.npz", x=rng.normal(size=(40, 2)), y=rng.integers(0, 2, 40))
    np.savez(tmp_path / "test.npz", x=rng.normal(size=(10, 2)), y=np.r_[np.zeros(9, int), 2])
    recipe = dict(SMALL, data={"train": {"path": "train.npz"}, "test": {"path": "test.npz"}})
    line = one_line_exit_2(train_cli(tmp_path, write_recipe(tmp_path, recipe)), "data.test.y",
                           "test.npz")
    assert "model.layers" not in line


def test_positive_class_must_be_a_class(tmp_path):
    recipe = dict(SMALL, evaluation={"positive_class": 2})
    one_line_exit_2(train_cli(tmp_path, write_recipe(tmp_path, recipe)), "evaluation.positive_class")


def test_recipe_yaml_records_builtin_values_used(tmp_path):
    assert train_cli(tmp_path, write_recipe(tmp_path)).exit_code == 0
    written = yaml.safe_load((only_run(tmp_path) / "recipe.yaml").read_text())
    assert written["data"]["train"] == {"builtin": "moons", "n": 200, "noise": 0.2, "classes": 2}
    # and it trains the same data again
    again = api.load_data(api.as_recipe(written))
    first = api.load_data(api.as_recipe(write_recipe(tmp_path)))
    np.testing.assert_array_equal(again.splits["train"].x, first.splits["train"].x)


def test_run_files_honour_the_umask(tmp_path):
    import os
    old = os.umask(0o022)
    try:
        assert train_cli(tmp_path, write_recipe(tmp_path)).exit_code == 0
    finally:
        os.umask(old)
    run = only_run(tmp_path)
    modes = {p.name: p.stat().st_mode & 0o777 for p in run.rglob("*") if p.is_file()}
    assert set(modes.values()) == {0o644}, modes


# -- hostile and odd input ------------------------------------------------------------------
def test_yaml_alias_bomb_is_refused(tmp_path):
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i, name in enumerate("bcdefghi"):
        prev = "abcdefghi"[i]
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    lines += ["data: {train: {builtin: moons}}", "model: {layers: [{type: dense, units: 1}]}"]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    one_line_exit_2(runner.invoke(app, ["show", str(path)]), "alias")


def test_ordinary_aliases_still_work(tmp_path):
    path = tmp_path / "alias.yaml"
    path.write_text("data: {train: {builtin: moons}}\n"
                    "model:\n  layers:\n    - &d {type: dense, units: 4, activation: relu}\n"
                    "    - *d\n    - {type: dense, units: 1, activation: sigmoid}\n")
    assert runner.invoke(app, ["show", str(path)]).exit_code == 0


def test_h5_declaring_more_than_memory_is_refused_before_reading(tmp_path):
    path = tmp_path / "huge.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", shape=(10**12, 12288), dtype="uint8", chunks=(1, 12288))
        f.create_dataset("y", shape=(10**12,), dtype="int64", chunks=(1024,))
    assert path.stat().st_size < 100_000
    recipe = dict(SMALL, data={"train": {"path": "huge.h5"}})
    one_line_exit_2(train_cli(tmp_path, write_recipe(tmp_path, recipe)), "data.train.x", "GiB")


def npz_declaring(path, shape):
    """An .npz whose x header declares `shape`, with no data behind it."""
    import zipfile
    from numpy.lib import format as npy_format
    header = io.BytesIO()
    npy_format.write_array_header_2_0(header, {"descr": "<f8", "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x.npy", header.getvalue())
        buf = io.BytesIO()
        np.save(buf, np.zeros(3))
        z.writestr("y.npy", buf.getvalue())


def test_npz_declaring_more_than_memory_is_refused(tmp_path):
    npz_declaring(tmp_path / "huge.npz", (100_000_000_000,))
    recipe = dict(SMALL, data={"train": {"path": "huge.npz"}})
    one_line_exit_2(train_cli(tmp_path, write_recipe(tmp_path, recipe)), "data.train.x", "GiB")
    npz_declaring(tmp_path / "params.npz", (100_000_000_000,))
    recipe = dict(SMALL, model=dict(SMALL["model"], init_from="params.npz"))
    one_line_exit_2(train_cli(tmp_path, write_recipe(tmp_path, recipe)), "model.init_from", "GiB")


def test_npy_saved_as_npz_is_bad_input(tmp_path):
    with open(tmp_path / "a.npz", "wb") as f:
        np.save(f, np.zeros((4, 2)))
    for recipe, key in ((dict(SMALL, data={"train": {"path": "a.npz"}}), "data.train"),
                        (dict(SMALL, model=dict(SMALL["model"], init_from="a.npz")), "model.init_from")):
        one_line_exit_2(train_cli(tmp_path, write_recipe(tmp_path, recipe)), key, "single array")


def test_yaml_error_on_the_last_line(tmp_path):
    path = tmp_path / "last.yaml"
    path.write_text("data: {train: {builtin: moons}}\nmodel: {layers: [{type: dense, units: 1}]}\ntraining: [\n")
    one_line_exit_2(runner.invoke(app, ["show", str(path)]), "last.yaml:", "YAML")


def test_a_300_character_name(tmp_path):
    one_line_exit_2(train_cli(tmp_path, write_recipe(tmp_path, dict(SMALL, name="n" * 300))), "name")


# 10**12 units need terabytes on any machine: refused before a byte is allocated (a size that
# might fit on a big machine would make this test allocate it there)
@pytest.mark.parametrize("units", ["10**9", 10**12])
def test_absurd_units(tmp_path, units):
    recipe = dict(SMALL, model={"layers": [{"type": "dense", "units": units, "activation": "relu"},
                                           {"type": "dense", "units": 1, "activation": "sigmoid"}]})
    one_line_exit_2(train_cli(tmp_path, write_recipe(tmp_path, recipe)), "model.layers")


def test_nan_in_init_from_names_the_keys(tmp_path):
    assert train_cli(tmp_path, write_recipe(tmp_path)).exit_code == 0
    params = dict(np.load(only_run(tmp_path) / "params.npz"))
    params["0.W"][0, 0] = np.nan
    np.savez(tmp_path / "nan.npz", **params)
    recipe = dict(SMALL, model=dict(SMALL["model"], init_from="nan.npz"))
    line = one_line_exit_2(train_cli(tmp_path, write_recipe(tmp_path, recipe)), "model.init_from",
                           "NaN", "0.W")
    assert "learning rate" not in line


def test_csv_with_a_byte_order_mark(tmp_path):
    from dlcli.data.files import read_csv
    path = tmp_path / "d.csv"
    path.write_bytes("\ufefflabel,a,b\n0,1,2\n1,3,4\n".encode("utf-8"))
    x, y, _ = read_csv(path, "x", "label", "data.train")
    assert x.shape == (2, 2) and list(y) == [0, 1]


def test_a_tag_sheet_saved_by_excel_with_a_byte_order_mark(tmp_path):
    from dlcli import analyze
    from test_analyze import lecture_run
    run = lecture_run(tmp_path)
    sheet = tmp_path / "excel.csv"
    sheet.write_bytes(("\ufeffindex,true,predicted,probability,tags\r\n"
                       + "".join(f"{i},0,1,0.7,blurry\r\n" for i in range(10))).encode("utf-8"))
    tags = analyze.analyze_errors(run, tags=sheet)["tags"]
    assert tags[0]["tag"] == "blurry" and tags[0]["count"] == 10
