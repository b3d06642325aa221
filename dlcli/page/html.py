"""The report as one self-contained HTML page: CSS inline, plots inline SVG, pictures as
data: URIs; no script, no font, no stylesheet or image from anywhere else, so it opens the
same offline, from an e-mail or from a CI artefact. Drawing only: `page.content` computes."""

from __future__ import annotations

import base64
import html
from datetime import datetime, timezone

from ..strategy import GAPS
from . import plots

SPLITS = (("train", "train"), ("train_dev", "train-dev"), ("dev", "dev"), ("test", "test"))
GAP_LABELS = {"avoidable_bias": "avoidable bias", "variance": "variance",
              "data_mismatch": "data mismatch", "dev_overfitting": "overfitting to dev"}
NONE = "—"

CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2329;
 margin:0;background:#f6f7f9}
main{max-width:1080px;margin:0 auto;padding:24px 28px 60px;background:#fff;min-height:100vh}
h1{font-size:1.6em;margin:0 0 4px}h2{font-size:1.2em;margin:32px 0 10px;padding-bottom:4px;
 border-bottom:2px solid #e3e6ea}h3{font-size:1.02em;margin:18px 0 8px}
.sub{color:#5b6670;margin:0 0 16px}
table{border-collapse:collapse;margin:6px 0 12px;font-variant-numeric:tabular-nums}
th,td{padding:4px 12px;text-align:right;border-bottom:1px solid #e9ecef}
th{background:#f1f3f5;font-weight:600}td:first-child,th:first-child{text-align:left}
td.l,th.l{text-align:left}
tr.gap td{color:#6c757d;font-size:.92em;border-bottom:none}
tr.focus td{color:#8a5a00;background:#fff4d6;font-weight:600}
tr.best td{background:#e7f6ea;font-weight:600}tr.bad td{color:#b02a37}
.focus-box{background:#fff8e6;border-left:4px solid #f0ad00;padding:8px 14px;margin:8px 0}
.plots{display:flex;flex-wrap:wrap;gap:12px}.plots svg{max-width:100%;height:auto}
figure{margin:0}pre{background:#f6f8fa;border:1px solid #e3e6ea;padding:10px 12px;
 overflow:auto;font-size:12.5px;max-height:420px}
.mistakes{display:flex;flex-wrap:wrap;gap:12px}
.mistakes figure{width:132px;text-align:center;font-size:12px}
.mistakes img{width:120px;height:120px;object-fit:contain;image-rendering:pixelated;
 border:1px solid #ccd;background:#fff}
.note{color:#5b6670;font-style:italic}
.kv td{text-align:left}
"""


def esc(x) -> str:
    return html.escape(str(x), quote=True)


def pct(x) -> str:
    return NONE if x is None else f"{100 * x:.2f}%"


def num(x, digits=4) -> str:
    if x is None:
        return NONE
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return esc(x)


def page(title: str, subtitle: str, body: list) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body><main>"
            f"<h1>{esc(title)}</h1><p class=\"sub\">{esc(subtitle)} · written by dlcli report, {stamp}</p>"
            + "".join(body) + "</main></body></html>\n")


def table(headers: list, rows: list, classes=None, header_classes=None) -> str:
    """rows: lists of cell HTML (already escaped); classes: a CSS class per row or None."""
    head = "".join(f"<th class=\"{(header_classes or {}).get(i, '')}\">{h}</th>"
                   for i, h in enumerate(headers))
    body = []
    for k, row in enumerate(rows):
        cls = (classes or [None] * len(rows))[k]
        body.append(f"<tr{f' class={chr(34)}{cls}{chr(34)}' if cls else ''}>"
                    + "".join(f"<td>{c}</td>" for c in row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


# -- one run ------------------------------------------------------------------------------------
def run_sections(run, heading_level=2) -> list:
    h = f"h{heading_level}"
    s = run.summary
    out = [f"<{h} id=\"overview\">Overview</{h}>", _overview(run)]
    out += [f"<{h} id=\"curves\">Learning curves</{h}>", curves_html([run])]
    out += [f"<{h} id=\"errors\">Errors and diagnosis</{h}>", errors_table(s)]
    if s.get("metrics"):
        out.append(metrics_table(s["metrics"]))
    out += [f"<{h} id=\"analysis\">Error analysis</{h}>", analysis_html(run)]
    out += [f"<{h} id=\"recipe\">Recipe</{h}>", f"<pre>{esc(run.recipe_text)}</pre>"]
    return out


def _overview(run) -> str:
    s = run.summary
    rows = [("run", esc(run.path)), ("status", esc(s.get("status", NONE))),
            ("epochs", num(s.get("epochs"))), ("seconds", num(s.get("seconds"))),
            ("parameters", f"{s['parameters']:,}" if isinstance(s.get("parameters"), int) else NONE),
            ("examples per second", num(s.get("examples_per_second")))]
    if s.get("stopped_early_at_epoch"):
        rows.append(("stopped early", f"at epoch {s['stopped_early_at_epoch']}, best epoch {s.get('best_epoch')}"))
    if s.get("sizes"):
        rows.append(("examples", ", ".join(f"{esc(k)} {v}" for k, v in s["sizes"].items() if v)))
    return "<table class=\"kv\">" + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"


def curves_html(runs) -> str:
    cost, errs = [], []
    for r in runs:
        epochs = [m.get("epoch") for m in r.metrics]
        cost.append((r.name, epochs, [m.get("cost") for m in r.metrics]))
        errs.append((r.name, epochs, [m.get("train_error") for m in r.metrics],
                     [m.get("dev_error") for m in r.metrics]))
    if not any(r.metrics for r in runs):
        return "<p class=\"note\">No metrics.jsonl: no curves.</p>"
    return ("<div class=\"plots\"><figure>" + plots.cost_curve(cost) + "</figure><figure>"
            + plots.error_curves(errs) + "</figure></div>")


def errors_table(summary: dict) -> str:
    """The course's staircase, as the terminal draws it: each gap between the two errors it
    subtracts, the focus highlighted, then the basic recipe's advice for it."""
    errors = summary.get("errors") or {}
    human = summary.get("human_level_error")
    d = summary.get("diagnosis") or {}
    noise = d.get("noise") or {}
    focus = d.get("focus")
    rows, classes = [["human-level", pct(human), "", "", ""]], [None]
    for (split, label), gap in zip(SPLITS, GAPS):
        rows.append(["", "", GAP_LABELS[gap], pct(d.get(gap)),
                     ("± " + pct(noise[gap])) if noise.get(gap) is not None else ""])
        classes.append("gap focus" if gap == focus else "gap")
        rows.append([label, pct(errors.get(split)), "", "", ""])
        classes.append(None)
    out = table(["split", "error", "gap", "", "noise"], rows, classes, {2: "l"})
    if focus:
        advice = "".join(f"<li>{esc(a)}</li>" for a in d.get("advice") or [])
        out += (f"<div class=\"focus-box\"><b>Focus: {esc(GAP_LABELS.get(focus, focus))}</b> — "
                f"the basic recipe:<ul>{advice}</ul></div>")
    else:
        out += "<p class=\"note\">No gap to diagnose (or none above its noise).</p>"
    return out


def metrics_table(metrics: dict) -> str:
    rows = [[esc(dict(SPLITS).get(k, k)), *(pct((m or {}).get(c)) for c in ("precision", "recall", "f1", "accuracy"))]
            for k, m in metrics.items()]
    return "<h3>Metrics</h3>" + table(["split", "precision", "recall", "F1", "accuracy"], rows)


def analysis_html(run) -> str:
    a = run.analysis
    if a is None:
        return f"<p class=\"note\">{esc(run.analysis_note or 'No error analysis.')}</p>"
    names = [run.class_name(c) for c in a["classes"]]
    out = [f"<p>{esc(run.split)} split: error {pct(a['error'])}, {len(a['errors'])} mistaken "
           f"examples.</p>"]
    per_class = a.get("per_class") or []
    rows = [[esc(run.class_name(r["class"])) if not isinstance(r.get("class"), str) else esc(r["class"]),
             f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1']:.3f}", str(r["support"])]
            for r in per_class]
    for avg in ("macro", "weighted"):
        if a.get(avg):
            rows.append([f"<i>{avg}</i>", *(f"{a[avg][k]:.3f}" for k in ("precision", "recall", "f1")),
                         str(sum(r["support"] for r in per_class))])
    out.append("<h3>Per class</h3>" + table(["class", "precision", "recall", "F1", "support"], rows))
    cm = a.get("confusion_matrix")
    if cm and isinstance(cm[0][0], (int, float)) and len(cm) == len(names):
        out.append("<h3>Confusion matrix</h3><div class=\"plots\"><figure>"
                   + plots.confusion_heatmap(cm, names, f"{run.split}: true against predicted")
                   + "</figure></div>")
    out.append(mistakes_html(run))
    return "".join(out)


def mistakes_html(run) -> str:
    if not run.mistakes:
        return ""
    head = f"<h3>Most confident mistakes ({len(run.mistakes)} of {len(run.analysis['errors'])})</h3>"
    if any(m.png for m in run.mistakes):
        tiles = []
        for m in run.mistakes:
            src = "data:image/png;base64," + base64.b64encode(m.png).decode() if m.png else ""
            tiles.append(f"<figure><img alt=\"example {m.index}\" src=\"{src}\"><figcaption>#{m.index}<br>"
                         f"true {esc(run.class_name(m.true))}<br>predicted {esc(run.class_name(m.predicted))}"
                         f"<br>p = {m.probability:.3f}</figcaption></figure>")
        return head + "<div class=\"mistakes\">" + "".join(tiles) + "</div>"
    rows = [[str(m.index), esc(run.class_name(m.true)), esc(run.class_name(m.predicted)),
             f"{m.probability:.3f}"] for m in run.mistakes]
    return head + table(["index", "true", "predicted", "probability"], rows)


def run_page(run) -> str:
    s = run.summary
    sub = f"{s.get('status', '?')} after {s.get('epochs', '?')} epochs"
    return page(f"Run {run.name}", sub, run_sections(run))


# -- a search -----------------------------------------------------------------------------------
def _value(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return esc(v)


def search_page(sc) -> str:
    best_trial = sc.ranked[0]["trial"] if sc.ranked else None
    keys = [d.key for d in sc.dims]
    headers = ["rank", "trial", "round"] + [esc(k) for k in keys] + [esc(sc.metric), "train error",
                                                                    "dev error", "status", "seconds"]
    rows, classes = [], []
    for rank, r in enumerate(sc.ranked + sc.others, start=1):
        done = r in sc.ranked
        errs = r.get("errors") or {}
        rows.append([str(rank) if done else NONE, str(r["trial"]), str(r.get("round", 0) + 1),
                     *(_value(r["values"].get(k)) for k in keys), num(r.get("metric")),
                     pct(errs.get("train")), pct(errs.get("dev")),
                     esc(r.get("status")) + (f": {esc(r['error'])}" if r.get("error") else ""),
                     num(r.get("seconds"), 3)])
        classes.append("best" if r["trial"] == best_trial else (None if done else "bad"))
    body = ["<h2 id=\"trials\">Trials, best first</h2>",
            f"<p>{len(sc.ranked)} completed, {len(sc.others)} diverged or failed; ranked by {esc(sc.metric)}"
            + (" (higher is better)" if sc.metric == "f1" else " (lower is better)") + ".</p>",
            table(headers, rows, classes)]
    points_of = lambda d: [(r["trial"], r.get("round", 0), r["values"][d.key], r["metric"])
                           for r in sc.ranked if d.key in r["values"]]
    body += ["<h2 id=\"scatter\">The metric against each searched value</h2>",
             "<p>Where the good trials bunch together is where to zoom in: narrow the range in "
             "<code>search.space</code>, or let a second round do it.</p><div class=\"plots\">"]
    body += [f"<figure>{plots.search_scatter(d, points_of(d), best_trial, sc.metric)}"
             f"<figcaption>{esc(d.describe())}</figcaption></figure>" for d in sc.dims]
    body.append("</div>")
    if sc.best is not None:
        body += [f"<h2 id=\"best\">Best trial: {best_trial}</h2>",
                 "<p>Its recipe is <code>best.yaml</code> beside the search; "
                 "<code>dlcli train best.yaml</code> trains it again.</p>"]
        body += run_sections(sc.best, heading_level=3)
    body += ["<h2 id=\"search-recipe\">Search recipe</h2>", f"<pre>{esc(sc.search_text)}</pre>"]
    best = f"best {sc.metric} {num(sc.ranked[0]['metric'])} (trial {best_trial})" if sc.ranked else "no completed trial"
    return page(f"Search {sc.name}", f"{len(sc.ranked) + len(sc.others)} trials, {best}", body)


# -- several runs -------------------------------------------------------------------------------
def compare_page(cc) -> str:
    names = [r.name for r in cc.runs]
    rows = []
    for r in cc.runs:
        e = r.summary.get("errors") or {}
        rows.append([esc(r.name), esc(r.summary.get("status", NONE)), num(r.summary.get("epochs")),
                     *(pct(e.get(k)) for k, _ in SPLITS), num(r.summary.get("seconds"))])
    body = ["<h2 id=\"errors\">Errors</h2>",
            table(["run", "status", "epochs", "train", "train-dev", "dev", "test", "seconds"], rows),
            "<h2 id=\"curves\">Learning curves, overlaid</h2>", curves_html(cc.runs),
            "<h2 id=\"settings\">Settings that differ</h2>"]
    if cc.differences:
        body.append(table(["setting"] + [esc(n) for n in names],
                          [[esc(k)] + [esc(_setting(v)) for v in vals] for k, vals in cc.differences],
                          header_classes={i: "l" for i in range(len(names) + 1)}))
    else:
        body.append("<p class=\"note\">The recipes are the same but for their names.</p>")
    body.append("<h2 id=\"diagnoses\">Diagnoses</h2><div class=\"plots\">")
    for r in cc.runs:
        body += [f"<div><h3>{esc(r.name)}</h3>", errors_table(r.summary), "</div>"]
    body.append("</div>")
    return page(f"{len(cc.runs)} runs compared", ", ".join(names), body)


def _setting(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return NONE if v is None else str(v)
