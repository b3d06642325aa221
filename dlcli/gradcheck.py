"""Gradient checking (the notes' "Grad check"): backprop's dθ against two-sided differences.

For each checked entry, dθ_approx[i] = (J(θ + ε e_i) − J(θ − ε e_i)) / 2ε, where J is the
model's training cost on one fixed batch: batch norm on batch statistics, L2 included (the
notes: "remember regularization"), dropout off (a fresh random mask makes J a different
function at every call). The score is the notes' relative difference
||dθ_approx − dθ||₂ / (||dθ_approx||₂ + ||dθ||₂), over every checked entry and per tensor.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from .errors import BadInput

PASS = 1e-5  # SPEC: exit 0 below this overall difference
VERDICTS = ((1e-7, "great"), (1e-5, "probably fine, check it"), (1e-3, "suspicious"))
BUG = "almost certainly a bug"
WORST = 5  # indices listed for a failing tensor
# The least round-off assumed in one evaluation of J, in units of |J| (a few ulps per sum).
ROUNDOFF = 10 * np.finfo(np.float64).eps


def verdict(difference: float) -> str:
    for bound, word in VERDICTS:
        if difference <= bound:
            return word
    return BUG  # NaN lands here too


def relative_difference(approx: np.ndarray, grad: np.ndarray) -> float:
    denominator = np.linalg.norm(approx) + np.linalg.norm(grad)
    # both zero: the two gradients agree exactly
    return float(np.linalg.norm(approx - grad) / denominator) if denominator else 0.0


@dataclass
class TensorCheck:
    """One parameter tensor: the entries checked (flat indices) and both derivatives there."""

    name: str
    shape: tuple
    index: np.ndarray
    backprop: np.ndarray
    numerical: np.ndarray
    kinks: int

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def checked(self) -> int:
        return len(self.index)

    @property
    def difference(self) -> float:
        return relative_difference(self.numerical, self.backprop)

    @property
    def worst(self) -> list[tuple[tuple, float, float]]:
        """(index, backprop, numerical) where the two disagree most, worst first."""
        miss = np.abs(self.backprop - self.numerical)
        order = [k for k in np.argsort(-miss, kind="stable")[:WORST] if miss[k] > 0]
        return [(tuple(int(i) for i in np.unravel_index(self.index[k], self.shape)),
                 float(self.backprop[k]), float(self.numerical[k])) for k in order]

    def to_json(self) -> dict:
        return {"name": self.name, "difference": _finite(self.difference),
                "checked": self.checked, "size": self.size,
                "verdict": verdict(self.difference), "kinks": self.kinks,
                "worst": [{"index": list(i), "backprop": b, "numerical": n}
                          for i, b, n in self.worst]}


@dataclass
class GradcheckResult:
    tensors: list[TensorCheck]
    epsilon: float
    examples: int
    dropout_off: list[str]  # layers whose dropout was turned off for the check

    @property
    def overall(self) -> float:
        if not self.tensors:
            return 0.0
        return relative_difference(np.concatenate([t.numerical for t in self.tensors]),
                                   np.concatenate([t.backprop for t in self.tensors]))

    @property
    def kinks(self) -> int:
        return sum(t.kinks for t in self.tensors)

    @property
    def passed(self) -> bool:
        return self.overall < PASS

    def to_json(self) -> dict:
        return {"overall": _finite(self.overall), "tensors": [t.to_json() for t in self.tensors],
                "passed": self.passed, "verdict": verdict(self.overall), "kinks": self.kinks,
                "epsilon": self.epsilon, "examples": self.examples,
                "dropout_off": self.dropout_off}


def _finite(x: float):
    return x if np.isfinite(x) else None  # JSON has no NaN


# -- the check ------------------------------------------------------------------------------
def check(model, X, Y, epsilon: float = 1e-7, max_per_tensor: int | None = None,
          rng: np.random.Generator | None = None) -> GradcheckResult:
    """Check every trainable tensor of a float64 `model` on the batch (X, Y).

    A tensor larger than `max_per_tensor` is checked at that many entries drawn by `rng`.
    The model comes back as it went in: parameters, running statistics and dropout.
    """
    if epsilon <= 0:
        raise BadInput(f"epsilon must be positive, got {epsilon}")
    _require_float64(model)
    X, Y = _float64(X), _float64(Y)
    rng = rng if rng is not None else np.random.default_rng(0)

    with _held(model) as dropout_off:
        j = model.cost(X, Y, training=True)
        model.backward()
        # copies: layers overwrite their gradient arrays in place on the next backward
        grads = {name: layer.grads[key].copy() for name, layer, key in model.trainable()}
        cost_from = _resumable_cost(model, X, Y)
        rows = []
        for name, layer, key in model.trainable():
            theta = layer.params[key]
            index = _sample(theta.size, max_per_tensor, rng)
            start = int(name.split(".", 1)[0])  # the top-level layer that holds the tensor
            plus, minus = _costs_around(theta, index, epsilon, partial(cost_from, start))
            rows.append((name, theta.shape, index, grads[name].reshape(-1)[index], plus, minus))
    # kinks are judged against the noise of all entries together, so all are needed first
    joined = [np.concatenate([r[k] for r in rows]) if rows else np.empty(0) for k in (3, 4, 5)]
    kinked = np.split(crossed_kinks(*joined[1:], j, joined[0], epsilon),
                      np.cumsum([len(r[2]) for r in rows])[:-1])
    tensors = [TensorCheck(name, tuple(shape), index, backprop, (plus - minus) / (2 * epsilon),
                           int(np.count_nonzero(k)))
               for (name, shape, index, backprop, plus, minus), k in zip(rows, kinked)]
    return GradcheckResult(tensors, float(epsilon), int(X.shape[0]), dropout_off)


def _require_float64(model) -> None:
    wrong = sorted({str(p.dtype) for _, layer, key in model.trainable()
                    for p in [layer.params[key]] if p.dtype != np.float64})
    if wrong:
        # in float32, round-off in J (~1e-7 |J|) swamps a difference step of 1e-7
        raise BadInput(f"gradient checking needs a float64 model, this one is {', '.join(wrong)} "
                       "(build it with dtype='float64')")


def _float64(a) -> np.ndarray:
    a = np.asarray(a)
    return a.astype(np.float64) if a.dtype.kind == "f" and a.dtype != np.float64 else a


def _sample(size: int, k: int | None, rng: np.random.Generator) -> np.ndarray:
    if k is None or size <= k:
        return np.arange(size)
    return np.sort(rng.choice(size, k, replace=False))


@contextlib.contextmanager
def _held(model):
    """Dropout off and the model's state saved; both put back afterwards.

    The state covers the perturbed parameters and the batch-norm running statistics that
    every training-mode cost evaluation moves.
    """
    saved = {name: value.copy() for name, value in model.state_dict().items()}
    dropouts = [(prefix.rstrip("."), layer, layer.keep_prob) for prefix, layer in model.named_layers()
                if getattr(layer, "keep_prob", 1) < 1]
    for _, layer, _ in dropouts:
        layer.keep_prob = 1.0
    try:
        yield [name for name, _, _ in dropouts]
    finally:
        for _, layer, keep_prob in dropouts:
            layer.keep_prob = keep_prob
        model.load_state_dict(saved)


def _resumable_cost(model, X, Y):
    """`model.cost(X, Y, training=True)` resumed at top-level layer i.

    Moving a parameter of layer i leaves the outputs of the layers before it as they are, so
    those are computed once here: a check of a network's last layers costs a fraction of
    whole forward passes.
    """
    inputs, a = [], X
    for layer in model.layers:
        inputs.append(np.array(a))  # our own copy: a layer may reuse its output buffer
        a = layer.forward(a, True)
    m = X.shape[0]

    def cost(i: int) -> float:
        a = inputs[i].copy()  # a layer may work in place on its input
        for layer in model.layers[i:]:
            a = layer.forward(a, True)
        return model.loss.forward(a, Y) + model.l2_cost(m)
    return cost


def _costs_around(theta, flat_index, epsilon, cost) -> tuple[np.ndarray, np.ndarray]:
    """J(θ + ε e_i) and J(θ − ε e_i) for each flat index i of the tensor `theta`."""
    plus, minus = np.empty(len(flat_index)), np.empty(len(flat_index))
    for n, i in enumerate(flat_index):
        at = np.unravel_index(i, theta.shape)
        original = theta[at]
        theta[at] = original + epsilon
        plus[n] = cost()
        theta[at] = original - epsilon
        minus[n] = cost()
        theta[at] = original
    return plus, minus


def crossed_kinks(plus, minus, j, backprop, epsilon) -> np.ndarray:
    """Which entries' ±ε steps crossed a kink (a ReLU input at 0, a max-pool's argmax moving).

    On a smooth cost the one-sided differences (J(θ+ε) − J) / ε and (J − J(θ−ε)) / ε sit
    around dθ, ε J''/2 either side, plus round-off noise. Across a kink the slope jumps: the
    side that stays on θ's piece still agrees with backprop, the other is off by the jump
    (and the two-sided difference by half of it). The rule: the one-sided differences are
    further apart than 20 times the typical (median) gap of the entries that move J at all,
    than round-off in J alone explains, and than 1e-6 of their size; and backprop lies within
    a quarter of that gap of one of them.
    """
    forward = (plus - j) / epsilon
    backward = (j - minus) / epsilon
    gap = np.abs(forward - backward)
    live = gap[(plus != j) | (minus != j)]  # a dead unit's entries have no noise to measure
    noise = max(ROUNDOFF * max(abs(j), 1.0) / epsilon, float(np.median(live)) if live.size else 0.0)
    floor = 20 * noise + 1e-6 * (np.abs(forward) + np.abs(backward))
    one_sided = np.minimum(np.abs(forward - backprop), np.abs(backward - backprop)) < gap / 4
    return (gap > floor) & one_sided


# -- the command ----------------------------------------------------------------------------
def gradcheck_cli(recipe_path, overrides, epsilon=1e-7, examples=8, max_per_tensor=200,
                  seed=None, params=None, as_json=False) -> int:
    from rich.console import Console

    from .api import as_recipe, prepare, warn
    from .rng import stream

    recipe = as_recipe(recipe_path, overrides)
    if str(recipe.dtype) != "float64":
        warn(f"recipe dtype {recipe.dtype}: checking in float64")
    model, dataset = prepare(recipe, dtype="float64")
    if params is not None:
        load_params(model, params)
    train = dataset.splits["train"]
    result = check(model, train.x[:examples], train.y[:examples], epsilon, max_per_tensor,
                   stream(recipe.seed if seed is None else seed, "gradcheck"))
    if result.dropout_off:
        warn(f"dropout turned off for the check (layers {', '.join(result.dropout_off)})")
    if result.kinks:
        warn(f"{result.kinks} checked entries crossed a ReLU or max-pool kink within epsilon; "
             "their numerical derivatives are unreliable (try a smaller --epsilon or --params "
             "after some training)")
    print_report(result, Console(stderr=as_json), getattr(recipe, "name", None))
    if as_json:
        print(json.dumps(result.to_json()))
    return 0 if result.passed else 1


def load_params(model, path) -> None:
    path = Path(path)
    try:
        with np.load(path) as f:
            state = {k: f[k] for k in f.files}
    except (OSError, ValueError) as err:
        raise BadInput(f"cannot read the parameters: {err}", file=path)
    try:
        model.load_state_dict(state)
    except ValueError as err:
        raise BadInput(str(err), file=path)


def print_report(result: GradcheckResult, console, name=None) -> None:
    from rich.table import Table

    title = f"gradient check{f' of {name}' if name else ''}: {result.examples} examples, " \
            f"epsilon {result.epsilon:g}"
    table = Table(title=title)
    for column in ("tensor", "size", "checked", "difference", "verdict"):
        table.add_column(column, justify="left" if column in ("tensor", "verdict") else "right")
    if result.kinks:
        table.add_column("kinks", justify="right")
    for t in result.tensors:
        row = [t.name, str(t.size), str(t.checked), f"{t.difference:.2e}", verdict(t.difference)]
        table.add_row(*row, *([str(t.kinks)] if result.kinks else []))
    console.print(table)
    for t in result.tensors:
        if not t.difference < PASS:
            console.print(f"{t.name}: worst entries (index: backprop vs numerical)")
            for index, b, n in t.worst:
                console.print(f"  {list(index)}: {b:.10g} vs {n:.10g}")
    style = "green" if result.passed else "red"
    console.print(f"overall difference [{style}]{result.overall:.2e}[/{style}]: "
                  f"{verdict(result.overall)} ({'passed' if result.passed else 'failed'}, "
                  f"threshold {PASS:g})")
