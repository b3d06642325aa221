"""`dlcli report`: the HTML page of a run, a search and several runs, looked at as a person
would: opened in headless Chromium, screenshotted, its text read from the browser's DOM."""

import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import mnist_cut
from dlcli import api
from dlcli.cli import app

EXTERNAL = re.compile(r"""(?:https?:|ftp:)?//[\w.-]+\.\w|(?:src|href)\s*=\s*["'](?!data:|#)|url\(\s*["']?(?!data:|#)""",
                      re.I)


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def svgs(html):
    return re.findall(r"<svg\b.*?</svg>", html, flags=re.S)


def assert_self_contained(html):
    assert not EXTERNAL.findall(html), EXTERNAL.findall(html)[:3]
    assert "<script" not in html and "<link" not in html


# -- runs to report on ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lenet_run(tmp_path_factory):
    """LeNet-5, two epochs on 600 MNIST images, written with --report."""
    root = tmp_path_factory.mktemp("lenet")
    data, x = mnist_cut(root)
    result = invoke("train", "recipes/lenet5.yaml", "--quiet", "--report", "--runs-dir", root / "runs",
                    "--set", data[0], "--set", data[1],
                    "--set", "training.epochs=2", "--set", "training.batch_size=32")
    assert result.exit_code == 0, result.output
    run_dir = next((root / "runs").iterdir())
    return run_dir, (run_dir / "report.html").read_text()


@pytest.fixture(scope="module")
def planar_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("planar")
    runs = [api.train("recipes/quickstart.yaml", runs_dir=root / "runs",
                      overrides=["training.epochs=12", f"optimizer.learning_rate={lr}"]).run_dir
            for lr in (0.01, 0.003)]
    return root, runs


@pytest.fixture(scope="module")
def search_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("search")
    result = invoke("search", "recipes/search_planar.yaml", "--trials", "3", "--rounds", "2",
                    "--workers", "1", "--runs-dir", root, "--set", "training.epochs=8", "--report")
    assert result.exit_code == 0, result.output
    return next(p for p in root.iterdir() if p.name.endswith("-search"))


# -- the pages' content -----------------------------------------------------------------------------
def test_train_report_writes_a_self_contained_run_page(lenet_run):
    run_dir, html = lenet_run
    assert_self_contained(html)
    for text in ("Errors and diagnosis", "human-level", "train-dev", "avoidable bias", "variance",
                 "Focus:", "Per class", "Confusion matrix", "Most confident mistakes", "Recipe",
                 "conv2d"):
        assert text in html, text
    plots = svgs(html)
    assert len(plots) >= 3      # cost, errors, confusion matrix
    assert all(plot.count("<path") >= 5 for plot in plots)
    assert "Cost per epoch" in plots[0] and "Errors per epoch" in plots[1]
    images = re.findall(r'<img[^>]*src="data:image/png;base64,([^"]+)"', html)
    n_mistakes = len(np.flatnonzero(np.load(run_dir / "predictions" / "dev.npz")["y_pred"]
                                    != np.load(run_dir / "predictions" / "dev.npz")["y_true"]))
    assert len(images) == min(12, n_mistakes) > 0


def test_the_confusion_matrix_counts_are_the_runs(lenet_run):
    run_dir, html = lenet_run
    pred = np.load(run_dir / "predictions" / "dev.npz")
    counts = np.zeros((10, 10), int)
    np.add.at(counts, (pred["y_true"], pred["y_pred"]), 1)
    heat = next(p for p in svgs(html) if "true against predicted" in p)
    texts = [int(t) for t in re.findall(r">(\d+)</text>", heat)]
    # cell annotations come row by row, after the tick labels
    assert counts.ravel().tolist() == texts[-100:]


def test_search_page_ranks_the_trials_and_scatters_each_searched_value(search_dir):
    import json
    html = (search_dir / "report.html").read_text()
    assert_self_contained(html)
    trials = [json.loads(line) for line in (search_dir / "trials.jsonl").read_text().splitlines()]
    table = html[html.index("Trials, best first"):html.index("The metric against")]
    rows = re.findall(r"<tr(?: class=\"[^\"]*\")?><td>(\d+|—)</td><td>(\d+)</td>", table)
    assert len(rows) == len(trials) == 6
    metric = {t["trial"]: t["metric"] for t in trials}
    order = [metric[int(t)] for _, t in rows]
    assert order == sorted(order)
    assert 'class="best"' in table
    scatters = [p for p in svgs(html) if "error against" in p]
    assert len(scatters) == 3
    for key in ("optimizer.learning_rate", "1 - optimizer.beta1", "model.layers.0.units"):
        assert any(f"{key} (log scale)" in p for p in scatters), key
    assert "Best trial" in html and "Cost per epoch" in html


def test_a_uniform_law_gets_a_linear_axis():
    from dlcli.page import plots
    from dlcli.search import Dim
    lin = plots.search_scatter(Dim("regularization.l2", "uniform", (0.0, 0.1)),
                               [(0, 0, 0.01, 0.2), (1, 0, 0.05, 0.1)], 1, "error")
    log = plots.search_scatter(Dim("optimizer.learning_rate", "log_uniform", (1e-4, 1.0)),
                               [(0, 0, 0.001, 0.2), (1, 0, 0.1, 0.1)], 1, "error")
    assert "regularization.l2</text>" in lin.replace(" (log scale)", "X") and "(log scale)" not in lin
    assert "(log scale)" in log


