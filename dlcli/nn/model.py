"""The model: a stack of layers, a loss and L2, with named parameters.

Parameter names follow SPEC's params.npz: `"<layer index>.<name>"`, nested layers
`"4.layers.0.W"`. Where the last activation and the loss belong together (sigmoid with binary
cross-entropy, softmax with categorical cross-entropy) the loss applies that activation
itself, from the logits, so the cost never takes log(0) at saturation.
"""

from __future__ import annotations

import numpy as np

from . import build_layer
from .base import BuildContext, Layer, walk
from .losses import Loss, make_loss


class Sequential(Layer):
    type_name = "sequential"

    def __init__(self, layers):
        super().__init__()
        self.layers = [build_layer(s) if isinstance(s, dict) else s for s in layers]

    def children(self):
        return [(str(i), layer) for i, layer in enumerate(self.layers)]

    def build(self, input_shape, ctx):
        self.input_shape = shape = tuple(input_shape)
        for layer in self.layers:
            in_shape, shape = shape, tuple(layer.build(shape, ctx))
            layer.input_shape, layer.output_shape = in_shape, shape
        for layer, after in zip(self.layers, self.layers[1:]):
            if hasattr(layer, "fuse_next"):  # a layer that can run the next one's pass (nn/conv.py)
                layer.fuse_next(after)
        self.output_shape = shape
        return shape

    def forward(self, x, training):
        for layer in self.layers:
            x = layer.forward(x, training)
        return x

    def backward(self, dy):
        for layer in reversed(self.layers):
            dy = layer.backward(dy)
        return dy


class Model:
    """Layers + loss + L2: `cost(x, y)` then `backward()` leaves every gradient in place."""

    def __init__(self, layers, loss: Loss, l2: float = 0.0):
        self.net = layers if isinstance(layers, Sequential) else Sequential(layers)
        self.loss = loss
        self.l2 = float(l2)
        self._m = None
        self.fused_activation = None  # the last layer's activation, applied by the loss
        self.mask_layers = []  # recurrent layers that skip padded steps (nn/recurrent.py)

    @property
    def layers(self) -> list[Layer]:
        return self.net.layers

    def build(self, input_shape, ctx: BuildContext):
        self.dtype = np.dtype(ctx.dtype)
        self.input_shape = tuple(input_shape)
        if self.layers:
            self.layers[0].needs_input_grad = False  # the data needs no gradient
        shape = self.net.build(input_shape, ctx)
        self.mask_layers = [layer for _, layer in walk(self.net) if getattr(layer, "uses_mask", False)]
        return shape

    # -- training step ------------------------------------------------------------------
    def forward(self, x, training=False):
        if self.mask_layers:  # token ids with -1 padding: the steps every recurrent layer skips
            from .sequence import set_mask
            set_mask(self.mask_layers, x)
        return self.net.forward(x, training)

    def cost(self, x, y, training=True) -> float:
        """The mini-batch cost (loss + lambda/(2m) sum ||W||^2), ready for backward()."""
        if self.mask_layers:  # padded to the longest in this mini-batch, not in the split
            from .sequence import trim_padding
            x, y = trim_padding(x, y, self.layers)
        z = self.forward(x, training)
        self._m = x.shape[0]
        return self.loss.forward(z, y) + self.l2_cost(self._m)

    def l2_cost(self, m) -> float:
        if not self.l2:
            return 0.0
        total = sum(float(np.vdot(p, p)) for _, layer, key, p in self._weights())
        return self.l2 / (2 * m) * total

    def backward(self):
        self.net.backward(self.loss.backward())
        if self.l2:
            for _, layer, key, p in self._weights():
                layer.grads[key] += (self.l2 / self._m) * p

    def _weights(self):
        for prefix, layer in walk(self.net):
            for key in layer.regularized:
                if key in layer.params:
                    yield prefix, layer, key, layer.params[key]

    # -- inference ------------------------------------------------------------------------
    def predict_proba(self, x, batch_size: int = 1024) -> np.ndarray:
        """Outputs in inference mode (probabilities for classifiers), in batches."""
        outs = [self.loss.output(self.forward(x[i:i + batch_size], False))
                for i in range(0, x.shape[0], batch_size)]
        return np.concatenate(outs) if outs else np.zeros((0,) + self.net.output_shape)

    def predict(self, x, batch_size: int = 1024) -> np.ndarray:
        return self.loss.predict(self.predict_proba(x, batch_size))

    def error(self, x, y, batch_size: int = 1024) -> float:
        return self.loss.error(self.predict_proba(x, batch_size), y)

    # -- parameters -----------------------------------------------------------------------
    def named_layers(self):
        """(prefix, layer) for each layer, nested ones included; the top level is "0.", "1."...
        A loss with parameters (siamese_binary's w, b) comes last, as "loss."."""
        layers = [(p, layer) for p, layer in walk(self.net) if layer is not self.net]
        if getattr(self.loss, "params", None):
            layers.append(("loss.", self.loss))
        return layers

    def trainable(self):
        """(name, layer, key) for every parameter the optimizer updates."""
        return [(prefix + key, layer, key)
                for prefix, layer in self.named_layers() if layer.trainable
                for key in layer.params]

    def state_dict(self) -> dict[str, np.ndarray]:
        state = {}
        for prefix, layer in self.named_layers():
            for key, value in {**layer.params, **layer.buffers}.items():
                state[prefix + key] = value
        return state

    def load_state_dict(self, state: dict, strict: bool = True) -> tuple[list, list]:
        """Copy matching arrays in place. Returns (loaded names, skipped names with reasons)."""
        loaded, skipped = [], []
        own = {}
        for prefix, layer in self.named_layers():
            for store in (layer.params, layer.buffers):
                for key in store:
                    own[prefix + key] = (store, key)
        for name, value in state.items():
            if name not in own:
                skipped.append(f"{name} (no such parameter)")
                continue
            store, key = own[name]
            if store[key].shape != tuple(np.shape(value)):
                skipped.append(f"{name} (shape {tuple(np.shape(value))} != {store[key].shape})")
                continue
            store[key][...] = value
            loaded.append(name)
        if strict and (skipped or len(loaded) != len(own)):
            named = {n.split(" ")[0] for n in skipped}
            missing = sorted(set(own) - set(loaded) - named)
            raise ValueError("state does not match the model: "
                             + ", ".join(skipped + [f"{n} (missing)" for n in missing]))
        return loaded, skipped

    def parameter_count(self) -> int:
        return sum(p.size for _, layer in self.named_layers() for p in layer.params.values())

    def summary(self) -> list[dict]:
        """One row per top-level layer: index, type, output shape, parameter count."""
        rows = [{"index": i, "layer": layer.describe(), "output_shape": layer.output_shape,
                 "parameters": layer.parameter_count()}
                for i, layer in enumerate(self.layers)]
        if rows and self.fused_activation:  # the loss applies it, the recipe wrote it here
            rows[-1]["layer"] += f" {self.fused_activation}"
        return rows


