"""Caviar on a laptop: the same 16-trial search with 1 worker, then with 2.

    python benchmarks/search.py [--trials 16] [--epochs 300]

Prints both wall times (worker start-up included, as a user waits for it) and the speed-up;
the target on a 2-core machine is at least 1.6x. The trials are small fully connected
networks on the builtin moons, about a second each. Both runs hold each worker to one
thread, so the figure measures trials in parallel, not BLAS or Numba threads within one.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from dlcli import search
from dlcli.recipe import recipe_from_dict

TARGET = 1.6


def recipe(trials: int, epochs: int):
    return recipe_from_dict({
        "name": "bench", "seed": 0,
        "data": {"train": {"builtin": "moons", "n": 2000, "noise": 0.2}, "dev": 0.2},
        "model": {"layers": [{"type": "dense", "units": 64, "activation": "relu"},
                             {"type": "dense", "units": 32, "activation": "relu"},
                             {"type": "dense", "units": 1, "activation": "sigmoid"}]},
        "optimizer": {"name": "adam"},
        "training": {"epochs": epochs, "batch_size": 64},
        "search": {"trials": trials, "space": {
            "optimizer.learning_rate": {"log_uniform": [1e-4, 1e-1]},
            "optimizer.beta1": {"one_minus_log_uniform": [0.8, 0.99]}}},
    })


def timed(workers: int, r) -> float:
    with tempfile.TemporaryDirectory() as runs:
        started = time.perf_counter()
        with search.open_executor(workers) as executor:
            result = search.search(r, executor=executor, runs_dir=runs)
        seconds = time.perf_counter() - started
    statuses = {rec["status"] for rec in result.records.values()}
    print(f"{workers} worker{'s' if workers > 1 else ''}: {seconds:6.1f} s "
          f"({len(result.records)} trials, {', '.join(sorted(statuses))})")
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=300)
    args = parser.parse_args()
    r = recipe(args.trials, args.epochs)
    with search.single_threaded_children(True):
        one, two = timed(1, r), timed(2, r)
    print(f"speed-up: {one / two:.2f}x (target >= {TARGET}x on 2 cores)")


if __name__ == "__main__":
    main()
