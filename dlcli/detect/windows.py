"""Sliding windows, naive and convolutional (the notes' "convolutional implementation of
sliding windows", after OverFeat).

A classifier trained on h x w crops, `valid` convolutions and pools, then flatten and dense
layers, runs over a larger image two ways:
- `naive_windows`: every crop at stride S (the product of the strides before flatten) through
  the classifier, one crop at a time in the notes' telling (here batched);
- `convolutional_windows`: the same network with its dense layers turned into convolutions --
  the first an h' x w' valid conv over the flatten's (h', w', c) input (its weights the dense
  W reshaped in flatten's order), the rest 1x1 -- run once over the whole image; output cell
  (r, c) is the classifier on the crop at (r S, c S). The shared work of overlapping crops
  is done once: that is the saving (benchmarks/windows.py).
Both need `valid` padding: a `same` conv sees zeros at a crop's border but neighbours inside
the big image, so the two would differ.
"""

from __future__ import annotations

import numpy as np

from ..errors import BadInput

SHAPE_AGNOSTIC = {"conv2d", "maxpool", "avgpool", "batchnorm", "activation", "dropout", "depthwise_conv2d"}


def plan(model):
    """(index of flatten, stride S, window (h, w), flatten's input (h', w', c)) or BadInput."""
    kinds = [layer.kind for layer in model.layers]
    if "flatten" not in kinds:
        raise BadInput("sliding windows need a classifier with a flatten layer before its dense layers")
    k = kinds.index("flatten")
    stride = 1
    for layer in model.layers[:k]:
        if layer.kind not in SHAPE_AGNOSTIC:
            raise BadInput(f"sliding windows cannot run a {layer.kind} layer over a larger image")
        if getattr(layer, "padding", "valid") not in ("valid", 0):
            raise BadInput("sliding windows need valid padding before flatten: a same conv sees "
                           "zeros at a crop's edge but neighbours inside the image")
        stride *= getattr(layer, "stride", 1)
    for layer in model.layers[k + 1:]:
        if layer.kind not in ("dense", "dropout", "activation"):
            raise BadInput(f"sliding windows turn dense layers into convolutions, not {layer.kind}")
    feature = model.layers[k].input_shape
    if feature[0] != feature[1]:
        raise BadInput(f"the flatten's input {feature} is not square: conv2d filters are f x f")
    return k, stride, tuple(model.input_shape[:2]), tuple(feature)


def convolutional_net(model, recipe_layers, image_shape):
    """A Sequential for images of `image_shape`: the model's layers, dense turned into convs,
    with the model's parameters (the last activation left to the loss, as in the model)."""
    from ..nn import build_layer
    from ..nn.base import BuildContext
    from ..nn.model import Sequential
    k, _, _, feature = plan(model)
    specs, sources = [], []
    first = True
    for i, spec in enumerate(recipe_layers):
        spec = dict(spec)
        if i == k:
            continue
        if i > k and spec["type"] == "dense":
            activation = spec.get("activation", "linear")
            if i == len(recipe_layers) - 1 and model.fused_activation:
                activation = "linear"
            spec = {"type": "conv2d", "filters": spec["units"], "size": feature[0] if first else 1,
                    "padding": "valid", "activation": activation, "bias": spec.get("bias", True)}
            first = False
        specs.append(spec)
        sources.append(i)
    net = Sequential([build_layer(s) for s in specs])
    net.build(tuple(image_shape), BuildContext(dtype=model.dtype))
    for layer, i in zip(net.layers, sources):
        original = model.layers[i]
        if original.kind == "dense":
            W = original.params["W"]  # (n, h' w' c) in flatten's (row, col, channel) order
            shape = layer.params["W"].shape
            layer.params["W"][...] = W.T.reshape(shape)
            if "b" in original.params:
                layer.params["b"][...] = original.params["b"].reshape(-1)
        else:
            for store, other in ((layer.params, original.params), (layer.buffers, original.buffers)):
                for key in store:
                    store[key][...] = other[key]
    return net


def convolutional_windows(model, recipe_layers, image) -> tuple[np.ndarray, int]:
    """((R, C, n) outputs of the classifier on each window, stride S) for one (H, W, c) image."""
    _, stride, _, _ = plan(model)
    net = convolutional_net(model, recipe_layers, image.shape)
    z = net.forward(np.ascontiguousarray(image[None], dtype=model.dtype), False)
    return model.loss.output(z)[0], stride


def naive_windows(model, image, grid=None) -> tuple[np.ndarray, int]:
    """The same by cropping each window and classifying the crops: (R, C, n), stride S."""
    _, stride, (h, w), _ = plan(model)
    rows = grid[0] if grid else (image.shape[0] - h) // stride + 1
    cols = grid[1] if grid else (image.shape[1] - w) // stride + 1
    crops = np.stack([image[r * stride:r * stride + h, c * stride:c * stride + w]
                      for r in range(rows) for c in range(cols)])
    out = model.predict_proba(np.ascontiguousarray(crops, dtype=model.dtype))
    return out.reshape(rows, cols, -1), stride
