"""Sliding windows: what the convolutional scan saves over the crop-by-crop one (issue 16).

    python benchmarks/windows.py [--size 128] [--repeats 5]

A LeNet-like classifier on 28x28x3 crops (two valid 5x5 convs, 2x2 max pools, dense 120,
84, 3: stride 4) slides over a size x size image: the naive scan crops every window and
classifies the crops as one batch; the convolutional one runs the network, its dense layers
turned into convolutions, once over the image. Both in float32 on this machine's threads;
the best of `--repeats` runs each, alternating, and the largest difference of their outputs.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

LAYERS = [{"type": "conv2d", "filters": 6, "size": 5, "activation": "relu"},
          {"type": "maxpool", "size": 2},
          {"type": "conv2d", "filters": 16, "size": 5, "activation": "relu"},
          {"type": "maxpool", "size": 2},
          {"type": "flatten"},
          {"type": "dense", "units": 120, "activation": "relu"},
          {"type": "dense", "units": 84, "activation": "relu"},
          {"type": "dense", "units": 3, "activation": "softmax"}]


def main():
    from dlcli.detect.windows import convolutional_windows, naive_windows
    from dlcli.nn.model import build_model
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    model = build_model({"layers": LAYERS}, "auto", 0.0, (28, 28, 3), "float32",
                        rng=np.random.default_rng(0))
    image = np.random.default_rng(1).random((args.size, args.size, 3)).astype(np.float32)
    conv, _ = convolutional_windows(model, LAYERS, image)  # warm-up (JIT)
    naive, _ = naive_windows(model, image, conv.shape[:2])
    times = {"naive": [], "convolutional": []}
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        naive_windows(model, image, conv.shape[:2])
        times["naive"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        convolutional_windows(model, LAYERS, image)
        times["convolutional"].append(time.perf_counter() - t0)
    best = {k: min(v) * 1e3 for k, v in times.items()}
    print(f"{args.size}x{args.size} image, {conv.shape[0]}x{conv.shape[1]} windows of 28x28 at stride 4: "
          f"naive {best['naive']:.1f} ms, convolutional {best['convolutional']:.1f} ms "
          f"({best['naive'] / best['convolutional']:.1f}x), max |difference| {np.abs(conv - naive).max():.1e}")


if __name__ == "__main__":
    main()
