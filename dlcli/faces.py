"""Face verification, recognition and one-shot learning with a trained embedding (course 4.4.1).

Jobs here compute and return dataclasses with `to_json()`; render_faces.py draws them.

- `identity_order`: one epoch's order of training examples in mini-batches of P identities x K
  examples each (the triplet and pair losses mine inside a mini-batch, so it must hold
  positives).
- `verification`: over all pairs of a split (or of a seeded sample of `MAX_PAIR_EXAMPLES` of its
  examples where larger), the balanced verification error at a threshold tau: "same" means
  distance < tau (the course's `dist < 0.7`); the error is the mean of the false-reject rate
  over same-identity pairs and the false-accept rate over different-identity pairs, which is
  the error over a set holding as many different pairs as same ones, without drawing them.
  `best_threshold` is the tau that minimises it (the midpoint of the gap it falls in).
- `recognize_encodings`: 1:K against a gallery, "not recognized" (-1) farther than tau.
- `one_shot`: N-way one-shot episodes on identities the model never trained on: one support
  image per identity, a query of one of them, correct when the nearest support is its identity.
- `evaluate`: all of it for a trained run (tau from dev, else from train, and says which).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

MAX_PAIR_EXAMPLES = 2000   # 2M pairs: a second of numpy; larger splits are sampled (seeded)
HISTOGRAM_BINS = 24
NOT_RECOGNIZED = -1


# -- mini-batches of identities -------------------------------------------------------------
def identity_order(y, identities_per_batch: int, examples_per_identity: int, rng):
    """(order, batch size): each identity's examples shuffled and cut into chunks of K (the last
    one topped up with other examples of the identity from its earlier chunks, so every chunk
    has K distinct examples where the identity has K), the chunks shuffled, P chunks a
    mini-batch. Every example appears once per epoch at least."""
    y = np.asarray(y).reshape(-1)
    K = int(examples_per_identity)
    chunks = []
    for identity in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == identity))
        for s in range(0, len(rows), K):
            chunk = rows[s:s + K]
            if len(chunk) < K:  # topped up with the identity's other examples, repeats if too few
                others = rows[:s]
                need = K - len(chunk)
                pool, repeat = (others, False) if len(others) >= need else (rows, True)
                chunk = np.concatenate([chunk, rng.choice(pool, need, replace=repeat)])
            chunks.append(chunk)
    order = [chunks[i] for i in rng.permutation(len(chunks))]
    return np.concatenate(order), int(identities_per_batch) * K


# -- verification ----------------------------------------------------------------------------
@dataclass
class Verification:
    error: float | None            # balanced: (false_reject + false_accept) / 2, at tau
    tau: float | None               # the threshold used
    false_reject: float | None      # same-identity pairs at distance >= tau
    false_accept: float | None      # different-identity pairs at distance < tau
    same_pairs: int
    different_pairs: int
    examples: int                   # the examples whose pairs were used
    same: dict = field(default_factory=dict)        # distance statistics
    different: dict = field(default_factory=dict)
    histogram: dict = field(default_factory=dict)   # {"edges", "same", "different"}

    def to_json(self) -> dict:
        return asdict(self)


def _stats(d) -> dict:
    if not len(d):
        return {}
    q = np.quantile(d, [0.05, 0.5, 0.95])
    return {"mean": float(np.mean(d)), "std": float(np.std(d)), "min": float(np.min(d)),
            "p05": float(q[0]), "median": float(q[1]), "p95": float(q[2]), "max": float(np.max(d))}


def split_pairs(loss, E, y, max_examples: int = MAX_PAIR_EXAMPLES):
    """(same-pair distances, different-pair distances, examples used) over pairs i < j."""
    n = E.shape[0]
    if n > max_examples:
        rows = np.sort(np.random.default_rng(0).choice(n, max_examples, replace=False))
        E, y, n = E[rows], y[rows], max_examples
    D = loss.pair_distances(E, E)
    i, j = np.triu_indices(n, k=1)
    same = y[i] == y[j]
    d = D[i, j]
    return d[same], d[~same], n


def balanced_error(d_same, d_diff, tau):
    frr = float(np.mean(d_same >= tau)) if len(d_same) else None
    far = float(np.mean(d_diff < tau)) if len(d_diff) else None
    rates = [r for r in (frr, far) if r is not None]
    return (sum(rates) / len(rates) if rates else None), frr, far


def best_threshold(d_same, d_diff) -> float | None:
    """The tau minimising the balanced error. The error only falls when tau passes a
    same-pair distance, so the candidates are "just above each same-pair distance" (and
    "accept nothing"): a sort of the different pairs and a search for each same value, no
    argsort of all pairs (2M pairs: ~0.3 s instead of ~1 s)."""
    if not len(d_same) or not len(d_diff):
        return None
    s = np.unique(d_same)
    f = np.sort(d_diff)
    accepted_same = np.searchsorted(np.sort(d_same), s, side="right")
    accepted_diff = np.searchsorted(f, s, side="right")
    errors = 0.5 * (1 - accepted_same / len(d_same)) + 0.5 * accepted_diff / len(d_diff)
    k = int(np.argmin(errors))
    if errors[k] >= 0.5:  # accepting nothing is as good: tau at the smallest distance
        return float(min(s[0], f[0]))
    above = [s[k + 1]] if k + 1 < len(s) else []
    if accepted_diff[k] < len(f):
        above.append(f[accepted_diff[k]])
    hi = min(above) if above else s[k] + 1e-6
    return float((s[k] + hi) / 2)


def verification(loss, E, y, tau=None, max_examples: int = MAX_PAIR_EXAMPLES,
                 details: bool = True) -> Verification:
    """The split's verification at `tau` (None: at its own best threshold); `details`: the
    distance statistics and histogram too (not needed for the per-epoch errors)."""
    y = np.asarray(y).reshape(-1)
    d_same, d_diff, n = split_pairs(loss, E, y, max_examples)
    if tau is None:
        tau = best_threshold(d_same, d_diff)
    error, frr, far = balanced_error(d_same, d_diff, tau) if tau is not None else (None, None, None)
    if not details:
        return Verification(error, tau, frr, far, len(d_same), len(d_diff), n)
    both = np.concatenate([d_same, d_diff])
    histogram = {}
    if len(both):
        lo, hi = float(min(both.min(), tau if tau is not None else np.inf)), float(both.max())
        edges = np.linspace(lo, hi if hi > lo else lo + 1, HISTOGRAM_BINS + 1)
        histogram = {"edges": edges.tolist(),
                     "same": np.histogram(d_same, edges)[0].tolist(),
                     "different": np.histogram(d_diff, edges)[0].tolist()}
    return Verification(error, tau, frr, far, len(d_same), len(d_diff), n,
                        _stats(d_same), _stats(d_diff), histogram)


# -- recognition -----------------------------------------------------------------------------
def recognize_encodings(loss, Q, G, gallery_ids, tau, block: int = 512):
    """(identity or -1, distance to the nearest gallery encoding) for each query row."""
    ids = np.empty(Q.shape[0], dtype=np.int64)
    dist = np.empty(Q.shape[0], dtype=np.float64)
    for s in range(0, Q.shape[0], block):
        D = loss.pair_distances(Q[s:s + block], G)
        k = D.argmin(axis=1)
        dist[s:s + block] = D[np.arange(len(k)), k]
        ids[s:s + block] = np.asarray(gallery_ids)[k]
    ids[~(dist < tau)] = NOT_RECOGNIZED
    return ids, dist


def recognition_accuracy(loss, E, y, G, gallery_ids, tau) -> float:
    """1:K: the right identity when it is in the gallery, "not recognized" when it is not."""
    y = np.asarray(y).reshape(-1)
    truth = np.where(np.isin(y, gallery_ids), y, NOT_RECOGNIZED)
    predicted, _ = recognize_encodings(loss, E, G, gallery_ids, tau)
    return float(np.mean(predicted == truth))


# -- one-shot --------------------------------------------------------------------------------
@dataclass
class OneShot:
    ways: int
    episodes: int
    identities: int     # unseen identities with two examples or more
    accuracy: float

    def to_json(self) -> dict:
        return asdict(self)


def one_shot(loss, E, y, ways: int, episodes: int, rng) -> OneShot | None:
    """N-way one-shot accuracy; None when fewer than `ways` identities have two examples."""
    y = np.asarray(y).reshape(-1)
    ids, counts = np.unique(y, return_counts=True)
    ids = ids[counts >= 2]
    if len(ids) < ways:
        return None
    rows_of = {i: np.flatnonzero(y == i) for i in ids}
    correct = 0
    for _ in range(episodes):
        chosen = rng.choice(ids, ways, replace=False)
        target = int(rng.integers(ways))
        support = np.empty(ways, dtype=np.int64)
        for w, identity in enumerate(chosen):
            support[w] = rng.choice(rows_of[identity])
        query = rng.choice(rows_of[chosen[target]][rows_of[chosen[target]] != support[target]])
        d = loss.pair_distances(E[query][None, :], E[support])[0]
        correct += int(np.argmin(d) == target)
    return OneShot(ways, episodes, len(ids), correct / episodes)


# -- a trained run ---------------------------------------------------------------------------
@dataclass
class SplitEvaluation:
    verification: Verification
    recognition_accuracy: float | None
    one_shot: OneShot | None

    def to_json(self) -> dict:
        return {"verification": self.verification.to_json(),
                "recognition_accuracy": self.recognition_accuracy,
                "one_shot": self.one_shot.to_json() if self.one_shot else None}


@dataclass
class EmbeddingEvaluation:
    tau: float | None
    tau_split: str                 # the split tau was chosen on: dev, or train without a dev set
    distance: str                  # euclidean | negative_logit
    splits: dict                   # split -> SplitEvaluation

    def to_json(self) -> dict:
        return {"tau": self.tau, "tau_split": self.tau_split, "distance": self.distance,
                "splits": {k: v.to_json() for k, v in self.splits.items()}}

    def summary_fields(self) -> dict:
        """What summary.json adds for an embedding run."""
        return {"tau": self.tau,
                "recognition_accuracy": {k: v.recognition_accuracy for k, v in self.splits.items()},
                "one_shot": {k: v.one_shot.to_json() for k, v in self.splits.items() if v.one_shot},
                "embedding": self.to_json()}


def one_shot_rng(seed: int):
    # a stream of its own (course 4.4 = 15th issue), away from rng.py's training streams
    return np.random.default_rng(np.random.SeedSequence([int(seed), 15, 1]))


def evaluate(model, splits: dict, seed: int = 0, ways: int = 20, episodes: int = 1000,
             encode=None) -> EmbeddingEvaluation:
    """Choose tau on dev (train without dev), then each split's verification at tau,
    recognition 1:K against the training split and N-way one-shot on never-trained identities.
    Leaves tau and the gallery on the loss, so that its error() and predict() use them."""
    loss = model.loss
    encode = encode or model.predict_proba
    E = {name: encode(split.x) for name, split in splits.items()}
    Y = {name: np.asarray(split.y).reshape(-1) for name, split in splits.items()}
    tau_split = "dev" if "dev" in splits else "train"
    tau = verification(loss, E[tau_split], Y[tau_split]).tau
    loss.tau, loss.gallery = tau, (E["train"], Y["train"])
    out = {}
    for name in splits:
        unseen = ~np.isin(Y[name], Y["train"])
        shot = None
        if name != "train" and unseen.any():
            shot = one_shot(loss, E[name][unseen], Y[name][unseen], ways, episodes, one_shot_rng(seed))
        recognition = None
        if tau is not None and name != "train":
            recognition = recognition_accuracy(loss, E[name], Y[name], E["train"], Y["train"], tau)
        out[name] = SplitEvaluation(verification(loss, E[name], Y[name], tau), recognition, shot)
    distance = "euclidean" if loss.name == "triplet" else "negative_logit"
    return EmbeddingEvaluation(tau, tau_split, distance, out)
