"""The data sources (`data.train`, `data.test`, ...) and augmentations a recipe may name
(SPEC "Data"): a builtin generator, arrays in a file, MNIST IDX files, a text file or a
CSV of texts (dlcli/text.py, dlcli/data/pairs.py)."""

from __future__ import annotations

import os
from typing import Annotated, Optional, Union

from pydantic import (BaseModel, BeforeValidator, Field, ValidationInfo, field_validator,
                      model_validator)

from .recipe_types import (Fraction, NonNegativeFloat, NonNegativeInt, PathStr, PositiveInt,
                           Strict, _base_dir, _fail, _one_of, _resolve, _tagged)

BUILTINS = ("planar", "moons", "circles", "blobs", "spiral", "shapes", "dates", "glyphs",
            "shapes_detection", "shapes_segmentation", "shapes_landmarks")  # dlcli/detect/data.py


# data
class BuiltinSource(Strict):
    builtin: _one_of(*BUILTINS)
    n: Optional[PositiveInt] = None
    noise: Optional[NonNegativeFloat] = None
    classes: Optional[PositiveInt] = None
    # [n_H, n_W] for shapes_detection / shapes_segmentation (the course's U-Net is 96x128)
    size: Optional[Union[PositiveInt, Annotated[list[PositiveInt], Field(min_length=2, max_length=2)]]] = None
    max_objects: Optional[PositiveInt] = None  # shapes_detection / shapes_segmentation
    empty: Optional[NonNegativeFloat] = None  # shapes_detection: images with no object


class FileSource(Strict):
    """`{path: FILE, x: KEY, y: KEY}`, or an MNIST IDX pair whose `x:` and `y:` are files.

    x and y are files, resolved like `path`, when there is no `path` (`{x: FILE, y: FILE}`,
    relative to the recipe) or when `path` is a directory (relative to it); otherwise they
    name the arrays (or the CSV label column) inside the file `path`.
    """

    path: Optional[PathStr] = None
    # a CSV's feature columns may be a list (every column but y when x is left out)
    x: Union[str, list[str]] = Field("x", validate_default=True)
    y: str = Field("y", validate_default=True)
    boxes: Optional[str] = None  # detection: (m, K, 5) [class, b_x, b_y, b_h, b_w]
    masks: Optional[str] = None  # segmentation: (m, n_H, n_W) class ids
    keep_labels: Optional[list[int]] = None  # only the examples with these labels (e.g. digits 0-6)

    @field_validator("x", "y")
    @classmethod
    def _idx_files(cls, value: str, info: ValidationInfo) -> str:
        folder = info.data.get("path")
        if isinstance(value, list):
            if folder is None or not str(folder).lower().endswith(".csv"):
                raise _fail("a list of columns needs path: a .csv file", value)
            return value
        if folder is None:
            return _resolve(value, _base_dir(info))
        if os.path.isdir(folder):
            return _resolve(value, folder)
        return value

    @model_validator(mode="after")
    def _needs_a_file(self):
        if self.path is None and not {"x", "y"} <= self.model_fields_set:
            raise _fail("a data source needs builtin: NAME, path: FILE, or x: and y: files "
                        "(MNIST IDX)", ...)
        return self


class TextSource(Strict):
    """`{text: FILE, unit: char|word, task: language_model}` (dlcli/text.py)."""

    text: PathStr
    unit: _one_of("char", "word") = "char"
    task: _one_of("language_model") = "language_model"
    lower: bool = False


class TextColumnSource(Strict):
    """`{path: FILE.csv|.tsv, x: COLUMN, y: COLUMN, unit: word|char}`: a text column, a label column."""

    path: PathStr
    x: str = "x"
    y: str = "y"
    unit: _one_of("char", "word")
    lower: bool = False
    # two text columns (sequence to sequence, dlcli/data/pairs.py): how y is split; T_x
    target_unit: Optional[_one_of("char", "word")] = None
    max_length: Optional[PositiveInt] = None  # sources padded or cut to it (default: the longest)


def _source_kind(value):
    if isinstance(value, BaseModel):
        return {BuiltinSource: "builtin", TextSource: "text",
                TextColumnSource: "text_column"}.get(type(value), "file")
    if isinstance(value, dict):
        return ("builtin" if "builtin" in value else "text" if "text" in value
                else "text_column" if "unit" in value else "file")
    return None


SOURCE_USAGE = "a data source mapping ({path: FILE, x: KEY, y: KEY} or {builtin: NAME})"
Source = _tagged(_source_kind, ("builtin", BuiltinSource), ("file", FileSource),
                 ("text", TextSource), ("text_column", TextColumnSource),
                 error=f"must be {SOURCE_USAGE}")
SourceOrFraction = _tagged(
    lambda v: "fraction" if isinstance(v, (int, float)) else _source_kind(v),
    ("fraction", Fraction), ("builtin", BuiltinSource), ("file", FileSource), ("text", TextSource),
    ("text_column", TextColumnSource),
    error=f"must be a fraction in (0, 1) or {SOURCE_USAGE}")


class RandomCropParams(Strict):
    pad: NonNegativeInt = 4


class ColorShiftParams(Strict):
    max: NonNegativeFloat = 0.1


class RandomCrop(Strict):
    random_crop: RandomCropParams = RandomCropParams()


class ColorShift(Strict):
    color_shift: ColorShiftParams = ColorShiftParams()


AUGMENT_USAGE = "flip_horizontal, {random_crop: {pad: 4}} or {color_shift: {max: 0.1}}"


def _augmentation_kind(value):
    if isinstance(value, BaseModel):
        return next(iter(type(value).model_fields))
    if value == "flip_horizontal":
        return "flip_horizontal"
    if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in ("random_crop", "color_shift"):
        return next(iter(value))
    return None


def _augmentation_shorthand(value):
    # `random_crop` alone means its defaults, as `{random_crop: {}}` does
    return {value: {}} if value in ("random_crop", "color_shift") else value


Augmentation = Annotated[
    _tagged(_augmentation_kind, ("flip_horizontal", _one_of("flip_horizontal")),
            ("random_crop", RandomCrop), ("color_shift", ColorShift),
            error=f"must be {AUGMENT_USAGE}"),
    BeforeValidator(_augmentation_shorthand)]
