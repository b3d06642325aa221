"""Greedy decoding and beam search with the course's length normalization.

Both work over a step function, so any decoder plugs in:

    step(state, token) -> (log_probs (V,), next_state)

`token` is the token just emitted (None at the first step); `state` is whatever the decoder
carries (an LSTM's s and c, or just the step number for a decoder that never reads its own
outputs, as the course's date model). A hypothesis ends when it emits `eos` (where there is
one) or reaches `max_length` tokens.

Beam search (the notes' 5.3): at each step every live hypothesis is extended by every token;
the `beam` most probable extensions (by sum log P) are kept, those that end leave the beam.
The answer is the ended hypothesis with the best normalized score
`(1 / T_y^alpha) sum_t log P(y<t> | x, y<1..t-1>)`: alpha = 0 is the raw probability (which
favours short outputs), alpha = 1 the mean log-probability per token; the course suggests 0.7.
`beam = 1` is greedy decoding.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field


@dataclass(order=True)
class Hypothesis:
    score: float                      # the length-normalized score, what the search ranks by
    log_prob: float = field(compare=False)   # sum log P of the tokens
    tokens: tuple = field(compare=False)

    @property
    def probability(self) -> float:
        return math.exp(self.log_prob)


def normalized(log_prob: float, length: int, alpha: float) -> float:
    return log_prob / (max(length, 1) ** alpha) if alpha else log_prob


def greedy(step, state, max_length: int, eos=None, alpha: float = 0.0) -> Hypothesis:
    """The most probable token at each step, fed back."""
    tokens, total, token = [], 0.0, None
    for _ in range(max_length):
        log_probs, state = step(state, token)
        token = max(range(len(log_probs)), key=log_probs.__getitem__)
        total += float(log_probs[token])
        tokens.append(token)
        if token == eos:
            break
    return Hypothesis(normalized(total, len(tokens), alpha), total, tuple(tokens))


def beam_search(step, state, max_length: int, beam: int, eos=None, alpha: float = 0.0,
                n_best: int = 1) -> list[Hypothesis]:
    """The `n_best` ended hypotheses with the best normalized scores, best first."""
    if beam < 1:
        raise ValueError(f"the beam width must be at least 1, got {beam}")
    live = [(0.0, (), state)]  # (sum log P, tokens, decoder state before the next token)
    ended: list[Hypothesis] = []
    for t in range(1, max_length + 1):
        candidates = []
        for log_prob, tokens, st in live:
            log_probs, next_state = step(st, tokens[-1] if tokens else None)
            for v, lp in enumerate(log_probs):
                candidates.append((log_prob + float(lp), tokens + (v,), next_state))
        # the most probable extensions; among equals the earlier (lower token ids) first
        kept = heapq.nlargest(beam, candidates, key=lambda c: c[0])
        live = []
        for log_prob, tokens, st in kept:
            if tokens[-1] == eos or t == max_length:
                ended.append(Hypothesis(normalized(log_prob, t, alpha), log_prob, tokens))
            else:
                live.append((log_prob, tokens, st))
        if not live:
            break
    return sorted(ended, key=lambda h: -h.score)[:n_best]


def sequence_log_prob(step, state, tokens) -> float:
    """sum_t log P(y<t> | x, y<1..t-1>) of given tokens (the error analysis' P(y*|x))."""
    total, prev = 0.0, None
    for token in tokens:
        log_probs, state = step(state, prev)
        total += float(log_probs[token])
        prev = token
    return total


def fixed_steps(log_probs):
    """A step function over per-step log-probabilities (T, V) that do not depend on the tokens
    emitted (a decoder that never reads its own output, like the course's date model)."""
    def step(t, _token):
        return log_probs[t], t + 1
    return step
