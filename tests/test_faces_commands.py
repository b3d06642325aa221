"""dlcli verify / recognize on a planted run and database: an encoder whose encoding is the
image's normalised pixels (flatten, dense with W = I, l2_normalize), tau planted at 0.6, and
random binary patterns as faces (two patterns are ~1.0 apart, a pattern and a copy with two
pixels flipped ~0.35)."""

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from dlcli.cli import app

SIDE = 8


def patterns(n, seed=0):
    return (np.random.default_rng(seed).random((n, SIDE, SIDE)) < 0.5).astype(np.uint8) * 255


def flipped(p, k=2, seed=1):
    q = p.copy().reshape(-1)
    q[np.random.default_rng(seed).choice(q.size, k, replace=False)] ^= 255
    return q.reshape(p.shape)


def save(path, pixels):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture
def planted(tmp_path):
    from dlcli import api
    from dlcli.recipe import recipe_from_dict
    from dlcli.runs import atomic_write_json, atomic_write_npz, atomic_write_text
    faces = patterns(5)
    np.savez(tmp_path / "faces.npz", x=faces[:, :, :, None], y=np.arange(5))
    recipe = recipe_from_dict({
        "name": "planted", "data": {"train": {"path": str(tmp_path / "faces.npz")}, "scale": 255},
        "model": {"layers": [{"type": "flatten"}, {"type": "dense", "units": SIDE * SIDE},
                             {"type": "l2_normalize"}]},
        "loss": "triplet"})
    model, _ = api.prepare(recipe)
    state = model.state_dict()
    state["1.W"][...] = np.eye(SIDE * SIDE)
    state["1.b"][...] = 0
    run = tmp_path / "run"
    run.mkdir()
    atomic_write_text(run / "recipe.yaml", recipe.to_yaml())
    atomic_write_npz(run / "params.npz", state)
    atomic_write_json(run / "summary.json", {"name": "planted", "status": "completed", "tau": 0.6})
    db = tmp_path / "db"
    save(db / "ann" / "1.png", faces[0])
    save(db / "ann" / "2.png", flipped(faces[0], 3, seed=5))
    save(db / "bob" / "1.png", faces[1])
    save(db / "cy" / "1.png", faces[2])
    queries = {"ann": save(tmp_path / "q_ann.png", flipped(faces[0])),
               "stranger": save(tmp_path / "q_stranger.png", faces[3]),
               "other": save(tmp_path / "q_other.png", faces[4])}
    return run, db, queries, faces


def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout


def test_verify_says_same_within_tau_and_different_beyond(planted):
    run, db, q, _ = planted
    code, out = invoke("verify", run, db / "ann" / "1.png", q["ann"], "--json")
    result = json.loads(out)
    assert code == 0 and result["same"] is True and result["tau"] == 0.6
    assert 0.1 < result["distance"] < 0.6
    code, out = invoke("verify", run, db / "ann" / "1.png", q["stranger"], "--json")
    assert code == 0 and json.loads(out)["same"] is False and json.loads(out)["distance"] > 0.6


def test_verify_distance_is_the_euclidean_distance_of_the_normalised_pixels(planted):
    run, db, q, faces = planted
    a, b = faces[0].astype(float).reshape(-1), faces[1].astype(float).reshape(-1)
    expected = np.linalg.norm(a / np.linalg.norm(a) - b / np.linalg.norm(b))
    _, out = invoke("verify", run, db / "ann" / "1.png", db / "bob" / "1.png", "--json")
    assert json.loads(out)["distance"] == pytest.approx(expected, rel=1e-5)


def test_recognize_finds_the_identity_or_says_not_recognized(planted):
    run, db, q, _ = planted
    code, out = invoke("recognize", run, q["ann"], "--database", db, "--json")
    result = json.loads(out)
    assert code == 0 and result["identity"] == "ann" and result["nearest"][0]["identity"] == "ann"
    assert result["images_in_database"] == 4 and result["encoded_now"] == 4
    code, out = invoke("recognize", run, q["stranger"], "--database", db, "--json")
    result = json.loads(out)
    assert code == 0 and result["identity"] is None and result["distance"] > 0.6
    code, out = invoke("recognize", run, q["ann"], "--database", db)
    assert code == 0 and "recognized: ann" in out


def test_the_encodings_cache_is_reused_and_refreshed_when_images_change(planted):
    run, db, q, faces = planted
    invoke("recognize", run, q["ann"], "--database", db, "--json")
    assert (db.parent / "db.encodings.npz").exists()
    _, out = invoke("recognize", run, q["ann"], "--database", db, "--json")
    assert json.loads(out)["encoded_now"] == 0
    # one-shot: a new person is one image in a new folder; an edited image is encoded again
    save(db / "dee" / "1.png", faces[3])
    save(db / "bob" / "1.png", faces[4])
    _, out = invoke("recognize", run, q["stranger"], "--database", db, "--json")
    result = json.loads(out)
    assert result["encoded_now"] == 2 and result["identity"] == "dee"
    _, out = invoke("recognize", run, q["other"], "--database", db, "--json")
    assert json.loads(out)["identity"] == "bob" and json.loads(out)["encoded_now"] == 0
    (db / "dee" / "1.png").unlink()
    _, out = invoke("recognize", run, q["stranger"], "--database", db, "--json")
    assert json.loads(out)["identity"] is None and json.loads(out)["images_in_database"] == 4


def test_bad_input_exits_2_without_a_traceback(planted, tmp_path):
    run, db, q, _ = planted
    code, _ = invoke("recognize", run, q["ann"], "--database", tmp_path / "nowhere")
    assert code == 2
    (tmp_path / "notimage.png").write_text("hello")
    code, _ = invoke("verify", run, q["ann"], tmp_path / "notimage.png")
    assert code == 2
    empty = tmp_path / "emptydb"
    empty.mkdir()
    code, _ = invoke("recognize", run, q["ann"], "--database", empty)
    assert code == 2


def test_predict_on_an_embedding_run_gives_the_embedding_and_no_class(planted):
    run, db, q, faces = planted
    code, out = invoke("predict", run, db / "ann" / "1.png", q["stranger"], "--json")
    assert code == 0, out
    predictions = json.loads(out)["predictions"]
    assert len(predictions) == 2 and all("class" not in p for p in predictions)
    a = faces[0].astype(float).reshape(-1)
    np.testing.assert_allclose(predictions[0]["embedding"], a / np.linalg.norm(a), rtol=1e-5, atol=1e-7)
