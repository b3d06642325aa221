"""The layers a recipe's `model.layers` may hold, one schema per `type:` (SPEC "Layers").

A new layer type is its nn class (registered with `dlcli.nn.layers.register`), its schema
here and its row in the README's layer table; `LAYER_CLASSES` is the one list the recipe
reads (unknown types get "must be one of ..." with the closest as a hint).
"""

from __future__ import annotations

from typing import Annotated, Any, Optional

from pydantic import BaseModel, BeforeValidator, Field, PlainValidator, model_validator

from .recipe_types import (Activation, Beta, Init, Padding, PathStr, PositiveFloat, PositiveInt,
                           Probability, Strict, _fail, _hint, _is_int, _one_of, _tagged)


# layers
def _units(value):
    if value == "auto" or (_is_int(value) and value >= 1):
        return value
    raise _fail("must be a positive integer", value, hint=" (or auto: the classes or the target vocabulary)"
                if isinstance(value, str) else "")


class Dense(Strict):
    type: str = "dense"
    units: Annotated[Any, PlainValidator(_units)]
    activation: Activation = "linear"
    bias: bool = True
    init: Optional[Init] = None


class Conv2D(Strict):
    type: str = "conv2d"
    filters: PositiveInt
    size: PositiveInt
    stride: PositiveInt = 1
    padding: Padding = "valid"
    activation: Activation = "linear"
    bias: bool = True
    init: Optional[Init] = None


class DepthwiseConv2D(Strict):
    type: str = "depthwise_conv2d"
    size: PositiveInt
    stride: PositiveInt = 1
    padding: Padding = "valid"
    activation: Activation = "linear"
    bias: bool = True
    init: Optional[Init] = None


class Conv2DTranspose(Strict):
    type: str = "conv2d_transpose"
    filters: PositiveInt
    size: PositiveInt
    stride: PositiveInt = 1
    padding: _one_of("valid", "same") = "valid"  # same: output n s, as Keras (U-Net)
    activation: Activation = "linear"
    bias: bool = True
    init: Optional[Init] = None


class _Pool(Strict):
    type: str  # first in to_dict(), like every layer's; each pool sets its own
    size: PositiveInt
    stride: Optional[PositiveInt] = None  # the pool's size, as the notes' f = s
    padding: _one_of("valid", "same") = "valid"

    @model_validator(mode="after")
    def _stride_defaults_to_size(self):
        if self.stride is None:
            self.stride = self.size
        return self


class MaxPool(_Pool):
    type: str = "maxpool"


class AvgPool(_Pool):
    type: str = "avgpool"


class GlobalAvgPool(Strict):
    type: str = "global_avgpool"


class Flatten(Strict):
    type: str = "flatten"


class BatchNorm(Strict):
    type: str = "batchnorm"
    momentum: Beta = 0.9
    epsilon: PositiveFloat = 1e-5


class Dropout(Strict):
    type: str = "dropout"
    keep_prob: Probability


class ActivationLayer(Strict):
    type: str = "activation"
    activation: Activation


class Residual(Strict):
    type: str = "residual"
    layers: list[Layer] = Field(min_length=1)
    activation: Activation = "relu"
    projection: _one_of("auto", True, False) = "auto"


class Branches(Strict):
    type: str = "branches"
    paths: list[Annotated[list[Layer], Field(min_length=1)]] = Field(min_length=1)


# sequences (nn/recurrent.py, nn/embedding.py)
def _vocab(value):
    if value == "auto" or (_is_int(value) and value >= 1):
        return value
    raise _fail("must be a positive integer", value, hint=" (or auto: the data's vocabulary)"
                if isinstance(value, str) else "")


Vocab = Annotated[Any, PlainValidator(_vocab)]


class Embedding(Strict):
    type: str = "embedding"
    dim: PositiveInt
    vocab: Vocab = "auto"
    init_from: Optional[PathStr] = None
    trainable: bool = True
    init: Optional[Init] = None


class OneHot(Strict):
    type: str = "one_hot"
    vocab: Vocab = "auto"


class SimpleRNN(Strict):
    type: str = "rnn"
    units: PositiveInt
    activation: _one_of("tanh", "relu", "sigmoid", "linear", "leaky_relu") = "tanh"
    return_sequences: bool = False
    init: Optional[Init] = None


class GRU(Strict):
    type: str = "gru"
    units: PositiveInt
    return_sequences: bool = False
    init: Optional[Init] = None


class LSTM(Strict):
    type: str = "lstm"
    units: PositiveInt
    return_sequences: bool = False
    init: Optional[Init] = None


def _recurrent_kind(value):
    if isinstance(value, BaseModel):
        return value.type
    return value.get("type") if isinstance(value, dict) else None


class Bidirectional(Strict):
    type: str = "bidirectional"
    layer: _tagged(_recurrent_kind, ("rnn", SimpleRNN), ("gru", GRU), ("lstm", LSTM),
                   error="must be a recurrent layer: {type: lstm|gru|rnn, units: N, ...}")


# sequence to sequence (course 5.3): dlcli/nn/attention.py
class AttentionDecoder(Strict):
    type: str = "attention_decoder"
    units: PositiveInt
    steps: PositiveInt
    attention_units: PositiveInt = 10
    init: Optional[Init] = None


# detection and segmentation (dlcli/detect/layers.py)
class SkipConcat(Strict):
    type: str = "skip_concat"
    layers: list[Layer] = Field(min_length=1)


class Yolo(Strict):
    type: str = "yolo"
    anchors: list[Annotated[list[PositiveFloat], Field(min_length=2, max_length=2)]] = Field(min_length=1)
    classes: PositiveInt


class L2Normalize(Strict):
    type: str = "l2_normalize"


LAYER_CLASSES = {cls.model_fields["type"].default: cls for cls in (
    Dense, Conv2D, DepthwiseConv2D, Conv2DTranspose, MaxPool, AvgPool, GlobalAvgPool, Flatten,
    BatchNorm, Dropout, ActivationLayer, Residual, Branches, SkipConcat, Yolo, L2Normalize,
    Embedding, OneHot, SimpleRNN, GRU, LSTM, Bidirectional, AttentionDecoder)}


def _layer_type(value):
    """Check `type:` before the union so that a bad one gets its own message and key."""
    if isinstance(value, BaseModel):
        return value
    if not isinstance(value, dict):
        raise _fail("must be a mapping such as {type: dense, units: 10}", value)
    kind = value.get("type")
    if kind not in LAYER_CLASSES:
        message = "is required: one of " if kind is None else "must be one of "
        raise _fail(message + ", ".join(LAYER_CLASSES),
                    ... if kind is None else kind, at="type", hint=_hint(kind, LAYER_CLASSES))
    return value


Layer = Annotated[
    _tagged(lambda v: v.type if isinstance(v, BaseModel) else v["type"],
            *LAYER_CLASSES.items(), error="must be a layer mapping"),
    BeforeValidator(_layer_type)]
Residual.model_rebuild()
Branches.model_rebuild()
SkipConcat.model_rebuild()
