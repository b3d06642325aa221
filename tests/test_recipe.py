"""Recipes: defaults, YAML 1.2 numbers, --set, paths, and where bad input is reported."""

import os
import textwrap

import pytest
import yaml

from dlcli.errors import BadInput
from dlcli.recipe import apply_overrides, load_recipe, recipe_from_dict, set_by_path

MINIMAL = """\
data:
  train: {builtin: moons}
model:
  layers:
    - {type: dense, units: 4, activation: relu}
    - {type: dense, units: 1, activation: sigmoid}
"""


def write(tmp_path, text, name="recipe.yaml"):
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(textwrap.dedent(text))
    return path


def bad(path, overrides=()) -> BadInput:
    with pytest.raises(BadInput) as info:
        load_recipe(path, overrides)
    return info.value


def test_defaults_are_filled_in(tmp_path):
    r = load_recipe(write(tmp_path, MINIMAL, "moons-small.yaml"))
    assert (r.name, r.seed, r.dtype, r.loss) == ("moons-small", 0, "float32", "auto")
    assert (r.data.test, r.data.dev, r.data.train_dev) == (None, None, None)
    assert (r.data.scale, r.data.flatten, r.data.normalize, r.data.augment) == (1.0, False, False, [])
    assert (r.model.init, r.model.init_from, r.model.freeze) == ("he", None, [])
    assert r.regularization.l2 == 0
    o = r.optimizer
    assert (o.name, o.learning_rate, o.beta, o.beta1, o.beta2, o.epsilon, o.decay.schedule) == \
        ("gd", 0.01, 0.9, 0.9, 0.999, 1e-8, "none")
    t = r.training
    assert (t.epochs, t.batch_size, t.shuffle, t.early_stopping) == (100, 64, True, None)
    e = r.evaluation
    assert (e.metric, e.human_level_error, e.positive_class, e.satisficing, e.multi_crop) == \
        ("error", None, 1, {}, None)
    assert (r.search.trials, r.search.rounds, r.search.keep, r.search.space) == (20, 1, 0.25, {})
    assert r.source == tmp_path / "moons-small.yaml"
    assert recipe_from_dict(yaml.safe_load(MINIMAL)).name == "recipe"


def test_layer_defaults_with_type_first():
    d = yaml.safe_load(MINIMAL)
    d["model"]["layers"] = [
        {"type": "conv2d", "filters": 4, "size": 3},
        {"type": "maxpool", "size": 2},
        {"type": "batchnorm"},
        {"type": "residual", "layers": [{"type": "conv2d", "filters": 4, "size": 3, "padding": "same"}]},
        {"type": "branches", "paths": [[{"type": "avgpool", "size": 3, "stride": 1, "padding": "same"}],
                                       [{"type": "flatten"}]]},
        {"type": "dense", "units": 1, "activation": "sigmoid"},
    ]
    layers = recipe_from_dict(d).to_dict()["model"]["layers"]
    assert layers[0] == {"type": "conv2d", "filters": 4, "size": 3, "stride": 1, "padding": "valid",
                         "activation": "linear", "bias": True, "init": None}
    assert layers[1] == {"type": "maxpool", "size": 2, "stride": 2, "padding": "valid"}
    assert layers[2] == {"type": "batchnorm", "momentum": 0.9, "epsilon": 1e-5}
    assert layers[3]["activation"] == "relu" and layers[3]["projection"] == "auto"
    assert layers[3]["layers"][0]["padding"] == "same"
    assert layers[4]["paths"][0][0]["stride"] == 1
    assert all(list(layer)[0] == "type" for layer in layers)


def test_yaml_12_floats(tmp_path):
    r = load_recipe(write(tmp_path, MINIMAL + "optimizer: {learning_rate: 1e-3, epsilon: 1.0e-8}\n"
                                              "regularization: {l2: 5E-1}\n"))
    assert r.optimizer.learning_rate == 1e-3 and r.optimizer.epsilon == 1e-8
    assert r.regularization.l2 == 0.5
    d = apply_overrides({}, ["a=-2E5", "b=1e3", "c=abc", "d=12"])
    assert d == {"a": -2e5, "b": 1000.0, "c": "abc", "d": 12}


