"""The checked value types every recipe section is built from: numbers within bounds, one of
a set of choices (with a "did you mean"), paths resolved against the recipe, and `Strict`,
the model whose unknown keys are errors. Each check raises the one PydanticCustomError that
recipe.py turns into `file:line: key.path: message`."""

from __future__ import annotations

import difflib
import math
import os
import re
from typing import Annotated, Any, Union

from pydantic import (AfterValidator, BaseModel, ConfigDict, Discriminator, PlainValidator, Tag,
                      ValidationInfo, model_validator)
from pydantic_core import PydanticCustomError

from .nn.inits import INITS

ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "softmax", "linear")
OUTPUT_ACTIVATIONS = ("sigmoid", "softmax", "linear")  # those `loss: auto` knows a loss for


# -- checked value types ------------------------------------------------------------------
def _show(value) -> str:
    """A value as a message quotes it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        short = len(value) <= 5 and not any(isinstance(v, (dict, list, tuple)) for v in value)
        return f"[{', '.join(_show(v) for v in value)}]" if short else "a list"
    return str(value)


def _hint(value, choices) -> str:
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _fail(message: str, value, **ctx):
    """The error every check raises, quoting `value` (`...`: nothing to quote).

    `at` in ctx names the sub-key the error belongs to (an unknown key, a layer's `type`).
    """
    return PydanticCustomError("recipe", message + "{got}{hint}",
                               {"got": "" if value is ... else f", got {_show(value)}", "hint": "",
                                **ctx})


def _number(kind, lo=None, hi=None, lo_open=False, hi_open=False):
    """An int or float (never a bool) within bounds; ints count as floats and become floats."""
    noun = "an integer" if kind is int else "a number"
    if lo is not None and hi is not None:
        what = f"{noun} in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    elif kind is int and lo == 1 and not lo_open:
        what = "a positive integer"
    elif lo is not None:
        what = f"{noun} {'>' if lo_open else '>='} {lo}"
    else:
        what = noun

    def check(value):
        if not (_is_int(value) or (kind is float and isinstance(value, float))) \
                or not math.isfinite(value) \
                or (lo is not None and not (value > lo if lo_open else value >= lo)) \
                or (hi is not None and not (value < hi if hi_open else value <= hi)):
            raise _fail(f"must be {what}", value)
        return kind(value)
    return Annotated[kind, PlainValidator(check)]


def _one_of(*choices):
    def check(value):
        if any(value == c and type(value) is type(c) for c in choices):
            return value
        shown = ", ".join(_show(c).strip("'") for c in choices)
        raise _fail(f"must be {'one of ' if len(choices) > 1 else ''}{shown}", value,
                    hint=_hint(value, choices))
    return Annotated[Any, PlainValidator(check)]


def _padding(value):
    if value in ("same", "valid") or (_is_int(value) and value >= 0):
        return value
    raise _fail("must be same, valid or an integer >= 0", value)


def _batch_size(value):
    if value == "full" or (_is_int(value) and value >= 1):
        return value
    raise _fail("must be full or a positive integer", value)


PositiveInt = _number(int, 1)
NonNegativeInt = _number(int, 0)
PositiveFloat = _number(float, 0, lo_open=True)
NonNegativeFloat = _number(float, 0)
Beta = _number(float, 0, 1, hi_open=True)
Fraction = _number(float, 0, 1, lo_open=True, hi_open=True)
Probability = _number(float, 0, 1, lo_open=True)
Activation = _one_of(*ACTIVATIONS)
Init = _one_of(*INITS)
Padding = Annotated[Any, PlainValidator(_padding)]


# -- paths --------------------------------------------------------------------------------
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _base_dir(info: ValidationInfo) -> str:
    return str((info.context or {}).get("base") or os.getcwd())


def _resolve(text: str, base: str) -> str:
    """`${VAR}` and `~` expanded, then made absolute against `base` (see the module doc)."""
    def var(match):
        if match[1] not in os.environ:
            raise _fail(f"environment variable {match[1]} is not set (used in {text})", ...)
        return os.environ[match[1]]
    expanded = os.path.expanduser(_VAR.sub(var, text))
    root = os.getcwd() if text.startswith("${") else base
    return os.path.abspath(os.path.join(root, expanded))


def _resolve_path(text: str, info: ValidationInfo) -> str:
    return _resolve(text, _base_dir(info))


PathStr = Annotated[str, AfterValidator(_resolve_path)]


# -- the schema ---------------------------------------------------------------------------
class Strict(BaseModel):
    """Unknown keys are errors, with the closest known key as a suggestion; types are exact."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data):
        if isinstance(data, dict):
            for key in data:
                if key not in cls.model_fields:
                    raise _fail("unknown key", ..., at=str(key),
                                hint=_hint(key, cls.model_fields))
        return data


def _tagged(tag_of, *members, error: str):
    """A union picked by `tag_of(value)` (None: `error`); tags are `<name>`, never a key.

    `tag_of` also sees model instances: pydantic picks a member's serializer the same way.
    """
    def tag(value):
        return None if (name := tag_of(value)) is None else f"<{name}>"
    return Annotated[Union[tuple(Annotated[cls, Tag(f"<{name}>")] for name, cls in members)],
                     Discriminator(tag, custom_error_type="recipe", custom_error_message=error)]
