"""dlcli gradcheck: backprop against two-sided differences for every layer type and loss, the
course's N-D check, a planted wrong backward, dropout, sampling, kinks and the command."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from dlcli import api
from dlcli.cli import app
from dlcli.errors import BadInput
from dlcli.gradcheck import PASS, check, gradcheck_cli, verdict
from dlcli.nn.losses import BinaryCrossentropy
from dlcli.nn.model import build_model

from conftest import course_data

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
IMAGE = (6, 6, 2)


def dense(units, activation="linear", **kw):
    return {"type": "dense", "units": units, "activation": activation, **kw}


def conv(filters, size=3, **kw):
    return {"type": "conv2d", "filters": filters, "size": size, **kw}


SOFTMAX = [{"type": "flatten"}, dense(3, "softmax")]

# every layer type, each followed by a softmax head on random images (or vectors)
LAYER_CASES = {
    "dense": ((5,), [dense(4, "tanh"), dense(3, "relu"), dense(3, "softmax")]),
    "conv2d": (IMAGE, [conv(3, padding="same", activation="relu"),
                       conv(2, stride=2, padding=1, activation="tanh"), *SOFTMAX]),
    "depthwise_conv2d": (IMAGE, [{"type": "depthwise_conv2d", "size": 3, "stride": 2,
                                  "padding": "same", "activation": "tanh"}, *SOFTMAX]),
    "conv2d_transpose": (IMAGE, [{"type": "conv2d_transpose", "filters": 2, "size": 3,
                                  "stride": 2, "activation": "tanh"}, *SOFTMAX]),
    "maxpool": (IMAGE, [conv(3, padding="same", activation="tanh"),
                        {"type": "maxpool", "size": 2}, *SOFTMAX]),
    "avgpool": (IMAGE, [conv(3, padding="same", activation="tanh"),
                        {"type": "avgpool", "size": 3, "stride": 2}, *SOFTMAX]),
    "global_avgpool": (IMAGE, [conv(4, activation="relu"), {"type": "global_avgpool"},
                               dense(3, "softmax")]),
    "batchnorm_dense": ((5,), [dense(6, bias=False), {"type": "batchnorm"},
                               {"type": "activation", "activation": "tanh"}, dense(3, "softmax")]),
    "batchnorm_image": (IMAGE, [conv(3, padding="same", bias=False), {"type": "batchnorm"},
                                {"type": "activation", "activation": "relu"}, *SOFTMAX]),
    "residual_identity": (IMAGE, [conv(2, padding="same"), {
        "type": "residual", "activation": "tanh",
        "layers": [conv(2, padding="same", activation="relu"), conv(2, padding="same")]},
        *SOFTMAX]),
    "residual_projection": (IMAGE, [{
        "type": "residual", "activation": "relu",
        "layers": [conv(4, stride=2, padding="same", activation="tanh"),
                   conv(4, padding="same")]}, *SOFTMAX]),
    "branches": (IMAGE, [{"type": "branches", "paths": [
        [conv(2, size=1)],
        [conv(2, padding="same", activation="tanh")],
        [{"type": "maxpool", "size": 3, "stride": 1, "padding": "same"},
         conv(1, size=1, activation="relu")]]},
        {"type": "global_avgpool"}, dense(3, "softmax")]),
}


def random_model(input_shape, layers, loss="auto", l2=0.0, seed=0):
    return build_model({"init": "xavier", "layers": layers}, loss, l2, input_shape,
                       dtype="float64", rng=np.random.default_rng(seed))


def random_batch(input_shape, m=5, seed=1):
    return np.random.default_rng(seed).standard_normal((m, *input_shape))


def assert_passes(result, below=PASS):
    """Passed, and every tensor below `below` but those whose gradient is round-off."""
    assert result.passed, [(t.name, t.difference) for t in result.tensors]
    assert all(t.difference < below or t.round_off for t in result.tensors), \
        [(t.name, t.difference) for t in result.tensors]


@pytest.mark.parametrize("case", list(LAYER_CASES))
def test_every_layer_type_passes(case):
    input_shape, layers = LAYER_CASES[case]
    model = random_model(input_shape, layers, l2=0.3)
    y = np.array([0, 2, 1, 1, 0])
    result = check(model, random_batch(input_shape), y)
    assert_passes(result, below=1e-7)  # every tensor "great"
    assert result.kinks == 0
    assert [t.name for t in result.tensors] == [name for name, _, _ in model.trainable()]
    assert all(t.checked == t.size for t in result.tensors)


@pytest.mark.parametrize("last, loss, y", [
    ("sigmoid", "auto", np.array([1, 0, 0, 1, 1])),
    ("softmax", "auto", np.array([2, 0, 1, 2, 0])),
    ("linear", "auto", np.array([[0.5, -1.0, 2.0]] * 5) + np.arange(5)[:, None]),
    ("sigmoid", "multi_label", np.array([[1, 0, -1], [0, -1, 1], [1, 1, 0], [-1, -1, 0],
                                         [0, 1, 1]])),
])
def test_every_loss_passes(last, loss, y):
    units = 1 if last == "sigmoid" and loss == "auto" else 3
    model = random_model((4,), [dense(6, "tanh"), dense(units, last)], loss, l2=0.1)
    assert_passes(check(model, random_batch((4,)), y), below=1e-7)


def course_net():
    """gradient_check_n_test_case (COURSE_NUMBERS section 6), examples as rows here."""
    np.random.seed(1)
    x = np.random.randn(4, 3)
    y = np.array([1, 1, 0])
    state = {f"{i}.{k}": np.random.randn(*shape) for i, (shape_w, shape_b) in
             enumerate([((5, 4), (5, 1)), ((3, 5), (3, 1)), ((1, 3), (1, 1))])
             for k, shape in (("W", shape_w), ("b", shape_b))}
    model = random_model((4,), [dense(5, "relu"), dense(3, "relu"), dense(1, "sigmoid")])
    model.load_state_dict(state)
    return model, x.T, y


class CourseCost(BinaryCrossentropy):
    """The notebook's arithmetic: sigmoid, then 1/m sum(-y log(a) - (1 - y) log(1 - a))."""

    def forward(self, z, y):
        super().forward(z, y)  # keeps what backward needs
        a = 1 / (1 + np.exp(-z))
        y = np.reshape(y, z.shape)
        logprobs = np.multiply(-np.log(a), y) + np.multiply(-np.log(1 - a), 1 - y)
        return 1. / z.shape[0] * np.sum(logprobs)


