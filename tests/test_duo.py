"""kernels/duo.py: the helper thread that shares a training step's small passes (LeNet-5's
pooled convolutions) with the main thread: the same bits whoever runs a part, the helper's
wait, and how it judges a helper late (a fake clock: no wall-clock limit here)."""

import numpy as np
import pytest

import dlcli.kernels.duo as kduo
from dlcli.nn.base import BuildContext
from dlcli.nn.conv import Conv2D, MaxPool

needs_duo = pytest.mark.skipif(not kduo.SUPPORTED, reason="kernels/duo.py runs on Linux x86-64 "
                               "only (the pause instruction, the time-stamp counter)")


@needs_duo
@pytest.mark.parametrize("first", [True, False])
def test_runs_shared_with_the_helper_equal_the_main_thread_alone(monkeypatch, first):
    """The pooled convolutions' runs inside a training step of small GEMMs (kernels/duo.py)
    give the same bits whoever takes each run, the helper or the main thread alone, pass after
    pass: LeNet-5's first layer (direct) or second (blocked im2col), float32."""
    from dlcli.nn.model import Sequential
    monkeypatch.setattr(kduo, "MIN_WORK", 0)
    monkeypatch.setattr(kduo, "_STEP", [1])
    # a helper even where duo() would start none (one core, NUMBA_NUM_THREADS=1): the same
    # parts then run on one core, the results must still be equal
    monkeypatch.setattr(kduo, "_DUO", [kduo.duo() or kduo.Duo()])
    shape, conv = ((12, 12, 1), Conv2D(6, 5, padding="same", activation="relu")) if first else \
        ((14, 14, 6), Conv2D(16, 5, activation="relu"))
    net = Sequential([conv, MaxPool(2)])
    net.build(shape, BuildContext(dtype=np.dtype(np.float32), rng=np.random.default_rng(3)))
    conv.needs_input_grad = not first
    assert conv.pool is not None and conv.direct == first
    rng = np.random.default_rng(4)
    x = rng.standard_normal((37,) + shape).astype(np.float32)
    dy = rng.standard_normal((37,) + net.output_shape).astype(np.float32)
    helper = kduo.duo()

    def step(alone):
        monkeypatch.setattr(helper, "alone", 10 ** 9 if alone else 0)
        monkeypatch.setattr(helper, "late", 0.0)
        y = net.forward(x, True)
        dx = net.backward(dy)
        return [y.copy(), conv.grads["W"].copy(), conv.grads["b"].copy()] + \
            ([] if dx is None else [dx.copy()])

    expected = step(alone=True)
    for _ in range(5):
        for a, b in zip(step(alone=False), expected):
            np.testing.assert_array_equal(a, b)


def test_no_duo_helper_where_numba_is_held_to_one_thread(monkeypatch):
    """A search's local workers run with NUMBA_NUM_THREADS=1 (dlcli/executors.py): a helper
    spinning beside each would take the other worker's core."""
    import numba
    monkeypatch.setattr(kduo, "_DUO", [])
    monkeypatch.setattr(numba.config, "NUMBA_NUM_THREADS", 1)
    assert kduo.duo() is None
    monkeypatch.setattr(kduo, "_DUO", [])
    monkeypatch.setattr(numba.config, "NUMBA_NUM_THREADS", 2)
    monkeypatch.setenv("DLCLI_DUO", "0")
    assert kduo.duo() is None
    monkeypatch.setattr(kduo, "_DUO", [])
    monkeypatch.setenv("DLCLI_DUO", "1")
    monkeypatch.setattr(kduo, "SUPPORTED", False)  # Apple silicon, Windows: serial passes
    assert kduo.duo() is None


@needs_duo
def test_duo_helper_waits_by_the_clock_for_a_job_then_sleeps():
    """spin_wait (kernels/duo.py) returns a job posted before or during its wait, -2 when told
    to stop, and -1 with SLEEPING set once its ticks of the time-stamp counter are spent (a
    count of yields had lasted 0.35 ms instead of the ~1.4 ms meant: the helper slept between
    LeNet-5's forward and backward and every backward paid a wake-up)."""
    ctrl = np.zeros(32, dtype=np.int64)
    ctrl[kduo.GO] = 7
    assert kduo.spin_wait(ctrl, 6, 1 << 40) == 7 and ctrl[kduo.INSIDE] == 1
    assert ctrl[kduo.SLEEPING] == 0
    assert kduo.spin_wait(ctrl, 7, 0) == -1 and ctrl[kduo.SLEEPING] == 1 and ctrl[kduo.INSIDE] == 0
    ctrl[kduo.SLEEPING] = 0
    ctrl[kduo.STOP] = 1
    assert kduo.spin_wait(ctrl, 7, 1 << 40) == -2
    before = kduo.cycles()
    ctrl[kduo.STOP] = 0
    assert kduo.spin_wait(ctrl, 7, 1 << 20) == -1  # waited its ticks, no job came
    assert kduo.cycles() - before >= 1 << 20
    assert kduo._tick_rate() > 1e8  # ticks a second: a clock of 100 MHz or more


