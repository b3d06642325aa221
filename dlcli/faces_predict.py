"""`dlcli predict` on an embedding run (triplet or siamese_binary): each input's encoding.

SPEC: `"embedding": [...]` per input, and no class. Registered in predict.py's KIND_MODULES.
"""

from __future__ import annotations

import numpy as np

from .predict import OutputKind, _generic_table, register_kind


@register_kind
class Embedding(OutputKind):
    name = "embedding"
    priority = 10

    @classmethod
    def applies(cls, run) -> bool:
        return bool(getattr(run.model.loss, "embedding", False))

    def outputs(self, run, batch) -> dict:
        return {"embedding": np.asarray(run.model.predict_proba(batch.x), dtype=np.float64)}

    def entries(self, run, batch, outputs) -> list:
        return [{"embedding": [float(v) for v in e]} for e in outputs["embedding"]]

    def render(self, result, console) -> None:
        def cells(e):
            v = np.asarray(e["embedding"])
            head = ", ".join(f"{x:.3f}" for x in v[:4])
            return [len(v), f"{np.linalg.norm(v):.4f}", f"[{head}{', ...' if len(v) > 4 else ''}]"]
        _generic_table(result, console, cells, ["dims", "norm", "embedding"])

    def table_rows(self, run, names, entries):
        k = len(entries[0]["embedding"]) if entries else 0
        return (["input"] + [f"e_{i}" for i in range(k)],
                [[name, *e["embedding"]] for name, e in zip(names, entries)])
