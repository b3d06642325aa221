"""Detection and segmentation (course 4.3), one role per module:

    boxes.py    the one box layout (b_x, b_y, b_h, b_w) and the one IoU
    targets.py  ground-truth boxes -> the YOLO grid's targets (cell of the midpoint, best anchor)
    yolo.py     the reshape-only `yolo` head, its loss, decoding of predictions
    nms.py      non-max suppression (per class)
    map.py      mAP@0.5 (VOC all-point) and mAP@[.5:.95] (COCO)
    data.py     box / mask sources, the shapes_detection / shapes_segmentation generators, and
                augmentation that moves boxes and masks with the image
    segment.py  per-class IoU of masks
    layers.py   skip_concat (U-Net's skip connection)

`dlcli.detect.iou` and `dlcli.detect.non_max_suppression` are the SPEC's Python API.
"""

from .boxes import iou
from .nms import non_max_suppression

__all__ = ["iou", "non_max_suppression"]
