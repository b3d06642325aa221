"""Drawing a training-step profile (profile.py computes it), and the `dlcli profile` face.

One row per layer, nested layers indented under their block (whose time includes theirs),
then the loss, the optimizer update and "other"; the step's total and examples per second
close the table, and a line says what the untimed warm-up (the JIT compile) took.
"""

from __future__ import annotations

import json
import sys

from rich.console import Console
from rich.text import Text

from .report import NONE, L, R, _row, _table

INDENT = "  "


def _ms(x) -> str:
    return NONE if x is None else f"{x:.3f}" if x < 10 else f"{x:.2f}" if x < 100 else f"{x:.1f}"


def _share(x) -> str:
    return NONE if x is None else f"{100 * x:.1f}%"


def profile_table(profile, console: Console, title: str | None = None) -> None:
    """The table of a `Profile` (or its to_json() document)."""
    p = profile.to_json() if hasattr(profile, "to_json") else profile
    name = f"{p['name']}: " if p.get("name") else ""
    table = _table(title or f"{name}where a step's time goes, ms (batch "
                   f"{p['batch_size']}, median of {p['steps']} steps)",
                   ("layer", L), ("forward", R), ("backward", R), ("total", R), ("share", R))
    for column in table.columns[1:]:  # a narrow terminal wraps layer names, never numbers
        column.no_wrap = True
    for layer in p["layers"]:
        depth = layer["depth"]
        fwd, bwd = layer["forward_ms"], layer["backward_ms"]
        total = None if fwd is None and bwd is None else (fwd or 0.0) + (bwd or 0.0)
        _row(table, f"{INDENT * depth}{layer['index']}  {layer['name']}", _ms(fwd), _ms(bwd),
             _ms(total), _share(layer["share"]), style="dim" if depth else None)
    table.add_section()
    _row(table, "loss", NONE, NONE, _ms(p["loss_ms"]), _share(p["loss_share"]))
    _row(table, f"{p.get('optimizer') or 'optimizer'} update", NONE, NONE, _ms(p["update_ms"]),
         _share(p["update_share"]))
    _row(table, "other: data, Python", NONE, NONE, _ms(p["other_ms"]), _share(p["other_share"]))
    table.add_section()
    _row(table, Text("step", style="bold"), NONE, NONE, Text(_ms(p["step_ms"]), style="bold"), "")
    console.print(table)
    rate = p["examples_per_second"]
    console.print(f"{NONE if rate is None else f'{rate:,.0f}'} examples/s. Warm-up before the "
                  f"timed steps (JIT compile included): {p['warmup_seconds']:.2f} s. A block's time includes "
                  "its nested layers'.")


def profile_cli(recipe_path, overrides, steps, batch_size, warmup, as_json) -> int:
    from .profile import profile_recipe
    console = Console(stderr=True)
    with console.status("profiling: warm-up (JIT compile), then the timed steps…"):
        result = profile_recipe(recipe_path, steps=steps, warmup=warmup, batch_size=batch_size,
                                overrides=overrides)
    if as_json:
        print(json.dumps(result.to_json()))
        return 0
    profile_table(result, Console())
    sys.stdout.flush()
    return 0
