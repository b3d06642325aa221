"""Helpers shared by the test files."""

import numpy as np


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
    import os
    from pathlib import Path

    import pytest

    root = Path(os.environ.get("DLCLI_DATA") or Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
    path = root.joinpath(*parts).resolve()
    if not path.exists():
        message = f"course data not found: {path} (set DLCLI_DATA to the course's data folder)"
        if os.environ.get("DLCLI_REQUIRE_DATA"):
            pytest.fail(message)
        pytest.skip(message)
    return path
