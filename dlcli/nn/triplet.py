"""Losses on embeddings (course 4.4.1): the triplet loss with mining, and the siamese pair loss.

    loss: {name: triplet, margin: 0.2, mining: semi_hard}   # or `loss: triplet` (these defaults)
    loss: siamese_binary

Both take a network whose output f(x) (m, K) is the encoding (an `l2_normalize` layer last, for
the triplet loss) and integer identity labels y (m,). They learn from the mini-batch alone, so
training builds mini-batches of several examples per identity (faces.identity_order, called
by train.fit).

Triplet: from every ordered (anchor, positive) pair of one identity, a negative of another
identity chosen on the squared distances of the current encodings:
`hard` the closest negative; `semi_hard` the closest negative farther than the positive (where
there is none, the farthest negative, as TensorFlow Addons' triplet_semihard_loss and FaceNet's
code do: every anchor-positive pair keeps a triplet); `random` one drawn uniformly.
`L = max(||f(A) - f(P)||^2 - ||f(A) - f(N)||^2 + margin, 0)`, cost = mean over the triplets
(zero-loss triplets count, as the notes' J sums over all of them). The choice is not
differentiated through (no gradient flows into an argmin), exactly as every implementation.

Siamese binary: `yhat = sigmoid(sum_k w_k |f(x_i)_k - f(x_j)_k| + b)` on every pair i < j of the
mini-batch, binary cross-entropy against "same identity"; the same pairs and the different
pairs count half each (a mini-batch of P identities x K examples holds far more different
pairs than same ones), i.e. the mean over a balanced set of pairs. Its parameters `w (K,)` and
`b ()` are the model's "loss.w" and "loss.b".

Verification (faces.py) uses `pair_distances(E1, E2)`: the Euclidean distance for the triplet
loss (the course's ||f(x1) - f(x2)|| < tau), and -(sum_k w_k |.| + b), the negative logit, for
the siamese loss, so that "same" is always "distance below tau".
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .losses import Loss, _labels, register

MINING = ("hard", "semi_hard", "random")


def squared_distances(E: np.ndarray) -> np.ndarray:
    """(m, m) squared Euclidean distances between the rows of E, exactly 0 on the diagonal."""
    diff = E[:, None, :] - E[None, :, :]
    return np.einsum("ijk,ijk->ij", diff, diff)


def triplet_cost(A, P, N, margin) -> float:
    """The course's triplet_loss on explicit rows: sum max(||A-P||^2 - ||A-N||^2 + margin, 0)."""
    d_ap = np.sum((np.asarray(A) - P) ** 2, axis=-1)
    d_an = np.sum((np.asarray(A) - N) ** 2, axis=-1)
    return float(np.sum(np.maximum(d_ap - d_an + margin, 0)))


class _Embedding(Loss):
    """What the embedding losses share: the output is the encoding; errors are verification."""

    output_activation = "linear"
    embedding = True         # api.finish / train.fit hooks: identity batches, tau, recognition
    identity_batches = True

    def __init__(self):
        self.tau: float | None = None      # chosen on dev after training (faces.evaluate)
        self.gallery = None                # (encodings, identities) of the training split

    def check(self, output_shape):
        if len(tuple(output_shape)) != 1:
            raise ValueError(f"{self.name} needs one encoding vector per example, the network "
                             f"gives {tuple(output_shape)} (end with flatten/dense and l2_normalize)")

    def build(self, output_shape, ctx) -> None:
        pass

    def predict(self, out) -> np.ndarray:
        """The recognised identity (nearest training example within tau), else -1."""
        from ..faces import recognize_encodings
        if self.gallery is None or self.tau is None:
            return np.full(out.shape[0], -1, dtype=np.int64)
        return recognize_encodings(self, out, *self.gallery, self.tau)[0]

    def error(self, out, y) -> float:
        """Verification error over the split's pairs, at tau (before tau is chosen: at the
        split's own best threshold, which is what the per-epoch errors show)."""
        from ..faces import verification
        result = verification(self, out, _labels(y), self.tau, details=False)
        return result.error if result.error is not None else float("nan")

    def pair_distances(self, E1, E2) -> np.ndarray:
        raise NotImplementedError


class Triplet(NamedTuple):
    anchor: np.ndarray    # indices into the batch, one entry per triplet
    positive: np.ndarray
    negative: np.ndarray


class TripletCache(NamedTuple):
    E: np.ndarray
    triplets: Triplet
    active: np.ndarray    # the triplets whose hinge is open (L > 0)