def test_course_n_dimensional_check_to_its_digits():
    model, x, y = course_net()
    model.loss = CourseCost()
    result = check(model, x, y, epsilon=1e-7)
    assert sum(t.checked for t in result.tensors) == 47
    # at this epsilon the number is round-off in J, so their cost's arithmetic reproduces it
    assert result.overall == pytest.approx(1.1890913024229996e-07, rel=1e-8)
    assert result.passed and verdict(result.overall) == "probably fine, check it"


def test_our_cost_from_the_logits_rounds_less_than_the_course():
    model, x, y = course_net()
    result = check(model, x, y, epsilon=1e-7)
    assert result.overall < 1e-8 and verdict(result.overall) == "great"


def plant_wrong_backward(layer, key, factor):
    """The layer's backward leaves `factor` times the right gradient for `key`."""
    right = layer.backward

    def backward(dy):
        dx = right(dy)
        layer.grads[key] *= factor
        return dx
    layer.backward = backward


def test_course_planted_bugs_fail():
    # the notebook's two bugs: dW2 doubled, db1 = 4/m sum(dZ1) instead of 1/m
    model, x, y = course_net()
    plant_wrong_backward(model.layers[1], "W", 2.0)
    plant_wrong_backward(model.layers[0], "b", 4.0)
    result = check(model, x, y)
    assert result.overall == pytest.approx(0.2850931567761623, rel=1e-6)
    assert not result.passed and verdict(result.overall) == "almost certainly a bug"


def test_wrong_dw_fails_and_is_named():
    input_shape, layers = LAYER_CASES["maxpool"]
    model = random_model(input_shape, [*layers[:-1], dense(4, "tanh"), dense(3, "softmax")])
    plant_wrong_backward(model.layers[-2], "W", 1.01)
    result = check(model, random_batch(input_shape), np.array([0, 1, 2, 1, 0]))
    assert not result.passed
    by_name = {t.name: t for t in result.tensors}
    wrong = f"{len(model.layers) - 2}.W"
    assert by_name[wrong].difference > 1e-3 > max(
        t.difference for t in result.tensors if t.name != wrong)
    index, backprop, numerical = by_name[wrong].worst[0]
    assert backprop == pytest.approx(1.01 * numerical, rel=1e-5)
    assert np.ravel_multi_index(index, by_name[wrong].shape) in by_name[wrong].index


