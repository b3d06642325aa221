"""Arrays from data files: `.npz`, `.h5`/`.hdf5`, `.csv`, and MNIST IDX pairs.

Each reader returns (x, y, class_names) exactly as stored; checking and reshaping are
`examples`' job. Every failure is a BadInput naming the file, at `key` (the source's recipe
path) or one of its sub-keys.
"""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import numpy as np

from ..errors import BadInput
from .idx import read_idx


def read_file_source(src: dict, key: str, targets: str = "auto"):
    """(x, y, class_names, origin) of a `{path, x, y}` source; origin names the file(s)."""
    path, x_key, y_key = src.get("path"), src.get("x") or "x", src.get("y") or "y"
    if path is None or Path(path).is_dir():
        # an IDX pair: x and y are files, alone or in the directory `path`
        folder = Path(path) if path is not None else Path()
        x_file, y_file = folder / x_key, folder / y_key
        for file, sub in ((x_file, "x"), (y_file, "y")):
            if not file.is_file():
                raise BadInput(f"no such file: {file}", key=f"{key}.{sub}")
        return read_idx(x_file, f"{key}.x"), read_idx(y_file, f"{key}.y"), None, f"{x_file}, {y_file}"
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"no such file: {path}", key=f"{key}.path")
    suffix = path.suffix.lower()
    if suffix not in READERS:
        raise BadInput(f"{path}: unknown file type {suffix or '(none)'!r}; dlcli reads "
                       f"{', '.join(READERS)} and MNIST IDX pairs (x: and y: files)", key=f"{key}.path")
    if suffix == ".csv":
        x, y, names = read_csv(path, x_key, y_key, key, src.get("missing"), targets)
    else:
        x, y, names = READERS[suffix](path, x_key, y_key, key)
    return x, y, names, str(path)


def _missing(path, name, present, key):
    return BadInput(f"{path} has no array {name!r}; it holds: {', '.join(present) or 'nothing'}",
                    key=key)


def read_npz(path, x_key, y_key, key):
    try:
        loaded = np.load(path, allow_pickle=False, mmap_mode="r")
        if not isinstance(loaded, np.lib.npyio.NpzFile):  # an .npy under an .npz name
            raise BadInput(f"{path} holds a single array (an .npy file), not named x and y "
                           "arrays", key=f"{key}.path")
        with loaded as f:
            for name, sub in ((x_key, "x"), (y_key, "y")):
                if name not in f.files:
                    raise _missing(path, name, f.files, f"{key}.{sub}")
                check_npz_member(f, name, path, f"{key}.{sub}")
            return f[x_key], f[y_key], None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise BadInput(f"cannot read {path}: {err}", key=f"{key}.path")


def read_h5(path, x_key, y_key, key):
    import h5py
    try:
        with h5py.File(path, "r") as f:
            for name, sub in ((x_key, "x"), (y_key, "y")):
                if not isinstance(f.get(name), h5py.Dataset):
                    raise _missing(path, name, list(f.keys()), f"{key}.{sub}")
            names = None
            if isinstance(f.get("list_classes"), h5py.Dataset):
                names = [v.decode() if isinstance(v, bytes) else str(v)
                         for v in np.atleast_1d(f["list_classes"][()]).tolist()]
            for name, sub in ((x_key, "x"), (y_key, "y")):
                _check_size(path, name, f[name].shape, f[name].dtype, f"{key}.{sub}")
            return f[x_key][()], f[y_key][()], names
    except OSError as err:
        raise BadInput(f"cannot read {path}: not a readable HDF5 file ({err})", key=f"{key}.path")


def _check_size(path, name, shape, dtype, key):
    from ..limits import too_big
    nbytes = int(np.prod(shape, dtype=np.float64)) * np.dtype(dtype).itemsize
    why = too_big(nbytes)
    if why:
        raise BadInput(f"{path}: array {name!r} declares shape {tuple(shape)} of {np.dtype(dtype)}, "
                       f"which {why}", key=key)


def check_npz_member(f, name, path, key):
    """Refuse an .npz array whose header declares more than memory holds, before reading it."""
    from numpy.lib import format as npy_format
    try:
        with f.zip.open(name + ".npy") as member:
            version = npy_format.read_magic(member)
            reader = (npy_format.read_array_header_1_0 if version == (1, 0)
                      else npy_format.read_array_header_2_0)
            shape, _, dtype = reader(member)
    except KeyError:
        return
    _check_size(path, name, shape, dtype, key)


MISSING = {"", "na", "nan", "n/a", "null", "none", "?"}  # cells that mean "no value"