@register
class TripletLoss(_Embedding):
    name = "triplet"

    def __init__(self, margin: float = 0.2, mining: str = "semi_hard"):
        super().__init__()
        if mining not in MINING:
            raise ValueError(f"mining must be one of {', '.join(MINING)}, got {mining!r}")
        self.margin, self.mining = float(margin), mining
        self.rng = np.random.default_rng(0)  # `random` mining; build() seeds it from the recipe

    def build(self, output_shape, ctx):
        self.rng = np.random.default_rng(int(ctx.rng.integers(2 ** 63)))

    def mine(self, E, y) -> Triplet:
        """The batch's triplets: every ordered anchor-positive pair, its negative by `mining`."""
        D = squared_distances(E)
        same = y[:, None] == y[None, :]
        a, p = np.nonzero(same & ~np.eye(len(y), dtype=bool))
        if a.size == 0:
            return Triplet(a, p, a.copy())
        negatives = ~same[a]                                   # (T, m)
        has_negative = negatives.any(axis=1)
        a, p, negatives = a[has_negative], p[has_negative], negatives[has_negative]
        d_an = np.where(negatives, D[a], np.inf)               # non-negatives never chosen
        if self.mining == "hard":
            n = d_an.argmin(axis=1)
        elif self.mining == "semi_hard":
            farther = negatives & (D[a] > D[a, p][:, None])
            semi = np.where(farther, D[a], np.inf).argmin(axis=1)
            hardest_inside = np.where(negatives, D[a], -np.inf).argmax(axis=1)
            n = np.where(farther.any(axis=1), semi, hardest_inside)
        else:
            # a uniform draw among each row's negatives: rank of a uniform key, masked
            keys = np.where(negatives, self.rng.random(negatives.shape), -1.0)
            n = keys.argmax(axis=1)
        return Triplet(a, p, n)

    def forward(self, z, y):
        y = _labels(y)
        if z.ndim != 2 or y.shape != z.shape[:1]:
            raise ValueError(f"the triplet loss needs encodings (m, K) and identities (m,), "
                             f"got {z.shape} and {y.shape}")
        t = self.mine(z, y)
        d_ap = np.sum((z[t.anchor] - z[t.positive]) ** 2, axis=1)
        d_an = np.sum((z[t.anchor] - z[t.negative]) ** 2, axis=1)
        losses = d_ap - d_an + self.margin
        active = losses > 0
        self.cache = TripletCache(z, t, active)
        return float(np.sum(losses[active]) / len(losses)) if len(losses) else 0.0

    def backward(self):
        E, t, active = self.cache
        self.cache = None
        dz = np.zeros_like(E)
        if not len(active):
            return dz
        a, p, n = t.anchor[active], t.positive[active], t.negative[active]
        scale = 2.0 / len(active)
        # dL/dA = 2 (N - P), dL/dP = -2 (A - P), dL/dN = 2 (A - N); summed where an example recurs
        np.add.at(dz, a, scale * (E[n] - E[p]))
        np.add.at(dz, p, scale * (E[p] - E[a]))
        np.add.at(dz, n, scale * (E[a] - E[n]))
        return dz

    def pair_distances(self, E1, E2):
        sq = (np.sum(E1 * E1, axis=1)[:, None] + np.sum(E2 * E2, axis=1)[None, :]
              - 2.0 * (E1 @ E2.T))
        return np.sqrt(np.maximum(sq, 0.0))


class PairCache(NamedTuple):
    E: np.ndarray
    i: np.ndarray
    j: np.ndarray
    diff: np.ndarray      # f(x_i) - f(x_j), (pairs, K)
    dlogit: np.ndarray    # d cost / d logit per pair


@register
class SiameseBinary(_Embedding):
    name = "siamese_binary"
    regularized = ()

    def __init__(self):
        super().__init__()
        self.params, self.grads, self.buffers = {}, {}, {}
        self.trainable = True

    def build(self, output_shape, ctx):
        K = int(output_shape[-1])
        # distances grow with K; -1/sqrt(K) starts logits near 0 for encodings on the unit sphere
        self.params = {"w": np.full(K, -1.0 / np.sqrt(K), dtype=ctx.dtype),
                       "b": np.array(1.0, dtype=ctx.dtype)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}

    def set_trainable(self, flag):
        self.trainable = flag

    def children(self):
        return []

    def logits(self, E1, E2):
        return np.abs(E1 - E2) @ self.params["w"] + self.params["b"]

    def forward(self, z, y):
        y = _labels(y)
        if z.ndim != 2 or y.shape != z.shape[:1]:
            raise ValueError(f"the siamese loss needs encodings (m, K) and identities (m,), "
                             f"got {z.shape} and {y.shape}")
        i, j = np.triu_indices(len(y), k=1)
        same = (y[i] == y[j])
        diff = z[i] - z[j]
        logit = np.abs(diff) @ self.params["w"] + self.params["b"]
        # each class of pair weighs 1/2 in all, spread over its pairs
        n_same, n_diff = int(same.sum()), int((~same).sum())
        weight = np.where(same, 0.5 / max(n_same, 1), 0.5 / max(n_diff, 1))
        if not n_same or not n_diff:
            weight = weight * 2  # one class only: it is the whole cost
        target = same.astype(z.dtype)
        # binary cross-entropy from the logit: softplus(-z) for y = 1, softplus(z) for y = 0
        cost = np.sum(weight * (np.logaddexp(0, logit) - target * logit))
        prob = 0.5 * (1 + np.tanh(0.5 * logit))  # a sigmoid that never overflows
        self.cache = PairCache(z, i, j, diff, weight * (prob - target))
        return float(cost)

    def backward(self):
        E, i, j, diff, dlogit = self.cache
        self.cache = None
        w = self.params["w"]
        self.grads["w"][...] = np.abs(diff).T @ dlogit
        self.grads["b"][...] = np.sum(dlogit)
        ddiff = dlogit[:, None] * np.sign(diff) * w[None, :]
        dz = np.zeros_like(E)
        np.add.at(dz, i, ddiff)
        np.add.at(dz, j, -ddiff)
        return dz

    def pair_distances(self, E1, E2):
        # -logit, in blocks: the (rows, cols, K) differences are the memory
        out = np.empty((E1.shape[0], E2.shape[0]), dtype=np.result_type(E1, E2))
        step = max(1, (1 << 21) // max(1, E2.shape[0] * E1.shape[1]))
        for s in range(0, E1.shape[0], step):
            out[s:s + step] = -self.logits(E1[s:s + step, None, :], E2[None, :, :])
        return out
