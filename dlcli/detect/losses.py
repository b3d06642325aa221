"""The detection family's losses, registered with nn.losses on import: yolo (yolo.py)."""

from . import yolo  # noqa: F401
