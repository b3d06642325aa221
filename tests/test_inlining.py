"""kernels/inlining.py: Numba's inline="always" without its copies of the callee's IR compiles
the same machine code. Each side compiles in a fresh interpreter on an empty cache (block
labels and function ids count up within a process, so only fresh processes compare)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

COMPILE = """
import copy, hashlib, json, sys
import numpy as np
from numba.core import inline_closurecall
import dlcli.kernels
from dlcli.kernels import activations, inlining, pool
if sys.argv[1] == "copies":  # Numba's own copies, as without the patch
    inline_closurecall.copy = copy
rng = np.random.default_rng(0)
dA, A = rng.standard_normal((2, 64, 6)).astype(np.float32)
dZ, db = np.empty_like(dA), np.empty(6, np.float32)
activations.activation_backward(dA, A, activations.RELU, dZ, db)
x = rng.standard_normal((2, 6, 6, 3)).astype(np.float32)
pooled, where = np.empty((2, 3, 3, 3), np.float32), np.empty((2, 3, 3, 3), np.int32)
pool.maxpool_forward(x, 2, 2, 0, 0, pooled, where, np.empty((0, 1, 1, 1), np.float32))
print(json.dumps({
    "installed": inline_closurecall.InlineWorker.inline_function is inlining._inline_function,
    "code": {d.__name__: [hashlib.sha1(d.inspect_llvm(s).encode() + d.inspect_asm(s).encode()).hexdigest()
                          for s in d.signatures] for d in (activations.activation_backward, pool.maxpool_forward)},
    "values": [float(dZ.sum()), float(db.sum()), float(pooled.sum()), int(where.sum())]}))
"""


def compile_in_fresh_process(tmp_path, how):
    out = subprocess.run([sys.executable, "-c", COMPILE, how], capture_output=True, text=True,
                         check=True, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(ROOT),
                              "NUMBA_CACHE_DIR": str(tmp_path / how)})
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_inlining_without_the_copies_compiles_the_same_code(tmp_path):
    fast = compile_in_fresh_process(tmp_path, "without")
    slow = compile_in_fresh_process(tmp_path, "copies")
    assert fast["installed"] and slow["installed"]  # this Numba takes the patch
    assert fast["code"] == slow["code"]
    assert all(len(hashes) == 1 for hashes in fast["code"].values())
    assert np.allclose(fast["values"], slow["values"], rtol=0, atol=0)


def test_install_is_idempotent_and_keeps_numbas_other_inliners_copying():
    import copy

    from numba.core import inline_closurecall

    from dlcli.kernels import inlining
    assert inlining.install() and inlining.install()
    assert inline_closurecall.InlineWorker.inline_function is inlining._inline_function
    ir = {"blocks": [1, 2]}
    assert inline_closurecall.copy.deepcopy(ir) is not ir  # outside inline_function: a copy
    assert inline_closurecall.copy.copy is copy.copy
