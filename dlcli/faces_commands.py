"""`dlcli verify`, `dlcli recognize` and `dlcli style`: job -> JSON or a drawing -> exit code.

verify / recognize read a trained embedding run (its recipe, params.npz and the tau that
summary.json saved), prepare each image as the run's training data were prepared (resized to
the model's input, grey or RGB as its first layer takes, `scale`, the saved normalisation), and
compare encodings with the run's distance. A recognition database is a folder with one
sub-folder per identity holding one image or more (one-shot: a new person is one image in a new
folder); its encodings are cached beside it in `<DIR>.encodings.npz`, keyed by the run's
params.npz and each image's size and modification time, and refreshed for the images that
changed (new, edited, removed) on the next call.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .errors import BadInput

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclass
class Encoder:
    """A trained embedding run, ready to encode image files."""
    run_dir: Path
    model: object
    dataset: object
    tau: float

    @classmethod
    def load(cls, run_dir):
        from .api import load_model, load_run
        run = load_run(run_dir)
        model, dataset = load_model(run.path)
        if not getattr(model.loss, "embedding", False):
            raise BadInput(f"the run's loss is {model.loss.name}, not an embedding "
                           "(triplet or siamese_binary)", file=run.path)
        tau = run.summary.get("tau")
        if tau is None:
            raise BadInput("the run's summary.json has no tau (did its training finish?)", file=run.path)
        return cls(run.path, model, dataset, float(tau))

    def encode(self, paths) -> np.ndarray:
        from .style import read_image
        n_H, n_W, n_C = self.dataset.input_shape if len(self.dataset.input_shape) == 3 else (None,) * 3
        if n_H is None:
            raise BadInput("the run's inputs are not images", file=self.run_dir)
        raw = np.concatenate([read_image(p, (n_W, n_H), n_C) for p in paths]) if paths else \
            np.zeros((0, n_H, n_W, n_C), np.uint8)
        return self.model.predict_proba(self.dataset.preprocess(raw)).astype(np.float64)

    def distances(self, E1, E2) -> np.ndarray:
        return self.model.loss.pair_distances(E1, E2)


# -- verify ------------------------------------------------------------------------------------
def verify(run_dir, image_a, image_b) -> dict:
    enc = Encoder.load(run_dir)
    E = enc.encode([image_a, image_b])
    d = float(enc.distances(E[:1], E[1:])[0, 0])
    return {"run": str(enc.run_dir), "images": [str(image_a), str(image_b)], "distance": d,
            "tau": enc.tau, "same": d < enc.tau}


# -- recognize ---------------------------------------------------------------------------------
def database_images(root: Path) -> list[tuple[str, Path]]:
    """(identity, image) for every image in a sub-folder of `root`, sorted."""
    if not root.is_dir():
        raise BadInput("the database must be a folder with one sub-folder per identity", file=root)
    images = [(d.name, p) for d in sorted(root.iterdir()) if d.is_dir()
              for p in sorted(d.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
    if not images:
        raise BadInput("no images in the database's sub-folders (one folder per identity)", file=root)
    return images


def cache_path(root: Path) -> Path:
    return root.parent / f"{root.name}.encodings.npz"


def _fingerprint(run_dir: Path) -> str:
    st = (run_dir / "params.npz").stat()
    return f"{run_dir.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def database_encodings(enc: Encoder, root: Path):
    """(identities, paths, encodings, newly encoded count) with the cache read and refreshed."""
    from .runs import atomic_write_npz
    images = database_images(root)
    stamps = [f"{p.stat().st_size}|{p.stat().st_mtime_ns}" for _, p in images]
    keys = [str(p.relative_to(root)) for _, p in images]
    cached = {}
    path = cache_path(root)
    fingerprint = _fingerprint(enc.run_dir)
    if path.exists():
        try:
            with np.load(path) as f:
                if str(f["run"]) == fingerprint:
                    cached = {(k, s): e for k, s, e in zip(f["paths"], f["stamps"], f["encodings"])}
        except (OSError, KeyError, ValueError):
            cached = {}  # unreadable: rebuilt below
    missing = [i for i, ks in enumerate(zip(keys, stamps)) if ks not in cached]
    fresh = dict(zip(missing, enc.encode([images[i][1] for i in missing])))
    E = np.stack([fresh[i] if i in fresh else cached[ks]
                  for i, ks in enumerate(zip(keys, stamps))])
    if missing or len(cached) != len(keys):
        atomic_write_npz(path, {"run": np.array(fingerprint), "paths": np.array(keys),
                                "stamps": np.array(stamps), "identities": np.array([i for i, _ in images]),
                                "encodings": E})
    return [i for i, _ in images], keys, E, len(missing)


def recognize(run_dir, image, database, top: int = 5) -> dict:
    enc = Encoder.load(run_dir)
    root = Path(database)
    identities, keys, E, encoded = database_encodings(enc, root)
    q = enc.encode([image])
    d = enc.distances(q, E)[0]
    best = {}
    for who, dist in zip(identities, d):
        best[who] = min(best.get(who, np.inf), float(dist))
    ranked = sorted(best.items(), key=lambda kv: kv[1])
    who, dist = ranked[0]
    return {"run": str(enc.run_dir), "image": str(image), "database": str(root),
            "identity": who if dist < enc.tau else None, "distance": dist, "tau": enc.tau,
            "nearest": [{"identity": w, "distance": x} for w, x in ranked[:top]],
            "images_in_database": len(keys), "encoded_now": encoded, "cache": str(cache_path(root))}


# -- command-line front ends --------------------------------------------------------------------
def _console(stderr=False):
    from rich.console import Console
    return Console(stderr=stderr)


def verify_cli(run_dir, image_a, image_b, as_json=False) -> int:
    result = verify(run_dir, image_a, image_b)
    if as_json:
        print(json.dumps(result))
    else:
        from .render_faces import verify_answer
        verify_answer(result, _console())
    return 0


def recognize_cli(run_dir, image, database, as_json=False, top=5) -> int:
    result = recognize(run_dir, image, database, top)
    if as_json:
        print(json.dumps(result))
    else:
        from .render_faces import recognize_answer
        recognize_answer(result, _console())
    return 0


def style_cli(run_dir, content, style, *, size=None, alpha=10.0, beta=40.0, iterations=200,
              learning_rate=0.01, noise=0.2, content_layer=None, style_layers=None,
              save_every=None, out=None, as_json=False, seed=0) -> int:
    from .render_faces import style_costs
    from .style import parse_style_layers, style_run
    console = _console(stderr=as_json)
    if not as_json:
        log = _console(stderr=True)  # progress on stderr, the table of costs on stdout

        def progress(row):
            if row["iteration"] % max(1, iterations // 10) == 0 or row["iteration"] == iterations:
                log.print(f"iteration {row['iteration']:>5}  J {row['cost']:.6g}  "
                              f"J_content {row['content']:.6g}  J_style {row['style']:.6g}")
    result = style_run(run_dir, content, style, size=size, out=out,
                       on_iteration=None if as_json else progress, alpha=alpha, beta=beta,
                       iterations=iterations, learning_rate=learning_rate, noise=noise,
                       content_layer=content_layer, style_layers=parse_style_layers(style_layers),
                       save_every=save_every, seed=seed)
    if as_json:
        print(json.dumps(result.to_json()))
    else:
        every = max(1, iterations // 10)
        shown = dict(asdict(result))
        shown["iterations"] = [r for r in result.iterations
                               if r["iteration"] % every == 0 or r["iteration"] == iterations]
        style_costs(shown, console)
    return 0
