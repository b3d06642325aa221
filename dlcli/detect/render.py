"""Tables of the detection family (rich): drawn from results, never computed here."""

from __future__ import annotations


def _table(title):
    from rich.table import Table
    from rich import box
    return Table(title=title, box=box.SIMPLE_HEAD, title_justify="left")


def anchors_table(result, console) -> None:
    t = _table(f"Anchors by k-means (1 - IoU) on {result.boxes} training boxes")
    for name in ("anchor", "b_h", "b_w", "boxes"):
        t.add_column(name, justify="right")
    for i, ((h, w), n) in enumerate(zip(result.anchors, result.counts)):
        t.add_row(str(i), f"{h:.4f}", f"{w:.4f}", str(n))
    console.print(t)
    console.print(f"mean best IoU of a box with an anchor: {result.mean_iou:.3f}"
                  + (f" (the recipe's anchors {result.current}: {result.current_mean_iou:.3f})"
                     if result.current else ""))
    console.print(f"recipe line: {{type: yolo, anchors: {result.anchors}, classes: C}}")


def dense_tables(summary, console, class_names=None) -> None:
    """Per-class AP (detection) or IoU (segmentation) of each split in a summary."""
    det, seg = summary.get("detection"), summary.get("segmentation")
    if det:
        t = _table("Detection: mAP and AP@0.5 per class")
        splits = list(det)
        t.add_column("", justify="left")
        for s in splits:
            t.add_column(s, justify="right")
        t.add_row("mAP@0.5", *(f"{det[s]['map_50']:.3f}" for s in splits))
        t.add_row("mAP@[.5:.95]", *(f"{det[s]['map_50_95']:.3f}" for s in splits))
        for c in range(len(det[splits[0]]["ap_50"])):
            t.add_row(f"AP@0.5 {_name(class_names, c)}", *(_num(det[s]["ap_50"][c]) for s in splits))
        console.print(t)
    if seg:
        t = _table("Segmentation: IoU per class")
        splits = list(seg)
        t.add_column("", justify="left")
        for s in splits:
            t.add_column(s, justify="right")
        t.add_row("mean IoU", *(f"{seg[s]['mean_iou']:.3f}" for s in splits))
        for c in range(len(seg[splits[0]]["iou"])):
            t.add_row(f"IoU {_name(class_names, c)}", *(_num(seg[s]["iou"][c]) for s in splits))
        console.print(t)


def _name(names, c):
    return names[c] if names and c < len(names) else str(c)


def _num(v):
    return "—" if v is None else f"{v:.3f}"


def dense_errors_table(result, console) -> None:
    """`analyze errors` of a detection / segmentation split: per-class scores, worst images."""
    names = result.class_names
    if result.kind == "detection":
        s = result.scores
        console.print(f"[bold]{result.split}[/bold] mAP@0.5 {s['map_50']:.3f}, "
                      f"mAP@[.5:.95] {s['map_50_95']:.3f}")
        t = _table("AP@0.5 per class")
        t.add_column("class")
        t.add_column("AP@0.5", justify="right")
        for c, ap in enumerate(s["ap_50"]):
            t.add_row(_name(names, c), _num(ap))
        console.print(t)
        w = _table("worst images (missed + false boxes at IoU 0.5)")
        for name in ("index", "missed", "false boxes"):
            w.add_column(name, justify="right")
        for r in result.worst:
            w.add_row(str(r["index"]), str(r["missed"]), str(r["false_boxes"]))
    else:
        s = result.scores
        console.print(f"[bold]{result.split}[/bold] mean IoU {s['mean_iou']:.3f}")
        t = _table("IoU per class")
        t.add_column("class")
        t.add_column("IoU", justify="right")
        for c, v in enumerate(s["iou"]):
            t.add_row(_name(names, c), _num(v))
        console.print(t)
        w = _table("worst images (their own mean IoU)")
        w.add_column("index", justify="right")
        w.add_column("mean IoU", justify="right")
        for r in result.worst:
            w.add_row(str(r["index"]), f"{r['mean_iou']:.3f}")
    console.print(w)
