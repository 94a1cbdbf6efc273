"""Several named tensors as one contiguous byte array: how a split model's tensors travel.

A cut can send several tensors (an activation, a recurrent state, a sample
rate). The harness moves one array per message, so the sending op packs
them into one ``uint8`` array and the receiving op unpacks them:

    b"DGTB" | header length (uint32, little-endian) | JSON header | pad to 8 | data...

The header lists each tensor's name, dtype, shape and byte offset in the
data; each tensor's bytes start on an 8-byte boundary. Unpacking returns
views into the received array (no copy).
"""

from __future__ import annotations

import json
import struct

import numpy as np

MAGIC = b"DGTB"


def pack(tensors: dict[str, np.ndarray]) -> np.ndarray:
    """One uint8 array holding every tensor of ``tensors``."""
    entries, offset = [], 0
    arrays = {name: np.require(np.asarray(a), requirements="C") for name, a in tensors.items()}  # scalars stay 0-d
    for name, a in arrays.items():
        entries.append({"name": name, "dtype": a.dtype.str, "shape": list(a.shape), "offset": offset})
        offset += -(-a.nbytes // 8) * 8
    header = json.dumps(entries, separators=(",", ":")).encode()
    start = -(-(len(MAGIC) + 4 + len(header)) // 8) * 8
    out = np.zeros(start + offset, np.uint8)
    out[:4] = np.frombuffer(MAGIC, np.uint8)
    out[4:8] = np.frombuffer(struct.pack("<I", len(header)), np.uint8)
    out[8:8 + len(header)] = np.frombuffer(header, np.uint8)
    for entry, a in zip(entries, arrays.values()):
        at = start + entry["offset"]
        out[at:at + a.nbytes] = a.reshape(-1).view(np.uint8)
    return out


def is_bundle(data: np.ndarray) -> bool:
    return data.dtype == np.uint8 and data.ndim == 1 and data.size >= 8 and data[:4].tobytes() == MAGIC


def unpack(data: np.ndarray) -> dict[str, np.ndarray]:
    """The tensors of a packed array (views into ``data``); ValueError if it is not one."""
    if not is_bundle(data):
        raise ValueError("not a packed tensor bundle (no DGTB header)")
    (length,) = struct.unpack("<I", data[4:8].tobytes())
    entries = json.loads(data[8:8 + length].tobytes())
    start = -(-(8 + length) // 8) * 8
    found = {}
    for e in entries:
        dtype = np.dtype(e["dtype"])
        count = int(np.prod(e["shape"], dtype=np.int64))
        at = start + e["offset"]
        found[e["name"]] = data[at:at + count * dtype.itemsize].view(dtype).reshape(e["shape"])
    return found