def read_csv(path, x_key, y_key, key, missing=None, targets="auto"):
    """A header row naming the columns; `y_key` is the label column. `x_key` selects the
    feature columns: a list of names, or one name; the default "x", where no column has that
    name, means every column but the label.

    Labels map to classes 0..C-1 in sorted order (numbers numerically, text as text), the
    names kept (so labels 1/2 are two classes, "cat"/"dog" too); `targets="real"` keeps them
    as numbers. A missing cell (empty, NA, NaN, null, ?) is bad input naming its row and
    column, unless `missing` says what to do: "drop" the row, or "mean" (the column's mean
    over the file's rows that have it; a missing label is always dropped with "drop" and bad
    input with "mean").
    """
    try:
        # utf-8-sig: Excel's "CSV UTF-8" starts with a byte-order mark
        rows = [row for row in csv.reader(path.read_text(encoding="utf-8-sig").splitlines()) if row]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise BadInput(f"cannot read {path} as CSV text: {err}", key=f"{key}.path")
    if not rows:
        raise BadInput(f"{path} is empty", key=f"{key}.path")
    header = [name.strip() for name in rows[0]]
    if all(_is_number(name) for name in header):
        raise BadInput(f"{path}: the first row must be a header naming the columns, got "
                       f"{','.join(header)}", key=f"{key}.path")
    if y_key not in header:
        raise BadInput(f"{path} has no column {y_key!r}; its columns: {', '.join(header)}",
                       key=f"{key}.y")
    features = _feature_columns(path, header, x_key, y_key, key)
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise BadInput(f"{path}: row {line} has {len(row)} fields but the header has "
                           f"{len(header)}", key=f"{key}.path")
    body = np.char.strip(np.array(rows[1:], dtype=str).reshape(len(rows) - 1, len(header)))
    label = header.index(y_key)
    used = [*features, label]
    gaps = np.isin(np.char.lower(body[:, used]), list(MISSING))
    keep = np.arange(len(body))
    if missing == "drop":
        keep = keep[~gaps.any(axis=1)]
        gaps = gaps[keep]
    must_have = gaps if missing is None else gaps[:, -1:]  # "mean" fills features only
    if must_have.any():
        i, j = np.argwhere(must_have)[0]
        column = used[j] if missing is None else label
        how = ("set data.missing: drop (or mean) to say what to do" if missing is None
               else "a label cannot be imputed: use data.missing: drop")
        raise BadInput(f"{path}: row {keep[i] + 2}, column {header[column]!r}: missing value; {how}",
                       key=f"{key}.path")
    cells = body[keep][:, features]
    if missing == "mean":
        cells = np.where(gaps[:, :-1], "nan", cells)
    try:
        x = cells.astype(np.float64)
    except ValueError:
        i, j = next((i, j) for i, row in enumerate(cells) for j, cell in enumerate(row)
                    if not _is_number(cell))
        raise BadInput(f"{path}: row {keep[i] + 2}, column {header[features[j]]!r}: "
                       f"{str(cells[i, j])!r} is not a number", key=f"{key}.path")
    if missing == "mean":
        for j, c in enumerate(features):
            column = x[:, j]
            unknown = gaps[:, j]
            if unknown.all():
                raise BadInput(f"{path}: column {header[c]!r} has no value to take the mean of",
                               key=f"{key}.path")
            column[unknown] = column[~unknown].mean()
    cells = [str(c) for c in body[keep, label]]
    if targets == "real":
        bad = next((i for i, cell in zip(keep, cells) if not _is_number(cell)), None)
        if bad is not None:
            raise BadInput(f"{path}: row {bad + 2}, column {y_key!r}: {body[bad, label]!r} is "
                           f"not a number (a regression target)", key=f"{key}.y")
        return x, np.array([float(c) for c in cells]), None
    names = class_names(cells)
    codes = {name: k for k, name in enumerate(names)}
    return x, np.array([codes[c] for c in cells], dtype=np.int64), names


def class_names(cells) -> list[str]:
    """The distinct labels in class order: numerically when every one is a number (so "10"
    follows "9"), else as text."""
    distinct = set(cells)
    if all(_is_number(c) for c in distinct):
        # "1" and "1.0" are one class
        by_value = {}
        for c in sorted(distinct, key=float):
            by_value.setdefault(float(c), c)
        return [_label_text(v, by_value[v]) for v in sorted(by_value)]
    return sorted(distinct)


def _label_text(value: float, cell: str) -> str:
    return str(int(value)) if value == int(value) else cell


def _feature_columns(path, header, x_key, y_key, key) -> list[int]:
    if isinstance(x_key, str):
        if x_key == "x" and "x" not in header:  # the default: every column but the label
            return [i for i, name in enumerate(header) if name != y_key]
        names = [x_key]
    else:
        names = list(x_key)
    unknown = [n for n in names if n not in header]
    if unknown:
        raise BadInput(f"{path} has no column {unknown[0]!r}; its columns: {', '.join(header)}",
                       key=f"{key}.x")
    if y_key in names:
        raise BadInput(f"{path}: the label column {y_key!r} cannot be a feature too",
                       key=f"{key}.x")
    return [header.index(n) for n in names]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


READERS = {".npz": read_npz, ".h5": read_h5, ".hdf5": read_h5, ".csv": read_csv}
