"""Gradient checking (the notes' "Grad check"): backprop's dθ against two-sided differences.

For each checked entry, dθ_approx[i] = (J(θ + ε e_i) − J(θ − ε e_i)) / 2ε, where J is the
model's training cost on one fixed batch: batch norm on batch statistics, L2 included (the
notes: "remember regularization"), dropout off (a fresh random mask makes J a different
function at every call). The score is the notes' relative difference
||dθ_approx − dθ||₂ / (||dθ_approx||₂ + ||dθ||₂), overall and per tensor, over the checked
entries whose ±ε steps crossed no ReLU or max-pool kink (`crossed_kinks`: there the two-sided
difference is no derivative; such entries are counted instead).
"""

from __future__ import annotations

import contextlib
import json
import time
import zipfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from .errors import BadInput

PASS = 1e-5  # SPEC: exit 0 below this overall difference
VERDICTS = ((1e-7, "great"), (1e-5, "probably fine, check it"), (1e-3, "suspicious"))
BUG = "almost certainly a bug"
WORST = 5  # indices listed for a failing tensor
SECONDS = 20.0  # what the command aims to take, loading and building included
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
    """One parameter tensor: the entries checked (flat indices) and both derivatives there.

    Entries whose ±ε steps crossed a kink are counted but not compared: across a kink the
    two-sided difference is not the derivative on either side.
    """

    name: str
    shape: tuple
    index: np.ndarray
    backprop: np.ndarray
    numerical: np.ndarray
    kinked: np.ndarray
    noise: float  # the least round-off in a two-sided difference, at this J and epsilon

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def checked(self) -> int:
        return len(self.index)

    @property
    def kinks(self) -> int:
        return int(np.count_nonzero(self.kinked))

    @property
    def difference(self) -> float:
        return _compared_difference([self])

    @property
    def round_off(self) -> bool:
        """Every compared entry agrees to within round-off: the relative difference then
        measures noise over a tiny gradient (a bias before batch norm, which subtracts it
        again, has none at all) and is no evidence of a bug."""
        compared = ~self.kinked
        return bool(compared.any()) and \
            np.abs(self.backprop[compared] - self.numerical[compared]).max() <= self.noise

    @property
    def verdict(self) -> str:
        if self.checked and self.kinks == self.checked:
            return "every entry at a kink"
        if not self.difference <= VERDICTS[0][0] and self.round_off:
            return "within round-off"
        return verdict(self.difference)

    @property
    def worst(self) -> list[tuple[tuple, float, float]]:
        """(index, backprop, numerical) where the two disagree most, worst first."""
        miss = np.where(self.kinked, 0.0, np.abs(self.backprop - self.numerical))
        order = [k for k in np.argsort(-miss, kind="stable")[:WORST] if miss[k] > 0]
        return [(tuple(int(i) for i in np.unravel_index(self.index[k], self.shape)),
                 float(self.backprop[k]), float(self.numerical[k])) for k in order]

    def to_json(self) -> dict:
        return {"name": self.name, "difference": _finite(self.difference),
                "checked": self.checked, "size": self.size, "verdict": self.verdict,
                "kinks": self.kinks,
                "worst": [{"index": list(i), "backprop": b, "numerical": n}
                          for i, b, n in self.worst]}


def _compared_difference(tensors) -> float:
    """The relative difference over the entries compared; NaN where all were at kinks."""
    keep = [~t.kinked for t in tensors]
    if not any(k.any() for k in keep):
        return 0.0 if all(t.checked == 0 for t in tensors) else float("nan")
    return relative_difference(np.concatenate([t.numerical[k] for t, k in zip(tensors, keep)]),
                               np.concatenate([t.backprop[k] for t, k in zip(tensors, keep)]))


@dataclass
class GradcheckResult:
    tensors: list[TensorCheck]
    epsilon: float
    examples: int
    dropout_off: list[str]  # layers whose dropout was turned off for the check

    @property
    def overall(self) -> float:
        """The relative difference over every compared entry of the tensors whose rows are
        not "within round-off": as kinks are, round-off is left out, so the overall verdict
        agrees with the rows (a trained model's tiny gradients are all round-off: 0)."""
        above = [t for t in self.tensors if not t.verdict == "within round-off"]
        if not above and self.tensors:
            return 0.0
        return _compared_difference(above)

    @property
    def kinks(self) -> int:
        return sum(t.kinks for t in self.tensors)

    @property
    def verdict(self) -> str:
        if self.tensors and all(t.verdict == "within round-off" for t in self.tensors):
            return "within round-off"
        return verdict(self.overall)

    @property
    def passed(self) -> bool:
        """Below the threshold overall and in every row (a row within round-off passes)."""
        rows = [t.difference < PASS for t in self.tensors
                if t.verdict not in ("within round-off", "every entry at a kink")]
        return self.overall < PASS and all(rows)

    def to_json(self) -> dict:
        return {"overall": _finite(self.overall), "tensors": [t.to_json() for t in self.tensors],
                "passed": self.passed, "verdict": self.verdict, "kinks": self.kinks,
                "epsilon": self.epsilon, "examples": self.examples,
                "dropout_off": self.dropout_off}


