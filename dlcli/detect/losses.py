"""The detection family's losses, registered with nn.losses on import: yolo (yolo.py) and
localization (localization.py)."""

from . import localization, yolo  # noqa: F401
