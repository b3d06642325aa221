"""The report's plots: matplotlib figures written as SVG text, to be inlined in the page.

matplotlib because it is the plotting library every Python user has met and its SVG backend
writes vector plots that need nothing at view time (no JavaScript, no CDN). It is imported
here only, and this module only by `dlcli report`, so `dlcli --help` never pays for it.
Text stays text (`svg.fonttype: none`): the page can be searched and read by a screen reader.
Each SVG's ids get a prefix of their own, so several plots in one page never share a clip
path or a marker by accident; the XML prologue, the DTD link and the metadata are dropped, so
the page holds no URL.
"""

from __future__ import annotations

import io
import itertools
import math
import re

import numpy as np

_counter = itertools.count()
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.rcParams.update({"svg.fonttype": "none", "font.size": 10, "axes.spines.top": False,
                         "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3,
                         "svg.hashsalt": "dlcli"})
    return plt


def svg(fig) -> str:
    """The figure as an inline <svg> element (closed afterwards)."""
    plt = _plt()
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
    text = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", text)
    prefix = f"s{next(_counter)}-"
    ids = set(re.findall(r'\bid="([^"]+)"', text))
    if ids:
        pattern = re.compile(r'(\bid="|#)(' + "|".join(map(re.escape, sorted(ids, key=len, reverse=True)))
                             + r')(?=["\)])')
        text = pattern.sub(lambda m: m.group(1) + prefix + m.group(2), text)
    return text.replace("<svg ", '<svg role="img" ', 1)


def _finite(xs, ys):
    pts = [(x, y) for x, y in zip(xs, ys) if y is not None and math.isfinite(y)]
    return [p[0] for p in pts], [p[1] for p in pts]


def _markers(xs) -> dict:
    """Few epochs: mark each one, so a one-epoch run still shows its point."""
    return {"marker": "o", "ms": 4} if len(xs) <= 25 else {}


def _epoch_axis(ax) -> None:
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def cost_curve(series: list, title="Cost per epoch") -> str:
    """series: [(label, epochs, costs)]; a log y axis where the costs span two decades."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 3.2))
    low, high = math.inf, 0.0
    for k, (label, epochs, costs) in enumerate(series):
        xs, ys = _finite(epochs, costs)
        if ys:
            ax.plot(xs, ys, color=COLORS[k % len(COLORS)], lw=1.6, label=label, **_markers(xs))
            low, high = min(low, min(ys)), max(high, max(ys))
    if 0 < low and high / low > 100:
        ax.set_yscale("log")
    ax.set(xlabel="epoch", ylabel="cost", title=title)
    _epoch_axis(ax)
    if len(series) > 1:
        ax.legend(frameon=False, fontsize=8)
    return svg(fig)


def error_curves(series: list, title="Errors per epoch") -> str:
    """series: [(label, epochs, train_errors, dev_errors)]: train dashed, dev solid, in %."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 3.2))
    for k, (label, epochs, train, dev) in enumerate(series):
        color = COLORS[k % len(COLORS)]
        prefix = f"{label}: " if len(series) > 1 else ""
        xs, ys = _finite(epochs, train)
        if ys:
            ax.plot(xs, [100 * y for y in ys], color=color, lw=1.4, ls="--", label=prefix + "train error",
                    **_markers(xs))
        xs, ys = _finite(epochs, dev)
        if ys:
            ax.plot(xs, [100 * y for y in ys], color=color if len(series) > 1 else COLORS[1],
                    lw=1.6, label=prefix + "dev error", **_markers(xs))
    ax.set(xlabel="epoch", ylabel="error (%)", title=title)
    _epoch_axis(ax)
    ax.set_ylim(bottom=0)
    ax.legend(frameon=False, fontsize=8)
    return svg(fig)


def confusion_heatmap(matrix, labels: list, title: str) -> str:
    """Rows true, columns predicted; each cell's count written on it, its colour the share
    of its row (so a rare class's confusions show as well as a common one's)."""
    plt = _plt()
    cm = np.asarray(matrix, dtype=np.float64)
    n = len(cm)
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    size = min(7.0, 1.6 + 0.55 * n)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    mesh = ax.pcolormesh(share, cmap="Blues", vmin=0, vmax=1, edgecolors="white", linewidth=0.5)
    ax.invert_yaxis()
    ax.grid(False)
    ticks = np.arange(n) + 0.5
    ax.set_xticks(ticks, labels, rotation=45 if n > 4 else 0, ha="right" if n > 4 else "center")
    ax.set_yticks(ticks, labels)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    if n <= 20:
        for i in range(n):
            for j in range(n):
                ax.text(j + 0.5, i + 0.5, f"{int(cm[i, j])}", ha="center", va="center", fontsize=8,
                        color="white" if share[i, j] > 0.6 else "black")
    fig.colorbar(mesh, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    return svg(fig)


def search_scatter(dim, points: list, best_trial, metric: str) -> str:
    """The metric against one searched value; points: [(trial, round, value, metric)].

    Log laws get a log x axis; `one_minus_log_uniform` is drawn as 1 - value on a log axis
    (where its draws are uniform), reversed so that a larger beta sits to the right."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    one_minus = dim.law == "one_minus_log_uniform"
    choices = list(dim.bounds) if dim.law == "choice" else None

    def x_of(v):
        if choices is not None:
            return choices.index(v) if v in choices else -1
        return 1 - v if one_minus else v

    rounds = sorted({p[1] for p in points})
    for r in rounds:
        pts = [p for p in points if p[1] == r]
        ax.scatter([x_of(p[2]) for p in pts], [p[3] for p in pts], s=28, alpha=0.8,
                   color=COLORS[r % len(COLORS)], label=f"round {r + 1}")
    best = [p for p in points if p[0] == best_trial]
    if best:
        ax.scatter([x_of(best[0][2])], [best[0][3]], s=160, marker="*", color="gold",
                   edgecolors="black", zorder=3, label=f"best (trial {best_trial})")
    if choices is not None:
        ax.set_xticks(range(len(choices)), [str(c) for c in choices])
    elif dim.is_log:
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if _span(points, x_of) < 30 else (1.0,)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        if one_minus:
            ax.invert_xaxis()
    label = f"1 - {dim.key}" if one_minus else dim.key
    ax.set(xlabel=label + (" (log scale)" if dim.is_log else ""), ylabel=metric,
           title=f"{metric} against {dim.key}")
    ax.legend(frameon=False, fontsize=7, loc="best")
    return svg(fig)


def _span(points, x_of) -> float:
    xs = [x_of(p[2]) for p in points if x_of(p[2]) > 0]
    return max(xs) / min(xs) if xs else 1.0
