"""Recipes: the YAML file a user writes, read strictly, with every default filled in.

`load_recipe(path, overrides)` reads the file, applies `--set KEY=VALUE` overrides, checks
everything against the schema below (SPEC: "Recipe") and returns a `Recipe`. Anything wrong is
one BadInput naming the file, the dotted key path and the line where YAML gives one, e.g.
`recipe.yaml:14: model.layers.2.units: must be a positive integer, got -3`.

Numbers follow YAML 1.2 (`1e-3` is a float, not a string), unknown keys are errors with a
"did you mean" suggestion, and paths are resolved once, here: `${VAR}` from the environment,
then relative to the recipe file's directory (a path that starts with `${VAR}` whose value is
relative is relative to the current directory, where the variable was set).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import yaml
from pydantic import (AfterValidator, BaseModel, BeforeValidator, Field, PlainValidator,
                      PrivateAttr, ValidationError, model_validator)

from .errors import BadInput
# the value types, the layers and the data sources live in their own modules; these names
# stay importable from here
from .recipe_data import (AUGMENT_USAGE, BUILTINS, SOURCE_USAGE, Augmentation,  # noqa: F401
                          BuiltinSource, FileSource, Source, SourceOrFraction, TextColumnSource,
                          TextSource)
from .recipe_search import Distribution, Search, check_space  # noqa: F401
from .recipe_layers import LAYER_CLASSES, Layer  # noqa: F401
from .recipe_types import (ACTIVATIONS, OUTPUT_ACTIVATIONS, Beta, Fraction,  # noqa: F401
                           Init, NonNegativeFloat, NonNegativeInt, PathStr, PositiveFloat,
                           PositiveInt, Probability, Strict, _batch_size, _fail, _hint, _is_int,
                           _number, _one_of, _show, _tagged)

LOSSES = ("auto", "binary_crossentropy", "categorical_crossentropy", "mse", "multi_label",
          "localization", "yolo",  # dlcli/detect
          "triplet", "siamese_binary")  # dlcli/nn/triplet.py
OPTIMIZERS = ("gd", "momentum", "rmsprop", "adam")
SCHEDULES = ("none", "inverse_time", "exponential", "staircase", "inverse_sqrt")
EARLY_STOPPING_METRICS = ("dev_error", "dev_cost", "train_error", "train_cost")
METRICS = ("error", "f1", "cost")


# -- YAML with line numbers ---------------------------------------------------------------
class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 floats: `1e-3`, `1.0e8`, `-2E5` are numbers."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def _read_yaml(path: Path) -> tuple[dict, dict[str, int]]:
    """The mapping in a recipe file and the line (1-based) of each dotted key path in it."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise BadInput("no such recipe file", file=path)
    except IsADirectoryError:
        raise BadInput("is a directory, not a recipe file", file=path)
    except OSError as err:
        raise BadInput(f"cannot read the recipe: {err.strerror}", file=path)
    try:
        if b"\0" in raw:
            raise UnicodeDecodeError("utf-8", raw, 0, 1, "NUL byte")
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput("not a YAML recipe (a binary file, or text that is not UTF-8)", file=path)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _check_expansion(node, path)
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else None
        # `{path: ${VAR}/f.h5}` is the usual culprit: YAML reads `{` as a flow mapping
        text_lines = text.splitlines()
        if line and line > len(text_lines):  # an error at the end of the file: its last line
            line = len(text_lines) or None
        hint = (" (quote a value that holds ${VAR}, e.g. \"${DLCLI_DATA}/train.h5\")"
                if line and "${" in text_lines[line - 1] else "")
        raise BadInput(f"YAML syntax error: {err.problem or err.context}{hint}", file=path,
                       line=line)
    except yaml.YAMLError as err:
        raise BadInput(f"YAML syntax error: {str(err).splitlines()[0]}", file=path)
    finally:
        loader.dispose()
    if data is None:
        raise BadInput("the recipe is empty", file=path)
    if not isinstance(data, dict):
        raise BadInput(f"the recipe must be a mapping of keys (name:, data:, model:, ...), got "
                       f"{_show(data)}", file=path, line=node.start_mark.line + 1)
    lines: dict[str, int] = {}
    _index_lines(node, "", lines, path)
    return data, lines


MAX_NODES = 100_000  # a recipe has hundreds; "billion laughs" aliases expand to billions


