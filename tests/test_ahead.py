"""Compiling ahead (dlcli/kernels/ahead.py): the trace of a first step records its kernels and
leaves the model alone; a first step with the helper gives the same numbers as one without,
and leaves every kernel in Numba's cache. Each case runs in a fresh interpreter, the only
kind of process that compiles ahead (nothing compiled yet), on an empty cache."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SETUP = """
import json, sys
import numpy as np
from dlcli.nn.model import build_model
from dlcli.optim import make_optimizer
from dlcli import train
layers = [{"type": "conv2d", "filters": 4, "size": 3, "padding": "same", "activation": "relu"},
          {"type": "maxpool", "size": 2}, {"type": "flatten"},
          {"type": "dense", "units": 8, "activation": "relu"},
          {"type": "dense", "units": 3, "activation": "softmax"}]
model = build_model({"layers": layers, "init": "he"}, "auto", 0.0, (8, 8, 1), "float32")
opt = make_optimizer({"name": "adam", "learning_rate": 0.01})
rng = np.random.default_rng(0)
x = rng.standard_normal((16, 8, 8, 1)).astype(np.float32)
y = rng.integers(0, 3, 16)
"""


def run(code, cache, **env):
    out = subprocess.run([sys.executable, "-c", SETUP + code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT), "NUMBA_CACHE_DIR": str(cache),
                              **env}, check=True, timeout=600)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_trace_records_the_kernels_in_call_order_and_leaves_the_model_alone(tmp_path):
    result = run("""
from dlcli.kernels.ahead import trace
before = [p.copy() for _, layer, key in model.trainable() for p in [layer.params[key]]]
train._ahead.append(True)  # no helper: this run only traces
calls = trace(train.train_step, model, opt, x, y, 0.01)
after = [layer.params[key] for _, layer, key in model.trainable()]
print(json.dumps({"kernels": [d.__name__ for d, _ in calls],
                  "same": all(np.array_equal(a, b) for a, b in zip(before, after)),
                  "compiled": sum(len(d.overloads) for d, _ in calls),
                  "t": opt.t, "slots": len(opt.state)}))
""", tmp_path)
    kernels = result["kernels"]
    assert kernels[0] == "direct_forward_pool" and kernels[-1] == "adam_step"
    assert {"bias_activation", "softmax_crossentropy", "activation_backward",
            "direct_backward_pool"} <= set(kernels)
    assert len(kernels) == len(set(kernels))  # each (kernel, types) once
    assert result["same"] and result["compiled"] == 0
    assert result["t"] == 0 and result["slots"] == 0  # the optimizer took no step


STEPS = """
from dlcli.kernels import ahead
costs = [train.train_step(model, opt, model.trainable(), x, y, 0.01) for _ in range(3)]
helper = ahead._started[0] if ahead._started else None
if helper is not None:
    helper.wait()
print(json.dumps({"costs": costs, "helper": None if helper is None else helper.returncode,
                  "params": [layer.params[key].tolist() for _, layer, key in model.trainable()]}))
"""


@pytest.mark.parametrize("fork", ["1", "0"])  # the forked helper (Linux) and the spawned one
def test_a_first_step_with_the_helper_equals_one_without_and_fills_the_cache(tmp_path, fork):
    ahead = run(STEPS, tmp_path / "ahead", DLCLI_AHEAD_FORK=fork)
    alone = run(STEPS, tmp_path / "alone", DLCLI_COMPILE_AHEAD="0")
    assert ahead["helper"] == 0 and alone["helper"] is None  # started (and ended well), or not
    assert ahead["costs"] == alone["costs"] and ahead["params"] == alone["params"]
    names = {p.name.split("-")[0] for p in (tmp_path / "ahead").rglob("*.nbi")}
    assert {"direct.direct_forward_pool", "direct.direct_backward_pool", "optim.adam_step",
            "activations.activation_backward"} <= names
    cached = run(STEPS, tmp_path / "ahead")  # every kernel cached: no trace, no helper
    assert cached["helper"] is None and cached["costs"] == ahead["costs"]
