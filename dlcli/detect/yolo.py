"""YOLO: the reshape-only `yolo` head, its loss (SPEC), and decoding into scored boxes.

The head only reshapes a conv's `(m, S, S, A (5 + C))` into `(m, S, S, A, 5 + C)`; each
anchor's slice is `[t_o, t_x, t_y, t_h, t_w, class logits...]`. The loss applies sigmoid / exp
/ softmax to these logits itself, as ultralytics' and PyTorch-YOLOv3's heads decode only for
inference:

    p_c = sigmoid(t_o)   b_x = (col + sigmoid(t_x)) / S_W   b_y = (row + sigmoid(t_y)) / S_H
    b_h = anchor_h exp(t_h)   b_w = anchor_w exp(t_w)   class probabilities = softmax

loss = (1/m) sum over cells and anchors of
    lambda_coord [obj] ((sigmoid(t_x) - x*)^2 + (sigmoid(t_y) - y*)^2 + (t_h - h*)^2 + (t_w - w*)^2)
  + [obj] softplus(-t_o) + lambda_noobj [no obj] softplus(t_o)      (binary cross-entropy from t_o)
  + [obj] -log softmax(class logits)[class]
"""

from __future__ import annotations

import numpy as np

from ..nn import register
from ..nn.base import Layer
from ..nn.losses import Loss, register as register_loss
from .map import evaluate, map_50
from .nms import per_class_nms
from .targets import encode

LAMBDA_COORD = 5.0
LAMBDA_NOOBJ = 0.5


@register("yolo")
class YoloHead(Layer):
    """`{type: yolo, anchors: [[b_h, b_w], ...], classes: C}` (anchor shapes as fractions)."""

    def __init__(self, anchors, classes):
        super().__init__()
        self.anchors = np.asarray(anchors, dtype=np.float64).reshape(-1, 2)
        if not (self.anchors > 0).all():
            raise ValueError("yolo anchors are [b_h, b_w] pairs of positive fractions")
        self.classes = int(classes)

    def build(self, input_shape, ctx):
        per = 5 + self.classes
        if len(input_shape) != 3 or input_shape[2] != len(self.anchors) * per:
            raise ValueError(f"yolo with {len(self.anchors)} anchors and {self.classes} classes "
                             f"needs a conv output (S, S, {len(self.anchors) * per}), got "
                             f"{tuple(input_shape)}")
        self.input_shape = tuple(input_shape)
        self.grid = tuple(input_shape[:2])
        self.output_shape = self.grid + (len(self.anchors), per)
        return self.output_shape

    def forward(self, x, training):
        return x.reshape((x.shape[0],) + self.output_shape)

    def backward(self, dy):
        return dy.reshape((dy.shape[0],) + self.input_shape)

    def describe(self):
        return f"yolo {len(self.anchors)} anchors x (5 + {self.classes})"


def _sigmoid(z):
    return 0.5 * (1 + np.tanh(0.5 * z))  # no overflow warning at large |z|


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _softplus(z):
    return np.logaddexp(0, z)


def decode(z, anchors) -> np.ndarray:
    """Head logits (m, S_H, S_W, A, 5 + C) -> `[p_c, b_x, b_y, b_h, b_w, class probabilities]`."""
    z = np.asarray(z)
    _, s_h, s_w, _, _ = z.shape
    out = np.empty_like(z)
    out[..., 0] = _sigmoid(z[..., 0])
    out[..., 1] = (np.arange(s_w)[None, None, :, None] + _sigmoid(z[..., 1])) / s_w
    out[..., 2] = (np.arange(s_h)[None, :, None, None] + _sigmoid(z[..., 2])) / s_h
    anchors = np.asarray(anchors, dtype=z.dtype)
    with np.errstate(over="ignore"):
        out[..., 3] = anchors[:, 0] * np.exp(z[..., 3])
        out[..., 4] = anchors[:, 1] * np.exp(z[..., 4])
    out[..., 5:] = _softmax(z[..., 5:])
    return out


