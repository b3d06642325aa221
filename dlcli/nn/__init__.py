"""Layers, losses and the model container.

`LAYERS` maps a recipe `type:` to its class; modules that define layers register them with
`@register("name")`. `build_layer` turns one recipe layer mapping into a layer.
"""

from __future__ import annotations

LAYERS: dict[str, type] = {}


def register(name: str):
    def wrap(cls):
        cls.type_name = name
        LAYERS[name] = cls
        return cls
    return wrap


def _load_layer_modules() -> None:
    # Imported on first use so that `import dlcli.nn` stays light.
    from . import layers  # noqa: F401
    from . import normalize  # noqa: F401
    from . import conv, conv_blocks, conv_transpose  # noqa: F401
    from . import embedding, recurrent  # noqa: F401
    from . import attention  # noqa: F401
    from ..detect import layers as _detect  # noqa: F401  (skip_concat, yolo)


def build_layer(spec: dict):
    spec = dict(spec)
    kind = spec.pop("type")
    if kind not in LAYERS:
        # not `if not LAYERS`: importing one layer module directly must not hide the others
        _load_layer_modules()
    if kind not in LAYERS:
        raise ValueError(f"unknown layer type {kind!r}")
    return LAYERS[kind](**spec)
