"""dlcli.data: builtin generators, the course's files, carving, preprocessing, bad input, augmentation."""

from __future__ import annotations

import gzip
import time
import os
from pathlib import Path

import numpy as np
import pytest

from dlcli.data import augment_batch, load_dataset
from dlcli.errors import BadInput
from dlcli.rng import stream

from conftest import course_data

# the course's files, through conftest's course_data (a skip with its reason where absent)
def CAT():
    return course_data("catvnoncat")


def MNIST():
    return course_data("mnist")
GENERATORS = ["planar", "moons", "circles", "blobs", "spiral", "shapes"]


def builtin(name, **params):
    return {"train": {"builtin": name, **params}}


def raw(cfg, seed=0, **kw):
    """The splits as float64 without any preprocessing, for exact comparisons."""
    return load_dataset(cfg, seed, dtype="float64", **kw)


def bad(cfg, key, *words, **kw):
    """load_dataset(cfg) must raise BadInput at `key` whose message holds each of `words`."""
    with pytest.raises(BadInput) as err:
        load_dataset(cfg, 0, **kw)
    assert err.value.key == key, str(err.value)
    for word in words:
        assert word in err.value.message, str(err.value)
    return err.value


def npz(tmp_path, name="d.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


# -- builtin generators -------------------------------------------------------------------
@pytest.mark.parametrize("name", GENERATORS)
def test_generators_are_deterministic_per_seed(name):
    params = {"n": 60} if name == "shapes" else {}
    a, b, c = (load_dataset(builtin(name, **params), seed).splits["train"] for seed in (3, 3, 4))
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    assert not np.array_equal(a.x, c.x)


@pytest.mark.parametrize("name, shape, counts", [
    ("planar", (400, 2), [200, 200]), ("moons", (300, 2), [150, 150]),
    ("circles", (300, 2), [150, 150]), ("blobs", (300, 2), [100, 100, 100]),
    ("spiral", (300, 2), [100, 100, 100]), ("shapes", (1200, 28, 28, 3), [400, 400, 400])])
def test_generator_defaults(name, shape, counts):
    ds = load_dataset(builtin(name), 0)
    train = ds.splits["train"]
    assert train.x.shape == shape and train.x.dtype == np.float32
    assert np.bincount(train.y).tolist() == counts and train.y.dtype == np.int64
    assert ds.n_classes == len(counts) and ds.is_image == (len(shape) == 4)
    assert np.array_equal(train.index, np.arange(shape[0]))


def test_generator_parameters():
    ds = load_dataset(builtin("spiral", n=50, classes=5), 0)
    assert ds.splits["train"].x.shape == (50, 2) and ds.n_classes == 5
    ds = load_dataset(builtin("shapes", n=20, size=16, classes=4), 0)
    assert ds.input_shape == (16, 16, 3) and ds.class_names == ["circle", "square", "triangle", "cross"]
    assert ds.n_classes == 4


@pytest.mark.parametrize("name, course_seed, n, noise, file", [
    ("planar", 1, 400, 0.2, "planar_flower"), ("moons", 3, 300, 0.2, "moons_opt"),
    ("circles", 1, 300, 0.05, "circles_init")])
def test_generators_follow_the_course_recipes(name, course_seed, n, noise, file):
    from dlcli.data import toy2d
    # the course draws from np.random.seed(k)'s legacy stream: the same draws give its very data
    x, y = getattr(toy2d, name)(np.random.RandomState(course_seed), n, noise, 2)
    course = np.load(course_data("generated_2d", f"{file}.npz"))
    assert np.array_equal(x, course["x"]) and np.array_equal(y, course["y"])
    default = load_dataset(builtin(name), 0).splits["train"]
    assert default.x.shape == x.shape and np.bincount(default.y).tolist() == np.bincount(y).tolist()


def test_planar_is_the_course_flower():
    x = raw(builtin("planar", noise=0)).splits["train"].x
    r, t = np.hypot(x[:, 0], x[:, 1]), np.arctan2(x[:, 0], x[:, 1])
    np.testing.assert_allclose(r, np.abs(4 * np.sin(4 * t)), atol=1e-9)  # r = a sin 4t, a = 4


def test_shapes_are_uint8_pixels():
    # its speed (3,000 images well under a second) is measured in benchmarks/speed_limits.py
    x = raw(builtin("shapes", n=3000)).splits["train"].x
    assert x.min() >= 0 and x.max() <= 255 and np.array_equal(x, np.round(x))
    # every image shows a shape: two colours at least
    assert (x.reshape(3000, -1, 3).std(axis=1).max(axis=1) > 0).all()


def test_builtin_held_out_sources_are_other_draws():
    cfg = {"train": {"builtin": "moons"}, "dev": {"builtin": "moons"}, "test": {"builtin": "moons"}}
    splits = load_dataset(cfg, 0).splits
    assert not np.array_equal(splits["train"].x, splits["dev"].x)
    assert not np.array_equal(splits["dev"].x, splits["test"].x)
    alone = load_dataset({"train": cfg["train"], "dev": cfg["dev"]}, 0).splits
    assert np.array_equal(alone["dev"].x, splits["dev"].x)


@pytest.mark.parametrize("params, key", [
    ({"builtin": "flowers"}, "data.train.builtin"),
    ({"builtin": "planar", "classes": 3}, "data.train.classes"),
    ({"builtin": "spiral", "n": 0}, "data.train.n"),
    ({"builtin": "moons", "size": 8}, "data.train.size"),
    ({"builtin": "moons", "noise": -1}, "data.train.noise"),
    ({"builtin": "shapes", "size": 4}, "data.train.size"),
    ({"builtin": "shapes", "classes": 5}, "data.train.classes"),
    ({"builtin": "moons", "path": "x.npz"}, "data.train")])
def test_bad_builtin_parameters(params, key):
    bad({"train": params}, key)


# -- the course's files --------------------------------------------------------------------
def cat_cfg(**extra):
    return {"train": {"path": str(CAT() / "train_catvnoncat.h5"), "x": "train_set_x", "y": "train_set_y"},
            "test": {"path": str(CAT() / "test_catvnoncat.h5"), "x": "test_set_x", "y": "test_set_y"},
            **extra}


def test_cat_files():
    ds = raw(cat_cfg())
    train, test = ds.splits["train"], ds.splits["test"]
    assert train.x.shape == (209, 64, 64, 3) and test.x.shape == (50, 64, 64, 3)
    assert train.x.sum() == 264_542_077 and test.x.sum() == 65_969_547
    assert train.x[0, 0, 0].tolist() == [17, 31, 56] and test.x[0, 0, 0].tolist() == [158, 104, 83]
    assert train.y[:10].tolist() == [0, 0, 1, 0, 0, 0, 0, 1, 0, 0]
    assert test.y[:10].tolist() == [1, 1, 1, 1, 1, 0, 1, 1, 1, 1]
    assert np.bincount(train.y).tolist() == [137, 72] and np.bincount(test.y).tolist() == [17, 33]
    assert ds.class_names == ["non-cat", "cat"] and ds.n_classes == 2 and ds.is_image


def test_cat_course_preprocessing():
    ds = load_dataset(cat_cfg(scale=255, flatten=True), 1)
    x = ds.splits["train"].x
    assert ds.input_shape == (12288,) and x.dtype == np.float32 and not ds.is_image
    assert abs(float(x[0, :3].sum()) - (17 + 31 + 56) / 255) < 1e-6


def test_football_npz():
    path = str(course_data("football_2d", "football.npz"))
    ds = raw({"train": {"path": path}, "test": {"path": path, "x": "x_val", "y": "y_val"}})
    train, test = ds.splits["train"], ds.splits["test"]
    assert train.x.shape == (211, 2) and test.x.shape == (200, 2)
    assert np.bincount(train.y).tolist() == [105, 106] and np.bincount(test.y).tolist() == [113, 87]
    np.testing.assert_allclose(train.x[0], [-0.158986, 0.423977], atol=1e-6)
    assert train.y[0] == 1 and ds.class_names is None


@pytest.mark.parametrize("name, x_sum, y_sum", [("planar_flower", 10.087983277441666, 200),
                                                ("moons_opt", 229.31214774688254, 150)])
def test_generated_2d_files(name, x_sum, y_sum):
    train = raw({"train": {"path": str(course_data("generated_2d", f"{name}.npz"))}}).splits["train"]
    assert train.x.sum() == pytest.approx(x_sum, abs=1e-9) and train.y.sum() == y_sum


def test_mnist_idx_pair_in_a_directory_and_as_files():
    by_dir = {"path": str(MNIST()), "x": "t10k-images-idx3-ubyte.gz", "y": "t10k-labels-idx1-ubyte.gz"}
    by_files = {"path": None, "x": str(MNIST() / by_dir["x"]), "y": str(MNIST() / by_dir["y"])}
    for source in (by_dir, by_files):
        ds = load_dataset({"train": source, "scale": 255}, 0)
        train = ds.splits["train"]
        assert train.x.shape == (10000, 28, 28, 1) and ds.input_shape == (28, 28, 1) and ds.is_image
        assert np.bincount(train.y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
        assert train.y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
        assert ds.n_classes == 10 and 0 <= train.x.min() and train.x.max() <= 1
        assert abs(train.x.mean() * 255 - 33.79) < 0.01


def test_idx_compression_is_told_by_magic_bytes(tmp_path):
    images = gzip.decompress((MNIST() / "t10k-images-idx3-ubyte.gz").read_bytes())
    (tmp_path / "images.gz").write_bytes(images)  # not compressed, despite the name
    (tmp_path / "labels.idx").write_bytes((MNIST() / "t10k-labels-idx1-ubyte.gz").read_bytes())  # gzip
    ds = raw({"train": {"path": str(tmp_path), "x": "images.gz", "y": "labels.idx"}})
    assert ds.splits["train"].x.shape == (10000, 28, 28, 1)
    assert ds.splits["train"].y[:3].tolist() == [7, 2, 1]


@pytest.mark.parametrize("folder, file, names, counts, first", [
    ("signs", "test_signs.h5", ["0", "1", "2", "3", "4", "5"], [20] * 6, [0, 0, 0, 5, 1, 0, 3, 1, 5, 1]),
    ("happy_house", "test_happy.h5", ["0", "1"], [66, 84], [1, 1, 1, 1, 1, 1, 1, 0, 1, 0])])
def test_test_only_h5_files(folder, file, names, counts, first):
    ds = load_dataset({"train": {"path": str(course_data(folder, file)), "x": "test_set_x", "y": "test_set_y"}}, 0)
    y = ds.splits["train"].y
    assert ds.class_names == names and ds.n_classes == len(names)
    assert np.bincount(y).tolist() == counts and y[:10].tolist() == first


# -- carving ------------------------------------------------------------------------------
def rows_file(tmp_path, m=100):
    """Row r has x = (r, 2r) and label r % 3, so every example names its row."""
    r = np.arange(m)
    return str(npz(tmp_path, x=np.c_[r, 2 * r], y=r % 3))


def test_carving_sizes_order_and_rows(tmp_path):
    cfg = {"train": {"path": rows_file(tmp_path)}, "test": 0.15, "dev": 0.2, "train_dev": 0.1}
    splits = raw(cfg, seed=7).splits
    assert list(splits) == ["train", "train_dev", "dev", "test"]
    perm = stream(7, "split").permutation(100)
    expected = {"test": perm[:15], "dev": perm[15:35], "train_dev": perm[35:45], "train": perm[45:]}
    for name, rows in expected.items():
        split = splits[name]
        assert np.array_equal(split.index, rows) and split.index.dtype == np.int64
        assert np.array_equal(split.x[:, 0], rows) and np.array_equal(split.y, rows % 3)
    everything = np.concatenate([s.index for s in splits.values()])
    assert sorted(everything.tolist()) == list(range(100))


def test_carving_is_floor_of_the_written_fraction(tmp_path):
    splits = raw({"train": {"path": rows_file(tmp_path)}, "dev": 0.29, "train_dev": 0.333}).splits
    assert len(splits["dev"].y) == 29 and len(splits["train_dev"].y) == 33 and len(splits["train"].y) == 38
    cat = raw(cat_cfg(dev=0.2), seed=1).splits
    assert len(cat["dev"].y) == 41 and len(cat["train"].y) == 168 and len(cat["test"].y) == 50


def test_without_fractions_the_file_order_is_kept(tmp_path):
    path = rows_file(tmp_path)
    ds = raw({"train": {"path": path}, "dev": {"path": path}})
    for split in ds.splits.values():
        assert np.array_equal(split.index, np.arange(100)) and np.array_equal(split.x[:, 0], np.arange(100))


def test_carving_differs_by_seed_but_not_run_to_run(tmp_path):
    cfg = {"train": {"path": rows_file(tmp_path)}, "dev": 0.3}
    a, b, c = (raw(cfg, seed=s).splits["dev"].index for s in (1, 1, 2))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("extra, key, word", [
    ({"dev": 0.001}, "data.dev", "no example"),
    ({"dev": 0.6, "train_dev": 0.5}, "data.train_dev", "leaves no"),
    ({"dev": 1.5}, "data.dev", "fraction"), ({"test": "half"}, "data.test", "fraction"),
    ({"train_dev": True}, "data.train_dev", "fraction")])
def test_bad_fractions(tmp_path, extra, key, word):
    bad({"train": {"path": rows_file(tmp_path)}, **extra}, key, word)


# -- preprocessing ------------------------------------------------------------------------
def test_normalize_uses_train_statistics_only(tmp_path):
    rng = np.random.default_rng(0)
    x = np.c_[rng.normal(5, 3, 200), rng.normal(-2, 0.5, 200), np.full(200, 7.0)]
    path = str(npz(tmp_path, x=x, y=np.arange(200) % 2))
    ds = raw({"train": {"path": path}, "dev": 0.25, "scale": 2, "normalize": True}, seed=3)
    train, dev = ds.splits["train"], ds.splits["dev"]
    np.testing.assert_allclose(train.x.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(train.x.std(axis=0), [1, 1, 0], atol=1e-12)  # constant: centred only
    scaled = x / 2
    mean, std = scaled[train.index].mean(axis=0), scaled[train.index].std(axis=0)
    std[2] = 1
    np.testing.assert_allclose(dev.x, (scaled[dev.index] - mean) / std, atol=1e-12)
    assert abs(dev.x[:, 0].mean()) > 1e-6  # dev was not normalised by its own statistics
    np.testing.assert_allclose(ds.preprocess(x[dev.index]), dev.x)


def test_scale_then_flatten_then_normalize_on_images():
    ds = load_dataset(cat_cfg(scale=255, flatten=True, normalize=True), 0, dtype="float64")
    pixels = raw(cat_cfg()).splits["train"].x
    vectors = pixels.reshape(209, -1) / 255
    expected = (vectors - vectors.mean(axis=0)) / vectors.std(axis=0)
    np.testing.assert_allclose(ds.splits["train"].x, expected, atol=1e-9)
    np.testing.assert_allclose(ds.preprocess(pixels), expected, atol=1e-9)


def test_dtype_and_greyscale_images(tmp_path):
    path = str(npz(tmp_path, x=np.arange(5 * 4 * 3).reshape(5, 4, 3), y=[0, 1, 0, 1, 1]))
    ds = load_dataset({"train": {"path": path}}, 0, dtype="float64")
    assert ds.input_shape == (4, 3, 1) and ds.is_image and ds.splits["train"].x.dtype == np.float64
    assert ds.preprocess(np.zeros((2, 4, 3))).shape == (2, 4, 3, 1)


# -- labels -------------------------------------------------------------------------------
def test_label_shapes_and_kinds(tmp_path):
    x = np.zeros((4, 2))
    column = raw({"train": {"path": str(npz(tmp_path, "a.npz", x=x, y=np.array([[1.0], [0], [2], [1]])))}})
    assert column.splits["train"].y.tolist() == [1, 0, 2, 1] and column.splits["train"].y.dtype == np.int64
    assert column.n_classes == 3
    multi = np.array([[1, 0, -1], [0, 1, 1], [-1, -1, 0], [1, 1, 1]])
    ds = raw({"train": {"path": str(npz(tmp_path, "b.npz", x=x, y=multi))}})
    assert np.array_equal(ds.splits["train"].y, multi) and ds.n_classes is None
    real = raw({"train": {"path": str(npz(tmp_path, "c.npz", x=x, y=[0.5, -1.25, 3, 0]))}}, targets="real")
    assert real.splits["train"].y.tolist() == [0.5, -1.25, 3, 0] and real.n_classes is None
    one_class = raw({"train": {"path": str(npz(tmp_path, "d.npz", x=x, y=[0, 0, 0, 0]))}})
    assert one_class.n_classes == 2


def test_n_classes_counts_every_split(tmp_path):
    x = np.zeros((4, 2))
    cfg = {"train": {"path": str(npz(tmp_path, "a.npz", x=x, y=[0, 1, 1, 0]))},
           "test": {"path": str(npz(tmp_path, "b.npz", x=x, y=[0, 4, 1, 0]))}}
    assert load_dataset(cfg, 0).n_classes == 5


def test_csv_source(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("pos_x,team,pos_y\n0.5,1,-1\n1.5,0,2e-1\n\n-3,1,4\n")
    ds = raw({"train": {"path": str(path), "y": "team"}})
    train = ds.splits["train"]
    assert train.x.tolist() == [[0.5, -1], [1.5, 0.2], [-3, 4]] and train.y.tolist() == [1, 0, 1]


# -- bad input ----------------------------------------------------------------------------
def test_nan_and_inf_in_x(tmp_path):
    x = np.ones((5, 2))
    x[3, 1] = np.nan
    err = bad({"train": {"path": str(npz(tmp_path, x=x, y=np.zeros(5)))}}, "data.train.x", "NaN", "example 3")
    assert str(tmp_path / "d.npz") in err.message
    x[3, 1] = np.inf
    bad({"train": {"path": str(npz(tmp_path, "e.npz", x=x, y=np.zeros(5)))}}, "data.train.x", "infinite")


def test_lengths_differ_and_empty(tmp_path):
    bad({"train": {"path": str(npz(tmp_path, x=np.ones((5, 2)), y=np.zeros(4)))}}, "data.train", "5", "4")
    bad({"train": {"path": str(npz(tmp_path, "e.npz", x=np.ones((0, 2)), y=np.zeros(0)))}},
        "data.train", "no examples")


@pytest.mark.parametrize("text, key, words", [
    ("a,b,y\n1,2,0\n3,x,1\n", "data.train.path", ["row 3", "'b'", "'x'"]),
    ("a,b,y\n1,2,0\n3,1\n", "data.train.path", ["row 3", "2 fields"]),
    ("1,2,0\n3,4,1\n", "data.train.path", ["header"]),
    ("a,b,label\n1,2,0\n", "data.train.y", ["'y'", "a, b, label"]),
    ("", "data.train.path", ["empty"]),
    ("a,b,y\n", "data.train", ["no examples"])])
def test_bad_csv(tmp_path, text, key, words):
    path = tmp_path / "d.csv"
    path.write_text(text)
    err = bad({"train": {"path": str(path)}}, key, *words)
    assert str(path) in err.message


def test_binary_file_as_csv(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b"\x89\xff\xfe\x00binary")
    bad({"train": {"path": str(path)}}, "data.train.path", str(path))


def test_unknown_extension_missing_file_and_missing_source(tmp_path):
    (tmp_path / "d.txt").write_text("1 2 3")
    bad({"train": {"path": str(tmp_path / "d.txt")}}, "data.train.path", "'.txt'", ".npz")
    bad({"train": {"path": str(tmp_path / "nope.npz")}}, "data.train.path", "no such file")
    bad({"train": None}, "data.train", "required")
    bad({"train": {"x": "a"}}, "data.train", "builtin")
    idx_pair = {"path": None, "x": str(tmp_path / "a"), "y": str(tmp_path / "b")}
    bad({"train": idx_pair}, "data.train.x", "no such file")


def test_missing_keys_list_the_keys_present(tmp_path):
    path = str(npz(tmp_path, images=np.ones((3, 2)), y=np.zeros(3)))
    bad({"train": {"path": path}}, "data.train.x", "'x'", "images, y")
    bad({"train": {"path": str(CAT() / "train_catvnoncat.h5"), "x": "train_set_x", "y": "labels"}},
        "data.train.y", "'labels'", "list_classes, train_set_x, train_set_y")


def test_corrupt_files(tmp_path):
    for name in ("d.h5", "d.npz"):
        (tmp_path / name).write_bytes(b"not really " + name.encode() * 50)
        bad({"train": {"path": str(tmp_path / name)}}, "data.train.path", "cannot read", str(tmp_path / name))
    (tmp_path / "x.idx").write_bytes(b"\x00\x00\x08\x03" + b"\x00\x00\x00\x02" * 3 + b"\x01" * 5)
    (tmp_path / "y.idx").write_bytes(b"garbage!")
    src = {"path": str(tmp_path), "x": "x.idx", "y": "y.idx"}
    bad({"train": src}, "data.train.x", "8 values", "holds 5")  # header says 2x2x2 pixels, 5 present
    (tmp_path / "x.idx").write_bytes(b"\x00\x00\x08\x03" + b"\x00\x00\x00\x02" * 3 + b"\x01" * 8)
    bad({"train": src}, "data.train.y", "not an IDX file")


def test_bad_labels(tmp_path):
    x = np.zeros((3, 2))
    cases = [([0, -1, 1], "0, 1, 2", "-1 at example 1"), ([0, 0.5, 1], "integers", "0.5 at example 1"),
             ([[0, 1], [2, 0], [1, 1]], "0, 1 or -1", "2 at example 1"), ([0, np.nan, 1], "NaN", "example 1")]
    for i, (y, *words) in enumerate(cases):
        bad({"train": {"path": str(npz(tmp_path, f"{i}.npz", x=x, y=np.array(y)))}}, "data.train.y", *words)
    bad({"train": {"path": str(npz(tmp_path, "s.npz", x=x, y=np.array(["a", "b", "c"])))}}, "data.train.y")


def test_held_out_sources_must_fit_the_train_source(tmp_path):
    train = {"path": str(npz(tmp_path, "a.npz", x=np.zeros((4, 2)), y=[0, 1, 0, 1]))}
    wide = {"path": str(npz(tmp_path, "b.npz", x=np.zeros((4, 3)), y=[0, 1, 0, 1]))}
    multi = {"path": str(npz(tmp_path, "c.npz", x=np.zeros((4, 2)), y=np.ones((4, 2))))}
    bad({"train": train, "dev": wide}, "data.dev.x", "(3,)", "(2,)")
    bad({"train": train, "test": multi}, "data.test.y", "(m, 2)")


def test_held_out_labels_beyond_the_named_classes(tmp_path):
    import h5py
    path = tmp_path / "t.h5"
    with h5py.File(path, "w") as f:
        f["x"], f["y"], f["list_classes"] = np.zeros((3, 2)), [0, 2, 1], [b"a", b"b"]
    bad({"train": {"path": str(path)}}, "data.train.y", "label 2", "2 classes")
    cfg = {"train": {"builtin": "shapes", "n": 6, "size": 8, "classes": 2},
           "test": {"path": str(npz(tmp_path, x=np.zeros((2, 8, 8, 3)), y=[0, 2]))}}
    bad(cfg, "data.test.y", "label 2", "circle, square")


def test_bad_scale_and_augment_on_vectors(tmp_path):
    path = rows_file(tmp_path)
    bad({"train": {"path": path}, "scale": 0}, "data.scale")
    bad({"train": {"path": path}, "augment": ["flip_horizontal"]}, "data.augment", "images")
    bad(cat_cfg(flatten=True, augment=["flip_horizontal"]), "data.augment", "flatten")
    bad(cat_cfg(augment=[{"rotate": 10}]), "data.augment.0", "unknown")


# -- augmentation -------------------------------------------------------------------------
def images(m=64, h=6, w=5, c=3):
    return np.random.default_rng(0).random((m, h, w, c)).astype(np.float32)


def test_augmentation_is_deterministic_per_rng_and_leaves_its_input():
    x = images()
    before = x.copy()
    specs = ["flip_horizontal", {"random_crop": {"pad": 2}}, {"color_shift": {"max": 0.1}}]
    a, b, c = (augment_batch(x, specs, np.random.default_rng(s)) for s in (1, 1, 2))
    assert np.array_equal(a, b) and not np.array_equal(a, c) and a.shape == x.shape
    assert np.array_equal(x, before)
    empty = augment_batch(x, [], np.random.default_rng(0))
    assert np.array_equal(empty, x) and empty is not x


def test_flips_are_exact_mirrors():
    x = images()
    out = augment_batch(x, ["flip_horizontal"], np.random.default_rng(5))
    same = np.array([np.array_equal(o, i) for o, i in zip(out, x)])
    mirrored = np.array([np.array_equal(o, i[:, ::-1]) for o, i in zip(out, x)])
    assert (same ^ mirrored).all() and 10 < mirrored.sum() < 54


def test_random_crops_are_shifted_windows_of_the_padded_image():
    x, pad = images(m=40), 2
    out = augment_batch(x, [{"random_crop": {"pad": pad}}], np.random.default_rng(3))
    assert out.shape == x.shape and out.dtype == x.dtype
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    offsets = set()
    for o, p in zip(out, padded):
        hits = [(i, j) for i in range(2 * pad + 1) for j in range(2 * pad + 1)
                if np.array_equal(o, p[i:i + 6, j:j + 5])]
        assert hits
        offsets.add(hits[0])
    assert len(offsets) > 5


def test_color_shifts_are_bounded_per_example_and_channel():
    x = images()
    shift = augment_batch(x, [{"color_shift": {"max": 0.1}}], np.random.default_rng(0)) - x
    per_channel = shift[:, :1, :1, :]
    np.testing.assert_allclose(shift, np.broadcast_to(per_channel, shift.shape), atol=1e-6)
    assert np.abs(shift).max() <= 0.1 + 1e-6 and np.abs(shift).max() > 0.05
    assert len(np.unique(per_channel.round(6))) > 100


@pytest.mark.parametrize("specs, key", [
    ("flip_horizontal", "data.augment"), (["mirror"], "data.augment.0"),
    ([{"random_crop": {"pad": -1}}], "data.augment.0.random_crop.pad"),
    ([{"random_crop": {"pad": 1.5}}], "data.augment.0.random_crop.pad"),
    ([{"color_shift": {"max": "big"}}], "data.augment.0.color_shift.max"),
    ([{"color_shift": {"amount": 1}}], "data.augment.0"),
    ([{"flip_horizontal": None, "random_crop": None}], "data.augment.0")])
def test_bad_augmentation_specs(specs, key):
    with pytest.raises(BadInput) as err:
        augment_batch(images(), specs, np.random.default_rng(0))
    assert err.value.key == key


def test_augmenting_vectors_is_bad_input():
    with pytest.raises(BadInput) as err:
        augment_batch(np.zeros((4, 3)), ["flip_horizontal"], np.random.default_rng(0))
    assert err.value.key == "data.augment"
