"""Optimizers and learning-rate decay against the course's unit tests, PyTorch and numpy."""

import io

import numpy as np
import pytest

from dlcli.errors import BadInput
from dlcli.optim import Adam, Momentum, RMSprop, learning_rate, make_optimizer

NAMES = ("W1", "b1", "W2", "b2")
SHAPES = ((2, 3), (2, 1), (3, 2), (3, 1))


def course_draws():
    """The course's test_cases.py draws: W1, b1, W2, b2 then dW1, db1, dW2, db2."""
    np.random.seed(1)
    params = [np.random.randn(*shape) for shape in SHAPES]
    grads = [np.random.randn(*shape) for shape in SHAPES]
    return params, grads


def course_step(opt, lr, t_before=0):
    params, grads = course_draws()
    if t_before:
        opt.load_state_dict({"t": t_before, **{f"{slot}.{n}": np.zeros(s) for n, s in zip(NAMES, SHAPES)
                                              for slot in opt.slots}})
    opt.update(list(zip(NAMES, params, grads)), lr)
    return dict(zip(NAMES, params))


@pytest.mark.parametrize("use_kernels", [True, False])
def test_update_parameters_with_gd(use_kernels):
    p = course_step(make_optimizer({"name": "gd"}, use_kernels), 0.01)
    np.testing.assert_allclose(p["W1"], [[1.63312395, -0.61217855, -0.5339999],
                                         [-1.06196243, 0.85396039, -2.3105546]], atol=1e-8)
    np.testing.assert_allclose(p["b2"], [[1.13773698], [-1.09301954], [-0.16397615]], atol=1e-8)


@pytest.mark.parametrize("use_kernels", [True, False])
def test_update_parameters_with_momentum(use_kernels):
    opt = make_optimizer({"name": "momentum", "beta": 0.9}, use_kernels)
    p = course_step(opt, 0.01)
    np.testing.assert_allclose(p["W1"], [[1.62522322, -0.61179863, -0.52875457],
                                         [-1.071868, 0.86426291, -2.30244029]], atol=1e-8)
    np.testing.assert_allclose(opt.state["W1"]["v"], [[-0.08778584, 0.00422137, 0.05828152],
                                                      [-0.11006192, 0.11447237, 0.09015907]], atol=1e-8)


@pytest.mark.parametrize("use_kernels", [True, False])
def test_update_parameters_with_adam(use_kernels):
    opt = make_optimizer({"name": "adam", "beta1": 0.8, "beta2": 0.888, "epsilon": 1e-2}, use_kernels)
    p = course_step(opt, 0.02, t_before=1)  # the course's t = 2
    assert opt.t == 2
    np.testing.assert_allclose(p["W1"], [[1.63937725, -0.62327448, -0.54308727],
                                         [-1.0578897, 0.85032154, -2.31657668]], atol=1e-8)
    np.testing.assert_allclose(p["W2"], [[0.33400549, -0.23563857], [1.47715417, -2.04561842],
                                         [-0.33729882, -0.36908457]], atol=1e-8)
    np.testing.assert_allclose(p["b1"], [[1.72995096], [-0.7762447]], atol=1e-8)
    np.testing.assert_allclose(p["b2"], [[1.14852557], [-1.08492339], [-0.15740527]], atol=1e-8)


def test_update_lr_and_schedule_lr_decay():
    assert learning_rate(0.5, {"schedule": "inverse_time", "rate": 1}, 2) == 0.16666666666666666
    staircase = {"schedule": "staircase", "rate": 0.3, "every": 100}
    assert learning_rate(0.5, staircase, 10) == 0.5
    assert learning_rate(0.5, staircase, 100) == 0.3846153846153846
    assert learning_rate(0.5, staircase, 199) == 0.3846153846153846