def _check_expansion(root, path: Path) -> None:
    """Refuse a document whose aliases expand past MAX_NODES nodes (a "billion laughs" bomb)
    before anything walks it expanded. Counts each node once per path that reaches it,
    memoising per node so that the count itself stays linear in the file."""
    sizes: dict[int, int] = {}

    def size(node, depth=0) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        if depth > 200:
            raise BadInput("YAML nested deeper than 200 levels", file=path, line=node.start_mark.line + 1)
        total = 1
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = node.value
        else:
            children = []
        sizes[id(node)] = MAX_NODES + 1  # a cycle (a recursive alias) counts as too many
        for child in children:
            total += size(child, depth + 1)
            if total > MAX_NODES:
                break
        sizes[id(node)] = total
        if total > MAX_NODES:
            raise BadInput(f"YAML aliases expand to more than {MAX_NODES:,} values; refusing "
                           "the recipe (an alias bomb?)", file=path, line=node.start_mark.line + 1)
        return total
    size(root)


def _index_lines(node, prefix: str, lines: dict, path: Path) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = prefix + str(key_node.value)
            if key in lines:
                raise BadInput("duplicate key", file=path, key=key, line=key_node.start_mark.line + 1)
            lines[key] = key_node.start_mark.line + 1
            _index_lines(value_node, key + ".", lines, path)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[f"{prefix}{i}"] = item.start_mark.line + 1
            _index_lines(item, f"{prefix}{i}.", lines, path)


# -- overrides ----------------------------------------------------------------------------
def set_by_path(d: dict, dotted: str, value) -> None:
    """Set `d`'s value at a dotted key path; list items by index (`model.layers.1.units`).

    Missing (or null) mappings on the way are created, so a path may name keys the recipe
    leaves out. A path that runs into a scalar or past a list's end is BadInput at `dotted`.
    """
    parts = dotted.split(".")
    if not dotted or "" in parts:
        raise BadInput("not a dotted key path such as optimizer.learning_rate", key=dotted)
    node = d
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        where = ".".join(parts[:depth]) or "the recipe"
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise BadInput(f"{where} is a list of {len(node)} items; {part!r} is not one of "
                               f"its indices 0..{len(node) - 1}", key=dotted)
            part = int(part)
        elif not isinstance(node, dict):
            raise BadInput(f"{where} is {_show(node)}, not a mapping or a list", key=dotted)
        elif not last and node.get(part) is None:
            node[part] = {}
        if last:
            node[part] = value
        else:
            node = node[part]


def apply_overrides(d: dict, overrides) -> dict:
    """`d` with each `KEY=VALUE` applied in order; VALUE is read as a YAML scalar."""
    for override in overrides:
        key, sep, text = override.partition("=")
        try:
            if not sep:
                raise BadInput("must be KEY=VALUE, e.g. optimizer.learning_rate=0.01")
            try:
                value = yaml.load(text, Loader=_Loader)
            except yaml.YAMLError as err:
                raise BadInput(f"cannot read the value as YAML: {getattr(err, 'problem', err)}")
            set_by_path(d, key.strip(), value)
        except BadInput as err:
            raise BadInput(err.message, key=f"--set {override}")
    return d




class Data(Strict):
    train: Source
    # the seed of generated data and of the carving; default the recipe's. A search sets it so
    # that every trial, whatever its own seed, is judged on the same dev set.
    seed: Optional[NonNegativeInt] = None
    test: Optional[SourceOrFraction] = None
    dev: Optional[SourceOrFraction] = None
    train_dev: Optional[SourceOrFraction] = None
    scale: PositiveFloat = 1.0
    flatten: bool = False
    normalize: bool = False
    augment: list[Augmentation] = []
    # a CSV's missing cells: bad input (null), drop the row, or the column's mean
    missing: Optional[Literal["drop", "mean"]] = None


class Model(Strict):
    init: Init = "he"
    layers: list[Layer] = Field(min_length=1)
    init_from: Optional[PathStr] = None
    freeze: list[NonNegativeInt] = []


class Regularization(Strict):
    l2: NonNegativeFloat = 0.0


class Decay(Strict):
    """Every schedule's parameters, each with a default; a schedule reads the ones it needs."""

    schedule: _one_of(*SCHEDULES) = "none"
    rate: NonNegativeFloat = 1.0
    base: PositiveFloat = 0.95
    every: PositiveInt = 1
    k: PositiveFloat = 1.0


class Clip(Strict):
    """{value: 5} clips every gradient entry to [-5, 5]; {norm: 5} rescales to a global norm."""

    value: Optional[PositiveFloat] = None
    norm: Optional[PositiveFloat] = None

    @model_validator(mode="after")
    def _exactly_one(self):
        if (self.value is None) == (self.norm is None):
            raise _fail("needs exactly one of value: or norm:, e.g. {value: 5}", ...)
        return self


class Optimizer(Strict):
    name: _one_of(*OPTIMIZERS) = "gd"
    learning_rate: PositiveFloat = 0.01
    beta: Beta = 0.9
    beta1: Beta = 0.9
    beta2: Beta = 0.999
    epsilon: PositiveFloat = 1e-8
    decay: Decay = Decay()
    clip: Optional[Clip] = None


