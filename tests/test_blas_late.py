"""kernels/blas_late.py: the lateness rule on injected step times (no wall clock), its
one-thread GEMMs bitwise equal to the two-thread ones, and a dense training run whose steps
went alone giving the same numbers as one whose steps did not."""

import numpy as np
import pytest

from dlcli.kernels import blas_late as bl
from dlcli.kernels.threads import blas_threads


def run(rule, times, two_thread_step=None):
    """Feed step times to the rule: times[i] is used for a two-thread step, `two_thread_step`
    ignored; one-thread steps take 1.0. The list of which steps ran alone."""
    alone = []
    for t in times:
        a = rule.begin()
        rule.end(1.0 if a else t, a)
        alone.append(a)
    return alone


def test_quiet_steps_stay_on_two_threads():
    assert not any(run(bl.StepLateness(), [0.5, 0.55, 0.6, 0.52] * 50))


def test_first_step_is_not_judged_and_one_late_of_four_is_not_enough():
    rule = bl.StepLateness()
    # first step (compiling) very slow, then one late step in each four
    assert not any(run(rule, [100.0] + [0.5, 0.5, 0.5, 5.0] * 20))


def test_two_late_of_four_send_alone_steps_doubling_while_late():
    rule = bl.StepLateness()
    alone = run(rule, [0.5] * 5 + [20.0, 20.0])
    assert not any(alone)
    # the stretch: ALONE steps on one thread (1.0 each), then two threads late again (20 > 1.0)
    alone = run(rule, [20.0] * (bl.ALONE + 2))
    assert alone[:bl.ALONE] == [True] * bl.ALONE and alone[bl.ALONE:] == [False, False]
    assert rule.one_ref == 1.0 and rule.left == 2 * bl.ALONE
    stretches = []
    for _ in range(10):
        n = rule.left
        stretches.append(n)
        assert run(rule, [20.0] * n) == [True] * n
        assert run(rule, [20.0, 20.0]) == [False, False]
    assert stretches[0] == 2 * bl.ALONE and max(stretches) == bl.ALONE_MAX == stretches[-1]


def test_two_threads_faster_than_one_again_stay_and_reset_the_stretch():
    rule = bl.StepLateness()
    run(rule, [0.5] * 5 + [20.0] * 2)
    run(rule, [20.0] * bl.ALONE)  # the stretch
    run(rule, [20.0] * 2)
    assert rule.stretch == 2 * bl.ALONE
    assert run(rule, [20.0] * rule.left) == [True] * (2 * bl.ALONE)  # the doubled stretch
    # the load went: two threads (0.6) beat the stretch's one-thread median (1.0)
    assert not any(run(rule, [0.6] * bl.ON_TIME))
    assert rule.stretch == bl.ALONE and rule.one_ref is None
    # and before any new stretch the guess is ONE_GUESS x the fastest two-thread step (0.5)
    assert not any(run(rule, [0.9, 0.9, 0.9]))
    assert run(rule, [1.1, 1.1, 0.5])[-1] is True


def test_one_late_step_after_a_stretch_does_not_double_it():
    rule = bl.StepLateness()
    run(rule, [0.5] * 5 + [20.0] * 2 + [20.0] * bl.ALONE)
    assert not any(run(rule, [20.0] + [0.5] * 3))
    assert rule.stretch == bl.ALONE


class FakeOne:
    def __init__(self):
        self.entered, self.before = 0, (2,)

    def __enter__(self):
        self.entered += 1

    def __exit__(self, *exc):
        return False


def test_late_step_enters_one_thread_and_sets_the_flag_only_when_alone():
    ticks = iter(np.arange(0, 1000, 0.5))
    ctx = bl.LateStep(FakeOne(), clock=lambda: next(ticks))
    with ctx:  # the first step, not judged
        assert bl._ALONE[0] == 0
    ctx.rule.left = 3
    for _ in range(3):
        with ctx:
            assert bl._ALONE[0] == 2
    with ctx:
        assert bl._ALONE[0] == 0
    assert ctx.one.entered == 3 and bl._ALONE[0] == 0


