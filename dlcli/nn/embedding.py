"""Token ids -> vectors: `embedding` (the notes' embedding matrix E) and `one_hot`.

    {type: embedding, dim: 50, vocab: auto, init_from: glove.6B.50d.txt, trainable: true}
    {type: one_hot, vocab: auto}

Inputs are integer ids (m, T). Id -1 is a padded step (a zero vector; recurrent layers carry
their state over it), id -2 "no token" (a zero vector that is not masked: the course's
x<1> = 0 that starts a language model). `vocab: auto` is resolved before the build (the text
source's vocabulary size, or 1 + the largest id of integer inputs).

Embedding: parameter E (dim, vocab), e_j = E o_j, so the output at a step is E[:, id].
Backward adds each step's gradient into its token's column (grads zeroed, then +=) and
returns None: token ids have no gradient, so an embedding is a model's first layer.
Right before an LSTM, the embedding is fused into it (`fuse_next`): it hands the ids on, the
LSTM adds row id of the table E^T W_x^T + b in its gates instead of multiplying embedded
vectors, and sets dE itself (kernels/embedded.py; the char-LM step 6.23 -> 5.53 ms at batch 32).
GloVe vectors (`init_from`, the text format `word v1 v2 ...`) are copied in by
`dlcli.text.load_word_vectors` once the vocabulary is known; missing words keep their draw.
"""

from __future__ import annotations

import numpy as np

from . import register
from .base import Layer
from .inits import initialize


def _check_ids(x, vocab, kind):
    x = np.asarray(x)
    if x.dtype.kind not in "iu":
        if x.dtype.kind == "f" and np.all(np.mod(x, 1) == 0):
            x = x.astype(np.int64)
        else:
            raise ValueError(f"{kind} needs integer token ids (m, T), got {x.dtype} values")
    if x.size and (x.max() >= vocab or x.min() < -2):
        raise ValueError(f"{kind}: token id {int(x.max()) if x.max() >= vocab else int(x.min())} "
                         f"is outside 0..{vocab - 1} (or -1 padding, -2 no token)")
    return x


class _TokenLayer(Layer):
    needs_ids = True

    def __init__(self, vocab="auto"):
        super().__init__()
        if vocab == "auto":
            raise ValueError("vocab: auto was not resolved (the data gives no vocabulary)")
        if isinstance(vocab, bool) or not isinstance(vocab, (int, np.integer)) or vocab < 1:
            raise ValueError(f"vocab must be a positive integer or auto, got {vocab!r}")
        self.vocab = int(vocab)

    def _check_input_shape(self, input_shape):
        if len(input_shape) != 1:
            raise ValueError(f"{self.kind} needs token ids (m, T), got examples of shape "
                             f"{tuple(input_shape)}")


@register("embedding")
class Embedding(_TokenLayer):
    fused = None  # the LSTM after it that reads the table rows itself (`fuse_next`)

    def __init__(self, dim, vocab="auto", init_from=None, trainable=True, init=None):
        super().__init__(vocab)
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        self.dim, self.init_from, self.init = int(dim), init_from, init
        self.trainable_setting = bool(trainable)

    def build(self, input_shape, ctx):
        self._check_input_shape(input_shape)
        # xavier over dim: vectors of norm about 1 whatever the model's init
        self.params["E"] = initialize(self.init or "xavier", (self.dim, self.vocab), self.dim,
                                      self.dim, ctx.rng, ctx.dtype)
        self.grads["E"] = np.zeros_like(self.params["E"])
        self.trainable = self.trainable_setting
        self.input_shape = tuple(input_shape)
        self.output_shape = self.input_shape + (self.dim,)
        return self.output_shape

    def set_trainable(self, flag):
        super().set_trainable(flag and self.trainable_setting)

    def fuse_next(self, layer) -> bool:
        """Hand the ids to an LSTM right after: its gates take W_x E[:, id] + b as a row of one
        (vocab + 1, 4 n_a) table a step instead of a GEMM over the embedded inputs, and its
        backward sets dE (nn/recurrent_cells.py `LSTMCell.forward_tokens`)."""
        from .recurrent import LSTM
        self.fused = layer if isinstance(layer, LSTM) else None
        if self.fused is not None:
            layer.embedding = self
        return self.fused is not None

    def forward(self, x, training):
        ids = _check_ids(x, self.vocab, "embedding")
        if self.fused is not None:  # the LSTM embeds them (`fuse_next`)
            if training:
                self.cache = ids
            return ids
        E = self.params["E"]
        out = E.T[np.maximum(ids, 0)]  # (m, T, dim)
        out[ids < 0] = 0
        if training:
            self.cache = ids
        return out

    def backward(self, dy):
        ids, self.cache = self.cache, None
        if self.fused is not None:  # the LSTM's backward set dE
            return None
        dE = self.grads["E"]
        dE[...] = 0
        from ..kernels.embedding import embedding_backward  # numba loads at the first backward
        # summed step by step: the steps that share a token all count (a fancy += keeps one)
        embedding_backward(ids.reshape(-1), np.ascontiguousarray(dy, dtype=dE.dtype).reshape(ids.size, -1), dE)
        return None

    def describe(self):
        return f"embedding {self.dim}" + ("" if self.trainable_setting else " frozen")


@register("one_hot")
class OneHot(_TokenLayer):
    """The course's x<t>: the one-hot vector of the token (zeros for -1 and -2); no parameters."""

    def build(self, input_shape, ctx):
        self._check_input_shape(input_shape)
        self.dtype = ctx.dtype
        self.input_shape = tuple(input_shape)
        self.output_shape = self.input_shape + (self.vocab,)
        return self.output_shape

    def forward(self, x, training):
        ids = _check_ids(x, self.vocab, "one_hot")
        out = np.zeros(ids.shape + (self.vocab,), dtype=self.dtype)
        rows = np.nonzero(ids >= 0)
        out[rows + (ids[rows],)] = 1
        return out

    def backward(self, dy):
        return None

    def describe(self):
        return f"one_hot {self.vocab}"
