"""The recipe's `search:` section: how many trials and rounds, and each searched key's law.

`space` maps a dotted recipe key to one distribution, e.g. `optimizer.learning_rate:
{log_uniform: [1e-4, 1e-1]}`; the laws themselves (draws, narrowing) are in search_space.py.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Optional

from pydantic import Field, PlainValidator, ValidationInfo, model_validator

from .recipe_types import PositiveInt, Probability, Strict, _fail, _is_int


# name: (is each end an int, the rule lo and hi obey, the rule as a message says it)
DISTRIBUTIONS = {
    "log_uniform": (False, lambda lo, hi: 0 < lo < hi, "0 < lo < hi"),
    "one_minus_log_uniform": (False, lambda lo, hi: 0 <= lo < hi < 1, "0 <= lo < hi < 1"),
    "uniform": (False, lambda lo, hi: lo < hi, "lo < hi"),
    "int_uniform": (True, lambda lo, hi: lo < hi, "integers lo < hi"),
    "log_int_uniform": (True, lambda lo, hi: 1 <= lo < hi, "integers 1 <= lo < hi"),
}


def _range(value, info: ValidationInfo):
    ints, rule, says = DISTRIBUTIONS[info.field_name]
    if not (isinstance(value, list) and len(value) == 2
            and all(_is_int(v) or (not ints and isinstance(v, float) and math.isfinite(v))
                    for v in value) and rule(*value)):
        raise _fail(f"must be [lo, hi] with {says}", value)
    return value


Range = Annotated[Any, PlainValidator(_range)]


class Distribution(Strict):
    log_uniform: Optional[Range] = None
    one_minus_log_uniform: Optional[Range] = None
    uniform: Optional[Range] = None
    int_uniform: Optional[Range] = None
    log_int_uniform: Optional[Range] = None
    choice: Optional[Annotated[list, Field(min_length=1)]] = None

    @model_validator(mode="after")
    def _exactly_one(self):
        given = [k for k in type(self).model_fields if getattr(self, k) is not None]
        if len(given) != 1:
            raise _fail("needs exactly one of " + ", ".join(type(self).model_fields)
                        + (f"; it has {', '.join(given)}" if given else ""), ...)
        return self


class Search(Strict):
    trials: PositiveInt = 20
    rounds: PositiveInt = 1
    keep: Probability = 0.25
    space: dict[str, Distribution] = {}


def check_space(recipe) -> None:
    """Every searched key must be one the recipe has (every default is there)."""
    if not recipe.search.space:
        return
    complete = recipe.to_dict()
    for key in recipe.search.space:
        node = complete
        for part in key.split("."):
            if isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            elif isinstance(node, dict) and part in node:
                node = node[part]
            else:
                raise recipe.error(f"search.space.{key}", f"the recipe has no key {key}")
