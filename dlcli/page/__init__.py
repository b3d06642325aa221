"""`dlcli report`: one self-contained HTML page for a run, a search, or several runs.

    from dlcli.page import report
    report(["runs/20261202-lenet5"])                  # -> runs/20261202-lenet5/report.html
    report(["runs/...-search"])                       # the trials, the scatters, the best trial
    report(["runs/a", "runs/b"], out="ab.html")       # curves overlaid, settings diffed

`content` computes what a page shows, `plots` draws matplotlib SVG, `html` lays the page out.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import BadInput

PAGE = "report.html"


def report(targets: list, out=None) -> Path:
    """Write the page and return its path. One run or search: `<dir>/report.html` by default;
    several runs: `./report.html`."""
    from ..runs import atomic_write_text, find_run
    from . import content, html
    if not targets:
        raise BadInput("give a run or search directory (or several runs)", key="RUN_OR_SEARCH")
    paths = [Path(t) if content.is_search(Path(t)) else find_run(t) for t in targets]
    if len(paths) == 1 and content.is_search(paths[0]):
        text = html.search_page(content.search_content(paths[0]))
    elif len(paths) == 1:
        text = html.run_page(content.run_content(paths[0]))
    else:
        searches = [p for p in paths if content.is_search(p)]
        if searches:
            raise BadInput("a search is reported on its own; compare runs (its trials/<i>/ are runs)",
                           file=searches[0])
        text = html.compare_page(content.compare_content(paths))
    target = Path(out) if out is not None else (paths[0] / PAGE if len(paths) == 1 else Path(PAGE))
    if target.is_dir():
        target = target / PAGE
    atomic_write_text(target, text)
    return target


def report_cli(targets, out=None) -> int:
    print(f"wrote {report(list(targets), out)}")
    return 0


def write_beside(directory) -> None:
    """`train --report` / `search --report`: the page beside the run, said on stderr (stdout
    may be carrying a --json document)."""
    import sys
    print(f"report written to {report([directory])}", file=sys.stderr)
