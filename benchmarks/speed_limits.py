"""The speed limits that used to sit inside tests, measured here instead (a test must fail
for a wrong answer, not for a busy machine).

    flock /tmp/dlcli-bench.lock python benchmarks/speed_limits.py [--recipes]

Each line: what, the measured figure, the limit, ok / OVER. Method: the best of N repeats for
the sub-millisecond Adam step (the minimum is the figure least disturbed by other processes),
one timed run for the others. `--recipes` adds the two LeNet-5 recipes (minutes each).
Exit 1 when a figure is over its limit, so CI can run it as a separate, non-blocking job.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def adam_step_ms() -> float:
    import numpy as np
    from dlcli.optim import make_optimizer
    rng = np.random.default_rng(0)
    shapes = [(512, 784), (512, 1), (256, 512), (256, 1), (10, 256), (10, 1)]
    triples = [(str(i), rng.standard_normal(s).astype(np.float32),
                rng.standard_normal(s).astype(np.float32)) for i, s in enumerate(shapes)]
    opt = make_optimizer({"name": "adam"})
    opt.update(triples, 1e-3)  # compiles / loads the cache
    best = float("inf")
    for _ in range(50):
        t0 = time.perf_counter()
        opt.update(triples, 1e-3)
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def shapes_seconds() -> float:
    from dlcli.data import load_dataset
    load_dataset({"train": {"builtin": "shapes", "n": 10}}, 0)  # warm
    t0 = time.perf_counter()
    load_dataset({"train": {"builtin": "shapes", "n": 3000}}, 0)
    return time.perf_counter() - t0


def command_seconds(*args) -> float:
    env = {**os.environ, "DLCLI_DATA": os.environ.get("DLCLI_DATA") or str(ROOT.parent / "shared" / "data")}
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "dlcli.cli", *args], capture_output=True,
                          text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed: {done.stderr.strip()}")
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", action="store_true", help="also train the LeNet-5 recipes")
    args = parser.parse_args()
    checks = [
        ("Adam step, 784-512-256-10 MLP (ms, best of 50)", adam_step_ms, 0.6),
        ("builtin shapes, 3,000 images (s)", shapes_seconds, 1.0),
        ("gradcheck lenet5 (s)", lambda: command_seconds(
            "gradcheck", str(ROOT / "recipes" / "lenet5.yaml"), "--json"), 30.0),
        ("gradcheck resnet_small (s)", lambda: command_seconds(
            "gradcheck", str(ROOT / "recipes" / "resnet_small.yaml"), "--json"), 30.0),
    ]
    if args.recipes:
        for recipe in ("lenet5", "lenet5_shapes"):
            checks.append((f"train {recipe} (s)", lambda r=recipe: command_seconds(
                "train", str(ROOT / "recipes" / f"{r}.yaml"), "--quiet",
                "--runs-dir", "/tmp/dlcli-bench-runs"), 300.0))
    over = 0
    for what, measure, limit in checks:
        value = measure()
        ok = value <= limit
        over += not ok
        print(f"{what:52s} {value:10.3f}  limit {limit:g}  {'ok' if ok else 'OVER'}", flush=True)
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
