"""The sequence loss and errors (SPEC "Sequences"): softmax cross-entropy at every unmasked
step, cost = (1/m) sum_i sum_t L<t>; labels (m, T) with -1 at padded steps, which add nothing
to the cost, the error or the gradient.

`CategoricalCrossentropy` hands outputs of rank 3 (m, T, C) here, so `loss: auto` with a
softmax on a sequence needs nothing new.
"""

from __future__ import annotations

import math

import numpy as np


def sequence_crossentropy(z, y):
    """(cost, dz): z (m, T, C) logits, y (m, T) labels (-1: padded)."""
    from ..kernels.recurrent import masked_softmax_crossentropy
    y = np.asarray(y)
    if y.shape != z.shape[:2]:
        raise ValueError(f"a sequence output (m, T, C) needs labels (m, T), got {z.shape} and {y.shape}")
    m, T, C = z.shape
    z2 = np.ascontiguousarray(z).reshape(m * T, C)
    dz = np.empty_like(z2)
    total = masked_softmax_crossentropy(z2, np.ascontiguousarray(y.reshape(-1), dtype=np.int64),
                                        1.0 / m, dz)
    return total / m, dz.reshape(z.shape)


def token_error(out, y) -> float:
    """Wrong unmasked steps / unmasked steps."""
    y = np.asarray(y)
    present = y >= 0
    if not present.any():
        return 0.0
    return float(np.mean(out.argmax(axis=-1)[present] != y[present]))


def sequence_metrics(probabilities, y) -> dict:
    """sequence_error (examples with any wrong unmasked step) and perplexity
    (exp of the mean per-token loss) of one split."""
    y = np.asarray(y)
    present = y >= 0
    wrong = (probabilities.argmax(axis=-1) != y) & present
    p = np.take_along_axis(probabilities, np.maximum(y, 0)[..., None], axis=-1)[..., 0]
    logp = np.log(np.maximum(p[present].astype(np.float64), 1e-300))
    return {"sequence_error": float(np.mean(wrong.any(axis=1))) if len(y) else None,
            "perplexity": float(math.exp(-logp.mean())) if logp.size else None,
            "bleu": None}
