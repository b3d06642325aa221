"""What a report page shows, computed from run and search directories; nothing drawn here.

`run_content(dir)` reads one run (recipe, metrics.jsonl, summary.json, the error analysis of
its dev split, or test, or train, and the most confident mistakes' pictures where the data are
images); `search_content(dir)` reads a search (trials ranked as `dlcli search` ranks them, the
searched keys with their laws, the best trial's run); `compare_content(dirs)` several runs and
the settings in which their recipes differ. `page.html` draws them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from ..errors import BadInput
from ..runs import find_run, read_json, read_jsonl

ANALYSIS_SPLITS = ("dev", "test", "train")   # the first the run has is analysed
MISTAKE_IMAGES = 12


@dataclass
class Mistake:
    index: int
    true: object
    predicted: object
    probability: float
    png: bytes | None = None      # the picture as the source had it, where the data are images


@dataclass
class RunContent:
    path: Path
    name: str
    summary: dict
    recipe_text: str
    recipe: dict
    metrics: list                 # metrics.jsonl records
    split: str | None = None      # the analysed split
    analysis: dict | None = None  # analyze.ErrorAnalysis.to_json() of that split
    analysis_note: str | None = None   # why there is no analysis, where there is none
    class_names: list | None = None
    mistakes: list = field(default_factory=list)

    def class_name(self, c) -> str:
        if isinstance(c, list):
            return ", ".join(self.class_name(v) for v in c) or "—"
        names = self.class_names
        return f"{names[c]} ({c})" if names and isinstance(c, int) and 0 <= c < len(names) else str(c)


@dataclass
class SearchContent:
    path: Path
    name: str
    search_text: str
    metric: str                   # evaluation.metric: error | f1 | cost
    dims: list                    # search.Dim, the first round's space
    ranked: list                  # trials.jsonl records, best first (completed ones)
    others: list                  # diverged / failed trials
    best: RunContent | None = None


@dataclass
class CompareContent:
    runs: list                    # RunContent
    differences: list             # (dotted key, [value per run]) where the recipes differ


def is_search(path: Path) -> bool:
    return (path / "search.yaml").exists()


def _read_yaml(path: Path) -> tuple[str, dict]:
    try:
        text = path.read_text()
        return text, yaml.safe_load(text) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise BadInput(f"cannot read: {err}", file=path)


def run_content(run, mistakes: int = MISTAKE_IMAGES) -> RunContent:
    path = find_run(run)
    if not (path / "summary.json").exists():
        raise BadInput("not a finished run (no summary.json)", file=path)
    text, recipe = _read_yaml(path / "recipe.yaml")
    metrics = read_jsonl(path / "metrics.jsonl") if (path / "metrics.jsonl").exists() else []
    content = RunContent(path, _run_name(path), read_json(path / "summary.json"), text, recipe, metrics)
    _add_analysis(content, mistakes)
    return content


def _run_name(path: Path) -> str:
    """A search's trial or an ensemble's member is named by its parent too."""
    if path.parent.name in ("trials", "members"):
        return f"{path.parent.parent.name} {path.parent.name[:-1]} {path.name}"
    return path.name


def _add_analysis(content: RunContent, n_mistakes: int) -> None:
    from ..analyze import analyze
    errors = content.summary.get("errors") or {}
    split = next((s for s in ANALYSIS_SPLITS if errors.get(s) is not None
                  and (content.path / "predictions" / f"{s}.npz").exists()), None)
    if split is None:
        content.analysis_note = "the run has no saved predictions"
        return
    try:
        with np.load(content.path / "predictions" / f"{split}.npz") as f:
            pred = {k: f[k] for k in f.files}
        analysis = analyze(pred, split)
    except Exception as err:  # noqa: BLE001 - outputs analyze does not know (boxes, sequences):
        # the page goes on without this section, saying why
        shape = np.shape(pred.get("probabilities")) if "pred" in locals() else None
        content.analysis_note = (f"No per-class error analysis for outputs of shape {shape}: {err}"
                                 if shape else f"No error analysis: {err}")
        return
    content.split, content.analysis = split, analysis.to_json()
    content.class_names = _class_names(content.path)
    content.mistakes = [Mistake(e["index"], e["true"], e["predicted"], e["probability"])
                        for e in analysis.errors[:n_mistakes]]
    _add_pictures(content)


def _class_names(path: Path):
    spec = path / "preprocessing.npz"
    if spec.exists():
        with np.load(spec, allow_pickle=False) as f:
            return [str(s) for s in f["class_names"]] if "class_names" in f.files else None
    return None


def _add_pictures(content: RunContent) -> None:
    """The mistaken examples' pictures, from the run's data (image data only)."""
    if not content.mistakes or not _is_image_run(content):
        return
    from ..contact_sheet import display_images
    from ..api import load_data
    from ..recipe import load_recipe
    try:
        dataset = load_data(load_recipe(content.path / "recipe.yaml"))
    except (BadInput, OSError):
        return   # the data moved or went: the page goes without pictures
    data = dataset.splits.get(content.split)
    if data is None:
        return
    images = display_images(data.x[[m.index for m in content.mistakes]], content.recipe.get("data") or {})
    for m, image in zip(content.mistakes, images):
        m.png = png_bytes(image)
    if content.class_names is None:
        content.class_names = dataset.class_names


def _is_image_run(content: RunContent) -> bool:
    spec = content.path / "preprocessing.npz"
    if spec.exists():
        with np.load(spec, allow_pickle=False) as f:
            return len(f["example_shape"]) == 3
    data = content.recipe.get("data") or {}
    return not data.get("flatten") and any(
        isinstance(layer, dict) and layer.get("type") in ("conv2d", "maxpool", "depthwise_conv2d")
        for layer in (content.recipe.get("model") or {}).get("layers", []))


def png_bytes(image: np.ndarray) -> bytes:
    import io

    from PIL import Image
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG")
    return out.getvalue()


def search_content(path) -> SearchContent:
    from ..search import FINISHED, dims_of, ranked
    from ..search import Settings
    path = Path(path)
    text, cfg = _read_yaml(path / "search.yaml")
    search = cfg.get("search") or {}
    metric = (cfg.get("evaluation") or {}).get("metric", "error")
    settings = Settings(search.get("trials"), search.get("rounds"), search.get("keep"),
                        search.get("space") or {}, metric)
    records = read_jsonl(path / "trials.jsonl") if (path / "trials.jsonl").exists() else []
    records = [r for r in records if r.get("status") in FINISHED]
    order = ranked(records, settings)
    others = sorted((r for r in records if r not in order), key=lambda r: r["trial"])
    best = None
    if order and (path / "trials" / str(order[0]["trial"]) / "summary.json").exists():
        best = run_content(path / "trials" / str(order[0]["trial"]))
    return SearchContent(path, path.name, text, metric, dims_of(settings.space), order, others, best)


def compare_content(runs) -> CompareContent:
    contents = [run_content(r, mistakes=0) for r in runs]
    flat = [flatten(c.recipe) for c in contents]
    keys = sorted(set().union(*flat) - {"name"})
    differences = [(k, [f.get(k) for f in flat]) for k in keys
                   if len({repr(f.get(k)) for f in flat}) > 1]
    return CompareContent(contents, differences)


def flatten(value, prefix="") -> dict:
    """{"optimizer.learning_rate": 0.01, "model.layers.0.units": 16, ...}"""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        out = {}
        for i, v in enumerate(value):
            out.update(flatten(v, f"{prefix}{i}."))
        return out
    return {prefix[:-1]: value}
