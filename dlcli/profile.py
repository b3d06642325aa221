"""Where the time of a training step goes: each layer's forward and backward, the loss, the update.

The job times the real step (`train.train_step`: the model, the recipe's optimizer and batch
size) with a clock around each layer's `forward` and `backward`, the loss's too and the
optimizer's `update`, installed on the instances for the profiled steps only and taken off
afterwards, so the step that runs is the one `dlcli train` runs, nothing rewritten for timing.
The first `warmup` steps are run untimed, so Numba's JIT compilation is not counted (their
duration is reported as `warmup_seconds`); then each figure is the MEDIAN over `steps` steps of
that component's time within a step. A block's time (residual, branches, skip_concat,
bidirectional) includes its nested layers, which are listed under it with a larger `depth`.

"other" is the step minus what the clocks saw at the top level: slicing the batch,
augmentation, L2, gradient clipping, Python between layers. Shares are of the sum of the
top-level components' medians (top-level layers, loss, update, other), so they add up to 1
there; `step_ms` is the median of whole steps, which that sum approaches.

The job knows nothing about files or the terminal: it returns a `Profile` (`to_json()`);
`render_profile.py` draws it. The `--profile` of benchmarks/cnn.py, rnn.py and seq2seq.py calls
`profile_steps` too.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from .errors import BadInput

STEPS = 20
WARMUP = 2
BLOCK_NAME = 40  # a block whose description is longer is named by its type alone


@dataclass
class LayerTime:
    index: str  # the params.npz prefix without its dot: "3", "4.layers.0", "2.forward"
    name: str
    type: str
    depth: int  # 0 for a top-level layer, 1 for one nested in a block, ...
    forward_ms: float | None  # None: never called on its own (its block runs it inline)
    backward_ms: float | None
    share: float | None  # (forward + backward) / the step


@dataclass
class Profile:
    layers: list[LayerTime]
    loss_ms: float
    update_ms: float
    other_ms: float
    step_ms: float
    examples_per_second: float | None
    warmup_seconds: float
    steps: int
    batch_size: int
    loss_share: float = 0.0
    update_share: float = 0.0
    other_share: float = 0.0
    optimizer: str = "gd"
    name: str | None = None  # the recipe's

    def to_json(self) -> dict:
        return asdict(self)


class _Clock:
    """Per-step seconds by key, summed over the calls within one step."""

    def __init__(self):
        self.running = False
        self.now: dict = {}
        self.steps: list[dict] = []

    def wrap(self, obj, method: str, key) -> None:
        inner = getattr(obj, method)

        def timed(*args, **kwargs):
            if not self.running:  # evaluation passes, warm-up steps
                return inner(*args, **kwargs)
            started = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.now[key] = self.now.get(key, 0.0) + time.perf_counter() - started

        setattr(obj, method, timed)  # on the instance: the class's method is untouched

    def step(self, run) -> float:
        """Run one step with the clocks on; its seconds."""
        self.now, self.running = {}, True
        started = time.perf_counter()
        try:
            run()
        finally:
            self.running = False
        seconds = time.perf_counter() - started
        self.steps.append({**self.now, "step": seconds})
        return seconds

    def median_ms(self, key) -> float:
        return _median([s.get(key, 0.0) for s in self.steps]) * 1e3


def _median(values) -> float:
    values = sorted(values)
    n = len(values)
    if not n:
        return 0.0
    return values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2


def _unwrap(obj, method: str) -> None:
    obj.__dict__.pop(method, None)


def profiled_layers(model):
    """(index, layer, depth) for every layer, nested ones under their block, parents first."""
    def visit(layer, prefix, depth):
        for name, child in layer.children():
            yield prefix + name, child, depth
            yield from visit(child, f"{prefix}{name}.", depth + 1)
    yield from visit(model.net, "", 0)


def _layer_name(model, layer, index: str) -> str:
    name = layer.describe()
    if layer.children() and len(name) > BLOCK_NAME:
        name = layer.kind
    if index == str(len(model.layers) - 1) and getattr(model, "fused_activation", None):
        name += f" {model.fused_activation}"  # the loss applies it; the recipe wrote it here
    return name


def profile_steps(model, opt, x, y, batch_size: int, steps: int = STEPS, warmup: int = WARMUP,
                  learning_rate: float = 0.01, augment=None, order=None) -> Profile:
    """Time `warmup` untimed then `steps` timed training steps of `model` with `opt` on batches
    of `x`, `y` (consecutive full batches of `order`, wrapping around). The model is trained by
    them: profile a model whose parameters you do not need, or a twin."""
    from .train import train_step
    if steps < 1:
        raise BadInput(f"--steps: must be a positive integer, got {steps}")
    if warmup < 0:
        raise BadInput(f"--warmup: must be 0 or more, got {warmup}")
    m = x.shape[0] if order is None else len(order)
    if m == 0:
        raise BadInput("the training split is empty: no step to profile")
    batch = max(1, min(int(batch_size), m))
    layers = list(profiled_layers(model))
    clock = _Clock()
    for index, layer, _ in layers:
        for phase in ("forward", "backward"):
            clock.wrap(layer, phase, (index, phase))
    clock.wrap(model.loss, "forward", "loss")
    clock.wrap(model.loss, "backward", "loss")
    clock.wrap(opt, "update", "update")
    trainable = model.trainable()
    starts = range(0, m - batch + 1, batch)

    def one_step(i):
        j = starts[i % len(starts)]
        rows = slice(j, j + batch) if order is None else order[j:j + batch]
        xb, yb = x[rows], y[rows]
        if augment:
            xb, yb = augment(xb, yb)
        train_step(model, opt, trainable, xb, yb, learning_rate)

    import numpy as np
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            started = time.perf_counter()
            for i in range(warmup):
                one_step(i)
            warmup_seconds = time.perf_counter() - started
            for i in range(warmup, warmup + steps):
                clock.step(lambda i=i: one_step(i))
    finally:
        for index, layer, _ in layers:
            _unwrap(layer, "forward")
            _unwrap(layer, "backward")
        _unwrap(model.loss, "forward")
        _unwrap(model.loss, "backward")
        _unwrap(opt, "update")
    return _summarise(model, clock, layers, steps, batch, warmup_seconds, opt)


def _summarise(model, clock, layers, steps, batch, warmup_seconds, opt) -> Profile:
    top = [index for index, _, depth in layers if depth == 0]
    for s in clock.steps:  # what the clocks did not see at the top level, step by step
        seen = sum(s.get((i, p), 0.0) for i in top for p in ("forward", "backward"))
        s["other"] = max(0.0, s["step"] - seen - s.get("loss", 0.0) - s.get("update", 0.0))
    called = {key for s in clock.steps for key in s}
    # a nested layer its block runs inline (not through its forward) has no time of its own
    ms = {(i, p): clock.median_ms((i, p)) if (i, p) in called else None
          for i, _, _ in layers for p in ("forward", "backward")}
    loss_ms, update_ms, other_ms = (clock.median_ms(k) for k in ("loss", "update", "other"))
    own = {i: (ms[i, "forward"] or 0.0) + (ms[i, "backward"] or 0.0) for i, _, _ in layers}
    whole = sum(own[i] for i in top) + loss_ms + update_ms + other_ms
    share = (lambda t: t / whole) if whole > 0 else (lambda t: 0.0)
    rounded = (lambda t: None if t is None else round(t, 6))
    rows = [LayerTime(index, _layer_name(model, layer, index), layer.kind, depth,
                      rounded(ms[index, "forward"]), rounded(ms[index, "backward"]),
                      None if ms[index, "forward"] is None and ms[index, "backward"] is None
                      else round(share(own[index]), 5))
            for index, layer, depth in layers]
    step_ms = clock.median_ms("step")
    return Profile(rows, round(loss_ms, 6), round(update_ms, 6), round(other_ms, 6),
                   round(step_ms, 6), round(batch / (step_ms / 1e3), 1) if step_ms > 0 else None,
                   round(warmup_seconds, 3), steps, batch, round(share(loss_ms), 5),
                   round(share(update_ms), 5), round(share(other_ms), 5),
                   getattr(opt, "name", type(opt).__name__))


def profile_recipe(recipe, *, steps: int = STEPS, warmup: int = WARMUP, batch_size=None,
                   overrides=(), dataset=None) -> Profile:
    """Profile a recipe's training step on a model built as `dlcli train` builds it (same
    initial parameters, optimizer, learning rate of the first epoch, batch size, augmentation),
    without writing anything. `dataset` reuses data already loaded (train --profile)."""
    from . import api, optim
    from .checks import check_training
    from .rng import stream
    from .train import batch_size_of
    if steps < 1:
        raise BadInput(f"--steps: must be a positive integer, got {steps}")
    if batch_size is not None and batch_size < 1:
        raise BadInput(f"--batch-size: must be a positive integer, got {batch_size}")
    if warmup < 0:
        raise BadInput(f"--warmup: must be 0 or more, got {warmup}")
    recipe = api.as_recipe(recipe, overrides)
    model, dataset = api.prepare(recipe, dataset=dataset)
    with api.located(recipe):
        check_training(recipe, model, dataset)
    train = dataset.splits["train"]
    o_cfg, t_cfg = recipe.optimizer, recipe.training
    opt = optim.make_optimizer(o_cfg.model_dump())
    clip = getattr(o_cfg, "clip", None)
    opt.clip, opt.clipped = (clip.model_dump() if clip else None), 0
    lr = optim.learning_rate(o_cfg.learning_rate, o_cfg.decay.model_dump(), 0)
    m = train.x.shape[0]
    batch = batch_size_of(t_cfg.batch_size if batch_size is None else batch_size, m)
    rng = stream(recipe.seed, "shuffle")  # a stream of its own: the run's is not drawn from
    if getattr(model.loss, "identity_batches", False):  # P identities x K examples a batch
        from .faces import identity_order
        order, batch = identity_order(train.y, t_cfg.identities_per_batch,
                                      t_cfg.examples_per_identity, rng)
    else:
        order = rng.permutation(m) if batch < m else None
    augment = api.make_augment(recipe)
    augment_rng = stream(recipe.seed, "augment")
    result = profile_steps(model, opt, train.x, train.y, batch, steps, warmup, lr,
                           augment and (lambda xb, yb: augment(xb, yb, augment_rng)), order)
    result.name = recipe.name
    return result
