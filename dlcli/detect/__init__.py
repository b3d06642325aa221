"""Detection and segmentation (course 4.3), one role per module:

    boxes.py    the one box layout (b_x, b_y, b_h, b_w) and the one IoU
    targets.py  ground-truth boxes -> the YOLO grid's targets (cell of the midpoint, best anchor)
    yolo.py     the reshape-only `yolo` head, its loss, decoding of predictions
    nms.py      non-max suppression (per class)
    map.py      mAP@0.5 (VOC all-point) and mAP@[.5:.95] (COCO)
    data.py     box / mask sources, the shapes_detection / shapes_segmentation / shapes_landmarks
                generators, and augmentation that moves boxes and masks with the image
    segment.py  per-class IoU of masks
    layers.py   skip_concat (U-Net's skip connection); yolo.py registers the head
    localization.py  loss: localization (the notes' one-object loss)
    windows.py  sliding windows, crop by crop and as convolutions
    anchors.py  k-means anchors (dlcli analyze anchors)
    fit.py      hooks for api.check_fit / api.finish (targets that are boxes or masks)
    errors.py   dlcli analyze errors on detection / segmentation runs
    predict_kinds.py  the detection, segmentation and sliding-window kinds of dlcli predict
    render.py   their tables (the only module here that draws)

`dlcli.detect.iou` and `dlcli.detect.non_max_suppression` are the SPEC's Python API.
"""

from .boxes import iou
from .nms import non_max_suppression

__all__ = ["iou", "non_max_suppression"]
