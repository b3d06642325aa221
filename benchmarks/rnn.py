"""Training throughput of dlcli's recurrent layers against PyTorch CPU (nn.LSTM / nn.GRU), in one run.

    flock /tmp/dlcli-bench.lock python benchmarks/rnn.py [--examples 1024] [--epochs 3]
        [--batches 32,128] [--cells lstm,gru] [--profile]

A character language model on both sides: vocabulary 27, embedding 16, one LSTM (or GRU) of
128 units over T = 40 steps, a dense softmax over the 27 characters at every step, the cost
summed over steps and averaged over examples, Adam (learning rate 1e-3; PyTorch's
Adam(fused=True)), float32, 2 threads each (OMP/OpenBLAS/Numba; from batch 8 dlcli's time
loops give each thread a block of examples and one BLAS thread, see kernels/recurrent.py).
Same random token ids on both sides, no padding.
Evaluation is NOT timed (none is run): examples/second count the training steps only, as
dlcli's summary.json does. Epochs alternate between the two sides so that a neighbour's load
falls on both alike; the figure is the median over the epochs after one untimed warm-up
epoch each. `--profile` adds where a dlcli step spends its time.

PyTorch's GRU puts the reset gate after the recurrent product (r * (W_hn h + b_hn)); dlcli's
is the lectures' (c~ from Wc [Gr * c, x]): the same work per step, not the same function.
Targets (issue 11): dlcli >= 1.0x PyTorch at batch 32 and >= 0.8x at 128.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

THREADS = 2
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))
os.environ.setdefault("OPENBLAS_NUM_THREADS", str(THREADS))

import dlcli  # noqa: E402,F401  (dlcli's OpenBLAS thread timeout, read when BLAS loads)
import numpy as np  # noqa: E402  (after the thread counts, which BLAS reads when it loads)

LR = 1e-3
VOCAB, DIM, UNITS, T = 27, 16, 128, 40
TARGETS = {32: 1.0, 128: 0.8}


def data(n, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, VOCAB, size=(n, T + 1))
    return ids[:, :-1].copy(), ids[:, 1:].copy()


def dlcli_side(cell):
    from dlcli.nn.model import build_model
    from dlcli.optim import make_optimizer
    from dlcli.train import train_step
    layers = [{"type": "embedding", "dim": DIM, "vocab": VOCAB},
              {"type": cell, "units": UNITS, "return_sequences": True},
              {"type": "dense", "units": VOCAB, "activation": "softmax"}]
    model = build_model({"layers": layers, "init": "xavier"}, "auto", 0.0, (T,), "float32")
    opt = make_optimizer({"name": "adam", "learning_rate": LR})
    trainable = model.trainable()

    def step(xb, yb):
        train_step(model, opt, trainable, xb, yb, LR)

    return step, (model, opt, trainable)


def torch_side(cell):
    import torch
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)

    class LM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = torch.nn.Embedding(VOCAB, DIM)
            self.rnn = (torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)(DIM, UNITS, batch_first=True)
            self.dense = torch.nn.Linear(UNITS, VOCAB)

        def forward(self, ids):
            return self.dense(self.rnn(self.embedding(ids))[0])

    model = LM()
    opt = torch.optim.Adam(model.parameters(), lr=LR, fused=True)
    loss_fn = torch.nn.CrossEntropyLoss(reduction="sum")

    def step(xb, yb):
        opt.zero_grad(set_to_none=True)
        z = model(torch.from_numpy(xb))
        (loss_fn(z.reshape(-1, VOCAB), torch.from_numpy(yb).reshape(-1)) / xb.shape[0]).backward()
        opt.step()

    return step


def epoch(step, batch, x, y, order):
    xs, ys = x[order], y[order]
    started = time.perf_counter()
    for i in range(0, x.shape[0], batch):
        step(xs[i:i + batch], ys[i:i + batch])
    return time.perf_counter() - started


def compare(cell, batch, x, y, epochs):
    sides = {"dlcli": dlcli_side(cell)[0], "pytorch": torch_side(cell)}
    seconds = {name: [] for name in sides}
    rng = np.random.default_rng(1)
    for e in range(epochs + 1):
        order = rng.permutation(x.shape[0])
        for name, step in sides.items():
            s = epoch(step, batch, x, y, order)
            if e:  # the first epoch warms up JIT caches, allocators and BLAS buffers
                seconds[name].append(s)
    return {name: x.shape[0] / statistics.median(s) for name, s in seconds.items()}


def profile(cell, batch, x, y, steps=20):
    """dlcli's median milliseconds per step in each layer's forward and backward, the loss and the
    update, after two untimed steps: `dlcli profile`'s job and table (dlcli/profile.py)."""
    from rich.console import Console

    from dlcli.profile import profile_steps
    from dlcli.render_profile import profile_table
    _, (model, opt, _) = dlcli_side(cell)
    profile_table(profile_steps(model, opt, x, y, batch, steps, learning_rate=LR), Console(),
                  title=f"dlcli per layer, ms, batch {batch}, median of {steps} steps")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batches", default="32,128")
    parser.add_argument("--cells", default="lstm,gru")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    x, y = data(args.examples)
    print(f"char LM: vocab {VOCAB}, embedding {DIM}, {UNITS} units, T {T}, Adam, float32, "
          f"{THREADS} threads; {args.examples} sequences an epoch, median of {args.epochs} "
          "interleaved epochs; evaluation not timed (none run)")
    print(f"{'cell':>4} {'batch':>5} {'dlcli ex/s':>11} {'pytorch ex/s':>13} {'ratio':>6} {'target':>7}")
    for cell in args.cells.split(","):
        for batch in map(int, args.batches.split(",")):
            rates = compare(cell, batch, x, y, args.epochs)
            ratio = rates["dlcli"] / rates["pytorch"]
            target = TARGETS.get(batch)
            verdict = "" if target is None else f">={target:.1f}x {'met' if ratio >= target else 'MISSED'}"
            print(f"{cell:>4} {batch:>5} {rates['dlcli']:>11,.0f} {rates['pytorch']:>13,.0f} "
                  f"{ratio:>5.2f}x {verdict}", flush=True)
            if args.profile:
                profile(cell, batch, x, y)


if __name__ == "__main__":
    main()
