"""A small reader and writer of the safetensors format (no dependency beyond numpy and
ml_dtypes): an 8-byte little-endian header length, a JSON header mapping each tensor name to
its dtype, shape and [begin, end) byte range in the data section, then the data section.

Reading maps the file (np.memmap) and returns read-only array views: nothing is copied until a
caller converts. BF16 comes back as ml_dtypes.bfloat16 and F8_E4M3 as ml_dtypes.float8_e4m3fn.
"""
from __future__ import annotations

import json
import os
import struct
from typing import Dict, Iterable, Mapping, Optional

import numpy as np

try:
    import ml_dtypes as _mld
except ImportError:  # pragma: no cover - ml_dtypes is a runtime dependency of fia
    _mld = None

__all__ = ["read_header", "load", "save", "SafetensorsError"]


class SafetensorsError(ValueError):
    pass


def _dtype_table():
    t = {"F64": np.dtype(np.float64), "F32": np.dtype(np.float32), "F16": np.dtype(np.float16),
         "I64": np.dtype(np.int64), "I32": np.dtype(np.int32), "I16": np.dtype(np.int16),
         "I8": np.dtype(np.int8), "U8": np.dtype(np.uint8), "BOOL": np.dtype(np.bool_)}
    if _mld is not None:
        t["BF16"] = np.dtype(_mld.bfloat16)
        t["F8_E4M3"] = np.dtype(_mld.float8_e4m3fn)
        t["F8_E5M2"] = np.dtype(_mld.float8_e5m2)
    return t


_DT = _dtype_table()
_DT_NAME = {v: k for k, v in _DT.items()}


def read_header(path: str) -> dict:
    """The JSON header of a safetensors file (tensor entries plus optional __metadata__)."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise SafetensorsError(f"{path}: shorter than the 8-byte header length")
        (n,) = struct.unpack("<Q", raw)
        size = os.fstat(f.fileno()).st_size
        if n > size - 8:
            raise SafetensorsError(f"{path}: header length {n} exceeds the file size {size}")
        try:
            hdr = json.loads(f.read(n))
        except ValueError as e:
            raise SafetensorsError(f"{path}: header is not JSON ({e})") from None
    if not isinstance(hdr, dict):
        raise SafetensorsError(f"{path}: header is not a JSON object")
    hdr["__data_start__"] = 8 + n
    hdr["__file_size__"] = size
    return hdr


def load(path: str, names: Optional[Iterable[str]] = None) -> Dict[str, np.ndarray]:
    """Maps `path` and returns {name: read-only array} for `names` (default: every tensor)."""
    hdr = read_header(path)
    start, size = hdr.pop("__data_start__"), hdr.pop("__file_size__")
    hdr.pop("__metadata__", None)
    want = list(hdr) if names is None else list(names)
    mm = np.memmap(path, dtype=np.uint8, mode="r") if size > 0 else None
    out = {}
    for name in want:
        if name not in hdr:
            raise KeyError(f"{path}: no tensor named {name!r}")
        e = hdr[name]
        dt = _DT.get(e.get("dtype"))
        if dt is None:
            raise SafetensorsError(f"{path}: tensor {name!r} has unsupported dtype {e.get('dtype')!r}")
        shape = tuple(int(s) for s in e["shape"])
        b, end = (int(v) for v in e["data_offsets"])
        count = int(np.prod(shape, dtype=np.int64))
        if not (0 <= b <= end and start + end <= size and end - b == count * dt.itemsize):
            raise SafetensorsError(f"{path}: tensor {name!r} byte range [{b}, {end}) does not hold "
                                   f"{shape} of {e['dtype']} inside a data section of "
                                   f"{size - start} bytes")
        out[name] = mm[start + b:start + end].view(dt).reshape(shape)
    return out


def save(path: str, tensors: Mapping[str, np.ndarray], metadata: Optional[Mapping[str, str]] = None):
    """Writes `tensors` (numpy arrays, C order) as a safetensors file."""
    hdr, off, blobs = {}, 0, []
    for name in sorted(tensors):
        a = np.ascontiguousarray(np.asarray(tensors[name]))
        code = _DT_NAME.get(a.dtype)
        if code is None:
            raise SafetensorsError(f"tensor {name!r}: dtype {a.dtype} has no safetensors code")
        nb = a.nbytes
        hdr[name] = {"dtype": code, "shape": list(a.shape), "data_offsets": [off, off + nb]}
        blobs.append(a)
        off += nb
    if metadata:
        hdr["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * (-(8 + len(h)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for a in blobs:
            f.write(a.tobytes())
