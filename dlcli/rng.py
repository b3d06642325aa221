"""Every random draw derives from the recipe seed, through one named stream per purpose.

Separate streams keep a run reproducible when one part changes: adding dropout does not move
the initial weights, changing the split does not change the shuffling.
"""

from __future__ import annotations

import numpy as np

STREAMS = {"data": 0, "split": 1, "init": 2, "shuffle": 3, "dropout": 4, "augment": 5,
           "gradcheck": 6, "search": 7, "test_data": 8}


def stream(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), STREAMS[name]]))