def test_schedules_from_the_first_epoch():
    assert learning_rate(0.1, None, 7) == 0.1
    assert learning_rate(0.1, {"schedule": "none", "rate": None}, 7) == 0.1  # model_dump() leaves Nones
    assert learning_rate(0.1, {"schedule": "inverse_time", "rate": 0.5}, 0) == 0.1
    assert learning_rate(0.1, {"schedule": "exponential", "base": 0.5}, 3) == pytest.approx(0.0125)
    assert learning_rate(0.1, {"schedule": "exponential", "base": None}, 2) == pytest.approx(0.1 * 0.95 ** 2)
    assert learning_rate(0.1, {"schedule": "inverse_sqrt", "k": 2}, 0) == pytest.approx(0.2)
    assert learning_rate(0.1, {"schedule": "inverse_sqrt", "k": 2}, 3) == pytest.approx(0.1)


def test_bad_schedule_and_optimizer_name_the_key():
    with pytest.raises(BadInput, match="optimizer.decay.schedule"):
        learning_rate(0.1, {"schedule": "cosine"}, 0)
    with pytest.raises(BadInput, match="optimizer.decay.every"):
        learning_rate(0.1, {"schedule": "staircase", "rate": 1}, 0)
    with pytest.raises(BadInput, match="optimizer.name"):
        make_optimizer({"name": "sgd"})


def random_problem(dtype, shapes=((7, 5), (7, 1), (300, 40)), seed=0):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(4)]
    return params, grads


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["gd", "momentum", "rmsprop", "adam"])
def test_kernels_match_the_numpy_reference(name, dtype):
    cfg = {"name": name, "beta": 0.8, "beta1": 0.85, "beta2": 0.95, "epsilon": 1e-6}
    params, grads = random_problem(dtype)
    results = []
    for use_kernels in (True, False):
        opt = make_optimizer(cfg, use_kernels)
        ps = [p.copy() for p in params]
        for step, gs in enumerate(grads):
            opt.update([(str(i), p, g) for i, (p, g) in enumerate(zip(ps, gs))], 0.01 / (step + 1))
        results.append((ps, opt.state_dict()))
    (kernel_ps, kernel_state), (numpy_ps, numpy_state) = results
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    for a, b in zip(kernel_ps, numpy_ps):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol)
    assert kernel_state.keys() == numpy_state.keys()
    for key in kernel_state:
        np.testing.assert_allclose(kernel_state[key], numpy_state[key], rtol=rtol)


def test_non_contiguous_parameters_fall_back_to_numpy():
    W = np.ones((4, 6))[:, ::2]
    dW = np.full((4, 3), 2.0)
    opt = make_optimizer({"name": "momentum", "beta": 0.5})
    opt.update([("W", W, dW)], 0.1)
    np.testing.assert_allclose(W, 1 - 0.1 * 1.0)  # v = 0.5 * 0 + 0.5 * 2


def test_state_is_per_name_and_round_trips():
    params, grads = random_problem(np.float64)
    opt = make_optimizer({"name": "adam"})
    triples = lambda ps, k: [(str(i), p, g) for i, (p, g) in enumerate(zip(ps, grads[k]))]
    opt.update(triples(params, 0), 0.01)
    saved = opt.state_dict()
    assert saved["t"] == 1 and set(saved) == {"t"} | {f"{s}.{i}" for s in "vs" for i in range(3)}
    copy = [p.copy() for p in params]
    buffer = io.BytesIO()  # a checkpoint is an npz
    np.savez(buffer, **saved)
    buffer.seek(0)
    restored = make_optimizer({"name": "adam"})
    restored.load_state_dict(dict(np.load(buffer)))
    assert restored.t == 1
    for k in (1, 2):
        opt.update(triples(params, k), 0.01)
        restored.update(triples(copy, k), 0.01)
    for a, b in zip(params, copy):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError):
        make_optimizer({"name": "momentum"}).load_state_dict(saved)  # has no s
    with pytest.raises(ValueError, match="shape"):
        restored.update([("0", np.zeros((2, 2)), np.zeros((2, 2)))], 0.01)  # state of another model


def run_torch(torch, opt_factory, params, grads, lr):
    tensors = [torch.tensor(p, dtype=torch.float64, requires_grad=True) for p in params]
    opt = opt_factory(tensors, lr)
    for gs in grads:
        for t, g in zip(tensors, gs):
            t.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    return [t.detach().numpy() for t in tensors]


