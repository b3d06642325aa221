"""Corpus BLEU equals nltk's corpus_bleu and sacrebleu's on random corpora."""

import math

import numpy as np
import pytest

from dlcli.bleu import corpus_bleu


def random_corpus(rng, n_sentences, vocab, n_refs):
    words = [f"w{i}" for i in range(vocab)]
    refs, hyps = [], []
    for _ in range(n_sentences):
        ref0 = list(rng.choice(words, size=rng.integers(4, 15)))
        # hypotheses: edits of the first reference, so that 4-gram matches exist
        hyp = [w if rng.random() < 0.8 else str(rng.choice(words)) for w in ref0]
        hyp = hyp[:len(hyp) - rng.integers(0, 3)] + list(rng.choice(words, size=rng.integers(0, 3)))
        # at least 4 tokens: nltk counts a hypothesis without n-grams of some n as 1 such n-gram
        # (its max(1, count) denominator), Papineni and sacrebleu as 0
        hyp += list(rng.choice(words, size=max(0, 4 - len(hyp))))
        others = [list(rng.choice(words, size=rng.integers(3, 16))) for _ in range(n_refs - 1)]
        refs.append([ref0] + others)
        hyps.append(hyp)
    return refs, hyps


@pytest.mark.parametrize("seed", range(6))
def test_equals_nltk(seed):
    nltk_bleu = pytest.importorskip("nltk.translate.bleu_score")
    rng = np.random.default_rng(seed)
    refs, hyps = random_corpus(rng, 20, 12, 1 + seed % 3)
    expected = nltk_bleu.corpus_bleu(refs, hyps)
    assert expected > 0.05
    assert corpus_bleu(refs, hyps) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_equals_sacrebleu_single_reference(seed):
    sacrebleu = pytest.importorskip("sacrebleu")
    rng = np.random.default_rng(100 + seed)
    refs, hyps = random_corpus(rng, 30, 10, 1)
    expected = sacrebleu.corpus_bleu([" ".join(h) for h in hyps], [[" ".join(r[0]) for r in refs]],
                                     tokenize="none", smooth_method="none").score / 100
    assert corpus_bleu(refs, hyps) == pytest.approx(expected, rel=1e-9)


def test_brevity_penalty_and_perfect_match():
    ref = "the cat is on the mat".split()
    assert corpus_bleu([[ref]], [ref]) == pytest.approx(1.0)
    short = "the cat is on the".split()
    # every n-gram of a prefix matches: BLEU is the brevity penalty alone
    assert corpus_bleu([[ref]], [short]) == pytest.approx(math.exp(1 - 6 / 5))


def test_no_four_gram_match_is_zero_and_clipping():
    assert corpus_bleu([["a b c d e".split()]], [["a", "b", "c", "x", "e"]]) == 0.0
    # the notes' example: "the the the ..." gets 2/7 unigram precision, not 7/7
    hyp = ["the"] * 7
    refs = ["the cat is on the mat".split(), "there is a cat on the mat".split()]
    assert corpus_bleu([refs], [hyp], max_n=1) == pytest.approx(2 / 7)
    assert corpus_bleu([refs], [hyp]) == 0.0
