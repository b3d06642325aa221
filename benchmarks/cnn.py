"""Training throughput of dlcli's conv layers against PyTorch CPU, in one run (issue 6).

    python benchmarks/cnn.py [--only lenet64,lenet256,resnet64,mobilenet64,inception64,unet16]
                             [--epochs 3] [--profile] [--no-startup]

Both sides train the same model on the same random float32 data (labels 0..9) with Adam
(learning rate 1e-3), evaluating the training error once per epoch. Method (benchmarks/fair.py,
the same for every benchmark): 2 threads each side (OMP, OpenBLAS, MKL, Numba,
torch.set_num_threads); PyTorch's Adam fused (`fused=True`), its default Adam reported beside
it; one untimed warm-up epoch each, then epochs interleaved (order rotating); each figure the
MEDIAN of the timed epochs; training steps timed, the evaluation pass NOT timed. The ratio is
against the faster of PyTorch's two Adams. `--profile` adds dlcli's per-layer forward and
backward times, medians over training steps (nested layers indented under their block). The
start-up lines time a fresh process up to the end of its first LeNet-5 training step, once with an empty Numba
cache (JIT compile, its kernels shared with the helper process of dlcli/kernels/ahead.py), once
with the cache that run left (the cached start), and once more on an empty cache with the
helper off (DLCLI_COMPILE_AHEAD=0: all in one process, as before it).

mobilenet64 and inception64 are the shipped recipes' layers (recipes/*.yaml, their softmax
widened to 10 classes); on the PyTorch side Keras' "same" padding is an explicit ZeroPad2d
where it is uneven, and the residual's projection and linear activation follow dlcli's.

Figures: README.md's "Where it stands" table; earlier runs in benchmarks/HISTORY.md.
Targets (issue 14): LeNet-5 >= 1.5x at 64 and 1.2x at 256; resnet_small, mobilenet_v2_small,
inception_small and the U-Net >= 1.0x; first compile < 5 s, cached start < 1 s.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

from fair import cap_threads, header, interleaved_medians, timed_epoch, torch_adam, torch_threads

cap_threads()
import numpy as np  # noqa: E402  (after the thread counts, which BLAS and Numba read when they load)

LR = 1e-3


def conv(filters, size, padding="same", **kw):
    return {"type": "conv2d", "filters": filters, "size": size, "padding": padding, **kw}


LENET = [conv(6, 5, activation="relu"), {"type": "maxpool", "size": 2},
         conv(16, 5, "valid", activation="relu"), {"type": "maxpool", "size": 2},
         {"type": "flatten"},
         {"type": "dense", "units": 120, "activation": "relu"},
         {"type": "dense", "units": 84, "activation": "relu"},
         {"type": "dense", "units": 10, "activation": "softmax"}]

BLOCK = {"type": "residual", "activation": "relu", "layers": [
    conv(32, 3, bias=False), {"type": "batchnorm"}, {"type": "activation", "activation": "relu"},
    conv(32, 3, bias=False), {"type": "batchnorm"}]}

RESNET_SMALL = [conv(32, 3, bias=False), {"type": "batchnorm"},
                {"type": "activation", "activation": "relu"},
                BLOCK, BLOCK, {"type": "maxpool", "size": 2}, {"type": "global_avgpool"},
                {"type": "dense", "units": 10, "activation": "softmax"}]

def recipe_layers(name):
    """The layers of a shipped recipe (recipes/NAME.yaml), its softmax widened to the 10
    labels of the benchmark's data."""
    import yaml
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "recipes", name + ".yaml")
    with open(path) as fh:
        layers = yaml.safe_load(fh)["model"]["layers"]
    return layers[:-1] + [{**layers[-1], "units": 10}]


def unet(filters, depth=4, classes=10):
    """The course's unet_model (C4 W3) as skip_concat levels: conv blocks down, 3x3 stride-2
    same transpose convs up, each level's input concatenated as its skip."""
    def block(n):
        return [conv(n, 3, activation="relu"), conv(n, 3, activation="relu")]

    inner = block(filters * 2 ** depth)
    for level in reversed(range(depth)):
        n = filters * 2 ** level
        inner = ([{"type": "maxpool", "size": 2}] + inner
                 + [{"type": "conv2d_transpose", "filters": n, "size": 3, "stride": 2, "padding": "same"}])
        inner = block(n) + [{"type": "skip_concat", "layers": inner}] + block(n)
    return inner + [conv(filters, 3, activation="relu"), conv(classes, 1, activation="softmax")]


# name: (layers, input shape, batch, training examples per epoch); a per-pixel task when the
# last layer is a conv (labels (m, n_H, n_W))
CASES = {"lenet64": (LENET, (28, 28, 1), 64, 4096),
         "lenet256": (LENET, (28, 28, 1), 256, 4096),
         "resnet64": (RESNET_SMALL, (32, 32, 3), 64, 512),
         "mobilenet64": (recipe_layers("mobilenet_v2_small"), (32, 32, 3), 64, 1024),
         "inception64": (recipe_layers("inception_small"), (32, 32, 3), 64, 1024),
         "unet16": (unet(16), (96, 128, 3), 8, 64)}