def test_overrides_index_into_lists_and_add_missing_keys(tmp_path):
    r = load_recipe(write(tmp_path, MINIMAL), ["model.layers.0.units=64", "training.epochs=5",
                                               "regularization.l2=0.1", "training.batch_size=full",
                                               "training.early_stopping.patience=3"])
    assert r.model.layers[0].units == 64 and r.training.epochs == 5
    assert r.regularization.l2 == 0.1 and r.training.batch_size == "full"
    assert r.training.early_stopping.patience == 3 and r.training.early_stopping.metric == "dev_error"


def test_set_by_path():
    d = {"a": [{"b": 1}], "n": None}
    set_by_path(d, "a.0.b", 2)
    set_by_path(d, "x.y.z", 3)
    set_by_path(d, "n.k", 4)
    assert d == {"a": [{"b": 2}], "x": {"y": {"z": 3}}, "n": {"k": 4}}
    with pytest.raises(BadInput, match="indices 0..0"):
        set_by_path(d, "a.1.b", 0)
    with pytest.raises(BadInput, match="not a mapping"):
        set_by_path(d, "a.0.b.c", 0)


@pytest.mark.parametrize("override, says", [
    ("training.epochs", "must be KEY=VALUE"),
    ("model.layers.7.units=3", "model.layers is a list of 2 items"),
    ("model..units=3", "not a dotted key path"),
    ("seed=[1,", "cannot read the value as YAML"),
])
def test_malformed_set_names_the_override(tmp_path, override, says):
    err = bad(write(tmp_path, MINIMAL), [override])
    assert str(err).startswith(f"--set {override}: ") and says in err.message


def test_bad_value_from_set_names_the_override(tmp_path):
    err = bad(write(tmp_path, MINIMAL), ["model.layers.1.units=-3"])
    assert err.key == "model.layers.1.units" and err.line is None
    assert "must be a positive integer, got -3 (from --set model.layers.1.units=-3)" in str(err)


def test_to_dict_round_trips(tmp_path):
    (tmp_path / "data").mkdir()
    r = load_recipe(write(tmp_path, """\
        name: everything
        seed: 3
        data:
          train: {path: data/train.h5, x: train_x, y: train_y}
          test: {path: data/test.npz}
          dev: 0.1
          augment: [flip_horizontal, random_crop, {color_shift: {max: 0.2}}]
        model:
          layers:
            - {type: conv2d, filters: 2, size: 3, padding: 1, init: xavier}
            - {type: global_avgpool}
            - {type: dropout, keep_prob: 0.8}
            - {type: dense, units: 3, activation: softmax}
          init_from: data/params.npz
          freeze: [0]
        optimizer: {name: adam, decay: {schedule: staircase, rate: 0.5, every: 10}}
        training: {batch_size: full, early_stopping: {metric: dev_cost}}
        evaluation: {metric: f1, human_level_error: 0.01, satisficing: {seconds: {max: 60}}, multi_crop: 10}
        search:
          rounds: 2
          space:
            optimizer.learning_rate: {log_uniform: [1.0e-4, 1]}
            optimizer.beta1: {one_minus_log_uniform: [0.9, 0.999]}
            model.layers.3.units: {int_uniform: [2, 8]}
            training.batch_size: {choice: [32, 64]}
        """))
    d = r.to_dict()
    assert d["data"]["train"] == {"path": str(tmp_path / "data/train.h5"), "x": "train_x", "y": "train_y"}
    assert d["data"]["augment"] == ["flip_horizontal", {"random_crop": {"pad": 4}},
                                    {"color_shift": {"max": 0.2}}]
    assert d["model"]["init_from"] == str(tmp_path / "data/params.npz")
    assert d["search"]["space"]["training.batch_size"] == {"choice": [32, 64]}
    assert recipe_from_dict(d).to_dict() == d
    again = load_recipe(write(tmp_path, r.to_yaml(), "again.yaml"))
    assert again.to_dict() == d


