"""Search directories read back for `dlcli runs`: one row in `runs list` (its trial count and
best trial), and `runs show SEARCH_DIR` (the search at a glance, its trials best first).

A search directory is one holding `search.yaml`; its finished trials are `trials.jsonl`.
"""

from __future__ import annotations

from pathlib import Path

from .runs import read_jsonl

LOWER_IS_BETTER = {"error": True, "cost": True, "f1": False}


def is_search(path: Path) -> bool:
    return (Path(path) / "search.yaml").exists()


def _settings(path: Path) -> dict:
    import yaml
    try:
        doc = yaml.safe_load((path / "search.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        doc = {}
    search = doc.get("search") or {}
    return {"name": doc.get("name"), "metric": (doc.get("evaluation") or {}).get("metric", "error"),
            "planned": (search.get("trials") or 0) * (search.get("rounds") or 1),
            "space": list((search.get("space") or {}))}


def trials_of(path: Path) -> list[dict]:
    file = path / "trials.jsonl"
    try:
        return read_jsonl(file) if file.exists() else []
    except (OSError, ValueError):
        return []


def ranked(records: list[dict], metric: str) -> list[dict]:
    """Completed trials, best first (those meeting the satisficing metrics first), as
    `dlcli search` ranks them."""
    sign = 1 if LOWER_IS_BETTER.get(metric, True) else -1
    done = [r for r in records if r.get("status") == "completed" and r.get("metric") is not None]
    return sorted(done, key=lambda r: (not r.get("satisficing_met", True), sign * r["metric"],
                                       r.get("trial", 0)))


def search_row(path: Path) -> dict:
    """A `runs list` row: the best trial's errors, the trial count and the best trial."""
    settings = _settings(path)
    records = trials_of(path)
    order = ranked(records, settings["metric"])
    best = order[0] if order and order[0].get("satisficing_met", True) else None
    return {"run": path.name, "kind": "search", "status": "search", "trials": len(records),
            "planned": settings["planned"], "metric": settings["metric"],
            "seconds": sum(r.get("seconds") or 0 for r in records) or None,
            "errors": (best or {}).get("errors") or {}, "best": best}


def search_details(path: Path, console, top: int = 10) -> None:
    """`dlcli runs show SEARCH_DIR`."""
    from .report import _pct, _row, _seconds, _table, L, R, NONE
    from .search import short_names
    settings = _settings(path)
    records = trials_of(path)
    order = ranked(records, settings["metric"])
    best = order[0] if order and order[0].get("satisficing_met", True) else None
    facts = _table(f"search {settings['name'] or path.name}", ("", L), ("", L), show_header=False)
    _row(facts, "trials", f"{len(records)} finished of {settings['planned'] or '?'}")
    statuses = {}
    for r in records:
        statuses[r.get("status", "?")] = statuses.get(r.get("status", "?"), 0) + 1
    _row(facts, "status", ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())) or NONE)
    _row(facts, "optimizing", settings["metric"])
    if best:
        _row(facts, "best", f"trial {best['trial']}: {settings['metric']} {best['metric']:.4g}")
        if (path / "best.yaml").exists():
            _row(facts, "train it again", f"dlcli train {path / 'best.yaml'}")
    console.print(facts)
    if not order:
        console.print("No trial has finished yet.")
        return
    keys = settings["space"] or list(order[0].get("values") or {})
    names = short_names(keys)
    table = _table(f"Trials, best first (top {min(top, len(order))} of {len(order)} completed)",
                   ("trial", R), *((n, R) for n in names), (settings["metric"], R), ("train", R),
                   ("dev", R), ("s", R))
    for column in table.columns:
        column.overflow = "fold"
    for r in order[:top]:
        errors = r.get("errors") or {}
        values = r.get("values") or {}
        _row(table, str(r["trial"]), *(_value(values.get(k)) for k in keys),
             f"{r['metric']:.4g}", _pct(errors.get("train")), _pct(errors.get("dev")),
             _seconds(r.get("seconds")), style="bold green" if r is best else None)
    console.print(table)


def _value(v) -> str:
    return "—" if v is None else f"{v:.3g}" if isinstance(v, float) else str(v)
