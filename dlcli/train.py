"""The training loop: mini-batches, learning-rate decay, early stopping, divergence, Ctrl-C.

`fit` knows nothing about files or the terminal: it calls `on_epoch(record)` once per epoch
with the metrics.jsonl object, and returns a FitResult saying how it ended. The caller
(api.train) writes the run directory and draws the progress.
"""

from __future__ import annotations

import math
import time
import weakref
from dataclasses import dataclass, field

import numpy as np


from . import optim
from .faults import signals_held
from .rng import stream

@dataclass
class FitResult:
    status: str = "completed"  # completed | interrupted | diverged
    epochs: int = 0  # epochs completed
    iterations: int = 0
    train_seconds: float = 0.0  # time inside training steps only
    examples: int = 0  # training examples processed
    costs: list = field(default_factory=list)
    diverged_at: int | None = None  # the epoch whose cost turned NaN
    stopped_early_at: int | None = None
    best_epoch: int | None = None


def batch_size_of(setting, m: int) -> int:
    return m if setting == "full" else min(int(setting), m)


def snapshot(model) -> dict:
    return {k: v.copy() for k, v in model.state_dict().items()}


def split_cost(model, split, batch_size=1024) -> float:
    """The cost of a whole split in inference mode, regularization included."""
    total = 0.0
    for i in range(0, split.x.shape[0], batch_size):
        xb, yb = split.x[i:i + batch_size], split.y[i:i + batch_size]
        total += model.loss.forward(model.forward(xb, False), yb) * xb.shape[0]
    m = split.x.shape[0]
    return total / m + model.l2_cost(m)


def fit(model, dataset, recipe, on_epoch=None, augment=None, on_batch=None,
        on_interrupt=None) -> FitResult:
    """Train `model` on `dataset.splits["train"]` as the recipe's optimizer/training say.

    `on_batch(epoch, examples_done, m)` is called after every step (progress within an
    epoch); `on_interrupt()` at once on Ctrl-C, before anything is saved.
    """
    train = dataset.splits["train"]
    dev = dataset.splits.get("dev")
    t_cfg, o_cfg = recipe.training, recipe.optimizer
    opt = optim.make_optimizer(o_cfg.model_dump())
    clip = getattr(o_cfg, "clip", None)
    opt.clip, opt.clipped = (clip.model_dump() if clip else None), 0  # dlcli/clipping.py
    decay = o_cfg.decay.model_dump()
    shuffle_rng = stream(recipe.seed, "shuffle")
    augment_rng = stream(recipe.seed, "augment")
    m = train.x.shape[0]
    batch = batch_size_of(t_cfg.batch_size, m)
    trainable = model.trainable()

    stopper = EarlyStopping(t_cfg.early_stopping) if t_cfg.early_stopping else None
    result = FitResult()
    last_good = snapshot(model)  # copied at epoch ends only: a NaN goes back a whole epoch
    boundary_iterations = 0  # the optimizer steps of the epochs in last_good
    started = time.perf_counter()
    try:
        for epoch in range(1, t_cfg.epochs + 1):
            lr = optim.learning_rate(o_cfg.learning_rate, decay, epoch - 1)
            if getattr(model.loss, "identity_batches", False):
                # triplet / pair losses mine inside a mini-batch: P identities x K examples each
                from .faces import identity_order
                order, batch = identity_order(train.y, t_cfg.identities_per_batch,
                                              t_cfg.examples_per_identity, shuffle_rng)
                xs, ys = train.x[order], train.y[order]
            elif t_cfg.shuffle and batch < m:  # one full batch: the order changes nothing
                order = shuffle_rng.permutation(m)
                xs, ys = train.x[order], train.y[order]
            else:
                xs, ys = train.x, train.y
            t0 = time.perf_counter()
            cost, steps = train_epoch(model, opt, trainable, xs, ys, batch, lr,
                                      augment and (lambda x, y: augment(x, y, augment_rng)),
                                      on_batch and (lambda done, e=epoch: on_batch(e, done, m)))
            result.train_seconds += time.perf_counter() - t0
            result.iterations += steps
            result.examples += min(steps * batch, xs.shape[0])
            if not math.isfinite(cost):
                result.status, result.diverged_at = "diverged", epoch
                model.load_state_dict(last_good)
                result.iterations = boundary_iterations
                return result
            record = {"epoch": epoch, "iteration": result.iterations, "cost": cost,
                      "learning_rate": lr, "train_error": model.error(train.x, train.y)}
            if dev is not None:
                record["dev_error"] = model.error(dev.x, dev.y)
            if opt.clip:  # the steps of this epoch whose gradients were clipped
                record["clipped"], opt.clipped = opt.clipped, 0
            record["seconds"] = time.perf_counter() - started
            # the epoch counts once its parameters are kept and its line written, all or none:
            # an interrupt goes back to the last epoch that did all three
            with signals_held():
                last_good = snapshot(model)
                result.epochs, boundary_iterations = epoch, result.iterations
                result.costs.append(cost)
                if on_epoch:
                    on_epoch(record)
            if stopper and stopper.update(epoch, stopper.value(model, record, dev), last_good):
                result.stopped_early_at = epoch
                break
    except KeyboardInterrupt:
        # params.npz then holds the last completed epoch, as summary.json's epochs says
        result.status = "interrupted"
        model.load_state_dict(last_good)
        result.iterations = boundary_iterations
        if on_interrupt:
            on_interrupt()
    if stopper and stopper.restore_best and stopper.best_state is not None:
        model.load_state_dict(stopper.best_state)
        result.best_epoch = stopper.best_epoch
    elif stopper and result.stopped_early_at:
        result.best_epoch = stopper.best_epoch  # said, though its parameters were not put back
    return result


