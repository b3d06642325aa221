"""Compiling ahead (dlcli/kernels/ahead.py): the trace of a first step records its kernels and
leaves the model alone; a first step with the helper gives the same numbers as one without,
and leaves every kernel in Numba's cache. Each case runs in a fresh interpreter, the only
kind of process that compiles ahead (nothing compiled yet), on an empty cache."""

import json
import os
import subprocess
import sys
import threading
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


class _Helper:
    """A helper process that never writes a done file: each poll is recorded and ends it."""

    def __init__(self):
        self.polls = 0

    def poll(self):
        self.polls += 1
        return 0


def _claiming_pair(tmp_path):
    from numba import njit

    from dlcli.kernels import ahead

    @njit
    def twice(x):
        return 2.0 * x

    sig = (twice.typeof_pyval(1.5),)
    helper = _Helper()
    return twice, helper, ahead._claiming(twice, {(twice, sig): 0}, str(tmp_path), helper,
                                          (threading.Lock(), set()))


def test_two_threads_of_the_main_process_share_its_claim(tmp_path):
    """kernels/duo.py's helper thread calls a pass's kernel beside the main thread: the second
    thread to reach a kernel this process claimed waits for the compile in this process, not
    for a done file only the helper process writes (it had waited until that process exited,
    the main thread spinning meanwhile in the pass's finish: first LeNet-5 steps of 8-17 s)."""
    twice, helper, claiming = _claiming_pair(tmp_path)
    start, entries = threading.Barrier(2), []

    def call():
        start.wait()
        entries.append(claiming(1.5))

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert helper.polls == 0  # neither thread waited for the helper process
    assert len(entries) == 2 and all(e(1.5) == 3.0 for e in entries)
    assert len(twice.overloads) == 1  # compiled once
    assert os.listdir(tmp_path) == ["0"]  # one claim


def test_a_kernel_the_helper_claimed_is_waited_for(tmp_path):
    """The other side: a kernel whose claim this process did not make (the helper process's)
    is waited for until its done file or the helper's end."""
    twice, helper, claiming = _claiming_pair(tmp_path)
    open(tmp_path / "0", "w").close()  # the helper process's claim
    assert claiming(1.5)(1.5) == 3.0
    assert helper.polls == 1
