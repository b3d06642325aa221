"""The face of dlcli.translate: Rich tables, the attention heat map, the attention PNG.

Nothing here computes a result; matplotlib is imported only when a PNG is asked for.
"""

from __future__ import annotations

from pathlib import Path

SHADES = " ░▒▓█"


def translations_table(translations, console, title=None) -> None:
    from rich.table import Table
    from rich.text import Text
    table = Table(title=title, box=None, header_style="bold", pad_edge=False)
    table.add_column("input")
    table.add_column("translation")
    table.add_column("P(y|x)", justify="right")
    for t in translations:
        table.add_row(Text(t.input), Text(t.text, style="bold"), f"{t.probability:.4f}")
    console.print(table)


def attention_heatmap(t, console) -> None:
    """Input tokens across, output tokens down; each cell shaded by its attention weight."""
    from rich.table import Table
    from rich.text import Text
    if t.attention is None:
        return
    console.print(Text.assemble(("attention ", "bold"), f"{t.input} -> {t.text}"))
    table = Table(box=None, show_header=True, pad_edge=False, padding=(0, 0))
    table.add_column("", justify="right")
    for tok in t.source_tokens:
        table.add_column(Text(tok if tok.strip() else "␣"), justify="center", min_width=1)
    peak = float(t.attention.max()) if t.attention.size else 1.0
    for out_tok, row in zip(t.tokens_with_end(), t.attention):
        cells = []
        for w in row[:len(t.source_tokens)]:
            level = int(round(float(w) / peak * (len(SHADES) - 1))) if peak > 0 else 0
            cells.append(Text(SHADES[level], style="yellow"))
        table.add_row(Text(out_tok + " "), *cells)
    console.print(table)


def attention_png(t, path) -> Path:
    """The course's attention map: input characters across, output characters down."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    path = Path(path)
    weights = t.attention[:, :len(t.source_tokens)]
    fig, ax = plt.subplots(figsize=(max(4, 0.32 * weights.shape[1] + 1.5),
                                    max(3, 0.32 * weights.shape[0] + 1.2)))
    im = ax.imshow(weights, cmap="viridis", vmin=0, aspect="auto")
    ax.set_xticks(range(weights.shape[1]), [s if s.strip() else "␣" for s in t.source_tokens])
    ax.set_yticks(range(weights.shape[0]), t.tokens_with_end())
    ax.set_xlabel("input")
    ax.set_ylabel("output")
    ax.set_title(f"{t.input} -> {t.text}  (P = {t.probability:.3f})", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def beam_table(analysis, console, show: int = 10) -> None:
    from rich.table import Table
    from rich.text import Text
    a = analysis
    console.print(Text.assemble(("Beam search error analysis", "bold"),
                                f" — {a.split} split, beam {a.beam}, length alpha {a.alpha:g}"))
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("")
    table.add_column("errors", justify="right")
    table.add_column("share", justify="right")
    pct = lambda v: "—" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    table.add_row("all errors", f"{a.errors} of {a.examples}",
                  pct(a.errors / a.examples if a.examples else None))
    table.add_row("beam search at fault  P(y*|x) > P(ŷ|x)", str(a.search_faults), pct(a.share(a.search_faults)))
    table.add_row("model at fault  P(y*|x) <= P(ŷ|x)", str(a.model_faults), pct(a.share(a.model_faults)))
    console.print(table)
    if a.focus == "beam search":
        console.print("Focus: the search — try a larger --beam.")
    elif a.focus == "model":
        console.print("Focus: the model — more data, regularization, another architecture "
                      "(a wider beam would not help).")
    if a.cases and show:
        cases = Table(box=None, header_style="bold", pad_edge=False, title="errors",
                      title_justify="left")
        for col in ("row", "reference y*", "output ŷ", "log P(y*|x)", "log P(ŷ|x)", "fault"):
            cases.add_column(col, justify="right" if col.startswith("log") or col == "row" else "left")
        for c in a.cases[:show]:
            ref = a.vocab.decode(c.reference) if a.vocab else str(c.reference)
            out = a.vocab.decode(c.output) if a.vocab else str(c.output)
            cases.add_row(str(c.index), ref, out, f"{c.log_p_reference:.3f}",
                          f"{c.log_p_output:.3f}", c.fault)
        console.print(cases)


def analyze_beam_cli(run, split="dev", beam=3, alpha=0.7, as_json=False, show=10) -> int:
    import json

    from rich.console import Console

    from .errors import BadInput
    from .translate import analyze_beam
    if beam < 1:
        raise BadInput(f"must be at least 1, got {beam}", key="--beam")
    result = analyze_beam(run, split=split, beam=beam, alpha=alpha)
    if as_json:
        print(json.dumps(result.to_json()))
    else:
        beam_table(result, Console(), show=show)
    return 0
