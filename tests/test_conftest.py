"""The suite's own wiring: under DLCLI_REQUIRE_ORACLES an oracle that is installed but does not
import is an error, and an oracle test that skips is a failure (issue 10: CI once passed with
every torch comparison skipped)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = '''
import pytest

@pytest.mark.cluster
def test_skips_its_oracle():
    pytest.skip("pretend the oracle broke after collection")

def test_plain():
    pass
'''


def run_pytest(tmp_path, require, broken=False):
    shutil.copy(ROOT / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_probe.py").write_text(PROBE)
    # `distributed` as the probe needs it, whether or not this environment has the real one:
    # installed but failing to import (as a missing .so does), or importing fine
    path = [str(tmp_path / "shadow")]
    (tmp_path / "shadow" / "distributed").mkdir(parents=True, exist_ok=True)
    (tmp_path / "shadow" / "distributed" / "__init__.py").write_text(
        "raise ImportError('libfoo.so: cannot open shared object file')\n" if broken else "")
    env = {k: v for k, v in os.environ.items() if k != "DLCLI_REQUIRE_ORACLES"}
    env["PYTHONPATH"] = os.pathsep.join(path + [env.get("PYTHONPATH", "")])
    if require:
        env["DLCLI_REQUIRE_ORACLES"] = "1"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--rootdir", str(tmp_path), str(tmp_path)],
                          capture_output=True, text=True, env=env, cwd=tmp_path)


def test_a_broken_oracle_is_an_error_when_required(tmp_path):
    done = run_pytest(tmp_path, require=True, broken=True)
    assert done.returncode != 0
    assert "libfoo.so" in done.stdout + done.stderr


def test_a_broken_oracle_deselects_its_tests_otherwise(tmp_path):
    done = run_pytest(tmp_path, require=False, broken=True)
    assert done.returncode == 0, done.stdout
    assert "1 passed, 1 deselected" in done.stdout


def test_an_oracle_test_that_skips_fails_when_required(tmp_path):
    done = run_pytest(tmp_path, require=True)
    assert done.returncode == 1, done.stdout
    assert "skipped under DLCLI_REQUIRE_ORACLES" in done.stdout
    done = run_pytest(tmp_path, require=False)
    assert done.returncode == 0 and "1 skipped" in done.stdout, done.stdout
