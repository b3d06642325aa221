"""The sequence loss and errors (SPEC "Sequences"): softmax cross-entropy at every unmasked
step, cost = (1/m) sum_i sum_t L<t>; labels (m, T) with -1 at padded steps, which add nothing
to the cost, the error or the gradient.

`CategoricalCrossentropy` hands outputs of rank 3 (m, T, C) here, so `loss: auto` with a
softmax on a sequence needs nothing new. The masks of padded input steps: `set_mask` (the Model
calls it before each forward pass) and `trim_padding` (each training step's batch).
"""

from __future__ import annotations

import math

import numpy as np


def sequence_crossentropy(z, y):
    """(cost, dz): z (m, T, C) logits, y (m, T) labels (-1: padded)."""
    from ..kernels.losses import masked_softmax_crossentropy
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


def set_mask(layers, x) -> None:
    """Token ids (m, T) with -1 at padded steps mask those steps in every layer of `layers`."""
    x = np.asarray(x)
    # rank 2 into a model with recurrent layers can only be token ids (an .npz's may be floats)
    mask = (x != -1) if x.ndim == 2 and x.dtype.kind in "iuf" else None
    for layer in layers:
        layer.mask = mask


# layers through which steps that are padding in every example change nothing downstream
TRIM_SAFE = {"embedding", "one_hot", "rnn", "gru", "lstm", "bidirectional", "dense",
             "activation", "dropout"}


def trim_padding(x, y, layers=()):
    """Token ids (m, T) and their labels cut after the last step any example uses: the steps
    cut are padding in every example, which adds nothing to the cost (SPEC: sequences are
    padded to the longest in the mini-batch). Labels (m, T) are cut alike; other x, y pass.
    Only for models made of TRIM_SAFE layers (an attention over all steps might see them)."""
    x = np.asarray(x)
    if x.ndim != 2 or x.dtype.kind not in "iuf" or x.shape[1] < 2 \
            or any(layer.kind not in TRIM_SAFE for layer in layers):
        return x, y
    used = np.nonzero((x != -1).any(axis=0))[0]
    T = int(used[-1]) + 1 if used.size else 1
    if T == x.shape[1]:
        return x, y
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == x.shape[1]:
        y = y[:, :T]
    return x[:, :T], y