def test_a_bias_before_batchnorm_has_no_gradient_and_no_verdict_against_it():
    model = random_model((5,), [dense(6), {"type": "batchnorm"}, dense(3, "softmax")])
    result = check(model, random_batch((5,)), np.array([0, 2, 1, 1, 0]))
    by_name = {t.name: t for t in result.tensors}
    assert by_name["0.b"].difference > 0.1  # two noises
    assert by_name["0.b"].verdict == "within round-off"
    assert all(t.verdict == "great" for name, t in by_name.items() if name != "0.b")
    assert result.passed


def test_dropout_is_turned_off_and_restored():
    model = random_model((4,), [dense(8, "tanh"), {"type": "dropout", "keep_prob": 0.5},
                                dense(1, "sigmoid")])
    result = check(model, random_batch((4,)), np.array([1, 0, 1, 1, 0]))
    assert_passes(result)
    assert result.dropout_off == ["1"]
    assert model.layers[1].keep_prob == 0.5


def test_state_comes_back_unchanged():
    input_shape, layers = LAYER_CASES["batchnorm_image"]
    model = random_model(input_shape, layers)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    check(model, random_batch(input_shape), np.array([0, 1, 2, 1, 0]))
    after = model.state_dict()
    assert before.keys() == after.keys()
    for name, value in before.items():
        np.testing.assert_array_equal(after[name], value, err_msg=name)


def test_sampling_honours_max_per_tensor_and_seed():
    model = random_model((16,), [dense(8, "tanh"), dense(1, "sigmoid")])
    x, y = random_batch((16,)), np.array([1, 0, 1, 1, 0])

    def run(seed):
        result = check(model, x, y, max_per_tensor=10, rng=np.random.default_rng(seed))
        return {t.name: t for t in result.tensors}
    first, again, other = run(3), run(3), run(4)
    assert [(t.checked, t.size) for t in first.values()] == [(10, 128), (8, 8), (8, 8), (1, 1)]
    np.testing.assert_array_equal(first["0.W"].index, again["0.W"].index)
    assert len(set(first["0.W"].index)) == 10
    assert not np.array_equal(first["0.W"].index, other["0.W"].index)


def test_kinks_within_epsilon_are_counted_and_left_out():
    model = random_model((3,), [dense(4, "relu"), dense(1, "sigmoid")])
    x, y = random_batch((3,), m=4), np.array([1, 0, 1, 0])
    layer = model.layers[0]
    assert check(model, x, y).kinks == 0
    z = x @ layer.params["W"].T + layer.params["b"].T
    unit = int(np.argmax(z[0]))  # a live unit, so it has a slope to lose
    layer.params["b"][unit] += 3e-8 - z[0, unit]  # example 0 sits 3e-8 from the ReLU's kink
    result = check(model, x, y)
    by_name = {t.name: t for t in result.tensors}
    assert by_name["0.b"].kinks == 1 and by_name["0.W"].kinks >= 1
    assert result.kinks == sum(t.kinks for t in result.tensors)
    # the two-sided difference across the kink is off by half the slope's jump ...
    b = by_name["0.b"]
    assert abs(b.numerical[b.kinked] - b.backprop[b.kinked])[0] > 1e-3
    # ... so those entries are not compared and the correct backward still passes
    assert_passes(result, below=1e-7)
    assert (unit, 0) not in [index for index, _, _ in b.worst]


def test_zero_biases_on_a_blank_input_sit_on_every_kink():
    # what LeNet's first layers see at initialization: black pixels, b = 0, so z = 0 exactly
    model = random_model((3,), [dense(4, "relu"), dense(1, "sigmoid")])
    x = random_batch((3,), m=4)
    x[0] = 0.0
    result = check(model, x, np.array([1, 0, 1, 0]))
    b = {t.name: t for t in result.tensors}["0.b"]
    assert b.kinks == b.checked == 4 and b.verdict == "every entry at a kink"
    assert b.to_json()["difference"] is None and result.passed