class EarlyStopping(Strict):
    metric: _one_of(*EARLY_STOPPING_METRICS) = "dev_error"
    patience: PositiveInt = 10
    restore_best: bool = True
    min_delta: NonNegativeFloat = 0.0


def _checkpoint_every(value):
    """An integer is epochs, "<n>s" seconds, 0 never (params.npz is then written at the end)."""
    if _is_int(value) and value >= 0:
        return value
    if isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?s", value.strip()):
        return value.strip()
    raise _fail("must be a number of epochs (an integer >= 0) or of seconds such as 60s", value)


class Training(Strict):
    epochs: PositiveInt = 100
    batch_size: Annotated[Any, PlainValidator(_batch_size)] = 64
    shuffle: bool = True
    early_stopping: Optional[EarlyStopping] = None
    # params.npz written at epoch ends this often, so that a killed run keeps its training
    checkpoint_every: Annotated[Any, PlainValidator(_checkpoint_every)] = "60s"
    # embedding losses (triplet, siamese_binary): mini-batches of P identities x K examples
    identities_per_batch: PositiveInt = 8
    examples_per_identity: _number(int, 2) = 4


class Bound(Strict):
    max: Optional[_number(float)] = None
    min: Optional[_number(float)] = None

    @model_validator(mode="after")
    def _one_bound(self):
        if self.max is None and self.min is None:
            raise _fail("needs max: or min:, e.g. {max: 100}", ...)
        return self


class Evaluation(Strict):
    metric: _one_of(*METRICS) = "error"
    human_level_error: Optional[_number(float, 0, 1)] = None
    positive_class: NonNegativeInt = 1
    satisficing: dict[str, Bound] = {}
    multi_crop: Optional[_one_of(10)] = None
    # SPEC's exit 1 "a satisficing metric unmet where the user asked to fail on it"
    fail_on_unmet: bool = False
    # detection (SPEC): boxes scored p_c x class probability under this are dropped, then NMS
    score_threshold: Probability = 0.6
    iou_threshold: Probability = 0.5
    max_boxes: PositiveInt = 10
    one_shot_ways: _number(int, 2) = 20        # embedding runs: N-way one-shot episodes
    one_shot_episodes: PositiveInt = 1000


MAX_NAME_BYTES = 200  # a run directory's name adds a date and suffixes; file names stop at 255


def _check_name(name: str) -> str:
    if not name.strip() or any(c in name for c in "/\\\0"):
        raise _fail("must be a non-empty name without / or \\ (it names the run directory)", name)
    if len(name.encode()) > MAX_NAME_BYTES:
        raise _fail(f"must be at most {MAX_NAME_BYTES} bytes (it names the run directory), got "
                    f"{len(name.encode())}", ...)
    return name


# -- a loss with options (faces): `loss: triplet` is {name: triplet} with the defaults
class TripletLoss(Strict):
    name: _one_of("triplet")
    margin: NonNegativeFloat = 0.2
    mining: _one_of("hard", "semi_hard", "random") = "semi_hard"


def _loss_shorthand(value):
    """`triplet` -> its mapping; `{name: mse}` (a loss without options) -> `mse`."""
    if value == "triplet":
        return {"name": "triplet"}
    if isinstance(value, dict) and set(value) == {"name"} and value["name"] != "triplet":
        return value["name"]
    return value


LossSpec = Annotated[
    _tagged(lambda v: "triplet" if isinstance(v, (dict, BaseModel)) else "name" if isinstance(v, str)
            else None, ("name", _one_of(*LOSSES)), ("triplet", TripletLoss),
            error="must be a loss name or a mapping such as {name: triplet, margin: 0.2}"),
    BeforeValidator(_loss_shorthand)]


class Recipe(Strict):
    """A checked recipe. `source` is its file (or None); `line_of` finds a key's line in it."""

    name: Annotated[str, AfterValidator(_check_name)] = "recipe"
    seed: NonNegativeInt = 0
    dtype: _one_of("float32", "float64") = "float32"
    data: Data
    model: Model
    loss: LossSpec = "auto"
    regularization: Regularization = Regularization()
    optimizer: Optimizer = Optimizer()
    training: Training = Training()
    evaluation: Evaluation = Evaluation()
    search: Search = Search()

    _source: Optional[Path] = PrivateAttr(None)
    _lines: dict = PrivateAttr(default_factory=dict)
    _overrides: tuple = PrivateAttr(())

    @property
    def source(self) -> Optional[Path]:
        return self._source

    def to_dict(self) -> dict:
        """Plain data, every default filled in: what `recipe_from_dict` reads back."""
        d = self.model_dump(mode="python")
        for spec in d["search"]["space"].values():
            for unused in [k for k, v in spec.items() if v is None]:
                del spec[unused]
        for source in d["data"].values():  # a file source's optional keys, when unused
            if isinstance(source, dict) and "path" in source:
                for unused in [k for k in ("boxes", "masks", "keep_labels") if source.get(k) is None]:
                    source.pop(unused, None)
        return d

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None,
                              allow_unicode=True)

    def line_of(self, key_path: str) -> Optional[int]:
        """The line of `key_path` in the source YAML, or of its closest parent that has one."""
        return _line_of(self._lines, key_path)

    def error(self, key_path: str, message: str) -> BadInput:
        """A BadInput at `key_path`: its line, or the `--set` that gave the key its value."""
        return _bad_input(message, key_path, self._source, self._lines, self._overrides)