def detections(decoded, score_threshold=0.6, iou_threshold=0.5, max_boxes=10) -> np.ndarray:
    """(m, max_boxes, 6) rows `[class, score, b_x, b_y, b_h, b_w]`, highest score first, class -1
    padding: score = p_c x class probability (the best class of each box), boxes under the
    threshold dropped, then non-max suppression per class."""
    decoded = np.asarray(decoded)
    m = decoded.shape[0]
    flat = decoded.reshape(m, -1, decoded.shape[-1])
    scores = flat[..., :1] * flat[..., 5:]
    cls, best = scores.argmax(-1), scores.max(-1)
    out = np.full((m, max_boxes, 6), -1.0, dtype=np.float64)
    out[..., 1:] = 0
    for i in range(m):
        keep = np.flatnonzero(best[i] >= score_threshold)
        if not len(keep):
            continue
        chosen = keep[per_class_nms(flat[i, keep, 1:5], best[i, keep], cls[i, keep],
                                    iou_threshold, max_boxes)]
        out[i, :len(chosen), 0] = cls[i, chosen]
        out[i, :len(chosen), 1] = best[i, chosen]
        out[i, :len(chosen), 2:] = flat[i, chosen, 1:5]
    return out


def as_list(rows) -> list:
    """The real rows of a padded (K, 6) detections / (K, 5) truths array."""
    rows = np.asarray(rows)
    return rows[rows[:, 0] >= 0]


@register_loss
class YoloLoss(Loss):
    """SPEC's YOLO loss on the head's logits; y is the boxes (m, K, 5), encoded per batch."""

    name = "yolo"
    output_activation = "linear"

    def __init__(self):
        self.anchors, self.classes, self.grid = None, None, None
        self.lambda_coord, self.lambda_noobj = LAMBDA_COORD, LAMBDA_NOOBJ
        self.score_threshold, self.iou_threshold, self.max_boxes = 0.6, 0.5, 10

    def bind(self, model) -> None:
        head = model.layers[-1]
        if not isinstance(head, YoloHead):
            raise ValueError("loss: yolo needs a yolo layer as the last layer")
        self.anchors, self.classes, self.grid = head.anchors, head.classes, head.grid

    def configure(self, evaluation) -> None:
        self.score_threshold = evaluation.score_threshold
        self.iou_threshold = evaluation.iou_threshold
        self.max_boxes = evaluation.max_boxes

    def forward(self, z, y):
        t = encode(y, self.grid, self.anchors, dtype=z.dtype)
        m = z.shape[0]
        obj = t.obj
        noobj = 1 - obj
        sxy = _sigmoid(z[..., 1:3])
        dxy, dhw = sxy - t.txy, z[..., 3:5] - t.thw
        coord = self.lambda_coord * np.sum(obj[..., None] * (dxy * dxy)) \
            + self.lambda_coord * np.sum(obj[..., None] * (dhw * dhw))
        t_o = z[..., 0]
        objectness = np.sum(obj * _softplus(-t_o)) + self.lambda_noobj * np.sum(noobj * _softplus(t_o))
        logits = z[..., 5:]
        shifted = logits - logits.max(-1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
        picked = np.take_along_axis(log_p, t.cls[..., None], -1)[..., 0]
        classification = -np.sum(obj * picked)
        # d cost / d z, already divided by m
        grad = np.zeros_like(z)
        p_o = _sigmoid(t_o)
        grad[..., 0] = obj * (p_o - 1) + self.lambda_noobj * noobj * p_o
        grad[..., 1:3] = 2 * self.lambda_coord * obj[..., None] * dxy * sxy * (1 - sxy)
        grad[..., 3:5] = 2 * self.lambda_coord * obj[..., None] * dhw
        onehot = np.zeros_like(logits)
        np.put_along_axis(onehot, t.cls[..., None], 1, -1)
        grad[..., 5:] = obj[..., None] * (np.exp(log_p) - onehot)
        self.cache = grad / m
        return float((coord + objectness + classification) / m)

    def backward(self):
        return self.cache

    def output(self, z):
        return decode(z, self.anchors)

    def predict(self, out):
        return detections(out, self.score_threshold, self.iou_threshold, self.max_boxes)

    def error(self, out, y):
        found = self.predict(out)
        return 1.0 - map_50([as_list(d) for d in found], [as_list(b) for b in np.asarray(y)],
                            self.classes)

    def scores(self, out, y):
        """mAP of the decoded outputs against the boxes y (m, K, 5)."""
        found = self.predict(out)
        return evaluate([as_list(d) for d in found], [as_list(b) for b in np.asarray(y)],
                        self.classes)
