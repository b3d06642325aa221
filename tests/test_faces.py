"""Faces (course 4.4.1): l2_normalize, the triplet and siamese losses, mining, identity batches,
verification / recognition / one-shot evaluation."""

import json

import numpy as np
import pytest
from conftest import numerical_grad

from dlcli import faces
from dlcli.nn import build_layer
from dlcli.nn.base import BuildContext
from dlcli.nn.losses import make_loss
from dlcli.nn.model import build_model
from dlcli.nn.triplet import SiameseBinary, TripletLoss, squared_distances, triplet_cost

RTOL = 1e-9


def randn(*shape, seed=1):
    return np.random.default_rng(seed).standard_normal(shape)


def identities(P, K):
    return np.repeat(np.arange(P), K)


# -- the course's hand cases (COURSE_NUMBERS.md §15) --------------------------------------------
COURSE_CASES = [
    ([[1, 1]], [[1, 1]], [[1, 1]], 5, 5),
    ([[1, 1]], [[1, 1]], [[0, 0]], 3, 1),
    ([[1, 1]], [[0, 0]], [[1, 1]], 0, 2),
    ([[0, 0]], [[0, 0]], [[0, 0]], -2, 0),
    ([[1, 0], [1, 0]], [[1, 0], [1, 0]], [[0, 1], [0, 1]], 3, 2),
    ([[1, 1], [2, 0]], [[0, 3], [1, 1]], [[1, 0], [0, 1]], 1, 5),
]


@pytest.mark.parametrize("A, P, N, alpha, expected", COURSE_CASES)
def test_triplet_cost_reproduces_the_course(A, P, N, alpha, expected):
    assert triplet_cost(np.array(A, float), np.array(P, float), np.array(N, float), alpha) == expected


@pytest.mark.parametrize("A, P, N, alpha, expected", COURSE_CASES)
def test_triplet_loss_on_the_course_rows_is_their_mean(A, P, N, alpha, expected):
    """One triplet per row: identities 2r (anchor, positive) and 2r + 1 (negative), each row in its
    own batch so that mining can only pick that row's negative; the loss is per triplet, and the
    two ordered pairs (A, P), (P, A) of a row count alike when A and P are where the course puts them."""
    total = 0.0
    for a, p, n in zip(A, P, N):
        loss = TripletLoss(margin=alpha, mining="hard")
        E = np.array([a, p, n], float)
        cost = loss.forward(E, np.array([0, 0, 1]))
        t = loss.cache.triplets
        assert sorted(zip(t.anchor.tolist(), t.positive.tolist(), t.negative.tolist())) == [(0, 1, 2), (1, 0, 2)]
        # the (A, P, N) triplet's own term, from the two ordered pairs' mean
        swapped = triplet_cost(np.array([p], float), np.array([a], float), np.array([n], float), alpha)
        total += 2 * cost - swapped
    assert total == pytest.approx(expected, abs=1e-12)


# -- mining on a hand-made batch ----------------------------------------------------------------
#  anchor 0.0 and positive 0.3 (identity 0); negatives at 0.2 (closer than the positive: hard),
#  0.45 (the closest beyond the positive: semi-hard), 0.9 (far)
HAND = np.array([[0.0], [0.3], [0.2], [0.45], [0.9]])
HAND_Y = np.array([0, 0, 1, 2, 3])


def mined(mining, E=HAND, y=HAND_Y, seed=0):
    loss = TripletLoss(margin=0.2, mining=mining)
    loss.rng = np.random.default_rng(seed)
    t = loss.mine(E, y)
    return {(int(a), int(p)): int(n) for a, p, n in zip(*t)}


def test_hard_mining_picks_the_closest_negative():
    assert mined("hard") == {(0, 1): 2, (1, 0): 2}


def test_semi_hard_mining_picks_the_closest_negative_beyond_the_positive():
    # anchor 0.0 (positive 0.3 at 0.09): 0.2 is closer (0.04), 0.45 the first beyond (0.2025)
    # anchor 0.3 (positive 0.0 at 0.09): 0.2 and 0.45 are closer (0.01, 0.0225), 0.9 beyond (0.36)
    assert mined("semi_hard") == {(0, 1): 3, (1, 0): 4}