def _finite(x: float):
    return x if np.isfinite(x) else None  # JSON has no NaN


# -- the check ------------------------------------------------------------------------------
def check(model, X, Y, epsilon: float = 1e-7, max_per_tensor: int | None = None,
          rng: np.random.Generator | None = None, seconds: float | None = None) -> GradcheckResult:
    """Check every trainable tensor of a float64 `model` on the batch (X, Y).

    A tensor larger than `max_per_tensor` is checked at that many entries drawn by `rng`.
    Entries go one from every tensor per round; with `seconds`, no round starts that would
    end past it, so a slow model checks fewer entries of every tensor (the first ones of the
    same draw) rather than skipping tensors. The model comes back as it went in:
    parameters, running statistics and dropout.
    """
    if epsilon <= 0:
        raise BadInput(f"epsilon must be positive, got {epsilon}")
    _require_float64(model)
    X, Y = _float64(X), _float64(Y)
    rng = rng if rng is not None else np.random.default_rng(0)

    with _held(model) as dropout_off:
        j = model.cost(X, Y, training=True)
        model.backward()
        cost_from = _resumable_cost(model, X, Y)
        names, targets, grads = [], [], []
        for name, layer, key in model.trainable():
            theta = layer.params[key]
            names.append(name)
            # a copy: layers overwrite their gradient arrays in place on the next backward
            grads.append(layer.grads[key].reshape(-1).copy())
            first = name.split(".", 1)[0]  # "loss.w" (siamese_binary): only the loss re-runs
            start = int(first) if first.isdigit() else len(model.layers)
            targets.append((theta, partial(cost_from, start),
                            _sample(theta.size, max_per_tensor, rng)))
        plus, minus = _round_robin(targets, epsilon, seconds)
    index = [order[:len(p)] for (_, _, order), p in zip(targets, plus)]
    backprop = [g[i] for g, i in zip(grads, index)]
    # kinks are judged against the noise of all entries together
    kinked = np.split(crossed_kinks(_joined(plus), _joined(minus), j, _joined(backprop), epsilon),
                      np.cumsum([len(i) for i in index])[:-1])
    noise = _roundoff(j, epsilon)
    tensors = [TensorCheck(name, tuple(theta.shape), i, b, (p - m) / (2 * epsilon), k, noise)
               for name, (theta, _, _), i, b, p, m, k
               in zip(names, targets, index, backprop, plus, minus, kinked)]
    return GradcheckResult(tensors, float(epsilon), int(X.shape[0]), dropout_off)


def _roundoff(j: float, epsilon: float) -> float:
    """The least round-off in a difference of two costs near J, divided by epsilon."""
    return ROUNDOFF * max(abs(j), 1.0) / epsilon


def _joined(arrays) -> np.ndarray:
    return np.concatenate(arrays) if arrays else np.empty(0)


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
    """Flat indices in a seeded random order, at most k: any prefix is a fair sample too."""
    return rng.permutation(size)[:k]


@contextlib.contextmanager
def _held(model):
    """Dropout off and the model's state saved; both put back afterwards.

    The state covers the perturbed parameters and the batch-norm running statistics that
    every training-mode cost evaluation moves.
    """
    saved = {name: value.copy() for name, value in model.state_dict().items()}
    dropouts = [(prefix.rstrip("."), layer, layer.keep_prob)
                for prefix, layer in model.named_layers() if getattr(layer, "keep_prob", 1) < 1]
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
    inputs.append(np.array(a))  # the network's output, for a loss's own parameters
    m = X.shape[0]

    def cost(i: int) -> float:
        a = inputs[i].copy()  # a layer may work in place on its input
        for layer in model.layers[i:]:
            a = layer.forward(a, True)
        return model.loss.forward(a, Y) + model.l2_cost(m)
    return cost


