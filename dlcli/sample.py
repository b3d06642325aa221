"""`dlcli sample RUN`: sequences drawn from a trained language model, the course's `sample`.

Start from the zero input (the course's x<1> = 0: token id -2), run the model, draw the next
token from softmax(z<t> / temperature), feed it back, stop at the end-of-line token or after
`max_length` tokens. All n sequences are drawn side by side; each step re-runs the model over
the prefix (a prefix of at most max_length steps: cheaper than keeping per-layer state, and
exactly the training-time forward pass). One seeded generator: the same seed gives the same
sequences.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from .errors import BadInput


@dataclass
class SampleResult:
    run: str
    seed: int
    temperature: float
    samples: list

    def to_json(self) -> dict:
        return {"run": self.run, "seed": self.seed, "temperature": self.temperature,
                "samples": self.samples}


def load_language_model(run_dir, length: int):
    """(model, vocab, recipe) of a text run, built from its recipe, vocab.json and params.npz
    without reading its data."""
    from .api import load_run
    from .nn.model import build_model
    from .text import Vocabulary, resolve_auto
    run = load_run(run_dir)
    recipe = run.recipe
    vocab = Vocabulary.load(run.path / "vocab.json")
    cfg = recipe.to_dict()
    resolve_auto(cfg["model"], SimpleNamespace(vocab=vocab, n_classes=len(vocab), splits={}))
    model = build_model(cfg["model"], cfg["loss"], 0.0, (length,), recipe.dtype)
    params = run.path / "params.npz"
    if not params.exists():
        raise BadInput("the run has no params.npz", file=run.path)
    with np.load(params) as f:
        model.load_state_dict({k: f[k] for k in f.files})
    return model, vocab, recipe


def sample(run_dir, n: int = 10, seed: int | None = None, temperature: float = 1.0,
           max_length: int = 50) -> SampleResult:
    from .text import START
    if not temperature > 0:
        raise BadInput(f"--temperature must be positive, got {temperature}")
    model, vocab, recipe = load_language_model(run_dir, max_length)
    if vocab.task != "language_model" or vocab.end_id is None:
        raise BadInput("dlcli sample needs a language-model run (data.train {text: FILE, "
                       "task: language_model})", file=run_dir)
    seed = recipe.seed if seed is None else seed
    rng = np.random.default_rng(seed)
    x = np.full((n, 1), START, dtype=np.int64)
    drawn = [[] for _ in range(n)]
    done = np.zeros(n, dtype=bool)
    for _ in range(max_length):
        z = model.forward(x, False)[:, -1].astype(np.float64) / temperature
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        # inverse-CDF draws: one uniform per sequence and step, from the one generator
        ids = np.minimum((p.cumsum(axis=1) < rng.random((n, 1))).sum(axis=1), p.shape[1] - 1)
        for i in np.nonzero(~done)[0]:
            if ids[i] == vocab.end_id:
                done[i] = True
            else:
                drawn[i].append(int(ids[i]))
        if done.all():
            break
        x = np.concatenate([x, ids[:, None]], axis=1)
    return SampleResult(str(Path(run_dir)), int(seed), float(temperature),
                        [vocab.decode(d) for d in drawn])


def sample_cli(run, n=10, seed=None, temperature=1.0, max_length=50, as_json=False) -> int:
    result = sample(run, n, seed, temperature, max_length)
    if as_json:
        print(json.dumps(result.to_json()))
    else:
        for text in result.samples:
            print(text)
    return 0
