"""Training throughput of the course's date-translation model: dlcli against PyTorch CPU.

    flock /tmp/dlcli-bench.lock python benchmarks/seq2seq.py [--examples 2000] [--epochs 3]
        [--batch 100] [--profile]

The model of recipes/dates_attention.yaml on both sides: one-hot characters (T_x = 30, 37
symbols) -> bidirectional LSTM (32 units each way) -> attention decoder (n_s = 64, attention
10, T_y = 10) -> dense softmax over 11 symbols at every step; the cost summed over steps and
averaged over examples; Adam (learning rate 5e-3; PyTorch's Adam(fused=True)); float32;
2 threads each. The PyTorch side is what a PyTorch user writes for the course's model:
nn.LSTM(bidirectional=True), the one_step_attention of the notebook (s<t-1> repeated T_x
times, concatenated with a, Linear(10) tanh, Linear(1) relu, softmax over T_x, weighted sum),
nn.LSTMCell for the post-attention LSTM, autograd. (Its LSTMs carry two bias vectors where
dlcli's carry one: 53,472 parameters against 52,960; the same work.) Random data, same on both
sides. Epochs alternate between the sides (benchmarks/rnn.py's `epoch`), the figure is the
median over the epochs after one untimed warm-up each; no evaluation is timed.
Target (issue 12): dlcli >= 1.0x PyTorch.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

THREADS = 2
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))
os.environ.setdefault("OPENBLAS_NUM_THREADS", str(THREADS))

import numpy as np  # noqa: E402  (after the thread counts, which BLAS reads when it loads)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rnn import epoch  # noqa: E402  the interleaved epoch timer shared with the rnn benchmark

LR = 5e-3
TX, VX, TY, VY, NA, NS, ATT = 30, 37, 10, 11, 32, 64, 10


def data(n, seed=0):
    rng = np.random.default_rng(seed)
    x = np.zeros((n, TX, VX), np.float32)
    np.put_along_axis(x, rng.integers(0, VX, (n, TX, 1)), 1, axis=2)
    return x, rng.integers(0, VY, (n, TY))


def dlcli_side():
    from dlcli.nn.model import build_model
    from dlcli.optim import make_optimizer
    from dlcli.train import train_step
    layers = [{"type": "bidirectional", "layer": {"type": "lstm", "units": NA, "return_sequences": True}},
              {"type": "attention_decoder", "units": NS, "steps": TY, "attention_units": ATT},
              {"type": "dense", "units": VY, "activation": "softmax"}]
    model = build_model({"layers": layers, "init": "xavier"}, "auto", 0.0, (TX, VX), "float32")
    opt = make_optimizer({"name": "adam", "learning_rate": LR})
    trainable = model.trainable()

    def step(xb, yb):
        train_step(model, opt, trainable, xb, yb, LR)

    return step, (model, opt, trainable)


def torch_side():
    import torch
    from torch import nn
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)

    class Dates(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.LSTM(VX, NA, batch_first=True, bidirectional=True)
            self.W1 = nn.Linear(NS + 2 * NA, ATT)
            self.W2 = nn.Linear(ATT, 1)
            self.post = nn.LSTMCell(2 * NA, NS)
            self.out = nn.Linear(NS, VY)

        def forward(self, x):
            a = self.encoder(x)[0]                                     # (m, T_x, 2 n_a)
            m = x.shape[0]
            s = x.new_zeros(m, NS)
            c = x.new_zeros(m, NS)
            outs = []
            for _ in range(TY):
                concat = torch.cat([s[:, None, :].expand(m, TX, NS), a], dim=2)
                e = torch.relu(self.W2(torch.tanh(self.W1(concat))))  # (m, T_x, 1)
                alpha = torch.softmax(e, dim=1)
                s, c = self.post((alpha * a).sum(dim=1), (s, c))
                outs.append(self.out(s))
            return torch.stack(outs, dim=1)

    model = Dates()
    opt = torch.optim.Adam(model.parameters(), lr=LR, fused=True)
    loss_fn = nn.CrossEntropyLoss(reduction="sum")

    def step(xb, yb):
        opt.zero_grad(set_to_none=True)
        z = model(torch.from_numpy(xb))
        (loss_fn(z.reshape(-1, VY), torch.from_numpy(yb).reshape(-1)) / xb.shape[0]).backward()
        opt.step()

    return step, sum(p.numel() for p in model.parameters())


def profile(batch, x, y, steps=10):
    """dlcli's median milliseconds per step in each layer's forward and backward, the loss and the
    update, after two untimed steps: `dlcli profile`'s job and table (dlcli/profile.py)."""
    from rich.console import Console

    from dlcli.profile import profile_steps
    from dlcli.render_profile import profile_table
    _, (model, opt, _) = dlcli_side()
    profile_table(profile_steps(model, opt, x, y, batch, steps, learning_rate=LR), Console(),
                  title=f"dlcli per layer, ms, batch {batch}, median of {steps} steps")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    x, y = data(args.examples)
    dl_step, (model, _, _) = dlcli_side()
    pt_step, pt_params = torch_side()
    print(f"date model (course 5.3): {model.parameter_count():,} parameters (PyTorch {pt_params:,}), "
          f"batch {args.batch}, Adam, float32, {THREADS} threads; {args.examples} examples an epoch, "
          f"median of {args.epochs} interleaved epochs; evaluation not timed (none run)")
    sides = {"dlcli": dl_step, "pytorch": pt_step}
    seconds = {name: [] for name in sides}
    rng = np.random.default_rng(1)
    for e in range(args.epochs + 1):
        order = rng.permutation(x.shape[0])
        for name, step in sides.items():
            s = epoch(step, args.batch, x, y, order)
            if e:
                seconds[name].append(s)
    rates = {name: x.shape[0] / statistics.median(s) for name, s in seconds.items()}
    ratio = rates["dlcli"] / rates["pytorch"]
    print(f"dlcli {rates['dlcli']:,.0f} ex/s   pytorch {rates['pytorch']:,.0f} ex/s   "
          f"ratio {ratio:.2f}x (target >= 1.0x: {'met' if ratio >= 1 else 'MISSED'})", flush=True)
    if args.profile:
        profile(args.batch, x, y)


if __name__ == "__main__":
    main()