def train_epoch(model, opt, trainable, xs, ys, batch, lr, augment=None,
                on_batch=None) -> tuple[float, int]:
    """One pass of mini-batch steps: (the batch-weighted mean cost, the steps taken).

    The cost is NaN at the first non-finite mini-batch cost, whose update is not taken.
    """
    total, steps = 0.0, 0
    # overflow on the way to a NaN cost is reported once, as divergence, not as numpy warnings
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for i in range(0, xs.shape[0], batch):
            xb, yb = xs[i:i + batch], ys[i:i + batch]
            if augment:  # (x, y) -> (x, y): boxes and masks move with their images
                xb, yb = augment(xb, yb)
            cost = train_step(model, opt, trainable, xb, yb, lr)
            if not math.isfinite(cost):
                return math.nan, steps
            total += cost * xb.shape[0]
            steps += 1
            if on_batch:
                on_batch(i + xb.shape[0])
    return total / xs.shape[0], steps


_ahead = []  # set at the first train_step (dlcli/kernels/ahead.py)


def train_step(model, opt, trainable, xb, yb, lr) -> float:
    """One mini-batch: forward, backward, update. Returns the cost before the update; a cost
    that is not finite makes no update. `trainable` is `model.trainable()`."""
    if not _ahead:  # the process's first step: its kernels compile in two processes at once
        _ahead.append(True)
        from .kernels.ahead import compiling_ahead
        with compiling_ahead(train_step, model, opt, xb, yb, lr):
            return train_step(model, opt, trainable, xb, yb, lr)
    from .nn.recurrent_cells import step_threads
    with step_threads(model), small_step_blas(model, xb.shape[0]):
        cost = model.cost(xb, yb, training=True)
        if math.isfinite(cost):
            model.backward()
            if getattr(opt, "clip", None):
                from .clipping import clip_gradients
                opt.clipped += clip_gradients([layer.grads[key] for _, layer, key in trainable], opt.clip)
            # rebuilt each step: a layer may hand back a new gradient array every backward
            opt.update([(name, layer.params[key], layer.grads[key])
                        for name, layer, key in trainable], lr)
    return cost


class EarlyStopping:
    """Stop when the watched metric has not improved by min_delta for `patience` epochs."""

    def __init__(self, cfg):
        self.metric, self.patience = cfg.metric, cfg.patience
        self.restore_best, self.min_delta = cfg.restore_best, cfg.min_delta
        self.best, self.best_epoch, self.best_state, self.waited = math.inf, None, None, 0

    def value(self, model, record, dev) -> float:
        if self.metric == "dev_cost":
            return split_cost(model, dev)
        if self.metric == "train_cost":
            return record["cost"]
        return record[self.metric]

    def update(self, epoch, value, state) -> bool:
        if value < self.best - self.min_delta:
            self.best, self.best_epoch, self.best_state, self.waited = value, epoch, state, 0
            return False
        self.waited += 1
        return self.waited >= self.patience


# model -> {(batch, input shape): its step's BLAS context}; kept beside the model, not in it:
# the contexts hold ctypes handles, which a model's deepcopy (kernels/ahead.py's trace) or
# pickle cannot take
_STEP_BLAS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def small_step_blas(model, m):
    """One BLAS thread for a step whose GEMMs are all small (each layer's `small_gemms`,
    nn/base.py), decided once per model and batch size; for a step of larger GEMMs all in
    dense layers, the process's BLAS threads with kernels/blas_late.py's lateness rule
    (one thread while a loaded machine makes more late, the same results); else nothing."""
    held = _STEP_BLAS.setdefault(model, {})
    key = (m, getattr(model, "input_shape", None))  # a model built again decides again
    ctx = held.get(key)
    if ctx is None:
        import contextlib
        from .kernels.duo import StepDuo
        from .kernels.threads import blas_threads
        if all(layer.small_gemms(m) for layer in model.layers):
            ctx = StepDuo(blas_threads(1))
        elif _dense_only(model) and max(getattr(blas_threads(1), "current", lambda: (1,))()) > 1:
            from .kernels.blas_late import LateStep
            ctx = LateStep(blas_threads(1))
        else:
            ctx = contextlib.nullcontext()
        held[key] = ctx
    return ctx


def _dense_only(model) -> bool:
    """Whether every layer with a GEMM is a dense layer (the lateness rule's GEMMs)."""
    from .nn.base import NoGemm
    from .nn.layers import Dense
    return all(isinstance(layer, (Dense, NoGemm)) for layer in model.layers)
