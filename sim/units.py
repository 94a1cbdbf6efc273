"""Quantities with units, as people write them in scenario files.

A scenario says "250 us", "2.5 ms", "25 Gbit/s", "1.2 MB" or "30 fps"; the
model works in SI floats: seconds, bytes, bytes per second and events per
second. This module turns the first into the second and refuses a bare
number where a unit is needed, because "5" could be seconds or
milliseconds and the difference is a factor of a thousand. Only finite
numbers are quantities: ``1e999 s`` (infinite once read), ``.inf`` and
``.nan`` are refused, so no infinity or NaN reaches the model.

Sizes follow the SI/IEC convention: kB/KB/MB/GB are powers of 1000, KiB/MiB/GiB
powers of 1024. Bandwidths in bits ("Gbit/s", "Gb/s", "Gbps") are divided
by 8; in bytes ("GB/s") they are taken as they are.
"""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer

_NUMBER = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
_QUANTITY = re.compile(rf"^\s*{_NUMBER}\s*([A-Za-z/µμ%]*)\s*$")

_TIME = {
    "ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "sec": 1.0,
    "min": 60.0, "h": 3600.0,
}
_SIZE = {
    "B": 1.0, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
    "KiB": 1024.0, "MiB": 1024.0**2, "GiB": 1024.0**3, "TiB": 1024.0**4,
}
_BANDWIDTH = {
    "bit/s": 1 / 8, "bps": 1 / 8, "b/s": 1 / 8,
    "kbit/s": 1e3 / 8, "Kbit/s": 1e3 / 8, "kb/s": 1e3 / 8, "Kb/s": 1e3 / 8, "Kbps": 1e3 / 8, "kbps": 1e3 / 8,
    "Mbit/s": 1e6 / 8, "Mb/s": 1e6 / 8, "Mbps": 1e6 / 8,
    "Gbit/s": 1e9 / 8, "Gb/s": 1e9 / 8, "Gbps": 1e9 / 8,
    "Tbit/s": 1e12 / 8, "Tb/s": 1e12 / 8, "Tbps": 1e12 / 8,
    "B/s": 1.0, "kB/s": 1e3, "KB/s": 1e3, "MB/s": 1e6, "GB/s": 1e9, "TB/s": 1e12,
    "KiB/s": 1024.0, "MiB/s": 1024.0**2, "GiB/s": 1024.0**3,
}
_RATE = {
    "/s": 1.0, "Hz": 1.0, "fps": 1.0, "rps": 1.0, "qps": 1.0, "kHz": 1e3,
    "/ms": 1e3, "/min": 1 / 60, "/h": 1 / 3600,
}


class UnitError(ValueError):
    """A quantity that is not a number followed by a known unit."""


def _parse(text: object, units: dict[str, float], what: str, example: str) -> float:
    if isinstance(text, bool):
        raise UnitError(f"expected {what} such as '{example}', got {text!r}")
    if isinstance(text, (int, float)):
        raise UnitError(
            f"expected {what} with a unit, such as '{example}', got the bare number {text!r}"
        )
    if text is None:
        raise UnitError(f"expected {what} such as '{example}', got an empty value")
    if not isinstance(text, str):
        raise UnitError(f"expected {what} such as '{example}', got {type(text).__name__}")
    match = _QUANTITY.match(text)
    if not match:
        raise UnitError(f"expected {what} such as '{example}', got {text!r}")
    number, unit = match.groups()
    if not unit:
        raise UnitError(f"missing unit in {text!r}: expected {what} such as '{example}'")
    if unit not in units:
        known = ", ".join(units)
        raise UnitError(f"unknown unit {unit!r} in {text!r} for {what}; known units: {known}")
    value = float(number) * units[unit]
    if not math.isfinite(value):
        raise UnitError(f"{text!r} is too large: expected a finite {what[2:]} such as '{example}'")
    return value


def parse_duration(text: object) -> float:
    """Seconds from a duration such as ``"2.5 ms"``."""
    return _parse(text, _TIME, "a duration", "2.5 ms")


def parse_size(text: object) -> float:
    """Bytes from a size such as ``"1.2 MB"``."""
    return _parse(text, _SIZE, "a size", "1.2 MB")


def parse_bandwidth(text: object) -> float:
    """Bytes per second from a bandwidth such as ``"25 Gbit/s"``."""
    return _parse(text, _BANDWIDTH, "a bandwidth", "25 Gbit/s")


def parse_rate(text: object) -> float:
    """Events per second from a rate such as ``"30 fps"`` or ``"5000/s"``."""
    return _parse(text, _RATE, "a rate", "30 fps")


def format_duration(seconds: float) -> str:
    """A short readable duration: ``0.0025 -> '2.5 ms'``."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if abs(seconds) >= scale:
            return f"{seconds / scale:.12g} {unit}"
    return f"{seconds / 1e-9:.12g} ns"


def format_size(size: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if abs(size) >= scale:
            return f"{size / scale:.12g} {unit}"
    return f"{size:.12g} B"


def format_bandwidth(bytes_per_s: float) -> str:
    return f"{bytes_per_s * 8 / 1e9:.12g} Gbit/s"


def format_rate(per_s: float) -> str:
    return f"{per_s:.12g}/s"


# Pydantic field types: parse on the way in, write back a canonical string,
# so a resolved scenario reads like the file it came from.
Duration = Annotated[float, BeforeValidator(parse_duration), PlainSerializer(format_duration)]
Size = Annotated[float, BeforeValidator(parse_size), PlainSerializer(format_size)]
Bandwidth = Annotated[float, BeforeValidator(parse_bandwidth), PlainSerializer(format_bandwidth)]
Rate = Annotated[float, BeforeValidator(parse_rate), PlainSerializer(format_rate)]
