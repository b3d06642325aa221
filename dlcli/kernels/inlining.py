"""Numba's `inline="always"` without its two deep copies of the inlined function's IR.

Why: the kernels inline their per-example and per-row bodies into their drivers (Numba's
IR-level inlining, so that only the drivers compile, each once). For every call site Numba
translates the callee's bytecode afresh (`InlineWorker.run_untyped_passes`), then
`InlineWorker.inline_ir` deep-copies that new IR twice: once "because it gets mutated", once
to return an unmutated copy. The untyped inlining pass (`InlineInlinables`) throws the
second copy away, and the first protects nothing: the IR was made for this call site alone.
A block's deep copy also copies the function's whole scope (every variable), once per block,
so the cost grows with the square of the callee's size: on the first LeNet-5 step the
copies were 2.2 of the 3.5 s of inlining, and the inlining a third of the compile (first
step on an empty cache, one process, 11.3 s; cProfile: 35 -> 23 million Python calls).

How: `InlineWorker.inline_function` (the untyped pass's entry, and only it) runs with
`copy.deepcopy` in Numba's inlining module handing back what it is given. Numba's other
inliners (overloads with inline="always", closures, parfors) call `inline_ir` with IR they
keep and reuse, so they still copy. The machine code is the same: every LeNet-5 kernel's
LLVM IR and assembly compared equal with and without it (Dec 3 2026, numba 0.68.1;
tests/test_inlining.py compares a kernel's LLVM IR both ways).

`install()` does this once per process, when kernels/__init__ is imported; where Numba's
internals are not as expected (another version) it leaves Numba alone, and only the
compile is slower.
"""

from __future__ import annotations

import copy

_fresh = []  # non-empty while an InlineWorker.inline_function inlines IR it made itself


class _CopyUnlessFresh:
    """The `copy` module as Numba's inlining module sees it."""

    @staticmethod
    def deepcopy(x, memo=None):
        return x if _fresh else copy.deepcopy(x, memo)

    def __getattr__(self, name):
        return getattr(copy, name)


def _inline_function(self, caller_ir, block, i, function, arg_typs=None):
    """InlineWorker.inline_function as Numba writes it, its fresh callee IR not copied."""
    callee_ir = self.run_untyped_passes(function)
    _fresh.append(True)
    try:
        return self.inline_ir(caller_ir, block, i, callee_ir, function.__code__.co_freevars,
                              arg_typs=arg_typs)
    finally:
        _fresh.pop()


def install() -> bool:
    """Whether Numba's untyped inlining now skips the copies (True if it already did)."""
    try:
        from numba.core import inline_closurecall as ic
        worker = ic.InlineWorker
    except Exception:  # noqa: BLE001  no Numba, or one laid out otherwise
        return False
    if worker.__dict__.get("inline_function") is _inline_function:
        return True
    theirs = getattr(worker.__dict__.get("inline_function"), "__code__", None)
    if (ic.__dict__.get("copy") is not copy or theirs is None
            or theirs.co_varnames[:theirs.co_argcount] != _inline_function.__code__.co_varnames[:6]
            or not all(callable(getattr(worker, n, None)) for n in ("run_untyped_passes", "inline_ir"))):
        return False
    ic.copy = _CopyUnlessFresh()
    worker.inline_function = _inline_function
    return True