def run_ours(cfg, params, grads, lr):
    opt = make_optimizer(cfg)
    ps = [p.copy() for p in params]
    for gs in grads:
        opt.update([(str(i), p, g) for i, (p, g) in enumerate(zip(ps, gs))], lr)
    return ps


@pytest.mark.torch
@pytest.mark.parametrize("name", ["gd", "rmsprop", "adam"])
def test_against_pytorch(name):
    torch = pytest.importorskip("torch")
    factories = {
        "gd": lambda ts, lr: torch.optim.SGD(ts, lr=lr),
        "rmsprop": lambda ts, lr: torch.optim.RMSprop(ts, lr=lr, alpha=0.95, eps=1e-6),
        "adam": lambda ts, lr: torch.optim.Adam(ts, lr=lr, betas=(0.85, 0.95), eps=1e-6),
    }
    params, grads = random_problem(np.float64)
    cfg = {"name": name, "beta1": 0.85, "beta2": 0.95, "epsilon": 1e-6}
    ours = run_ours(cfg, params, grads, 0.01)
    theirs = run_torch(torch, factories[name], params, grads, 0.01)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    assert not np.allclose(ours[2], params[2])


def test_momentum_matches_the_formula_over_steps():
    # torch's momentum (v = beta v + g) is not the course's, so the oracle is the formula itself
    params, grads = random_problem(np.float64)
    ours = run_ours({"name": "momentum", "beta": 0.8}, params, grads, 0.01)
    expected = [p.copy() for p in params]
    v = [np.zeros_like(p) for p in params]
    for gs in grads:
        for i, g in enumerate(gs):
            v[i] = 0.8 * v[i] + 0.2 * g
            expected[i] = expected[i] - 0.01 * v[i]
    for a, b in zip(ours, expected):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)


def test_classes_by_name():
    assert isinstance(make_optimizer({"name": "momentum"}), Momentum)
    assert isinstance(make_optimizer({"name": "rmsprop"}), RMSprop)
    adam = make_optimizer({"name": "adam", "beta1": None, "beta2": 0.99})
    assert isinstance(adam, Adam) and (adam.beta1, adam.beta2, adam.epsilon) == (0.9, 0.99, 1e-8)


@pytest.mark.parametrize("name", ["momentum", "rmsprop", "adam"])
def test_kept_views_follow_new_arrays_and_loaded_state(name):
    """update() keeps each parameter's checked flat views between steps: a gradient handed back
    as a new array, a parameter replaced, a state loaded from a checkpoint, a state array set
    by hand and a wrong shape must all be seen, as the numpy reference sees them."""
    rng = np.random.default_rng(3)
    W = np.asfortranarray(rng.standard_normal((5, 4)))
    opt, ref = make_optimizer({"name": name}), make_optimizer({"name": name}, use_kernels=False)
    W_ref, dW = W.copy(), np.empty((5, 4), order="F")
    for step in range(7):
        dW[...] = rng.standard_normal((5, 4))  # written in place, as the layers write theirs
        if step == 1:  # a new gradient array
            dW = np.asfortranarray(dW)
        if step == 2:  # a new parameter array (C-ordered, so the views' order changes too)
            W, W_ref, dW = np.ascontiguousarray(W), np.ascontiguousarray(W_ref), np.ascontiguousarray(dW)
        if step == 3:  # a checkpoint's state, loaded into both
            state = ref.state_dict()
            opt.load_state_dict(state)
            ref.load_state_dict(state)
        if step == 4:  # a state array replaced by hand
            slot = opt.slots[0]
            opt.state["w"][slot] = opt.state["w"][slot].copy()
        opt.update([("w", W, dW)], 0.01)
        ref.update([("w", W_ref, dW.copy())], 0.01)
        np.testing.assert_allclose(W, W_ref, rtol=1e-12, atol=1e-12)
        for slot in opt.slots:  # the state the optimizer holds is the one updated
            np.testing.assert_allclose(opt.state["w"][slot], ref.state["w"][slot], rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="shape"):
        opt.update([("w", W, np.zeros((4, 5)))], 0.01)