def _round_robin(targets, epsilon, seconds):
    """J(θ + ε e_i) and J(θ − ε e_i) for each (tensor, cost from its layer, flat indices).

    One entry of every tensor per round, until the indices run out or, with `seconds`, until
    another round as long as the last would end past it.
    """
    plus, minus = [[] for _ in targets], [[] for _ in targets]
    started = time.perf_counter()
    for r in range(max((len(order) for _, _, order in targets), default=0)):
        round_started = time.perf_counter()
        for (theta, cost, order), p, m in zip(targets, plus, minus):
            if r < len(order):
                at = np.unravel_index(order[r], theta.shape)
                original = theta[at]
                theta[at] = original + epsilon
                p.append(cost())
                theta[at] = original - epsilon
                m.append(cost())
                theta[at] = original
        now = time.perf_counter()
        if seconds is not None and 2 * now - round_started - started > seconds:
            break
    return ([np.array(p, dtype=np.float64) for p in plus],
            [np.array(m, dtype=np.float64) for m in minus])


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
    noise = max(_roundoff(j, epsilon), float(np.median(live)) if live.size else 0.0)
    floor = 20 * noise + 1e-6 * (np.abs(forward) + np.abs(backward))
    one_sided = np.minimum(np.abs(forward - backprop), np.abs(backward - backprop)) < gap / 4
    return (gap > floor) & one_sided


# -- the command ----------------------------------------------------------------------------
def gradcheck_cli(recipe_path, overrides, epsilon=1e-7, examples=8, max_per_tensor=200,
                  seed=None, params=None, as_json=False, seconds=SECONDS) -> int:
    from rich.console import Console

    from .api import as_recipe, prepare, warn
    from .rng import stream

    started = time.perf_counter()
    recipe = as_recipe(recipe_path, overrides)
    if str(recipe.dtype) != "float64":
        warn(f"recipe dtype {recipe.dtype}: checking in float64")
    model, dataset = prepare(recipe, dtype="float64")
    if params is not None:
        load_params(model, params)
    train = dataset.splits["train"]
    result = check(model, train.x[:examples], train.y[:examples], epsilon, max_per_tensor,
                   stream(recipe.seed if seed is None else seed, "gradcheck"),
                   max(seconds - (time.perf_counter() - started), 0.0))
    if result.dropout_off:
        warn(f"dropout turned off for the check (layers {', '.join(result.dropout_off)})")
    if result.kinks:
        warn(f"{result.kinks} checked entries crossed a ReLU or max-pool kink within epsilon and "
             "are left out of the differences (there the two-sided difference is no "
             "derivative); --params after some training leaves fewer units sitting at 0")
    cut = [t for t in result.tensors if t.checked < min(t.size, max_per_tensor or t.size)]
    if cut:
        warn(f"checked {min(t.checked for t in cut)} entries per tensor to finish in about "
             f"{seconds:g} s, fewer than --max-per-tensor {max_per_tensor}")
    print_report(result, Console(stderr=as_json), recipe.name)
    if as_json:
        print(json.dumps(result.to_json()))
    return 0 if result.passed else 1


def load_params(model, path) -> None:
    path = Path(path)
    if not path.is_file():
        raise BadInput("no such parameters file", file=path)
    state = _read_npz(path)
    if state is None:
        raise BadInput("not a params.npz (an .npz of named arrays)", file=path)
    try:
        model.load_state_dict(state)
    except ValueError as err:
        raise BadInput(str(err), file=path)


def _read_npz(path: Path) -> dict | None:
    """The named arrays of an .npz file, or None where it is not one."""
    try:
        archive = np.load(path)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            return None
        with archive:
            return {k: archive[k] for k in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None


def print_report(result: GradcheckResult, console, name=None) -> None:
    from .report import styled_table

    console.print(f"gradient check{f' of {name}' if name else ''}: {result.examples} examples, "
                  f"epsilon {result.epsilon:g}")
    table = styled_table()
    for column in ("tensor", "size", "checked", "difference", "verdict"):
        table.add_column(column, justify="left" if column in ("tensor", "verdict") else "right")
    if result.kinks:
        table.add_column("kinks", justify="right")
    for t in result.tensors:
        shown = f"{t.difference:.2e}" if np.isfinite(t.difference) else "-"
        row = [t.name, str(t.size), str(t.checked), shown, t.verdict]
        table.add_row(*row, *([str(t.kinks)] if result.kinks else []))
    console.print(table)
    for t in result.tensors:
        if t.worst and not t.round_off and not t.difference < PASS:
            console.print(f"{t.name}: worst entries (index: backprop vs numerical)")
            for index, b, n in t.worst:
                console.print(f"  {list(index)}: {b:.10g} vs {n:.10g}")
    style = "green" if result.passed else "red"
    console.print(f"overall difference [{style}]{result.overall:.2e}[/{style}]: "
                  f"{result.verdict} ({'passed' if result.passed else 'failed'}, "
                  f"threshold {PASS:g})")