def test_a_time_budget_checks_fewer_entries_of_every_tensor():
    model = random_model((16,), [dense(8, "tanh"), dense(1, "sigmoid")])
    x, y = random_batch((16,)), np.array([1, 0, 1, 1, 0])
    full = check(model, x, y, rng=np.random.default_rng(5))
    cut = check(model, x, y, rng=np.random.default_rng(5), seconds=0)  # one round only
    assert [t.checked for t in full.tensors] == [128, 8, 8, 1]
    assert [t.checked for t in cut.tensors] == [1, 1, 1, 1]
    for whole, first in zip(full.tensors, cut.tensors):
        assert first.index[0] == whole.index[0]  # the first entries of the same draw


def test_float32_model_is_refused():
    model = build_model({"layers": [dense(1, "sigmoid")]}, input_shape=(2,), dtype="float32")
    with pytest.raises(BadInput, match="float64"):
        check(model, np.zeros((2, 2)), np.array([0, 1]))


# -- the command ----------------------------------------------------------------------------
RECIPE = {"name": "moons-check", "seed": 3, "data": {"train": {"builtin": "moons", "n": 32}},
          "model": {"layers": [dense(6, "tanh"), {"type": "dropout", "keep_prob": 0.8},
                               dense(1, "sigmoid")]},
          "regularization": {"l2": 0.5}}


def write_recipe(tmp_path, recipe=RECIPE):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def gradcheck(*args):
    return runner.invoke(app, ["gradcheck", *map(str, args)])


def test_cli_json_passes_and_says_what_it_changed(tmp_path):
    result = gradcheck(write_recipe(tmp_path), "--json", "--examples", "5")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["passed"] is True and doc["overall"] < PASS
    assert [(t["name"], t["size"], t["checked"]) for t in doc["tensors"]] == \
        [("0.W", 12, 12), ("0.b", 6, 6), ("2.W", 6, 6), ("2.b", 1, 1)]
    assert all(t["difference"] < PASS for t in doc["tensors"])
    assert doc["examples"] == 5
    assert "dropout turned off" in result.stderr
    assert "recipe dtype float32: checking in float64" in result.stderr
    assert "gradient check" in result.stderr  # the table, on stderr under --json


def test_cli_table_and_exit_one_naming_a_wrong_tensor(tmp_path, monkeypatch):
    prepare = api.prepare

    def planted(*args, **kwargs):
        model, dataset = prepare(*args, **kwargs)
        plant_wrong_backward(model.layers[2], "W", 1.01)
        return model, dataset
    monkeypatch.setattr(api, "prepare", planted)
    path = write_recipe(tmp_path)
    table = gradcheck(path)
    assert table.exit_code == 1
    row = next(line for line in table.stdout.splitlines() if " 2.W " in line)
    assert "almost certainly a bug" in row
    assert "2.W: worst entries" in table.stdout
    doc = json.loads(gradcheck(path, "--json").stdout)
    assert doc["passed"] is False
    assert [t["name"] for t in doc["tensors"] if t["difference"] > 1e-3] == ["2.W"]


def test_cli_sampling_and_seed(tmp_path):
    recipe = {**RECIPE, "model": {"layers": [dense(20, "tanh"), dense(1, "sigmoid")]}}
    path = write_recipe(tmp_path, recipe)
    runs = [json.loads(gradcheck(path, "--json", "--max-per-tensor", "7", "--seed", s).stdout)
            for s in (1, 1, 2)]
    assert [(t["checked"], t["size"]) for t in runs[0]["tensors"]] == \
        [(7, 40), (7, 20), (7, 20), (1, 1)]
    assert runs[0] == runs[1] and runs[0]["tensors"] != runs[2]["tensors"]