# -- building a Recipe --------------------------------------------------------------------
def load_recipe(path, overrides=()) -> Recipe:
    """Read, override, check and complete the recipe at `path`."""
    path = Path(path)
    data, lines = _read_yaml(path)
    return _build(data, path, lines, overrides)


def recipe_from_dict(d: dict, source=None, overrides=()) -> Recipe:
    """A Recipe from plain data; `source` (a path) anchors relative paths and messages."""
    if not isinstance(d, dict):
        raise BadInput(f"a recipe must be a mapping, got {_show(d)}", file=source)
    return _build(copy.deepcopy(d), Path(source) if source is not None else None, {}, overrides)


def _build(data: dict, source: Optional[Path], lines: dict, overrides) -> Recipe:
    apply_overrides(data, overrides)
    if source is not None:
        data.setdefault("name", source.stem)
    base = source.parent.absolute() if source is not None else Path.cwd()
    try:
        recipe = Recipe.model_validate(data, context={"base": base})
    except ValidationError as err:
        raise _located(err.errors(include_url=False)[0], source, lines, overrides)
    recipe._source, recipe._lines, recipe._overrides = source, lines, tuple(overrides)
    _check_model(recipe)
    _check_fractions(recipe)
    check_space(recipe)
    return recipe


def _located(error: dict, source, lines: dict, overrides) -> BadInput:
    """One pydantic error as BadInput: the dotted key path (union tags dropped), its line."""
    parts = [str(p) for p in error["loc"] if not (isinstance(p, str) and p[:1] in "<[")]
    ctx = error.get("ctx") or {}
    if "at" in ctx:
        parts.append(ctx["at"])
    return _bad_input(_message(error), ".".join(parts), source, lines, overrides)


def _bad_input(message: str, key: str, source, lines: dict, overrides) -> BadInput:
    for override in overrides:
        set_key = override.partition("=")[0].strip()
        if f"{key}.".startswith(f"{set_key}.") or f"{set_key}.".startswith(f"{key}."):
            return BadInput(f"{message} (from --set {override})", file=source, key=key)
    return BadInput(message, file=source, key=key or None, line=_line_of(lines, key))


def _line_of(lines: dict, key_path: str) -> Optional[int]:
    parts = key_path.split(".")
    while parts:
        line = lines.get(".".join(parts))
        if line is not None:
            return line
        parts.pop()
    return None


PYDANTIC_MESSAGES = {
    "missing": "is required",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "dict_type": "must be a mapping",
    "list_type": "must be a list",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "too_short": "must not be empty",
    "extra_forbidden": "unknown key",
}


def _message(error: dict) -> str:
    kind = error["type"]
    if kind == "recipe":
        ctx = error.get("ctx") or {}
        return error["msg"] if "got" in ctx else f"{error['msg']}, got {_show(error['input'])}"
    message = PYDANTIC_MESSAGES.get(kind, error["msg"])
    if kind in ("missing", "too_short", "extra_forbidden"):
        return message
    return f"{message}, got {_show(error['input'])}"


def _check_model(recipe: Recipe) -> None:
    layers = recipe.model.layers
    for j, index in enumerate(recipe.model.freeze):
        if index >= len(layers):
            raise recipe.error(f"model.freeze.{j}", f"no layer {index}: the model's layers are "
                               f"0..{len(layers) - 1}")
    if recipe.loss != "auto":
        return
    for i in reversed(range(len(layers))):
        activation = getattr(layers[i], "activation", None)
        if activation is not None:
            if activation not in OUTPUT_ACTIVATIONS:
                raise recipe.error(f"model.layers.{i}.activation", (
                    f"loss: auto has no loss for a {activation} output: end with sigmoid, "
                    f"softmax or linear, or set loss: to one of {', '.join(LOSSES[1:])}"))
            return


def _check_fractions(recipe: Recipe) -> None:
    data = recipe.data
    held_out = [(k, getattr(data, k)) for k in ("test", "dev", "train_dev")
                if isinstance(getattr(data, k), float)]
    if held_out and sum(f for _, f in held_out) >= 1:
        raise recipe.error(f"data.{held_out[-1][0]}", "the fractions test + dev + train_dev "
                           "leave no training examples; their sum must be below 1")