def test_paths_expand_variables_and_resolve_against_the_recipe(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_HOME", "/srv/data")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub" / "mnist").mkdir(parents=True)
    path = write(tmp_path, """\
        data:
          train: {path: "${DATA_HOME}/cats.h5", x: train_set_x}
          test: {path: mnist, x: t10k-images-idx3-ubyte.gz, y: t10k-labels-idx1-ubyte.gz}
          dev: {x: "mnist/dev-images-ubyte", y: "${DATA_HOME}/dev-labels-ubyte"}
        model: {layers: [{type: dense, units: 1}]}
        """, "sub/r.yaml")
    data = load_recipe(path).data
    assert (data.train.path, data.train.x, data.train.y) == ("/srv/data/cats.h5", "train_set_x", "y")
    mnist = tmp_path / "sub" / "mnist"
    assert data.test.x == str(mnist / "t10k-images-idx3-ubyte.gz")
    assert data.dev.x == str(mnist / "dev-images-ubyte")
    assert data.dev.y == "/srv/data/dev-labels-ubyte"
    monkeypatch.setenv("DATA_HOME", "relative")  # a relative variable is relative to the cwd
    assert load_recipe(path).data.train.path == str(tmp_path / "relative" / "cats.h5")


def test_unset_variable_names_it_at_its_line(tmp_path, monkeypatch):
    monkeypatch.delenv("NO_SUCH_DIR", raising=False)
    err = bad(write(tmp_path, MINIMAL.replace("{builtin: moons}", '\n    path: "${NO_SUCH_DIR}/x.h5"')))
    assert (err.key, err.line) == ("data.train.path", 3)
    assert "NO_SUCH_DIR is not set" in err.message


LOCATED = """\
data:
  train: {builtin: moons}
  dev: 0.2
model:
  layers:
    - {type: dense, units: 4, activation: relu}
    - {type: dropout, keep_prob: 0.5}
    - {type: dense, units: 1, activation: sigmoid}
optimizer:
  learning_rate: 0.1
  name: adam
training:
  epochs: 3
  batch_size: 8
  shuffle: true
search:
  space:
    model.layers.0.units: {choice: [2, 4]}
    optimizer.learning_rate: {log_uniform: [1.0e-4, 1]}
"""


@pytest.mark.parametrize("edit, key, line, says", [
    (("optimizer:", "optimiser:"), "optimiser", 9, "unknown key (did you mean optimizer?)"),
    (("units: 1,", "units: -3,"), "model.layers.2.units", 8, "must be a positive integer, got -3"),
    (("activation: relu", "activation: relux"), "model.layers.0.activation", 6,
     "got 'relux' (did you mean relu?)"),
    (("activation: sigmoid", "activation: tanh"), "model.layers.2.activation", 8, "set loss:"),
    (("type: dense, units: 4", "type: dens, units: 4"), "model.layers.0.type", 6, "did you mean dense?"),
    (("keep_prob: 0.5", "keep_prob: 1.5"), "model.layers.1.keep_prob", 7, "must be a number in (0, 1]"),
    (("learning_rate: 0.1", "learning_rate: 0"), "optimizer.learning_rate", 10, "must be a number > 0"),
    (("name: adam", "name: adamw"), "optimizer.name", 11, "must be one of gd, momentum, rmsprop, adam"),
    (("dev: 0.2", "dev: 1.2"), "data.dev", 3, "must be a number in (0, 1)"),
    (("batch_size: 8", "batch_size: half"), "training.batch_size", 14, "must be full or a positive integer"),
    (("shuffle: true", "shuffle: 3"), "training.shuffle", 15, "must be true or false"),
    (("[1.0e-4, 1]", "[1, 1.0e-4]"), "search.space.optimizer.learning_rate.log_uniform", 19, "0 < lo < hi"),
])
def test_bad_values_are_located(tmp_path, edit, key, line, says):
    assert LOCATED.count(edit[0]) == 1
    path = write(tmp_path, LOCATED.replace(*edit))
    err = bad(path)
    assert (err.file, err.key, err.line) == (str(path), key, line), str(err)
    assert says in err.message
    assert str(err).startswith(f"{path}:{line}: {key}: ")


def test_the_located_template_itself_is_valid(tmp_path):
    assert load_recipe(write(tmp_path, LOCATED)).search.space["model.layers.0.units"].choice == [2, 4]


