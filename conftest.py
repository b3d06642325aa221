"""Test-suite wiring: the oracle tests run where their oracle imports.

PyTorch (`torch` marker) and Dask (`cluster` marker) are test oracles installed by the
`oracle` and `cluster` extras. Each is imported for real at collection: a package that is
installed but broken (a missing shared library, a bad dependency) counts as missing, since
`find_spec` would find it and every test would then skip on its ImportError. Without them
those tests are deselected, not skipped, so a user's light `pytest` run stays green.

CI sets DLCLI_REQUIRE_ORACLES=1: a missing or broken oracle is then a usage error naming the
import failure, and any oracle test that skips anyway (an importorskip, a skip in a fixture)
fails instead, so that no comparison with an oracle can pass by not running.
"""

import importlib
import os

import pytest

ORACLES = {"torch": "torch", "cluster": "distributed"}


def _import_error(module: str):
    """None when `module` imports, else why not (any exception: broken installs vary)."""
    try:
        importlib.import_module(module)
    except Exception as err:  # noqa: BLE001 - an oracle's import may fail in any way
        return f"{type(err).__name__}: {err}"
    return None


def _required() -> bool:
    return bool(os.environ.get("DLCLI_REQUIRE_ORACLES"))


def pytest_collection_modifyitems(config, items):
    used = {m.name for item in items for m in item.iter_markers()} & set(ORACLES)
    errors = {mark: err for mark in sorted(used) if (err := _import_error(ORACLES[mark]))}
    if not errors:
        return
    if _required():
        raise pytest.UsageError("oracle packages missing or broken: " + "; ".join(
            f"{ORACLES[m]} ({e})" for m, e in errors.items()))
    keep, drop = [], []
    for item in items:
        (drop if set(errors) & {m.name for m in item.iter_markers()} else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if (report.skipped and _required()
            and set(ORACLES) & {m.name for m in item.iter_markers()}):
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"an oracle test skipped under DLCLI_REQUIRE_ORACLES: {reason}"
