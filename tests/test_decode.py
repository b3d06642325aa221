"""Greedy decoding and beam search over step functions (dlcli.decode)."""

import itertools
import math

import numpy as np
import pytest

from dlcli.decode import (beam_search, fixed_steps, greedy, normalized, sequence_log_prob)


def markov_model(rng, vocab):
    """A hand-made decoder: P(next | last token) from a random table; state = nothing."""
    table = rng.dirichlet(np.full(vocab, 0.7), size=vocab + 1)  # row `vocab`: the first step
    log_table = np.log(table)

    def step(state, token):
        return log_table[vocab if token is None else token], state
    return step


def exhaustive(step, vocab, max_length, eos, alpha):
    """Every sequence that ends at eos or at max_length, scored by the normalized log-prob."""
    best = None
    for length in range(1, max_length + 1):
        for body in itertools.product([v for v in range(vocab) if v != eos], repeat=length - 1):
            for last in range(vocab):
                if last != eos and length < max_length:
                    continue
                tokens = body + (last,)
                lp = sequence_log_prob(step, None, tokens)
                score = normalized(lp, length, alpha)
                if best is None or score > best[0]:
                    best = (score, tokens)
    return best


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("alpha", [0.0, 0.7, 1.0])
def test_wide_beam_finds_the_exhaustive_optimum(seed, alpha):
    rng = np.random.default_rng(seed)
    vocab, max_length, eos = 4, 5, 3
    step = markov_model(rng, vocab)
    score, tokens = exhaustive(step, vocab, max_length, eos, alpha)
    found = beam_search(step, None, max_length, beam=vocab ** max_length, eos=eos, alpha=alpha)[0]
    assert found.tokens == tokens
    assert found.score == pytest.approx(score, rel=1e-12)
    assert found.log_prob == pytest.approx(sequence_log_prob(step, None, tokens), rel=1e-12)


@pytest.mark.parametrize("seed", range(10))
def test_beam_one_is_greedy(seed):
    rng = np.random.default_rng(50 + seed)
    step = markov_model(rng, 5)
    for alpha in (0.0, 0.7):
        g = greedy(step, None, 6, eos=4, alpha=alpha)
        b = beam_search(step, None, 6, beam=1, eos=4, alpha=alpha)[0]
        assert b.tokens == g.tokens and b.log_prob == pytest.approx(g.log_prob, rel=1e-12)


def test_beam_two_beats_greedy_on_a_planted_model():
    # the first token 0 is the likelier (0.6 vs 0.4), but everything after it is uncertain:
    # P(0, x) <= 0.6 * 0.34 = 0.204 while P(1, 2) = 0.4 * 0.9 = 0.36
    log = np.log
    first = log([0.6, 0.4, 1e-9])
    after = {0: log([0.33, 0.33, 0.34]), 1: log([0.05, 0.05, 0.9]), 2: log([1 / 3] * 3)}

    def step(state, token):
        return (first if token is None else after[token]), state
    g = greedy(step, None, 2)
    b = beam_search(step, None, 2, beam=2)[0]
    assert g.tokens == (0, 2)
    assert b.tokens == (1, 2) and b.probability == pytest.approx(0.36)
    assert exhaustive(step, 3, 2, None, 0.0)[1] == (1, 2)


def test_length_normalization_prefers_longer_outputs():
    # ending at once: P = 0.5; going on: 0.5 * 0.8 * 0.9 = 0.36, which alpha = 1 prefers
    # (log 0.36 / 3 = -0.34 > log 0.5 = -0.69)
    tables = {None: np.log([0.5, 0.5]), 1: np.log([0.2, 0.8]), 0: np.log([0.9, 0.1])}

    def step(state, token):
        return tables[token if state < 2 else 0], state + 1
    short = beam_search(step, 0, 3, beam=4, eos=0, alpha=0.0)[0]
    long = beam_search(step, 0, 3, beam=4, eos=0, alpha=1.0)[0]
    assert short.tokens == (0,)
    assert long.tokens == (1, 1, 0) and long.log_prob == pytest.approx(math.log(0.36))


def test_fixed_steps_beam_equals_per_step_argmax():
    rng = np.random.default_rng(3)
    log_probs = np.log(rng.dirichlet(np.ones(11), size=10))
    step = fixed_steps(log_probs)
    b = beam_search(step, 0, 10, beam=3)[0]
    assert b.tokens == tuple(log_probs.argmax(axis=1))
    assert b.log_prob == pytest.approx(log_probs.max(axis=1).sum())
