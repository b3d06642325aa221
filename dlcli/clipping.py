"""Gradient clipping (`optimizer.clip`), applied after backward and before the update.

{value: v}: every gradient entry clipped to [-v, v] (the course's `clip`, np.clip in place);
{norm: n}: all gradients rescaled together so that their global L2 norm is at most n
(PyTorch's clip_grad_norm_). Returns whether anything changed, so the progress line can say
how often clipping fired.
"""

from __future__ import annotations

import math

import numpy as np


def clip_gradients(grads, clip: dict) -> bool:
    if clip.get("value") is not None:
        v = clip["value"]
        fired = False
        for g in grads:
            if g.size and float(np.abs(g).max()) > v:
                np.clip(g, -v, v, out=g)
                fired = True
        return fired
    limit = clip["norm"]
    total = math.sqrt(sum(float(np.vdot(g, g)) for g in grads))
    if total <= limit or not math.isfinite(total):
        return False
    scale = limit / total
    for g in grads:
        g *= g.dtype.type(scale)
    return True
