"""Test-time tricks: ten-crop evaluation."""

import numpy as np

from dlcli import api
from dlcli.evaluate import crop_pad, multi_crop_proba, ten_crops


def test_ten_crops_are_the_centre_the_corners_and_their_mirrors():
    x = np.arange(2 * 4 * 5 * 3, dtype=float).reshape(2, 4, 5, 3)
    crops = list(ten_crops(x, pad=1))
    assert len(crops) == 10 and all(c.shape == x.shape for c in crops)
    np.testing.assert_array_equal(crops[0], x)  # the centre of the padded image is the image
    np.testing.assert_array_equal(crops[1], x[:, :, ::-1])
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    np.testing.assert_array_equal(crops[2], padded[:, :4, :5])  # top-left corner
    np.testing.assert_array_equal(crops[8], padded[:, 2:, 2:])  # bottom-right corner
    np.testing.assert_array_equal(crops[9], padded[:, 2:, 2:][:, :, ::-1])


def test_crop_pad_follows_random_crop():
    assert crop_pad([{"random_crop": {"pad": 2}}, "flip_horizontal"]) == 2
    assert crop_pad(["flip_horizontal"]) == 4


def test_multi_crop_evaluation_averages_the_crops(tmp_path):
    recipe = {"name": "crops", "seed": 0,
              "data": {"train": {"builtin": "shapes", "n": 60, "size": 12}, "dev": 0.5, "scale": 255,
                       "augment": [{"random_crop": {"pad": 2}}]},
              "model": {"layers": [{"type": "conv2d", "filters": 4, "size": 3, "activation": "relu"},
                                   {"type": "global_avgpool"},
                                   {"type": "dense", "units": 3, "activation": "softmax"}]},
              "training": {"epochs": 2, "batch_size": 16},
              "evaluation": {"multi_crop": 10}}
    result = api.train(recipe, runs_dir=tmp_path)
    dev = result.dataset.splits["dev"]
    saved = np.load(result.run_dir / "predictions" / "dev.npz")["probabilities"]
    expected = np.mean([result.model.predict_proba(np.ascontiguousarray(c)) for c in ten_crops(dev.x, 2)], axis=0)
    np.testing.assert_allclose(saved, expected, rtol=1e-5)
    np.testing.assert_allclose(multi_crop_proba(result.model, dev.x, 2), expected, rtol=1e-6)
    assert not np.allclose(saved, result.model.predict_proba(dev.x))
