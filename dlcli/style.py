"""Neural style transfer (course 4.4.2) on a trained run's conv layers: a job beside train.fit.

The network is frozen; the only thing that changes is the generated image G. Each iteration
runs G through the run's layers up to the deepest one named, takes J's gradient with respect to
the named layers' activations, and sends it back through the same layers to the input (layer 0
with `needs_input_grad`: the model's own backward, no parameter update), then Adam moves G's
pixels. The costs are the course's:

    J_content = 1/(4 n_H n_W n_C) sum (a_C - a_G)^2
    gram(A) = A A^T, A the activations unrolled to (n_C, n_H n_W)
    J_style_layer = 1/(4 n_C^2 (n_H n_W)^2) sum (G_S - G_G)^2,  J_style = sum_l weight_l J_style_layer
    J = alpha J_content + beta J_style

The feature layers are rebuilt for the images' size (a conv layer's geometry follows its input),
their parameters loaded from the run's params.npz; `dropout` is off and `batchnorm` normalises
with the image's own statistics (layers run in training mode, which keeps their caches), for
the content, style and generated images alike. No pretrained VGG can be downloaded here: any
trained conv run gives textures, its first layers colours and strokes, its deeper ones shapes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .errors import BadInput

CONV_TYPES = ("conv2d", "depthwise_conv2d", "conv2d_transpose", "residual", "branches")


# -- the course's costs, each with its gradient with respect to the generated activations ----
def _unrolled(a):
    """(n_H, n_W, n_C) or (1, n_H, n_W, n_C) -> A (n_C, n_H n_W)."""
    a = np.asarray(a)
    a = a[0] if a.ndim == 4 else a
    return a.reshape(-1, a.shape[-1]).T


def gram_matrix(A):
    """The style matrix A A^T of A (n_C, n_H n_W)."""
    return A @ A.T


def content_cost(a_C, a_G):
    """(J_content, d J_content / d a_G)."""
    n = a_G.size
    diff = a_G - a_C
    return float(np.sum(diff * diff) / (4 * n)), diff / (2 * n)


def layer_style_cost(a_S, a_G):
    """(J_style_layer, d J_style_layer / d a_G): G = A A^T, so dJ/dA = 2 (dJ/dG) A."""
    A_S, A_G = _unrolled(a_S), _unrolled(a_G)
    n_C, n_HW = A_G.shape
    scale = 1.0 / (4 * n_C ** 2 * n_HW ** 2)
    diff = gram_matrix(A_G) - gram_matrix(A_S)
    dA = 4 * scale * (diff @ A_G)       # dJ/dG = 2 scale diff, symmetric
    return float(scale * np.sum(diff * diff)), dA.T.reshape(np.shape(a_G))


def style_cost(a_S_layers, a_G_layers, weights):
    """(J_style, [gradients]) over the style layers, weighted."""
    total, grads = 0.0, []
    for a_S, a_G, w in zip(a_S_layers, a_G_layers, weights):
        J, g = layer_style_cost(a_S, a_G)
        total += w * J
        grads.append(w * g)
    return total, grads


def total_cost(J_content, J_style, alpha=10, beta=40):
    return alpha * J_content + beta * J_style


# -- the job ---------------------------------------------------------------------------------
@dataclass
class StyleResult:
    iterations: list = field(default_factory=list)   # {"iteration", "cost", "content", "style"}
    image: str | None = None                          # the final PNG
    images: list = field(default_factory=list)        # every PNG written
    content_layer: int = 0
    style_layers: dict = field(default_factory=dict)  # layer index -> weight
    size: tuple = ()
    seconds: float = 0.0

    def to_json(self) -> dict:
        """SPEC's document, plus what was used."""
        d = asdict(self)
        d["style_layers"] = {str(k): v for k, v in self.style_layers.items()}
        d["size"] = list(self.size)
        return d


def parse_style_layers(text: str | None):
    """"i:w,j:w" -> {i: w}; None for the default."""
    if not text:
        return None
    out = {}
    for part in text.split(","):
        index, _, weight = part.strip().partition(":")
        try:
            out[int(index)] = float(weight) if weight else None
        except ValueError:
            raise BadInput(f"--style-layers: expected i:weight,..., got {part!r}")
    if any(w is None for w in out.values()):
        out = {i: 1.0 / len(out) for i in out}
    return out