def test_semi_hard_without_a_negative_beyond_the_positive_takes_the_farthest():
    E, y = np.array([[0.0], [1.0], [0.2], [0.5]]), np.array([0, 0, 1, 2])
    assert mined("semi_hard", E, y)[(0, 1)] == 3


def test_random_mining_draws_every_negative_and_never_a_positive():
    seen = {n for seed in range(60) for n in [mined("random", seed=seed)[(0, 1)]]}
    assert seen == {2, 3, 4}


def test_a_batch_without_pairs_or_negatives_costs_nothing():
    loss = TripletLoss()
    assert loss.forward(randn(4, 3), np.array([0, 1, 2, 3])) == 0.0
    assert not loss.backward().any()
    assert loss.forward(randn(4, 3), np.array([5, 5, 5, 5])) == 0.0
    assert not loss.backward().any()


# -- PyTorch autograd --------------------------------------------------------------------------
def torch_triplet(torch, E, y, margin, mining, triplets=None):
    """The SPEC's triplet loss written with torch ops, mining done independently of ours."""
    z = torch.tensor(E, requires_grad=True)
    yt = torch.tensor(y)
    if triplets is None:
        with torch.no_grad():
            D = torch.cdist(z, z) ** 2
            a_list, p_list, n_list = [], [], []
            for a in range(len(y)):
                for p in range(len(y)):
                    if a == p or y[a] != y[p]:
                        continue
                    neg = yt != yt[a]
                    if not bool(neg.any()):
                        continue
                    d = D[a].clone()
                    if mining == "hard":
                        d[~neg] = float("inf")
                        n = int(torch.argmin(d))
                    else:
                        beyond = neg & (D[a] > D[a, p])
                        if bool(beyond.any()):
                            d[~beyond] = float("inf")
                            n = int(torch.argmin(d))
                        else:
                            d[~neg] = -float("inf")
                            n = int(torch.argmax(d))
                    a_list.append(a), p_list.append(p), n_list.append(n)
        triplets = (a_list, p_list, n_list)
    a, p, n = (torch.tensor(np.asarray(t, dtype=np.int64)) for t in triplets)
    d_ap = ((z[a] - z[p]) ** 2).sum(dim=1)
    d_an = ((z[a] - z[n]) ** 2).sum(dim=1)
    cost = torch.clamp(d_ap - d_an + margin, min=0).mean()
    cost.backward()
    return float(cost.detach()), z.grad.numpy()


@pytest.mark.torch
@pytest.mark.parametrize("mining", ["hard", "semi_hard", "random"])
@pytest.mark.parametrize("margin", [0.2, 1.0])
def test_triplet_loss_matches_torch(mining, margin):
    torch = pytest.importorskip("torch")
    E = randn(12, 5, seed=3)
    E /= np.linalg.norm(E, axis=1, keepdims=True)
    y = identities(3, 4)[np.random.default_rng(4).permutation(12)]
    loss = TripletLoss(margin=margin, mining=mining)
    cost = loss.forward(E, y)
    t = loss.cache.triplets
    dz = loss.backward()
    theirs, grad = torch_triplet(torch, E, y, margin, mining, tuple(t) if mining == "random" else None)
    assert cost > 0
    np.testing.assert_allclose(cost, theirs, rtol=RTOL)
    np.testing.assert_allclose(dz, grad, rtol=RTOL, atol=1e-12)


