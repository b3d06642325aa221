"""Test-suite wiring: the oracle tests run where their oracle is installed.

PyTorch (`torch` marker) and Dask (`cluster` marker) are test oracles installed by the
`oracle` and `cluster` extras. Without them those tests are deselected, not skipped, so a
user's light `pytest` run stays green; CI installs both and sets DLCLI_REQUIRE_ORACLES=1,
which turns a missing oracle into an error instead.
"""

import importlib.util
import os

import pytest

ORACLES = {"torch": "torch", "cluster": "distributed"}


def pytest_collection_modifyitems(config, items):
    missing = {mark for mark, module in ORACLES.items() if importlib.util.find_spec(module) is None}
    if not missing:
        return
    if os.environ.get("DLCLI_REQUIRE_ORACLES"):
        raise pytest.UsageError(f"oracle packages missing: {', '.join(ORACLES[m] for m in missing)}")
    keep, drop = [], []
    for item in items:
        (drop if missing & {m.name for m in item.iter_markers()} else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
