"""Drawing the faces family's results (faces.py and style.py compute them): the verification
table, the distance histogram with tau marked, verify / recognize answers, style-transfer costs.
Every function draws on the console it is given and computes nothing."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from .report import NONE, SPLITS, L, R, _num, _pct, _row, _table

BAR = 24  # characters for the longest bar of a distribution


def embedding_report(summary: dict, console: Console) -> None:
    """After training an embedding run: distances same vs different, errors at tau, recognition,
    one-shot (medians of the pair distances); then the histogram of the split the user cares
    about (test, else dev)."""
    emb = summary.get("embedding") or {}
    splits = emb.get("splits") or {}
    tau = emb.get("tau")
    shots = [ev["one_shot"] for ev in splits.values() if ev.get("one_shot")]
    ways = f"{shots[0]['ways']}-way" if shots else "one-shot"
    table = _table(f"Verification at tau = {_num(tau)} (chosen on {emb.get('tau_split')}, "
                   f"{emb.get('distance', 'euclidean')})",
                   ("split", L), ("d same", R), ("d diff", R), ("false rej", R), ("false acc", R),
                   ("error", R), ("1:K", R), (ways, R))
    for split, ev in splits.items():
        v = ev["verification"]
        shot = ev.get("one_shot")
        _row(table, SPLITS.get(split, split), _num(v["same"].get("median"), 3),
             _num(v["different"].get("median"), 3), _pct(v["false_reject"]),
             _pct(v["false_accept"]), _pct(v["error"]), _pct(ev.get("recognition_accuracy")),
             _pct(shot["accuracy"]) if shot else NONE)
    console.print(table)
    show = "test" if "test" in splits else "dev" if "dev" in splits else next(iter(splits), None)
    if show is not None:
        distance_histogram(splits[show]["verification"], tau, console, title=SPLITS.get(show, show))


def distance_histogram(v: dict, tau, console: Console, title: str = "") -> None:
    """One line per bin: the share of same-identity pairs (█) and of different ones (░) whose
    distance falls in it, each scaled to its own largest bin (there are far more different
    pairs); the bin holding tau is marked."""
    h = v.get("histogram") or {}
    if not h:
        return
    edges, same, diff = h["edges"], h["same"], h["different"]
    top_s, top_d = max(max(same), 1), max(max(diff), 1)
    console.print(Text(f"Distances on {title}: █ same identity ({v['same_pairs']} pairs), "
                       f"░ different ({v['different_pairs']} pairs)", style="bold"))
    for k in range(len(same)):
        lo, hi = edges[k], edges[k + 1]
        s = round(BAR * same[k] / top_s)
        d = round(BAR * diff[k] / top_d)
        marker = " ◀ tau" if tau is not None and lo <= tau < hi else ""
        line = Text(f"{lo:6.3f} │")
        line.append("█" * s, style="green")
        line.append(" " * (BAR - s) + " │")
        line.append("░" * d, style="red")
        line.append(" " * (BAR - d))
        line.append(marker, style="bold yellow")
        console.print(line)


def verify_answer(result: dict, console: Console) -> None:
    same = result["same"]
    console.print(Text.assemble(
        ("same identity" if same else "different identities", "bold green" if same else "bold red"),
        f": distance {result['distance']:.4f} {'<' if same else '>='} tau {result['tau']:.4f}"))


def recognize_answer(result: dict, console: Console) -> None:
    table = _table("Nearest identities", ("identity", L), ("distance", R), ("", L))
    for row in result["nearest"]:
        _row(table, row["identity"], f"{row['distance']:.4f}",
             "within tau" if row["distance"] < result["tau"] else "")
    console.print(table)
    who = result["identity"]
    console.print(Text.assemble(("not recognized", "bold red") if who is None
                                else (f"recognized: {who}", "bold green"),
                                f" (tau {result['tau']:.4f}, database {result['database']})"))


def style_costs(result: dict, console: Console) -> None:
    table = _table("Style transfer costs", ("iteration", R),
                   ("J", R), ("J_content", R), ("J_style", R))
    for row in result["iterations"]:
        _row(table, str(row["iteration"]), f"{row['cost']:.6g}", f"{row['content']:.6g}",
             f"{row['style']:.6g}")
    console.print(table)
    console.print(Text(f"generated image: {result['image']}"))
