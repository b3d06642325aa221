"""Held-out sets carved from the train source (SPEC "Carving").

One shuffle of the train source's rows; then test, dev and train-dev take floor(fraction * m)
rows each, in that order; the training set is the rest, in the shuffled order. Without any
fraction nothing is shuffled and the training set is the file's order.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from ..errors import BadInput

ORDER = ("test", "dev", "train_dev")


def carve(m: int, fractions: dict, rng) -> dict:
    """{split: rows of the train source}: the carved splits and "train"."""
    if not fractions:
        return {"train": np.arange(m, dtype=np.int64)}
    rows = rng.permutation(m).astype(np.int64)
    splits, start = {}, 0
    for name in ORDER:
        if name not in fractions:
            continue
        f = fractions[name]
        # the decimal the user wrote, exactly: 0.29 of 100 is 29, not floor(28.999999999999996)
        count = math.floor(Fraction(repr(float(f))) * m)
        if count == 0:
            raise BadInput(f"{f} of the {m} examples in the train source is no example",
                           key=f"data.{name}")
        if start + count >= m:
            raise BadInput(f"carving {f} of the {m} examples in the train source leaves no "
                           "training examples", key=f"data.{name}")
        splits[name] = rows[start:start + count]
        start += count
    splits["train"] = rows[start:]
    return splits