@pytest.mark.torch
def test_siamese_binary_matches_torch():
    torch = pytest.importorskip("torch")
    E, y = randn(10, 4, seed=5), identities(5, 2)
    loss = SiameseBinary()
    loss.build((4,), BuildContext(dtype=np.dtype(np.float64)))
    loss.params["w"][...] = randn(4, seed=6)
    loss.params["b"][...] = 0.3
    cost = loss.forward(E, y)
    dz = loss.backward()
    z = torch.tensor(E, requires_grad=True)
    w = torch.tensor(loss.params["w"], requires_grad=True)
    b = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    i, j = np.triu_indices(10, k=1)
    same = torch.tensor((y[i] == y[j]).astype(np.float64))
    logit = (torch.abs(z[i] - z[j]) * w).sum(dim=1) + b
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logit, same, reduction="none")
    theirs = 0.5 * (bce * same).sum() / same.sum() + 0.5 * (bce * (1 - same)).sum() / (1 - same).sum()
    theirs.backward()
    np.testing.assert_allclose(cost, float(theirs.detach()), rtol=RTOL)
    np.testing.assert_allclose(dz, z.grad.numpy(), rtol=RTOL, atol=1e-12)
    np.testing.assert_allclose(loss.grads["w"], w.grad.numpy(), rtol=RTOL)
    np.testing.assert_allclose(loss.grads["b"], b.grad.numpy(), rtol=RTOL)


@pytest.mark.torch
@pytest.mark.parametrize("shape", [(6, 5), (3, 4, 7)])
def test_l2_normalize_matches_torch(shape):
    torch = pytest.importorskip("torch")
    layer = build_layer({"type": "l2_normalize"})
    layer.build(shape[1:], BuildContext(dtype=np.dtype(np.float64)))
    x, g = randn(*shape, seed=7), randn(*shape, seed=8)
    y = layer.forward(x, True)
    dx = layer.backward(g)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.normalize(xt, dim=-1)
    (yt * torch.tensor(g)).sum().backward()
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=RTOL)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=RTOL, atol=1e-14)
    np.testing.assert_allclose(np.linalg.norm(y, axis=-1), 1.0, rtol=1e-12)


# -- finite differences ------------------------------------------------------------------------
@pytest.mark.parametrize("loss_spec", [{"name": "triplet", "margin": 0.5, "mining": "semi_hard"},
                                       {"name": "triplet", "margin": 0.5, "mining": "hard"},
                                       "siamese_binary"])
def test_embedding_model_gradients_match_finite_differences(loss_spec):
    model = build_model({"layers": [{"type": "dense", "units": 6, "activation": "tanh"},
                                    {"type": "dense", "units": 4}, {"type": "l2_normalize"}]},
                        loss_spec, 0.0, (5,), "float64", rng=np.random.default_rng(2))
    x, y = randn(12, 5, seed=9), identities(4, 3)
    model.cost(x, y)
    model.backward()
    for name, layer, key in model.trainable():
        p = layer.params[key]
        numeric = numerical_grad(lambda: model.cost(x, y), p)
        np.testing.assert_allclose(layer.grads[key], numeric, rtol=1e-6, atol=1e-8, err_msg=name)
    if loss_spec == "siamese_binary":
        assert {"loss.w", "loss.b"} <= set(model.state_dict())
        assert model.state_dict()["loss.w"].shape == (4,) and model.state_dict()["loss.b"].shape == ()


def test_l2_normalize_backward_matches_finite_differences():
    layer = build_layer({"type": "l2_normalize"})
    layer.build((4,), BuildContext(dtype=np.dtype(np.float64)))
    x, g = randn(3, 4, seed=10), randn(3, 4, seed=11)
    layer.forward(x, True)
    dx = layer.backward(g)
    numeric = numerical_grad(lambda: float(np.sum(layer.forward(x, False) * g)), x)
    np.testing.assert_allclose(dx, numeric, rtol=1e-7, atol=1e-9)


def test_make_loss_reads_a_mapping_with_options():
    loss = make_loss({"name": "triplet", "margin": 0.5, "mining": "hard"}, "linear")
    assert (loss.name, loss.margin, loss.mining) == ("triplet", 0.5, "hard")
    assert make_loss("triplet", "linear").mining == "semi_hard"