def test_threaded_blocks():
    assert bl.threaded_blocks(784, 448) == [(0, 392), (392, 784)]
    assert bl.threaded_blocks(1000, 448) == [(0, 448), (448, 724), (724, 1000)]
    assert bl.threaded_blocks(300, 448) == [(0, 300)]
    for k in (1, 97, 2000, 4096):
        for q in bl.Q_TRIED:
            blocks = bl.threaded_blocks(k, q)
            assert blocks[0][0] == 0 and blocks[-1][1] == k
            assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))
            assert all(0 < s - t <= q for t, s in blocks)


def two_blas_threads():
    held = blas_threads(1)
    return hasattr(held, "current") and max(held.current()) >= 2


SHAPES = [(64, 784, 512), (256, 784, 512), (64, 512, 256), (64, 256, 10), (100, 1000, 300),
          (784, 64, 512), (512, 256, 64)]  # (m, k, n): forwards, dW^T = x^T dz, dx = dz W


@pytest.mark.skipif(not two_blas_threads(), reason="needs BLAS with two threads")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,k,n", SHAPES)
def test_one_thread_matmul_is_bitwise_the_two_thread_one(m, k, n, dtype):
    rng = np.random.default_rng(m + k + n)
    a = rng.standard_normal((m, k)).astype(dtype)
    b = np.asfortranarray(rng.standard_normal((n, k)).astype(dtype)).T  # W.T as nn/layers.py
    with blas_threads(2):
        want = np.matmul(a, b)
    out = np.empty((m, n), dtype)
    one = blas_threads(1)
    with one:
        bl._ALONE[0] = 2
        try:
            bl.matmul(a, b, out)
        finally:
            bl._ALONE[0] = 0
        plain = np.matmul(a, b)
    np.testing.assert_array_equal(out, want)
    np.testing.assert_allclose(out, a.astype(np.float64) @ b.astype(np.float64),
                               rtol=1e-4 if dtype == np.float32 else 1e-12, atol=1e-3 if dtype == np.float32 else 1e-10)
    if (m, k, n) == (64, 784, 512) and dtype == np.float32:
        # the case the blocks are for: OpenBLAS's own one-thread result differs here
        assert not np.array_equal(plain, want)


@pytest.mark.skipif(not two_blas_threads(), reason="needs BLAS with two threads")
def test_an_mlp_run_with_steps_alone_gives_the_same_numbers():
    from dlcli.nn.model import build_model
    from dlcli.optim import make_optimizer
    from dlcli.train import small_step_blas, train_step

    def train(alone_from):
        layers = [{"type": "dense", "units": 512, "activation": "relu"},
                  {"type": "dense", "units": 256, "activation": "relu"},
                  {"type": "dense", "units": 10, "activation": "softmax"}]
        model = build_model({"layers": layers, "init": "he"}, "auto", 0.0, (784,), "float32")
        opt = make_optimizer({"name": "adam", "learning_rate": 1e-3})
        trainable = model.trainable()
        rng = np.random.default_rng(0)
        x, y = rng.standard_normal((640, 784)).astype(np.float32), rng.integers(0, 10, 640)
        ctx = small_step_blas(model, 64)
        assert isinstance(ctx, bl.LateStep)
        # a zero clock: only the test sends steps alone (on a loaded machine the real rule
        # moved 2 of the 10 on its own, session 11's README run)
        ctx.rule.clock = lambda: 0.0
        costs, alone = [], 0
        for i in range(10):
            if i == alone_from:
                ctx.rule.left = 6
            alone += ctx.rule.begin()
            costs.append(train_step(model, opt, trainable, x[64 * i:64 * i + 64], y[64 * i:64 * i + 64], 1e-3))
        return costs, [p.copy() for _, layer, key in trainable for p in [layer.params[key]]], alone

    costs2, params2, alone2 = train(None)
    costs1, params1, alone1 = train(2)
    assert alone2 == 0 and alone1 == 6
    assert costs1 == costs2
    for p, q in zip(params1, params2):
        np.testing.assert_array_equal(p, q)