def choose_layers(layer_specs, content_layer=None, style_layers=None):
    """(content layer, {style layer: weight}) with SPEC's defaults: the last conv layer; every
    conv layer with equal weights summing to 1."""
    convs = [i for i, s in enumerate(layer_specs) if s["type"] in CONV_TYPES]
    if not convs:
        raise BadInput("the run has no conv layers to take activations from (style needs a conv net)")
    content = convs[-1] if content_layer is None else content_layer
    style = style_layers or {i: 1.0 / len(convs) for i in convs}
    n = len(layer_specs)
    for i in [content, *style]:
        if not 0 <= i < n:
            raise BadInput(f"no layer {i}: the run's layers are 0..{n - 1}")
        if layer_specs[i]["type"] in ("flatten", "dense", "global_avgpool"):
            raise BadInput(f"layer {i} ({layer_specs[i]['type']}) has no image activations")
    return content, style


def feature_model(recipe, params: dict, image_shape, upto: int):
    """The run's layers 0..upto rebuilt for `image_shape`, with the run's parameters, frozen."""
    from .nn.model import build_model
    specs = [dict(s) for s in recipe.to_dict()["model"]["layers"][:upto + 1]]
    for s in specs:
        if s["type"] == "dropout":
            s["keep_prob"] = 1.0
    try:
        model = build_model({"layers": specs, "init": recipe.model.init}, "mse", 0.0,
                            tuple(image_shape), recipe.dtype)
    except ValueError as err:
        raise BadInput(f"the run's layers cannot take a {image_shape} image: {err}")
    own = model.state_dict()
    model.load_state_dict({k: v for k, v in params.items() if k in own})
    model.layers[0].needs_input_grad = True  # the image's gradient is the point
    for layer in model.layers:
        layer.set_trainable(False)
        if hasattr(layer, "unfuse_next"):  # each layer's own activations are read (nn/conv.py)
            layer.unfuse_next()
    return model


def run_layers(model, x, keep):
    """Forward through every layer (training mode: caches for backward), the activations after
    the layers in `keep`, copied (layers reuse their output arrays)."""
    acts = {}
    for i, layer in enumerate(model.layers):
        x = layer.forward(x, True)
        if i in keep:
            acts[i] = np.array(x, dtype=np.float64)
    return acts


def back_to_image(model, grads: dict):
    """d J / d image, from d J / d (activations after layer i) for each i in `grads`."""
    dy = None
    for i in reversed(range(len(model.layers))):
        if i in grads:
            g = grads[i].astype(model.dtype)
            dy = g if dy is None else dy + g
        if dy is None:
            dy = np.zeros((1, *model.layers[i].output_shape), dtype=model.dtype)
        dy = model.layers[i].backward(dy)
    return dy


def transfer(recipe, params: dict, content_pixels, style_pixels, *, alpha=10.0, beta=40.0,
             iterations=200, learning_rate=0.01, noise=0.2, content_layer=None, style_layers=None,
             seed=0, pixel_range=(0.0, 1.0), save=None, save_every=None, on_iteration=None):
    """G from content + noise, `iterations` Adam steps on its pixels. content_pixels and
    style_pixels are prepared (1, n_H, n_W, n_C) arrays of one size. `save(G, iteration)`
    writes an image and returns its path. Returns (StyleResult, G)."""
    import time

    from .optim import make_optimizer
    started = time.perf_counter()
    specs = recipe.to_dict()["model"]["layers"]
    c_layer, s_layers = choose_layers(specs, content_layer, style_layers)
    keep = {c_layer, *s_layers}
    model = feature_model(recipe, params, content_pixels.shape[1:], max(keep))
    a_C = run_layers(model, content_pixels.astype(model.dtype), {c_layer})[c_layer]
    a_S = run_layers(model, style_pixels.astype(model.dtype), set(s_layers))
    lo, hi = pixel_range
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 15, 2]))
    G = content_pixels.astype(np.float64) + rng.uniform(-noise, noise, content_pixels.shape) * (hi - lo)
    G = np.clip(G, lo, hi) if noise else G
    opt = make_optimizer({"name": "adam"})
    result = StyleResult(content_layer=c_layer, style_layers=dict(s_layers),
                         size=(content_pixels.shape[2], content_pixels.shape[1]))
    for it in range(iterations + 1):
        acts = run_layers(model, G.astype(model.dtype), keep)
        Jc, dc = content_cost(a_C, acts[c_layer])
        Js, ds = style_cost([a_S[i] for i in s_layers], [acts[i] for i in s_layers],
                            list(s_layers.values()))
        J = total_cost(Jc, Js, alpha, beta)
        row = {"iteration": it, "cost": J, "content": Jc, "style": Js}
        result.iterations.append(row)
        if on_iteration:
            on_iteration(row)
        if save and save_every and it % save_every == 0 and 0 < it < iterations:
            result.images.append(str(save(G, it)))
        if it == iterations:
            break
        grads = {i: beta * g for i, g in zip(s_layers, ds)}
        grads[c_layer] = grads.get(c_layer, 0) + alpha * dc
        dG = back_to_image(model, grads).astype(np.float64)
        opt.update([("G", G, dG)], learning_rate)
        np.clip(G, lo, hi, out=G)
    if save:
        result.image = str(save(G, iterations))
        result.images.append(result.image)
    result.seconds = round(time.perf_counter() - started, 3)
    return result, G