def test_cli_params_file(tmp_path):
    path = write_recipe(tmp_path, {**RECIPE, "dtype": "float64"})
    model, _ = api.prepare(api.as_recipe(path), dtype="float64")
    state = {k: v * 0.5 for k, v in model.state_dict().items()}
    np.savez(tmp_path / "params.npz", **state)
    assert gradcheck(path, "--params", tmp_path / "params.npz").exit_code == 0
    state["0.W"] = state["0.W"][:1]
    np.savez(tmp_path / "bad.npz", **state)
    result = gradcheck(path, "--params", tmp_path / "bad.npz")
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "bad.npz" in result.stderr
    assert "0.W" in result.stderr
    np.save(tmp_path / "array.npy", state["0.b"])
    for wrong in ("array.npy", "missing.npz"):
        result = gradcheck(path, "--params", tmp_path / wrong)
        assert result.exit_code == 2 and result.stderr.count("\n") == 1 and wrong in result.stderr


def test_cli_says_when_its_time_ran_out(tmp_path, capsys):
    recipe = {**RECIPE, "model": {"layers": [dense(20, "tanh"), dense(1, "sigmoid")]}}
    assert gradcheck_cli(write_recipe(tmp_path, recipe), [], seconds=0, as_json=True) == 0
    out, err = capsys.readouterr()
    assert [t["checked"] for t in json.loads(out)["tensors"]] == [1, 1, 1, 1]
    assert "checked 1 entries per tensor to finish in about 0 s" in err


def test_cli_bad_epsilon(tmp_path):
    result = gradcheck(write_recipe(tmp_path), "--epsilon", "0")
    assert result.exit_code == 2 and "epsilon" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["lenet5", "resnet_small"])
def test_course_convnets_pass_the_check(recipe):
    # the time they take (under 30 s) is measured in benchmarks/speed_limits.py
    data = course_data("mnist").parent if recipe == "lenet5" else \
        Path(os.environ.get("DLCLI_DATA") or ROOT.parent / "shared" / "data")
    done = subprocess.run([sys.executable, "-m", "dlcli.cli", "gradcheck",
                           str(ROOT / "recipes" / f"{recipe}.yaml"), "--json"],
                          capture_output=True, text=True, env={**os.environ, "DLCLI_DATA": str(data)})
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["passed"] and all(t["checked"] >= 1 for t in doc["tensors"])


def _tensor(name, backprop, numerical, noise):
    from dlcli.gradcheck import TensorCheck
    b, n = np.asarray(backprop, float), np.asarray(numerical, float)
    return TensorCheck(name, (len(b),), np.arange(len(b)), b, n, np.zeros(len(b), bool), noise)


def test_the_overall_verdict_agrees_with_the_rows():
    # issue 9: a trained LeNet-5's rows were all "within round-off", the overall failed (exit 1)
    from dlcli.gradcheck import GradcheckResult
    roundoff = [_tensor("0.W", [1e-9, -2e-9], [1.5e-9, -2.6e-9], noise=1e-9),
                _tensor("0.b", [3e-10], [9e-10], noise=1e-9)]
    result = GradcheckResult(roundoff, 1e-7, 8, [])
    assert [t.verdict for t in result.tensors] == ["within round-off"] * 2
    assert result.passed and result.verdict == "within round-off"
    # one real tensor that agrees: the round-off rows do not drag the overall over the bar
    good = _tensor("1.W", [0.5, -0.25], [0.5 + 1e-9, -0.25], noise=1e-9)
    result = GradcheckResult([*roundoff, good], 1e-7, 8, [])
    assert result.passed and result.overall < PASS
    # a wrong tensor still fails, and names itself in its row
    bad = _tensor("1.W", [0.5, -0.25], [0.6, -0.25], noise=1e-9)
    result = GradcheckResult([*roundoff, bad], 1e-7, 8, [])
    assert not result.passed and bad.verdict == "almost certainly a bug"


def test_cli_exit_code_agrees_with_its_rows(tmp_path, monkeypatch):
    from dlcli import gradcheck as g
    real = g.check

    def tiny_gradients(*args, **kwargs):  # what a model trained to a near-zero cost gives
        result = real(*args, **kwargs)
        for t in result.tensors:
            t.backprop = t.backprop * 1e-12
            t.numerical = t.backprop + 0.5 * t.noise
        return result

    monkeypatch.setattr(g, "check", tiny_gradients)
    result = gradcheck(write_recipe(tmp_path))
    rows = [line for line in result.stdout.splitlines() if line.strip().startswith(("0.", "1."))]
    assert rows and all("within round-off" in line for line in rows)
    assert result.exit_code == 0, result.stdout
    assert "within round-off (passed" in result.stdout
