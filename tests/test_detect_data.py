"""Box and mask sources, the scenes generators, augmentation that moves targets, and the
detection / segmentation fields of a run (SPEC "Detection and segmentation")."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import course_data
from dlcli.cli import app
from dlcli.detect.data import boxes_of, flip_horizontal, random_crop, scenes
from dlcli.detect.segment import class_iou


def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
    assert "Traceback" not in result.output + result.stderr
    return result


def test_scenes_boxes_bound_the_visible_pixels():
    x, boxes, masks = scenes(np.random.default_rng(0), 40, 32, max_objects=3, classes=3)
    assert x.shape == (40, 32, 32, 3) and x.dtype == np.uint8
    assert boxes.shape == (40, 3, 5) and masks.shape == (40, 32, 32)
    assert set(np.unique(masks)) <= {0, 1, 2, 3} and (masks > 0).any()
    for i in range(40):
        real = boxes[i][boxes[i, :, 0] >= 0]
        assert 1 <= len(real) <= 3
        for row in real:  # every object's class shows in the mask, inside its box
            b_x, b_y, b_h, b_w = row[1:] * 32
            inside = masks[i, int(round(b_y - b_h / 2)):int(round(b_y + b_h / 2)),
                           int(round(b_x - b_w / 2)):int(round(b_x + b_w / 2))]
            assert (inside == row[0] + 1).any()
    # one object an image: its box is exactly the bounding box of the mask
    _, one, m1 = scenes(np.random.default_rng(1), 30, 32, max_objects=1, classes=3)
    np.testing.assert_allclose(one[:, 0], boxes_of(m1 > 0, m1.reshape(30, -1).max(1) - 1), atol=1e-6)
    x2, *_ = scenes(np.random.default_rng(0), 40, 32, max_objects=3, classes=3)
    np.testing.assert_array_equal(x, x2)  # seeded


@pytest.mark.parametrize("op", ["flip", "crop"])
def test_augmentation_moves_boxes_with_the_mask(op):
    x, boxes, masks = scenes(np.random.default_rng(2), 50, 32, max_objects=1, classes=3)
    run = (lambda a, y, rng: flip_horizontal(a, y, rng)) if op == "flip" else \
        (lambda a, y, rng: random_crop(a, y, rng, 6))
    xa, ba = run(x, boxes, np.random.default_rng(7))
    xm, ma = run(x, masks.astype(np.int64), np.random.default_rng(7))
    np.testing.assert_array_equal(xa, xm)  # the same draws move both
    assert not np.array_equal(xa, x)
    want = boxes_of(ma > 0, np.where((ma > 0).any((1, 2)), ma.reshape(50, -1).max(1) - 1, -1))
    # a shape cut by the image's edge may be narrower than its clipped box (a triangle's apex
    # half): exact for the objects the crop keeps whole, containing the visible part for the rest
    whole = (ma > 0).sum((1, 2)) == (masks > 0).sum((1, 2))
    assert op == "flip" and whole.all() or whole.sum() >= 30 and (~whole).sum() >= 5
    np.testing.assert_allclose(ba[whole, 0], want[whole], atol=1e-6)
    from dlcli.detect.boxes import to_corners
    cut = ~whole & (want[:, 0] >= 0)
    outer, inner = to_corners(ba[cut, 0, 1:]), to_corners(want[cut, 1:])
    assert (outer[:, :2] <= inner[:, :2] + 1e-6).all() and (outer[:, 2:] >= inner[:, 2:] - 1e-6).all()


def test_class_iou_from_confusion():
    t = np.array([[0, 0, 1, 1], [2, 2, 0, 0]])
    p = np.array([[0, 1, 1, 1], [2, 0, 0, 0]])
    s = class_iou(t, p, 4)
    # background: tp 3, fp 1 (a 2 called 0), fn 1 (a 0 called 1) -> 3/5; class 1: 2/3; class 2: 1/2
    assert s.iou == pytest.approx([3 / 5, 2 / 3, 1 / 2, None])
    assert s.mean_iou == pytest.approx(np.mean([3 / 5, 2 / 3, 1 / 2]))


def write_recipe(path, data, layers, extra=""):
    path.write_text(f"""name: {path.stem}
seed: 0
data:
{data}
  scale: 255
