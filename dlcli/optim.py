"""Optimizers and learning-rate decay, exactly as the notes write them.

`update(params, learning_rate)` takes `(name, W, dW)` triples and changes each W in place.
State (the course's v and s) is kept per parameter name and starts at zeros; `t` counts
updates from 1. Each step runs through one fused Numba kernel per tensor
(`dlcli.kernels.optim`); `reference` is the same formula in numpy, used for tensors the
kernels cannot take (non-contiguous) and by the tests as the oracle for the kernels.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import BadInput


class Optimizer:
    """Gradient descent: W -= a dW. Subclasses name their state arrays in `slots`."""

    name = "gd"
    slots: tuple[str, ...] = ()  # state arrays per parameter, after W and dW in every call
    kernel = "gd_step"  # in dlcli.kernels.optim; takes the flat arrays, then `scalars()`

    def __init__(self, beta=0.9, beta1=0.9, beta2=0.999, epsilon=1e-8, use_kernels=True):
        self.beta, self.beta1, self.beta2 = float(beta), float(beta1), float(beta2)
        self.epsilon = float(epsilon)
        self.use_kernels = use_kernels
        self.t = 0
        self.state: dict[str, dict[str, np.ndarray]] = {}  # parameter name -> slot -> array
        self._prepared: dict[str, tuple] = {}  # parameter name -> update's checked arrays (`_prepare`)

    def update(self, params, learning_rate: float) -> None:
        self.t += 1
        kernel = getattr(_kernels(), self.kernel) if self.use_kernels else None
        typed = {}  # dtype -> the kernel's scalars in that dtype, cast once per update
        prepared = self._prepared
        for name, W, dW in params:
            # a parameter's checks and flat views are kept while it, its gradient and its state
            # are the same arrays (LeNet-5's ten tensors: 114 -> 63 us an update, Dec 3 2026)
            hit = prepared.get(name)
            own = self.state.get(name)
            if (hit is None or hit[0] is not W or hit[1] is not dW or own is None
                    or any(own[slot] is not a for slot, a in zip(self.slots, hit[2]))):
                hit = prepared[name] = self._prepare(name, W, dW)
            if kernel is not None and hit[3] is not None:
                scalars = typed.get(W.dtype)
                if scalars is None:
                    scalars = typed[W.dtype] = tuple(map(W.dtype.type, self.scalars(learning_rate)))
                kernel(*hit[3], *scalars)
            else:
                self.reference(W, dW, *hit[2], learning_rate)

    def _prepare(self, name, W, dW) -> tuple:
        """(W, dW, its state arrays, their flat views for the kernel or None)."""
        slots = self._slots(name, W)
        arrays = (W, dW, *slots)
        if any(a.shape != W.shape for a in arrays):  # the kernels do not check bounds
            raise ValueError(f"{name}: gradient or optimizer state shape differs from {W.shape}")
        # elementwise, so any one memory order shared by all of them will do (dense W is
        # Fortran-ordered, nn/layers.py); reshape in that order gives views
        order = "C" if all(a.flags.c_contiguous for a in arrays) else \
            "F" if all(a.flags.f_contiguous for a in arrays) else None
        views = tuple(a.reshape(-1, order=order) for a in arrays) if order else None
        return W, dW, tuple(slots), views

    def _slots(self, name, W) -> list[np.ndarray]:
        own = self.state.get(name)
        if own is None:
            own = self.state[name] = {slot: np.zeros_like(W) for slot in self.slots}
        contiguous = W.flags.c_contiguous or W.flags.f_contiguous
        for slot, value in own.items():
            if contiguous and value.strides != W.strides and value.shape == W.shape:
                # state from a checkpoint in another memory order: match W's, once
                own[slot] = np.array(value, order="F" if W.flags.f_contiguous else "C")
        return [own[slot] for slot in self.slots]

    def reference(self, W, dW, learning_rate):
        W -= learning_rate * dW

    def scalars(self, learning_rate) -> tuple:
        return (learning_rate,)

    # -- checkpoints ----------------------------------------------------------------------
    def state_dict(self) -> dict:
        """`t` and one copied array per slot and parameter, keyed `"<slot>.<name>"` (npz-ready)."""
        d = {"t": self.t}
        for name, own in self.state.items():
            for slot, value in own.items():
                d[f"{slot}.{name}"] = value.copy(order="K")  # its parameter's memory order
        return d

    def load_state_dict(self, d: dict) -> None:
        state: dict[str, dict[str, np.ndarray]] = {}
        for key, value in d.items():
            if key == "t":
                continue
            slot, _, name = key.partition(".")
            if slot not in self.slots or not name:
                raise ValueError(f"{self.name} optimizer has no state {key!r}")
            state.setdefault(name, {})[slot] = np.array(value)
        incomplete = [n for n, own in state.items() if len(own) != len(self.slots)]
        if incomplete:
            raise ValueError(f"{self.name} optimizer state lacks a slot for {', '.join(incomplete)}")
        self.t = int(d["t"])
        self.state = state


class Momentum(Optimizer):
    """v = beta v + (1 - beta) dW; W -= a v."""

    name = "momentum"
    slots = ("v",)
    kernel = "momentum_step"

    def reference(self, W, dW, v, learning_rate):
        v[...] = self.beta * v + (1 - self.beta) * dW
        W -= learning_rate * v

    def scalars(self, learning_rate):
        return learning_rate, self.beta, 1 - self.beta


class RMSprop(Optimizer):
    """s = beta2 s + (1 - beta2) dW^2; W -= a dW / (sqrt(s) + epsilon)."""

    name = "rmsprop"
    slots = ("s",)
    kernel = "rmsprop_step"

    def reference(self, W, dW, s, learning_rate):
        s[...] = self.beta2 * s + (1 - self.beta2) * dW ** 2
        W -= learning_rate * dW / (np.sqrt(s) + self.epsilon)

    def scalars(self, learning_rate):
        return learning_rate, self.beta2, 1 - self.beta2, self.epsilon


class Adam(Optimizer):
    """Momentum's v and RMSprop's s, each bias-corrected: v / (1 - beta1^t), s / (1 - beta2^t)."""

    name = "adam"
    slots = ("v", "s")
    kernel = "adam_step"

    def reference(self, W, dW, v, s, learning_rate):
        v[...] = self.beta1 * v + (1 - self.beta1) * dW
        s[...] = self.beta2 * s + (1 - self.beta2) * dW ** 2
        v_hat = v / (1 - self.beta1 ** self.t)
        s_hat = s / (1 - self.beta2 ** self.t)
        W -= learning_rate * v_hat / (np.sqrt(s_hat) + self.epsilon)

    def scalars(self, learning_rate):
        step = learning_rate / (1 - self.beta1 ** self.t)
        inv_sqrt_correction2 = 1 / math.sqrt(1 - self.beta2 ** self.t)
        return (step, self.beta1, 1 - self.beta1, self.beta2, 1 - self.beta2, self.epsilon,
                inv_sqrt_correction2)


OPTIMIZERS = {cls.name: cls for cls in (Optimizer, Momentum, RMSprop, Adam)}


def make_optimizer(cfg: dict, use_kernels: bool = True) -> Optimizer:
    """The optimizer of a recipe's `optimizer` mapping; absent keys take SPEC's defaults."""
    name = cfg.get("name") or "gd"
    if name not in OPTIMIZERS:
        raise BadInput(f"must be one of {', '.join(OPTIMIZERS)}, got {name!r}", key="optimizer.name")
    hyper = {k: cfg[k] for k in ("beta", "beta1", "beta2", "epsilon") if cfg.get(k) is not None}
    return OPTIMIZERS[name](**hyper, use_kernels=use_kernels)


def _kernels():
    # numba loads on the first update, not when the CLI imports this module
    from .kernels import optim
    return optim


# -- learning-rate decay ------------------------------------------------------------------
# e = epochs completed before this one; `d` is the recipe's decay mapping
SCHEDULES = {
    "none": lambda a0, e, d: a0,
    "inverse_time": lambda a0, e, d: a0 / (1 + d["rate"] * e),
    "exponential": lambda a0, e, d: a0 * d["base"] ** e,
    "staircase": lambda a0, e, d: a0 / (1 + d["rate"] * math.floor(e / d["every"])),
    "inverse_sqrt": lambda a0, e, d: a0 * d["k"] / math.sqrt(e + 1),
}
DEFAULTS = {"exponential": {"base": 0.95}}  # the notes' 0.95^epoch_num


def learning_rate(lr0: float, decay: dict | None, e: int) -> float:
    """The learning rate of the epoch after `e` completed ones (e = 0 in the first epoch)."""
    decay = decay or {}
    schedule = decay.get("schedule") or "none"
    if schedule not in SCHEDULES:
        raise BadInput(f"must be one of {', '.join(SCHEDULES)}, got {schedule!r}",
                       key="optimizer.decay.schedule")
    settings = {**DEFAULTS.get(schedule, {}), **{k: v for k, v in decay.items() if v is not None}}
    try:
        return float(SCHEDULES[schedule](float(lr0), e, settings))
    except KeyError as missing:
        raise BadInput(f"the {schedule} schedule needs it", key=f"optimizer.decay.{missing.args[0]}")