# -- identity batches --------------------------------------------------------------------------
def test_identity_order_builds_batches_of_P_identities_with_K_examples():
    y = np.repeat(np.arange(30), 10)
    order, batch = faces.identity_order(y, 8, 4, np.random.default_rng(0))
    assert batch == 32
    assert set(order.tolist()) == set(range(300))          # every example, once at least
    chunks = y[order].reshape(-1, 4)                        # 30 identities x ceil(10/4) chunks
    assert len(chunks) == 90 and (chunks == chunks[:, :1]).all()
    assert all(len(set(c)) == 4 for c in order.reshape(-1, 4))  # distinct examples in a chunk
    # identities with fewer than K examples repeat them to fill their chunk
    y_small = np.array([0, 0, 1])
    small, _ = faces.identity_order(y_small, 2, 4, np.random.default_rng(0))
    assert set(small.tolist()) == {0, 1, 2} and np.bincount(y_small[small]).tolist() == [4, 4]
    for s in range(0, len(order), batch):                   # every mini-batch has positives
        labels = y[order[s:s + batch]]
        assert np.unique(labels, return_counts=True)[1].min() >= 4


# -- verification, recognition, one-shot ------------------------------------------------------
def test_best_threshold_minimises_the_balanced_error():
    d_same = np.array([0.1, 0.2, 0.3, 0.9])
    d_diff = np.array([0.25, 0.8, 1.0, 1.1, 1.2, 1.3])
    tau = faces.best_threshold(d_same, d_diff)
    error, frr, far = faces.balanced_error(d_same, d_diff, tau)
    grid = np.linspace(0, 1.5, 3001)
    assert error == pytest.approx(min(faces.balanced_error(d_same, d_diff, t)[0] for t in grid))
    # accepting the same pair at 0.9 costs two different pairs (1/3 / 2) < rejecting it (1/4 / 2 + 1/6 / 2)
    assert 0.9 < tau < 1.0 and (frr, far) == (0.0, pytest.approx(1 / 3))


def test_verification_counts_every_pair_of_a_small_split():
    loss = TripletLoss()
    E = np.array([[0.0, 0], [0.1, 0], [1, 0], [1.1, 0]])
    v = faces.verification(loss, E, np.array([0, 0, 1, 1]))
    assert (v.same_pairs, v.different_pairs, v.error) == (2, 4, 0.0)
    assert 0.1 < v.tau <= 0.9 and v.false_accept == 0 and v.false_reject == 0
    assert sum(v.histogram["same"]) == 2 and sum(v.histogram["different"]) == 4


def test_recognition_says_not_recognized_beyond_tau():
    loss = TripletLoss()
    G, gy = np.array([[0.0, 0], [1, 0]]), np.array([7, 9])
    Q = np.array([[0.05, 0], [0.9, 0], [5, 5]])
    ids, dist = faces.recognize_encodings(loss, Q, G, gy, tau=0.5)
    assert ids.tolist() == [7, 9, -1]
    assert faces.recognition_accuracy(loss, Q, np.array([7, 9, 3]), G, gy, 0.5) == 1.0
    assert faces.recognition_accuracy(loss, Q, np.array([9, 9, 3]), G, gy, 0.5) == pytest.approx(2 / 3)


def test_one_shot_is_perfect_on_separated_identities_and_chance_on_noise():
    loss = TripletLoss()
    y = np.repeat(np.arange(40), 3)
    centres = np.eye(40)
    E = centres[y] + 0.01 * randn(120, 40, seed=12)
    assert faces.one_shot(loss, E, y, 20, 200, np.random.default_rng(0)).accuracy == 1.0
    noise = faces.one_shot(loss, randn(120, 40, seed=13), y, 20, 400, np.random.default_rng(0))
    assert noise.accuracy < 0.2  # chance is 1/20
    assert faces.one_shot(loss, E[:30], y[:30], 20, 10, np.random.default_rng(0)) is None


def test_best_threshold_equals_a_brute_force_search_with_ties():
    rng = np.random.default_rng(1)
    for _ in range(200):
        d_same = np.round(rng.random(rng.integers(1, 30)), 1)
        d_diff = np.round(rng.random(rng.integers(1, 30)) + rng.random() * 0.5, 1)
        tau = faces.best_threshold(d_same, d_diff)
        grid = np.unique(np.concatenate([d_same, d_diff, [0, 2]]))
        candidates = np.concatenate([grid, grid + 1e-9, (grid[1:] + grid[:-1]) / 2])
        best = min(faces.balanced_error(d_same, d_diff, t)[0] for t in candidates)
        assert faces.balanced_error(d_same, d_diff, tau)[0] == pytest.approx(best, abs=1e-12)
