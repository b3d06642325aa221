"""Corpus BLEU (Papineni et al. 2002), as the notes' course 5.3 describes it.

    p_n  = sum over hypotheses of clipped n-gram counts / sum of hypothesis n-gram counts
           (an n-gram counts at most as often as it appears in the reference that holds it most)
    BP   = 1 if c > r else exp(1 - r / c)    c: total hypothesis length, r: for each hypothesis
           the reference length closest to its own (the shorter on a tie), summed
    BLEU = BP exp(sum_n w_n log p_n),  w_n = 1/4 for n = 1..4

Counts are pooled over the corpus before dividing (corpus-level, not the mean of sentence
BLEUs). Without smoothing a p_n of 0 gives BLEU 0, as nltk's `corpus_bleu` and sacrebleu's
`smooth_method="none"` do. Tokens are any hashable values (words, ids).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Hashable, Sequence


def ngrams(tokens: Sequence[Hashable], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def corpus_bleu(references: Sequence[Sequence[Sequence[Hashable]]],
                hypotheses: Sequence[Sequence[Hashable]], max_n: int = 4) -> float:
    """BLEU in [0, 1] of `hypotheses[i]` against the references `references[i]` (one or more each)."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference lists")
    matched, total = [0] * max_n, [0] * max_n
    c = r = 0
    for refs, hyp in zip(references, hypotheses):
        if not refs:
            raise ValueError("every hypothesis needs at least one reference")
        hyp = list(hyp)
        refs = [list(ref) for ref in refs]
        c += len(hyp)
        r += min((abs(len(ref) - len(hyp)), len(ref)) for ref in refs)[1]
        for n in range(1, max_n + 1):
            counts = ngrams(hyp, n)
            most = Counter()
            for ref in refs:
                most |= ngrams(ref, n)  # element-wise max over the references
            matched[n - 1] += sum(min(k, most[g]) for g, k in counts.items())
            total[n - 1] += sum(counts.values())
    if c == 0 or any(m == 0 for m in matched):
        return 0.0
    log_p = sum(math.log(m / t) for m, t in zip(matched, total)) / max_n
    bp = 1.0 if c > r else math.exp(1 - r / c)
    return bp * math.exp(log_p)
