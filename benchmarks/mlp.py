"""Training throughput of dlcli's fully connected layers against PyTorch CPU, in one run.

    python benchmarks/mlp.py [--examples 8192] [--epochs 5] [--batches 64,256] [--profile]

Both sides train 784-512-256-10 (ReLU, softmax cross-entropy, Adam with learning rate 1e-3)
in float32 on the same random data and evaluate the training error once per epoch. Method
(benchmarks/fair.py, the same for every benchmark): 2 threads each side (OMP, OpenBLAS, MKL,
Numba, torch.set_num_threads); PyTorch's Adam fused (`fused=True`), its default Adam reported
beside it; one untimed warm-up epoch each, then epochs interleaved (order rotating); each
figure the MEDIAN of the timed epochs; training steps timed, the evaluation pass NOT timed.
The ratio is against the faster of PyTorch's two Adams. `--profile` adds where a dlcli step spends its time.

Figures: README.md's "Where it stands" table; earlier runs in benchmarks/HISTORY.md.
Targets (issue 14): dlcli >= 1.5x at batch 64 and >= 1.2x at 256.
"""

from __future__ import annotations

import argparse
import time

from fair import cap_threads, header, interleaved_medians, timed_epoch, torch_adam, torch_threads

cap_threads()
import numpy as np  # noqa: E402  (after the thread counts, which BLAS reads when it loads)

LR = 1e-3
SIZES = (784, 512, 256, 10)
TARGETS = {64: 1.5, 256: 1.2}


def data(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, SIZES[0])).astype(np.float32), rng.integers(0, SIZES[-1], n)


# -- the two sides: each gives step(xb, yb) and error(x, y) ----------------------------------
def dlcli_side():
    from dlcli.nn.model import build_model
    from dlcli.optim import make_optimizer
    from dlcli.train import train_step
    layers = [{"type": "dense", "units": n, "activation": "relu"} for n in SIZES[1:-1]]
    layers.append({"type": "dense", "units": SIZES[-1], "activation": "softmax"})
    model = build_model({"layers": layers, "init": "he"}, "auto", 0.0, SIZES[:1], "float32")
    opt = make_optimizer({"name": "adam", "learning_rate": LR})
    trainable = model.trainable()

    def step(xb, yb):
        train_step(model, opt, trainable, xb, yb, LR)

    return step, model.error, (model, opt, trainable)


def torch_side(fused=True):
    import torch
    torch_threads(torch)
    torch.manual_seed(0)
    mods = []
    for n_prev, n in zip(SIZES[:-1], SIZES[1:]):
        mods += [torch.nn.Linear(n_prev, n), torch.nn.ReLU()]
    model = torch.nn.Sequential(*mods[:-1])
    opt, _ = torch_adam(torch, model.parameters(), LR, fused)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(xb, yb):
        opt.zero_grad(set_to_none=True)
        loss_fn(model(torch.from_numpy(xb)), torch.from_numpy(yb)).backward()
        opt.step()

    def error(x, y):
        with torch.no_grad():
            return float((model(torch.from_numpy(x)).argmax(1).numpy() != y).mean())

    return step, error


def compare(batch, x, y, epochs):
    sides = {"dlcli": dlcli_side()[:2], "pytorch": torch_side(True),
             "pytorch-unfused": torch_side(False)}
    rng = np.random.default_rng(1)

    def runner(step, error):
        return lambda: timed_epoch(step, error, batch, x, y, rng.permutation(x.shape[0]))
    medians = interleaved_medians({n: runner(*side) for n, side in sides.items()}, epochs)
    return {name: x.shape[0] / s for name, s in medians.items()}


def profile(batch, x, y, steps=100):
    """Mean microseconds per dlcli step in each phase."""
    _, _, (model, opt, trainable) = dlcli_side()
    phases = dict.fromkeys(("forward", "loss", "backward", "update"), 0.0)
    for i in range(steps + 10):
        xb, yb = x[(i * batch) % x.shape[0]:][:batch], y[(i * batch) % x.shape[0]:][:batch]
        t0 = time.perf_counter()
        z = model.forward(xb, True)
        t1 = time.perf_counter()
        model.loss.forward(z, yb)
        dz = model.loss.backward()
        t2 = time.perf_counter()
        model.net.backward(dz)
        t3 = time.perf_counter()
        opt.update([(name, layer.params[key], layer.grads[key]) for name, layer, key in trainable], LR)
        t4 = time.perf_counter()
        if i >= 10:
            for name, dt in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                phases[name] += dt * 1e6 / steps
    return phases


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=8192)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batches", default="64,256")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    x, y = data(args.examples)
    import torch
    fused = torch_adam(torch, [torch.zeros(1, requires_grad=True)], LR)[1]
    print(header("mlp 784-512-256-10") + f"; PyTorch Adam fused: {fused}")
    print(f"{'batch':>5} {'dlcli ex/s':>11} {'pytorch ex/s':>13} {'unfused ex/s':>13} {'ratio':>6} {'target':>7}")
    for batch in map(int, args.batches.split(",")):
        rates = compare(batch, x, y, args.epochs)
        # against the faster PyTorch Adam of the two: fair to the other side
        ratio = rates["dlcli"] / max(rates["pytorch"], rates["pytorch-unfused"])
        target = TARGETS.get(batch)
        verdict = "" if target is None else f">={target:.1f}x {'met' if ratio >= target else 'MISSED'}"
        print(f"{batch:>5} {rates['dlcli']:>11,.0f} {rates['pytorch']:>13,.0f} "
              f"{rates['pytorch-unfused']:>13,.0f} {ratio:>5.2f}x {verdict}", flush=True)
        if args.profile:
            phases = profile(batch, x, y)
            print("      dlcli us/step: " + ", ".join(f"{k} {v:,.0f}" for k, v in phases.items())
                  + f" (total {sum(phases.values()):,.0f})", flush=True)


if __name__ == "__main__":
    main()