@pytest.mark.parametrize("content, line, says", [
    ("", None, "the recipe is empty"),
    ("# nothing but a comment\n", None, "the recipe is empty"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00", None, "binary"),
    (b"name: caf\xe9\n", None, "not UTF-8"),
    ("data:\n  train: {builtin: moons\nmodel: {}\n", 3, "YAML syntax error"),
    ("data:\n  train: {path: ${X}/a.h5}\n", 2, 'quote a value that holds ${VAR}'),
    ("- just\n- a list\n", 1, "must be a mapping"),
    ("seed: 1\nseed: 2\n", 2, "duplicate key"),
])
def test_unreadable_recipes(tmp_path, content, line, says):
    path = write(tmp_path, content)
    err = bad(path)
    assert err.file == str(path) and err.line == line and says in err.message


def test_missing_file(tmp_path):
    err = bad(tmp_path / "nope.yaml")
    assert err.file == str(tmp_path / "nope.yaml") and "no such recipe file" in err.message


@pytest.mark.parametrize("d, key, says", [
    ({"data": None}, "data", "is required"),
    ({"model": {"layers": []}}, "model.layers", "must not be empty"),
    ({"model": {"layers": [{"units": 2}]}}, "model.layers.0.type", "is required"),
    ({"model": {"layers": [{"type": "dense", "units": 1}], "freeze": [3]}}, "model.freeze.0", "no layer 3"),
    ({"data": {"train": {}}}, "data.train", "needs builtin: NAME, path: FILE"),
    ({"data": {"train": {"builtin": "moon"}}}, "data.train.builtin", "did you mean moons?"),
    ({"data": {"augment": ["flip_vertical"]}}, "data.augment.0", "must be flip_horizontal"),
    ({"data": {"test": 0.5, "dev": 0.5}}, "data.dev", "leave no training examples"),
    ({"optimizer": {"decay": {"schedule": "cosine"}}}, "optimizer.decay.schedule", "must be one of none"),
    ({"evaluation": {"satisficing": {"seconds": {}}}}, "evaluation.satisficing.seconds", "needs max: or min:"),
    ({"evaluation": {"multi_crop": 5}}, "evaluation.multi_crop", "must be 10"),
    ({"search": {"space": {"optimizer.lr": {"uniform": [0, 1]}}}}, "search.space.optimizer.lr", "has no key"),
    ({"search": {"space": {"seed": {"uniform": [0, 1], "choice": [1]}}}}, "search.space.seed", "exactly one"),
    ({"search": {"space": {"seed": {"int_uniform": [0.5, 3]}}}}, "search.space.seed.int_uniform", "integers"),
    ({"model": {"layers": [{"type": "residual", "layers": [{"type": "dense", "unit": 2}]}]}},
     "model.layers.0.layers.0.unit", "did you mean units?"),
])
def test_schema_errors_name_the_key(d, key, says):
    base = yaml.safe_load(MINIMAL)
    for section, value in d.items():  # None drops a section; a mapping merges into it
        if value is None:
            del base[section]
        else:
            base[section] = {**base.get(section, {}), **value}
    with pytest.raises(BadInput) as info:
        recipe_from_dict(base)
    assert info.value.key == key and says in info.value.message, str(info.value)


def test_recipe_error_points_at_the_key_or_its_parent(tmp_path):
    path = write(tmp_path, MINIMAL)
    r = load_recipe(path)
    err = r.error("data.train.n", "must be at least 2")
    assert (err.file, err.key, err.line) == (str(path), "data.train.n", 2)
    assert r.line_of("model.layers.1.units") == 6 and r.line_of("nothing.here") is None
    assert str(err) == f"{path}:2: data.train.n: must be at least 2"


def test_recipe_error_names_the_set_that_gave_the_value(tmp_path):
    r = load_recipe(write(tmp_path, MINIMAL), ["data.train={path: missing.h5}"])
    err = r.error("data.train.path", "no such file")
    assert err.line is None and "(from --set data.train={path: missing.h5})" in str(err)
    assert r.data.train.path == os.path.join(tmp_path, "missing.h5")