model:
  layers:
{layers}
optimizer: {{name: adam, learning_rate: 0.01}}
training: {{epochs: 2, batch_size: 16}}
{extra}""")
    return path


SEG_LAYERS = """    - {type: conv2d, filters: 4, size: 3, padding: same, activation: relu}
    - type: skip_concat
      layers:
        - {type: maxpool, size: 2}
        - {type: conv2d, filters: 4, size: 3, padding: same, activation: relu}
        - {type: conv2d_transpose, filters: 4, size: 2, stride: 2}
    - {type: conv2d, filters: 4, size: 1, activation: softmax}"""

YOLO_LAYERS = """    - {type: conv2d, filters: 4, size: 3, padding: same, activation: relu}
    - {type: maxpool, size: 4}
    - {type: conv2d, filters: 16, size: 1}
    - {type: yolo, anchors: [[0.2, 0.2], [0.4, 0.4]], classes: 3}"""


def test_segmentation_run_writes_iou_per_class(tmp_path):
    recipe = write_recipe(tmp_path / "seg.yaml", """  train: {builtin: shapes_segmentation, n: 48, size: 16}
  test: 0.25
  augment: [flip_horizontal, {random_crop: {pad: 2}}]""", SEG_LAYERS)
    result = invoke("train", recipe, "--runs-dir", tmp_path / "runs", "--quiet")
    assert result.exit_code == 0, result.stderr
    run = next((tmp_path / "runs").iterdir())
    summary = json.loads((run / "summary.json").read_text())
    seg = summary["segmentation"]
    assert set(seg) == {"train", "test"}
    assert len(seg["test"]["iou"]) == 4 and 0 <= seg["test"]["mean_iou"] <= 1
    pred = np.load(run / "predictions" / "test.npz")
    assert pred["y_true"].shape == (12, 16, 16) and pred["y_pred"].shape == (12, 16, 16)
    assert summary["errors"]["test"] == pytest.approx(np.mean(pred["y_true"] != pred["y_pred"]))
    assert seg["test"] == class_iou(pred["y_true"], pred["y_pred"], 4).to_json()


def test_detection_run_writes_map(tmp_path):
    recipe = write_recipe(tmp_path / "det.yaml", """  train: {builtin: shapes_detection, n: 48, size: 16, max_objects: 2}
  test: 0.25
  augment: [flip_horizontal]""", YOLO_LAYERS, "evaluation: {score_threshold: 0.05}\n")
    result = invoke("train", recipe, "--runs-dir", tmp_path / "runs", "--quiet")
    assert result.exit_code == 0, result.stderr
    run = next((tmp_path / "runs").iterdir())
    summary = json.loads((run / "summary.json").read_text())
    det = summary["detection"]["test"]
    assert set(det) == {"map_50", "map_50_95", "ap_50"} and len(det["ap_50"]) == 3
    assert summary["errors"]["test"] == pytest.approx(1 - det["map_50"])
    pred = np.load(run / "predictions" / "test.npz")
    assert pred["y_pred"].shape == (12, 10, 6) and pred["y_true"].shape == (12, 2, 5)


def test_box_and_mask_files(tmp_path):
    import h5py
    x, boxes, masks = scenes(np.random.default_rng(3), 32, 16)
    np.savez(tmp_path / "det.npz", images=x, b=boxes)
    with h5py.File(tmp_path / "seg.h5", "w") as f:
        f["x"], f["m"] = x, masks
    det = write_recipe(tmp_path / "det.yaml", f"""  train: {{path: {tmp_path}/det.npz, x: images, boxes: b}}""",
                       YOLO_LAYERS)
    seg = write_recipe(tmp_path / "seg.yaml", f"""  train: {{path: {tmp_path}/seg.h5, masks: m}}""",
                       SEG_LAYERS)
    for recipe in (det, seg):
        result = invoke("train", recipe, "--runs-dir", tmp_path / "runs", "--quiet")
        assert result.exit_code == 0, result.stderr
    bad = boxes.copy()
    bad[0, 0, 1] = 1.7
    np.savez(tmp_path / "det.npz", images=x, b=bad)
    result = invoke("train", det, "--runs-dir", tmp_path / "runs", "--quiet")
    assert result.exit_code == 2 and "data.train.boxes" in result.stderr and "[0, 1]" in result.stderr
    np.savez(tmp_path / "det.npz", images=x, b=boxes[:, :, :4])
    result = invoke("train", det, "--runs-dir", tmp_path / "runs", "--quiet")
    assert result.exit_code == 2 and "(m, K, 5)" in result.stderr


def test_masks_need_a_matching_softmax_output(tmp_path):
    recipe = write_recipe(tmp_path / "seg.yaml", "  train: {builtin: shapes_segmentation, n: 8, size: 16}",
                          SEG_LAYERS.replace("filters: 4, size: 1", "filters: 3, size: 1"))
    result = invoke("show", recipe)
    assert result.exit_code == 2 and "class id 3" in result.stderr


def test_scenes_file_reads_as_boxes_and_masks():
    path = course_data("scenes", "scenes_test.npz")
    from dlcli.data import load_dataset
    ds = load_dataset({"train": {"path": str(path), "x": "x", "boxes": "boxes"}, "scale": 255}, 0)
    assert ds.splits["train"].y.shape == (500, 3, 5) and ds.input_shape == (64, 64, 3)
    ds = load_dataset({"train": {"path": str(path), "x": "x", "masks": "masks"}, "scale": 255}, 0)
    assert ds.splits["train"].y.shape == (500, 64, 64) and ds.splits["train"].y.max() == 3


def test_unet_course_has_the_course_parameter_count():
    from pathlib import Path
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "unet_course.yaml"
    result = invoke("show", recipe, "--set", "data.train.n=4", "--set", "data.test=0.5")
    assert result.exit_code == 0, result.stderr
    assert "8,640,471" in result.stdout and "(m, 96, 128, 23)" in result.stdout


def test_kmeans_anchors_find_the_shape_clusters():
    from dlcli.detect.anchors import kmeans_anchors
    rng = np.random.default_rng(0)
    centres = np.array([[0.1, 0.1], [0.2, 0.4], [0.5, 0.3]])
    shapes = np.concatenate([c * rng.uniform(0.95, 1.05, (60, 2)) for c in centres])
    anchors, assign = kmeans_anchors(shapes, 3, seed=1)
    np.testing.assert_allclose(anchors, centres, rtol=0.03)  # by area: 0.01, 0.08, 0.15
    np.testing.assert_array_equal(assign, np.repeat([0, 1, 2], 60))


def test_analyze_anchors_on_a_recipe(tmp_path):
    recipe = write_recipe(tmp_path / "det.yaml", "  train: {builtin: shapes_detection, n: 64, size: 32}",
                          YOLO_LAYERS)
    result = invoke("analyze", "anchors", recipe, "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert len(doc["anchors"]) == 2 and sum(doc["counts"]) == doc["boxes"] > 64
    assert doc["current"] == [[0.2, 0.2], [0.4, 0.4]]
    assert doc["mean_iou"] >= doc["current_mean_iou"] - 1e-9  # k-means fits them at least as well
    result = invoke("analyze", "anchors", recipe, "--k", "3")
    assert result.exit_code == 0 and "anchors" in result.stdout
    seg = write_recipe(tmp_path / "seg.yaml", "  train: {builtin: shapes_segmentation, n: 8, size: 16}",
                       SEG_LAYERS)
    result = invoke("analyze", "anchors", seg)
    assert result.exit_code == 2 and "no boxes" in result.stderr


def test_predict_draws_boxes_and_writes_masks(tmp_path):
    from PIL import Image
    runs = tmp_path / "runs"
    det = write_recipe(tmp_path / "det.yaml", "  train: {builtin: shapes_detection, n: 32, size: 16}",
                       YOLO_LAYERS, "evaluation: {score_threshold: 0.01, max_boxes: 3}\n")
    seg = write_recipe(tmp_path / "seg.yaml", "  train: {builtin: shapes_segmentation, n: 32, size: 16}",
                       SEG_LAYERS)
    for recipe in (det, seg):
        assert invoke("train", recipe, "--runs-dir", runs, "--quiet").exit_code == 0
    det_run, seg_run = sorted(runs.iterdir(), key=lambda p: p.name.endswith("seg"))
    x, *_ = scenes(np.random.default_rng(9), 2, 16)
    Image.fromarray(x[0]).save(tmp_path / "a.png")
    np.savez(tmp_path / "b.npz", x=x)
    result = invoke("predict", det_run, tmp_path / "a.png", tmp_path / "b.npz", "--json",
                    "--out", tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert [p["input"] for p in doc["predictions"]][1:] == [f"{tmp_path / 'b.npz'}[0]", f"{tmp_path / 'b.npz'}[1]"]
    boxes = doc["predictions"][0]["boxes"]
    assert 1 <= len(boxes) <= 3 and set(boxes[0]) == {"class", "label", "score", "box"}
    assert boxes[0]["label"] in ("circle", "square", "triangle") and len(boxes[0]["box"]) == 4
    assert [b["score"] for b in boxes] == sorted([b["score"] for b in boxes], reverse=True)
    assert doc["predictions"][0]["boxes"] == doc["predictions"][1]["boxes"]  # the same image
    drawn = np.asarray(Image.open(tmp_path / "out" / "a_boxes.png"))
    assert drawn.shape[0] >= 256 and (tmp_path / "out" / "b_1_boxes.png").exists()
    result = invoke("predict", seg_run, tmp_path / "a.png", "--out", tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    mask = np.asarray(Image.open(tmp_path / "out" / "a_mask.png"))
    assert mask.shape == (16, 16, 3)
    from dlcli.detect.predict_kinds import PALETTE
    assert {tuple(c) for c in mask.reshape(-1, 3)} <= {tuple(c) for c in PALETTE[:4]}


def test_landmarks_are_the_triangle_corners():
    from dlcli.detect.data import triangles
    x, y = triangles(np.random.default_rng(0), 20, 32)
    assert x.shape == (20, 32, 32, 3) and y.shape == (20, 6)
    for i in range(20):
        fg = np.abs(x[i].astype(int) - x[i, 0, 0].astype(int)).sum(-1) > 40
        rows, cols = np.nonzero(fg)
        for vx, vy in y[i].reshape(3, 2) * 32 - 0.5:  # pixel centres at (i + 0.5) / size
            assert np.min(np.hypot(cols - vx, rows - vy)) < 2.5  # a (thin) corner is there
        # and the corners span the shape: its pixels' extent is the corners' extent
        corners = y[i].reshape(3, 2) * 32 - 0.5
        assert abs(cols.min() - corners[:, 0].min()) < 2 and abs(cols.max() - corners[:, 0].max()) < 2
        assert abs(rows.min() - corners[:, 1].min()) < 2 and abs(rows.max() - corners[:, 1].max()) < 2


def test_localization_and_landmark_recipes_run(tmp_path):
    from pathlib import Path
    root = Path(__file__).resolve().parents[1] / "recipes"
    for name in ("localization_shapes", "landmarks_shapes"):
        result = invoke("train", root / f"{name}.yaml", "--set", "training.epochs=1",
                        "--set", "data.train.n=200", "--runs-dir", tmp_path, "--quiet")
        assert result.exit_code == 0, result.stderr


def test_analyze_errors_on_detection_and_segmentation_runs(tmp_path):
    runs = tmp_path / "runs"
    det = write_recipe(tmp_path / "det.yaml", """  train: {builtin: shapes_detection, n: 40, size: 16}
  test: 0.5""", YOLO_LAYERS, "evaluation: {score_threshold: 0.05, max_boxes: 3}\n")
    seg = write_recipe(tmp_path / "seg.yaml", """  train: {builtin: shapes_segmentation, n: 40, size: 16}
  test: 0.5""", SEG_LAYERS)
    for recipe in (det, seg):
        assert invoke("train", recipe, "--runs-dir", runs, "--quiet").exit_code == 0
    for run in runs.iterdir():
        summary = json.loads((run / "summary.json").read_text())
        result = invoke("analyze", "errors", run, "--split", "test", "--json", "--top", "5",
                        "--sheet", tmp_path / f"{run.name}.png")
        assert result.exit_code == 0, result.stderr
        doc = json.loads(result.stdout)
        assert (tmp_path / f"{run.name}.png").exists() and 1 <= len(doc["worst"]) <= 5
        if doc["kind"] == "detection":
            assert doc["map_50"] == pytest.approx(summary["detection"]["test"]["map_50"])
            assert doc["ap_50"] == pytest.approx(summary["detection"]["test"]["ap_50"])
            bad = [w["missed"] + w["false_boxes"] for w in doc["worst"]]
            assert bad == sorted(bad, reverse=True) and bad[0] > 0
        else:
            assert doc["kind"] == "segmentation"
            assert doc["iou"] == pytest.approx(summary["segmentation"]["test"]["iou"])
            ious = [w["mean_iou"] for w in doc["worst"]]
            assert ious == sorted(ious) and doc["classes"][0] == "background"


@pytest.mark.parametrize("kind", ["seg", "det"])
def test_gradcheck_passes_on_skip_concat_and_yolo_recipes(tmp_path, kind):
    data = ("  train: {builtin: shapes_segmentation, n: 8, size: 16}" if kind == "seg"
            else "  train: {builtin: shapes_detection, n: 8, size: 16}")
    recipe = write_recipe(tmp_path / f"{kind}.yaml", data, SEG_LAYERS if kind == "seg" else YOLO_LAYERS)
    result = invoke("gradcheck", recipe, "--examples", "2", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["passed"] and doc["overall"] < 1e-6