def data(input_shape, n, seed=0, per_pixel=False):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n,) + input_shape).astype(np.float32),
            rng.integers(0, 10, (n,) + (input_shape[:2] if per_pixel else ())))


# -- dlcli ------------------------------------------------------------------------------------------
def dlcli_trainer(layers, input_shape):
    from dlcli.nn.model import build_model
    from dlcli.optim import make_optimizer
    from dlcli.train import train_step
    model = build_model({"layers": layers, "init": "he"}, "auto", 0.0, input_shape, "float32")
    opt = make_optimizer({"name": "adam", "learning_rate": LR})
    trainable = model.trainable()

    def step(xb, yb):
        train_step(model, opt, trainable, xb, yb, LR)

    return model, step, lambda x, y: model.error(x, y)


# -- PyTorch ----------------------------------------------------------------------------------------
def torch_model(layers, input_shape):
    import torch.nn as tnn

    def build(specs, shape):
        mods = []
        for s in specs:
            kind = s["type"]
            if kind in ("conv2d", "depthwise_conv2d"):
                f, stride = s["size"], s.get("stride", 1)
                n_C = shape[2] if kind == "depthwise_conv2d" else s["filters"]
                if s.get("padding", "valid") == "same":  # Keras' same: the odd pixel after
                    n, w = -(-shape[0] // stride), -(-shape[1] // stride)
                    ph = max((n - 1) * stride + f - shape[0], 0)
                    pw = max((w - 1) * stride + f - shape[1], 0)
                    if ph % 2 or pw % 2:
                        mods.append(tnn.ZeroPad2d((pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)))
                        pad = 0
                    else:
                        pad = (ph // 2, pw // 2)
                else:
                    n, w, pad = (shape[0] - f) // stride + 1, (shape[1] - f) // stride + 1, 0
                mods.append(tnn.Conv2d(shape[2], n_C, f, stride=stride, padding=pad,
                                       bias=s.get("bias", True),
                                       groups=shape[2] if kind == "depthwise_conv2d" else 1))
                shape = (n, w, n_C)
                if s.get("activation") == "relu":
                    mods.append(tnn.ReLU())
            elif kind == "maxpool":
                f = s["size"]
                stride = s.get("stride", f)
                if s.get("padding") == "same":  # odd f only here: f // 2 each side
                    mods.append(tnn.MaxPool2d(f, stride, padding=f // 2))
                    shape = (-(-shape[0] // stride), -(-shape[1] // stride), shape[2])
                else:
                    mods.append(tnn.MaxPool2d(f, stride))
                    shape = ((shape[0] - f) // stride + 1, (shape[1] - f) // stride + 1, shape[2])
            elif kind == "dropout":
                pass
            elif kind == "batchnorm":
                mods.append(tnn.BatchNorm2d(shape[2], momentum=0.1, eps=1e-5))
            elif kind == "activation":
                mods.append(tnn.ReLU())
            elif kind == "residual":
                body, out = build(s["layers"], shape)
                projection = None
                if out != shape:  # a 1x1 strided projection shortcut, as dlcli's auto
                    projection = tnn.Conv2d(shape[2], out[2], 1, stride=-(-shape[0] // out[0]))
                mods.append(Residual(tnn.Sequential(*body), projection,
                                     s.get("activation", "relu") == "relu"))
                shape = out
            elif kind == "branches":
                paths = [build(path, shape) for path in s["paths"]]
                mods.append(Branches([tnn.Sequential(*body) for body, _ in paths]))
                shape = paths[0][1][:2] + (sum(out[2] for _, out in paths),)
            elif kind == "skip_concat":
                body, inner = build(s["layers"], shape)
                mods.append(SkipConcat(tnn.Sequential(*body)))
                shape = (shape[0], shape[1], shape[2] + inner[2])
            elif kind == "conv2d_transpose":  # 3x3 stride 2 same: output 2n, as Keras
                mods.append(tnn.ConvTranspose2d(shape[2], s["filters"], s["size"], stride=s["stride"],
                                                padding=1, output_padding=1))
                shape = (shape[0] * 2, shape[1] * 2, s["filters"])
            elif kind == "global_avgpool":
                mods += [tnn.AdaptiveAvgPool2d(1), tnn.Flatten()]
                shape = (shape[2],)
            elif kind == "flatten":
                mods.append(Flatten())
                shape = (int(np.prod(shape)),)
            elif kind == "dense":
                mods.append(tnn.Linear(shape[0], s["units"]))
                shape = (s["units"],)
                if s.get("activation") == "relu":
                    mods.append(tnn.ReLU())
        return mods, shape

    class SkipConcat(tnn.Module):
        def __init__(self, body):
            super().__init__()
            self.body = body

        def forward(self, x):
            import torch
            return torch.cat([x, self.body(x)], dim=1)

    class Branches(tnn.Module):
        def __init__(self, paths):
            super().__init__()
            self.paths = tnn.ModuleList(paths)

        def forward(self, x):
            import torch
            return torch.cat([path(x) for path in self.paths], dim=1)

    class Residual(tnn.Module):
        def __init__(self, body, projection=None, relu=True):
            super().__init__()
            self.body, self.projection, self.relu = body, projection, relu

        def forward(self, x):
            z = self.body(x) + (self.projection(x) if self.projection is not None else x)
            return z.relu() if self.relu else z

    class Flatten(tnn.Module):
        """NHWC order, as dlcli flattens, so the dense layers see the same features."""

        def forward(self, x):
            return x.permute(0, 2, 3, 1).flatten(1)

    return tnn.Sequential(*build(layers, input_shape)[0])


def torch_trainer(layers, input_shape, fused=True):
    """(step, error) on NCHW tensors, and the conversion of NHWC numpy data to them."""
    import torch
    torch_threads(torch)
    net = torch_model(layers, input_shape)
    opt, _ = torch_adam(torch, net.parameters(), LR, fused)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(xb, yb):
        opt.zero_grad()
        loss_fn(net(xb), yb).backward()
        opt.step()

    def error(xs, ys):
        net.eval()
        with torch.no_grad():
            wrong = sum(int((net(xs[i:i + 1024]).argmax(1) != ys[i:i + 1024]).sum())
                        for i in range(0, xs.shape[0], 1024))
        net.train()
        return wrong / xs.shape[0]

    def tensors(x, y):
        return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(y)

    return step, error, tensors


# -- per-layer profile ------------------------------------------------------------------------------
def profile(layers, input_shape, batch, x, y, steps=20):
    """dlcli's median forward / backward milliseconds per layer over `steps` training steps
    (after two untimed ones): `dlcli profile`'s job and table (dlcli/profile.py)."""
    from rich.console import Console

    from dlcli.optim import make_optimizer
    from dlcli.profile import profile_steps
    from dlcli.render_profile import profile_table
    model, _, _ = dlcli_trainer(layers, input_shape)
    result = profile_steps(model, make_optimizer({"name": "adam", "learning_rate": LR}), x, y,
                           batch, steps, learning_rate=LR)
    profile_table(result, Console(), title=f"dlcli per layer, ms, batch {batch}, median of {steps} steps")


# -- start-up ---------------------------------------------------------------------------------------
STARTUP = """
import time, sys
started = time.perf_counter()
sys.path.insert(0, {here!r})
import numpy as np
from cnn import LENET, data, dlcli_trainer
model, step, _ = dlcli_trainer(LENET, (28, 28, 1))
x, y = data((28, 28, 1), 64)
step(x, y)
print(time.perf_counter() - started)
"""


def startup_seconds(cache_dir, **env):
    env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir, **env}
    code = STARTUP.format(here=os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(CASES), help="comma-separated: " + ", ".join(CASES))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--no-startup", action="store_true")
    args = parser.parse_args()
    if not args.no_startup:
        with tempfile.TemporaryDirectory() as cache:
            cold, cached = startup_seconds(cache), startup_seconds(cache)
        with tempfile.TemporaryDirectory() as cache:
            alone = startup_seconds(cache, DLCLI_COMPILE_AHEAD="0")
        print(f"start-up to the first LeNet-5 step: {cold:.1f} s with JIT compile ({alone:.1f} s "
              f"compiling in one process), {cached:.1f} s cached")
    import torch
    fused = torch_adam(torch, [torch.zeros(1, requires_grad=True)], LR)[1]
    print(header("cnn") + f"; PyTorch Adam fused: {fused}")
    for name in args.only.split(","):
        layers, input_shape, batch, n = CASES[name]
        x, y = data(input_shape, n, per_pixel=layers[-1]["type"] == "conv2d")
        _, step, error = dlcli_trainer(layers, input_shape)
        sides = {"dlcli": (step, error, x, y)}
        for label, is_fused in (("PyTorch", True), ("unfused", False)):
            t_step, t_error, tensors = torch_trainer(layers, input_shape, is_fused)
            sides[label] = (t_step, t_error, *tensors(x, y))
        rng = np.random.default_rng(0)
        order = {}

        def runner(side):
            s_step, s_error, s_x, s_y = sides[side]

            def one_epoch():
                # every side sees the same shuffles: the k-th epoch of each uses order k
                k = order[side] = order.get(side, -1) + 1
                perm = np.random.default_rng(k).permutation(n)
                import torch as _t
                idx = perm if side == "dlcli" else _t.from_numpy(perm)
                return timed_epoch(s_step, s_error, batch, s_x, s_y, idx)
            return one_epoch
        medians = interleaved_medians({side: runner(side) for side in sides}, args.epochs)
        rate = {side: n / s for side, s in medians.items()}
        print(f"{name:9s} batch {batch:3d}: dlcli {rate['dlcli']:7.0f} ex/s   PyTorch (fused Adam) "
              f"{rate['PyTorch']:7.0f} ex/s   unfused {rate['unfused']:7.0f}   "
              f"ratio {rate['dlcli'] / max(rate['PyTorch'], rate['unfused']):.2f}x", flush=True)
        if args.profile:
            profile(layers, input_shape, batch, x, y)

if __name__ == "__main__":
    main()
