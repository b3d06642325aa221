"""MNIST's IDX files (LeCun's format), gzip-compressed or not.

The header is two zero bytes, a type code, the number of dimensions, then each dimension as a
big-endian uint32; the data follows in C order. Compression is told by gzip's magic bytes, not
by the file's name, since both kinds circulate under both names.
"""

from __future__ import annotations

import gzip
import zlib

import numpy as np

from ..errors import BadInput

TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path, key: str) -> np.ndarray:
    """The array an IDX file holds, in native byte order."""
    try:
        raw = path.read_bytes()
        if raw[:2] == GZIP_MAGIC:
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise BadInput(f"cannot read {path}: {err}", key=key)
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in TYPES or raw[3] == 0:
        raise BadInput(f"{path} is not an IDX file (bad magic number)", key=key)
    ndim, header = raw[3], 4 + 4 * raw[3]
    if len(raw) < header:
        raise BadInput(f"{path}: IDX header is truncated", key=key)
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, 4))
    dtype = np.dtype(TYPES[raw[2]])
    count = int(np.prod(shape))
    if len(raw) != header + count * dtype.itemsize:
        held = (len(raw) - header) / dtype.itemsize
        raise BadInput(f"{path}: the IDX header says {shape}, {count} values, but the file holds "
                       f"{held:g} (truncated or not IDX)", key=key)
    data = np.frombuffer(raw, dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))