FUSED = {"sigmoid", "softmax"}


def build_model(model_cfg: dict, loss: str = "auto", l2: float = 0.0, input_shape=(),
                dtype="float32", rng=None, dropout_rng=None) -> Model:
    """A built Model from the recipe's `model` mapping (`init`, `layers`, `freeze`)."""
    specs = [dict(s) for s in model_cfg["layers"]]
    last = max((i for i, s in enumerate(specs) if s.get("activation")), default=None)
    last_activation = specs[last]["activation"] if last is not None else "linear"
    if loss == "auto" and specs and specs[-1].get("type") == "yolo":
        loss = "yolo"  # a yolo head has its own loss (dlcli/detect/yolo.py)
    loss_obj = make_loss(loss, last_activation)
    fused = None
    if loss_obj.output_activation in FUSED and last_activation == loss_obj.output_activation:
        if last != len(specs) - 1:
            raise ValueError(f"the output activation {last_activation} must be the last layer's")
        # the loss applies the output activation from the logits (stable log-sigmoid/softmax)
        specs[-1] = {**specs[-1], "activation": "linear"}
        fused = last_activation
    model = Model([build_layer(s) for s in specs], loss_obj, l2)
    model.fused_activation = fused
    ctx = BuildContext(dtype=np.dtype(dtype),
                       rng=rng if rng is not None else np.random.default_rng(0),
                       init=model_cfg.get("init") or "he",
                       dropout_rng=dropout_rng if dropout_rng is not None else np.random.default_rng(1))
    model.build(input_shape, ctx)
    if hasattr(loss_obj, "bind"):  # a loss that reads the model's head (yolo's anchors, grid)
        loss_obj.bind(model)
    loss_obj.check(model.net.output_shape)
    if hasattr(loss_obj, "build"):  # a loss with parameters or its own random draws
        loss_obj.build(model.net.output_shape, ctx)
    for i in model_cfg.get("freeze") or []:
        model.layers[i].set_trainable(False)
    return model