# -- images in and out -----------------------------------------------------------------------
def read_image(path, size, channels: int):
    """uint8 (1, H, W, C) from an image file, resized to size = (W, H) (None: its own)."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as im:
            im = im.convert("RGB" if channels == 3 else "L")
            if size is not None:
                im = im.resize(tuple(size), Image.LANCZOS)
            a = np.asarray(im, dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as err:
        raise BadInput(f"cannot read the image: {err}", file=path)
    a = a if a.ndim == 3 else a[..., None]
    return a[None]


def write_png(path, pixels_uint8) -> Path:
    from PIL import Image
    from .runs import atomic_write_bytes
    import io
    a = pixels_uint8[0]
    im = Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def style_run(run_dir, content, style, *, size=None, out=None, on_iteration=None, **options):
    """`dlcli style`: the run's recipe and parameters, the two images prepared as the run's
    data (scale; normalize with the saved statistics where the recipe asks), PNGs into `out`."""
    from .api import load_run
    run = load_run(run_dir)
    recipe = run.recipe
    data = recipe.to_dict()["data"]
    if data.get("flatten"):
        raise BadInput("style needs a run whose inputs are images (this one flattens them)")
    params_path = run.path / "params.npz"
    if not params_path.exists():
        raise BadInput("the run has no params.npz", file=run.path)
    with np.load(params_path) as f:
        params = {k: f[k] for k in f.files}
    w0 = next((v for k, v in params.items() if k.startswith("0.") and k.endswith("W")), None)
    channels = int(w0.shape[2]) if w0 is not None and w0.ndim == 4 else 3
    scale = float(data.get("scale") or 1)
    C = read_image(content, size, channels)
    S = read_image(style, (C.shape[2], C.shape[1]), channels)
    prep = _preparation(recipe, data, scale)
    out = Path(out) if out else run.path / "style"
    out.mkdir(parents=True, exist_ok=True)

    def save(G, it):
        pixels = np.clip(np.rint(prep.undo(G)), 0, 255).astype(np.uint8)
        name = "generated.png" if it == options.get("iterations") else f"generated_{it:05d}.png"
        return write_png(out / name, pixels)

    return transfer(recipe, params, prep(C), prep(S), pixel_range=prep.range, save=save,
                    on_iteration=on_iteration, **options)[0]


class _Preparation:
    def __init__(self, scale, mean=None, std=None):
        self.scale, self.mean, self.std = scale, mean, std
        self.normalize = mean is not None
        self.range = (0.0, 255 / scale)  # the pixels' range after preparation: G is clipped to it
        if self.normalize:
            self.range = (float(np.min((0 - mean) / std)), float(np.max((255 / scale - mean) / std)))

    def __call__(self, x):
        x = np.asarray(x, dtype=np.float64) / self.scale
        return (x - self.mean) / self.std if self.normalize else x

    def undo(self, G):
        x = G * self.std + self.mean if self.normalize else G
        return x * self.scale


def _preparation(recipe, data, scale):
    if not data.get("normalize"):
        return _Preparation(scale)
    from .api import load_data
    stats = load_data(recipe).preprocessing
    # per-pixel statistics of the training images do not fit another size: their channel means
    mean = np.asarray(stats.mean).reshape(-1, stats.mean.shape[-1]).mean(axis=0)
    std = np.asarray(stats.std).reshape(-1, stats.std.shape[-1]).mean(axis=0)
    return _Preparation(scale, mean, std)