@needs_duo
def test_duo_first_job_of_a_pass_sends_nothing_alone(monkeypatch):
    """A pass's first job (its kernel loaded from the cache or compiled inside it) only sets
    the serial time the next ones are judged by: it never sends the passes to the main thread
    alone, however slow (the warm-up had sent LeNet-5 at 256 to one core for three epochs)."""
    from dlcli.kernels import direct_duo
    helper = kduo.duo() or kduo.Duo()
    monkeypatch.setattr(helper, "alone", 0)
    monkeypatch.setattr(helper, "late", 0.5)  # past LATE_SHARE: one judged late job would tip it
    monkeypatch.setattr(helper, "best", {})
    args, key = _pooled_job(4)
    helper.run(*args)
    assert helper.alone == 0 and helper.late == 0.5 and list(helper.best) == [key]


def _pooled_job(m):
    """(Duo.run's arguments, its key in Duo.best) for LeNet-like first-layer work of m examples."""
    from dlcli.kernels import direct_duo
    rng = np.random.default_rng(0)
    n, f = 8, 3
    x = rng.standard_normal((m, n, n, 1))
    A = np.empty((m, n // 2, n // 2, 2))
    args = (direct_duo.direct_forward_pool_duo, m, x, rng.standard_normal((f, f, 1, 2)), np.zeros(2),
            1, 1, 1, A, np.empty(A.shape, dtype=np.int8))
    return args, (args[0], m, x.shape)


@needs_duo
@pytest.mark.parametrize("woken", [False, True])
def test_duo_judges_a_job_that_woke_the_helper_by_woken(monkeypatch, woken):
    """A job 1.2 times its serial time is late (SLOWER 0.9) when the helper was waiting, not
    when it had to be woken (WOKEN 1.5): the wake-up after each evaluation is no sign of a lost
    core, and had sent 50 LeNet-5 steps to one core whenever one more late job followed."""
    helper = kduo.duo() or kduo.Duo()
    args, key = _pooled_job(8)
    helper.run(*args)  # compiled or loaded
    monkeypatch.setattr(helper, "alone", 0)
    monkeypatch.setattr(helper, "late", 0.0)
    monkeypatch.setattr(helper, "pause", 0.0)
    monkeypatch.setattr(helper, "best", {key: 1.0})  # a part: 1 s, the serial pass 8 s

    class Clock:  # the job took 1.2 x 8 s, whatever it really took
        ticks = iter([100.0, 100.0 + 1.2 * 8])

        @staticmethod
        def perf_counter():
            return next(Clock.ticks)

    monkeypatch.setattr(kduo, "time", Clock)
    helper.ctrl[kduo.SLEEPING] = int(woken)
    helper.run(*args)
    assert helper.late == (0.0 if woken else 0.25)


@needs_duo
def test_duo_alone_spell_doubles_while_late_and_resets_on_time(monkeypatch):
    """The helper late again right after a spell alone doubles the next spell (up to
    ALONE_MAX); ON_TIME jobs in a row that paid bring it back to ALONE. (A job here is a
    stand-in that says how many parts the main thread ran; the clock says what it took.)"""
    helper = kduo.duo() or kduo.Duo()
    x = np.zeros((8, 1))

    def job(ctrl, gen, counter, parts, x):  # the main thread ran half the parts, never a wait
        counter[3] = parts // 2 if gen >= 0 else parts

    args, key = (job, 8, x), (job, 8, x.shape)
    monkeypatch.setattr(helper, "alone", 0)
    monkeypatch.setattr(helper, "late", 0.0)
    monkeypatch.setattr(helper, "backoff", kduo.ALONE)
    monkeypatch.setattr(helper, "on_time", 0)
    monkeypatch.setattr(helper, "pause", 0.0)
    monkeypatch.setattr(helper, "best", {key: 1.0})
    took = [0.0]

    class Clock:  # each job takes took[0] seconds, 8 parts of 1 s being its serial time
        now = 0.0

        @staticmethod
        def perf_counter():
            Clock.now += took[0]  # from one call to the next: run's start, then its end
            return Clock.now

    monkeypatch.setattr(kduo, "time", Clock)
    spells = []
    for _ in range(3):
        took[0] = 8.0  # late
        for _ in range(4):
            helper.ctrl[kduo.SLEEPING] = 0
            helper.run(*args)
            if helper.alone:
                break
        spells.append(helper.alone)
        while helper.alone:
            helper.run(*args)
    assert spells == [kduo.ALONE, 2 * kduo.ALONE, 4 * kduo.ALONE]
    took[0] = 4.0  # on time
    for _ in range(kduo.ON_TIME):
        helper.ctrl[kduo.SLEEPING] = 0
        helper.run(*args)
    assert helper.alone == 0 and helper.backoff == kduo.ALONE


def test_no_duo_helper_while_kernels_are_stubbed_by_a_compile_ahead_trace(monkeypatch):
    """kernels/ahead.py's trace of a first step on an empty cache returns 0.0 from every kernel:
    a helper started then died at its first wait and the run stayed serial. duo() starts no
    thread then, keeps nothing, and starts one at the next call with real kernels."""
    real = kduo.spin_wait
    monkeypatch.setattr(kduo, "_DUO", [])
    monkeypatch.setattr(kduo, "spin_wait", lambda *a: 0.0)
    traced = kduo.duo()
    assert kduo._DUO == [] and (traced is None or (not traced.ready and not hasattr(traced, "thread")))
    monkeypatch.setattr(kduo, "spin_wait", real)
    helper = kduo.duo()
    if helper is not None:
        assert helper.ready and helper.thread.is_alive()