def test_compare_page_overlays_curves_and_diffs_settings(planar_runs, tmp_path):
    root, runs = planar_runs
    result = invoke("report", *runs, "--out", tmp_path / "cmp.html")
    assert result.exit_code == 0, result.output
    html = (tmp_path / "cmp.html").read_text()
    assert_self_contained(html)
    cost = next(p for p in svgs(html) if "Cost per epoch" in p)
    assert all(r.name in cost for r in runs)            # both runs in the legend
    settings = html[html.index("Settings that differ"):html.index("Diagnoses")]
    assert "optimizer.learning_rate" in settings and "0.003" in settings and "0.01" in settings
    assert "training.epochs" not in settings            # the same in both


def test_report_of_a_missing_run_is_exit_2(tmp_path):
    result = invoke("report", tmp_path / "nope")
    assert result.exit_code == 2 and "nope" in result.output


def test_help_does_not_import_matplotlib():
    import sys
    code = "import sys, dlcli.cli; print(any(m.startswith('matplotlib') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- in a browser ------------------------------------------------------------------------------------
def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    message = "no headless Chromium on this machine (apt-get install chromium)"
    if os.environ.get("DLCLI_REQUIRE_BROWSER"):
        pytest.fail(message)
    pytest.skip(message)


def browse(page, tmp_path, *args):
    """Chromium, headless, offline (every host name resolves to nothing), a new profile."""
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={profile}", "--hide-scrollbars",
           "--host-resolver-rules=MAP * ~NOTFOUND", *args, page.resolve().as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def colour_share(png, rgb, tol=30):
    a = np.asarray(Image.open(png).convert("RGB"), dtype=int)
    return float(np.mean(np.all(np.abs(a - rgb) <= tol, axis=-1)))


def test_chromium_shows_the_run_page_curves_table_and_pictures(lenet_run, tmp_path):
    run_dir, _ = lenet_run
    shot = tmp_path / "run.png"
    browse(run_dir / "report.html", tmp_path, "--window-size=1200,2600", f"--screenshot={shot}")
    assert shot.exists(), "no screenshot"
    image = Image.open(shot)
    assert image.size == (1200, 2600)
    assert colour_share(shot, (31, 119, 180)) > 1e-4      # the cost curve's blue
    assert colour_share(shot, (255, 244, 214), tol=6) > 1e-4   # the focus row of the errors table
    assert colour_share(shot, (8, 48, 107), tol=40) > 1e-4     # the heat map's dark cells
    dom = browse(run_dir / "report.html", tmp_path, "--dump-dom").stdout
    text = re.sub(r"<[^>]+>", " ", dom)
    for words in ("Errors and diagnosis", "human-level", "avoidable bias", "Focus:", "Most confident mistakes"):
        assert words in text, words
    assert len(re.findall(r"<svg\b", dom)) >= 3
    assert len(re.findall(r"<img\b", dom)) > 0


def test_chromium_shows_the_search_page(search_dir, tmp_path):
    shot = tmp_path / "search.png"
    browse(search_dir / "report.html", tmp_path, "--window-size=1200,1800", f"--screenshot={shot}")
    assert shot.exists(), "no screenshot"
    assert colour_share(shot, (231, 246, 234), tol=4) > 1e-4   # the best trial's row
    assert colour_share(shot, (255, 215, 0), tol=40) > 1e-5    # the best trial's star
    dom = browse(search_dir / "report.html", tmp_path, "--dump-dom").stdout
    assert "Trials, best first" in dom and len(re.findall(r"<svg\b", dom)) >= 5


def test_chromium_shows_two_runs_overlaid(planar_runs, tmp_path):
    root, runs = planar_runs
    page = tmp_path / "cmp.html"
    assert invoke("report", *runs, "--out", page).exit_code == 0
    shot = tmp_path / "cmp.png"
    browse(page, tmp_path, "--window-size=1200,1400", f"--screenshot={shot}")
    assert shot.exists(), "no screenshot"
    assert colour_share(shot, (31, 119, 180)) > 1e-4    # the first run's curves
    assert colour_share(shot, (214, 39, 40)) > 1e-4     # the second run's
    dom = browse(page, tmp_path, "--dump-dom").stdout
    text = re.sub(r"<[^>]+>", " ", dom)
    assert "Settings that differ" in text and "optimizer.learning_rate" in text


def test_outputs_the_analysis_does_not_know_leave_a_note_not_a_traceback(tmp_path):
    import json
    run = tmp_path / "seq-run"
    (run / "predictions").mkdir(parents=True)
    (run / "recipe.yaml").write_text("name: seq\nmodel:\n  layers: []\n")
    (run / "summary.json").write_text(json.dumps({"status": "completed", "epochs": 2,
                                                  "errors": {"train": 0.5, "dev": 0.6}}))
    (run / "metrics.jsonl").write_text('{"epoch": 1, "cost": 2.0, "train_error": 0.7}\n'
                                       '{"epoch": 2, "cost": 1.5, "train_error": 0.5}\n')
    # (5, 3) real-valued targets against (5, 3, 4) outputs: nothing analyze can read as classes
    np.savez(run / "predictions" / "dev.npz", y_true=np.full((5, 3), 0.5), y_pred=np.zeros((5, 3), int),
             probabilities=np.full((5, 3, 4), 0.25), index=np.arange(5))
    result = invoke("report", run)
    assert result.exit_code == 0, result.output
    html = (run / "report.html").read_text()
    assert "No per-class error analysis for outputs of shape (5, 3, 4)" in html
    assert "Errors and diagnosis" in html and len(svgs(html)) == 2
