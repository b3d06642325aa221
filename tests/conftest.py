"""Helpers shared by the test files."""

import os
from pathlib import Path

import numpy as np

# The tests' course data: $DLCLI_DATA, default ../shared/data beside this checkout. The
# default is put in the environment too, for the recipes (they read ${DLCLI_DATA}/...) that
# tests train or show once `course_data` has found their file: without it a run of `pytest`
# with the folder beside the checkout but no DLCLI_DATA failed those tests at the recipe.
DATA = Path(os.environ.get("DLCLI_DATA") or Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
if not os.environ.get("DLCLI_DATA") and DATA.is_dir():
    os.environ["DLCLI_DATA"] = str(DATA.resolve())


def numerical_grad(f, array: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """d f / d array by two-sided differences, one entry at a time, changing `array` in place
    (and putting it back): f reads the array it closes over."""
    grad = np.empty(array.shape, dtype=np.float64)
    for i in np.ndindex(array.shape):
        original = array[i]
        array[i] = original + eps
        plus = f()
        array[i] = original - eps
        minus = f()
        array[i] = original
        grad[i] = (plus - minus) / (2 * eps)
    return grad


def course_data(*parts) -> "Path":
    """A file or folder of the course's data (`$DLCLI_DATA`, default ../shared/data).

    Absent, the test skips and says why, unless DLCLI_REQUIRE_DATA is set (CI sets it), where
    a missing file is a failure: a skip must never stand in for a test CI asked to run.
    """
    import pytest

    path = DATA.joinpath(*parts).resolve()
    if not path.exists():
        message = f"course data not found: {path} (set DLCLI_DATA to the course's data folder)"
        if os.environ.get("DLCLI_REQUIRE_DATA"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def mnist_cut(root, n=600):
    """The first `n` MNIST test images and labels written as IDX files under `root`: (their
    overrides for data.train.x / data.train.y, the images). Skips without the course's data."""
    import gzip

    from dlcli.data.idx import read_idx

    def write_idx(path, array):
        header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
        path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))

    x = read_idx(course_data("mnist", "t10k-images-idx3-ubyte.gz"), "x")[:n]
    y = read_idx(course_data("mnist", "t10k-labels-idx1-ubyte.gz"), "y")[:n]
    write_idx(root / "images.gz", x)
    write_idx(root / "labels.gz", y)
    return [f"data.train.x={root / 'images.gz'}", f"data.train.y={root / 'labels.gz'}"], x
