"""`dlcli predict` on one image, as a user runs it: a new process each time, warm Numba cache.

    python benchmarks/predict.py [--run RUN_DIR] [--repeat 7]

Without --run it trains LeNet-5 for one epoch on 600 MNIST images first (${DLCLI_DATA}/mnist).
Runs `dlcli predict RUN digit.png --json` once to warm the cache, then --repeat times, and
prints the wall and CPU (user + system) seconds of each, min and median; the target is a
wall time under 1 s. On a shared machine the wall time follows the load; the CPU time much
less, so both are printed.
"""

from __future__ import annotations

import argparse
import gzip
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET = 1.0


def lenet_run(root: Path) -> Path:
    import numpy as np

    from dlcli import api
    from dlcli.data.idx import read_idx
    data = Path(os.environ.get("DLCLI_DATA", "../shared/data")) / "mnist"
    x = read_idx(data / "t10k-images-idx3-ubyte.gz", "x")[:600]
    y = read_idx(data / "t10k-labels-idx1-ubyte.gz", "y")[:600]
    for name, a in (("images.gz", x), ("labels.gz", y)):
        header = bytes([0, 0, 8, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
        (root / name).write_bytes(gzip.compress(header + a.astype(np.uint8).tobytes()))
    return api.train("recipes/lenet5.yaml", runs_dir=root / "runs", overrides=[
        f"data.train.x={root / 'images.gz'}", f"data.train.y={root / 'labels.gz'}",
        "training.epochs=1"]).run_dir


def digit(root: Path) -> Path:
    from PIL import Image

    from dlcli.data.idx import read_idx
    data = Path(os.environ.get("DLCLI_DATA", "../shared/data")) / "mnist"
    path = root / "digit.png"
    Image.fromarray(read_idx(data / "t10k-images-idx3-ubyte.gz", "x")[0]).save(path)
    return path


def once(cmd) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run = args.run or lenet_run(root)
        cmd = [sys.executable, "-m", "dlcli.cli", "predict", str(run), str(digit(root)), "--json"]
        once(cmd)  # warm the cache
        times = [once(cmd) for _ in range(args.repeat)]
    walls, cpus = [t[0] for t in times], [t[1] for t in times]
    print("wall " + " ".join(f"{w:.3f}" for w in walls))
    print("cpu  " + " ".join(f"{c:.3f}" for c in cpus))
    print(f"wall min {min(walls):.3f} s, median {statistics.median(walls):.3f} s; "
          f"cpu min {min(cpus):.3f} s, median {statistics.median(cpus):.3f} s; "
          f"target wall < {TARGET} s: {'met' if min(walls) < TARGET else 'NOT met'}; "
          f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
