"""Quantities with units: every family parses, bad input is refused with a
message that says what was expected, and format_* round-trips through parse_*.

Expected values are worked out by hand from the unit definitions (SI sizes
are powers of 1000, IEC sizes powers of 1024, bits are an eighth of a byte).
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from sim.units import (
    Bandwidth,
    Duration,
    Rate,
    Size,
    UnitError,
    format_bandwidth,
    format_duration,
    format_rate,
    format_size,
    parse_bandwidth,
    parse_duration,
    parse_rate,
    parse_size,
)


# --- every family parses ----------------------------------------------------


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("250 us", 250e-6),
        ("2.5 ms", 2.5e-3),
        ("3 s", 3.0),
        ("40 ns", 40e-9),
        ("7 µs", 7e-6),
        ("2 min", 120.0),
        ("1.5 h", 5400.0),
        ("  12ms  ", 12e-3),  # no space between number and unit, padding around
        (".5 s", 0.5),
        ("1e3 us", 1e-3),
    ],
)
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds, rel=1e-12)


@pytest.mark.parametrize(
    "text, size",
    [
        ("1.2 MB", 1.2e6),
        ("1 MiB", 1_048_576.0),
        ("512 KB", 512_000.0),
        ("512 kB", 512_000.0),
        ("4 KiB", 4096.0),
        ("2 GiB", 2 * 1024**3),
        ("3 GB", 3e9),
        ("64 B", 64.0),
    ],
)
def test_sizes(text, size):
    assert parse_size(text) == pytest.approx(size, rel=1e-12)


@pytest.mark.parametrize(
    "text, bytes_per_s",
    [
        ("25 Gbit/s", 3.125e9),  # 25e9 bits / 8
        ("25 Gb/s", 3.125e9),
        ("100 Gbps", 12.5e9),
        ("8 Mbit/s", 1e6),
        ("80 Mbit/s", 10e6),
        ("25 GB/s", 25e9),  # bytes are taken as they are
        ("1 MiB/s", 1_048_576.0),
        ("16 bit/s", 2.0),
    ],
)
def test_bandwidths(text, bytes_per_s):
    assert parse_bandwidth(text) == pytest.approx(bytes_per_s, rel=1e-12)


@pytest.mark.parametrize(
    "text, per_s",
    [
        ("30 fps", 30.0),
        ("5000/s", 5000.0),
        ("5 kHz", 5000.0),
        ("200 Hz", 200.0),
        ("120/min", 2.0),
        ("3600/h", 1.0),
        ("2/ms", 2000.0),
        ("50 qps", 50.0),
    ],
)
def test_rates(text, per_s):
    assert parse_rate(text) == pytest.approx(per_s, rel=1e-12)


def test_a_unit_of_one_family_is_not_accepted_by_another():
    # "MB" is a size, not a bandwidth; "ms" is a duration, not a rate.
    with pytest.raises(UnitError, match="unknown unit 'MB'"):
        parse_bandwidth("10 MB")
    with pytest.raises(UnitError, match="unknown unit 'ms'"):
        parse_rate("10 ms")
    with pytest.raises(UnitError, match="unknown unit 'fps'"):
        parse_duration("10 fps")


def test_units_are_case_sensitive_where_it_matters():
    # ms is milliseconds; "Ms" would be megaseconds and is not a unit here.
    with pytest.raises(UnitError, match="unknown unit 'Ms'"):
        parse_duration("5 Ms")
    # MB (bytes) and Mb/s (bits) differ by a factor of eight.
    assert parse_bandwidth("8 MB/s") == pytest.approx(8 * parse_bandwidth("8 Mb/s"))


# --- refusals name what was expected ----------------------------------------

FAMILIES = [
    (parse_duration, "a duration", "2.5 ms"),
    (parse_size, "a size", "1.2 MB"),
    (parse_bandwidth, "a bandwidth", "25 Gbit/s"),
    (parse_rate, "a rate", "30 fps"),
]


@pytest.mark.parametrize("parse, what, example", FAMILIES)
@pytest.mark.parametrize("bare", [5, 2.5, 0])
def test_bare_numbers_are_refused(parse, what, example, bare):
    with pytest.raises(UnitError) as info:
        parse(bare)
    message = str(info.value)
    assert what in message and example in message
    assert "bare number" in message and repr(bare) in message


@pytest.mark.parametrize("parse, what, example", FAMILIES)
def test_numbers_without_unit_in_strings_are_refused(parse, what, example):
    with pytest.raises(UnitError) as info:
        parse("5")
    message = str(info.value)
    assert "missing unit" in message and what in message and example in message


@pytest.mark.parametrize("parse, what, example", FAMILIES)
def test_unknown_units_list_the_known_ones(parse, what, example):
    with pytest.raises(UnitError) as info:
        parse("5 furlongs")
    message = str(info.value)
    assert "unknown unit 'furlongs'" in message and what in message
    assert "known units:" in message
    # the example's own unit is among the known ones listed
    assert example.split()[-1] in message.split("known units:")[1]


@pytest.mark.parametrize("parse, what, example", FAMILIES)
@pytest.mark.parametrize("flag", [True, False])
def test_booleans_are_refused(parse, what, example, flag):
    # bool is a subclass of int: it must not slip through as 1 or 0.
    with pytest.raises(UnitError) as info:
        parse(flag)
    message = str(info.value)
    assert what in message and example in message and repr(flag) in message


@pytest.mark.parametrize("parse, what, example", FAMILIES)
@pytest.mark.parametrize("junk", ["", "   ", "ms", "five ms", "1.2.3 ms", "5 m s"])
def test_text_that_is_not_a_quantity_is_refused(parse, what, example, junk):
    with pytest.raises(UnitError) as info:
        parse(junk)
    assert what in str(info.value)


@pytest.mark.parametrize("parse, what, example", FAMILIES)
@pytest.mark.parametrize("value", [[1, "ms"], {"value": 1}])
def test_other_types_are_refused_with_their_type_named(parse, what, example, value):
    with pytest.raises(UnitError) as info:
        parse(value)
    message = str(info.value)
    assert what in message and type(value).__name__ in message


@pytest.mark.parametrize("parse, what, example", FAMILIES)
def test_an_empty_value_is_called_empty(parse, what, example):
    # `--set run.duration=` gives None; "NoneType" would mean nothing to a user.
    with pytest.raises(UnitError) as info:
        parse(None)
    assert what in str(info.value) and "empty value" in str(info.value)


def test_unit_error_is_a_value_error():
    # pydantic turns ValueError raised in validators into validation errors.
    assert issubclass(UnitError, ValueError)


# --- pydantic field types ---------------------------------------------------


class _Quantities(BaseModel):
    d: Duration
    s: Size
    b: Bandwidth
    r: Rate


def test_field_types_parse_and_serialise_to_canonical_strings():
    q = _Quantities(d="2500 us", s="1.2 MB", b="25 Gbit/s", r="5 kHz")
    assert (q.d, q.s, q.b, q.r) == pytest.approx((2.5e-3, 1.2e6, 3.125e9, 5000.0))
    dumped = q.model_dump(mode="json")
    assert dumped == {"d": "2.5 ms", "s": "1.2 MB", "b": "25 Gbit/s", "r": "5000/s"}
    again = _Quantities.model_validate(dumped)
    assert (again.d, again.s, again.b, again.r) == pytest.approx((q.d, q.s, q.b, q.r))


def test_field_types_refuse_bare_numbers_through_pydantic():
    with pytest.raises(ValidationError) as info:
        _Quantities(d=5, s="1 MB", b="1 Gbit/s", r="1/s")
    assert "expected a duration with a unit" in str(info.value)


# --- formatting -------------------------------------------------------------


@pytest.mark.parametrize(
    "fmt, value, text",
    [
        (format_duration, 0.0025, "2.5 ms"),
        (format_duration, 2.0, "2 s"),
        (format_duration, 250e-6, "250 us"),
        (format_duration, 40e-9, "40 ns"),
        (format_size, 1.2e6, "1.2 MB"),
        (format_size, 512e3, "512 KB"),
        (format_size, 3e9, "3 GB"),
        (format_size, 64.0, "64 B"),
        (format_bandwidth, 3.125e9, "25 Gbit/s"),
        (format_rate, 30.0, "30/s"),
    ],
)
def test_format_picks_a_readable_unit(fmt, value, text):
    assert fmt(value) == text


_magnitudes = st.floats(min_value=1e-12, max_value=1e12, allow_nan=False, allow_infinity=False)
_signed = st.one_of(_magnitudes, _magnitudes.map(lambda x: -x), st.just(0.0))


@pytest.mark.parametrize(
    "fmt, parse",
    [
        (format_duration, parse_duration),
        (format_size, parse_size),
        (format_bandwidth, parse_bandwidth),
        (format_rate, parse_rate),
    ],
)
@given(value=_signed)
def test_format_round_trips_through_parse(fmt, parse, value):
    text = fmt(value)
    back = parse(text)
    # 12 significant digits are written.
    assert math.isclose(back, value, rel_tol=1e-11, abs_tol=0.0), (value, text, back)


# --- only finite quantities (issue 9) -----------------------------------------


@pytest.mark.parametrize("parse, text", [
    (parse_duration, "1e999 s"), (parse_size, "1e300 TB"), (parse_bandwidth, "1e999 Gbit/s"),
    (parse_rate, "1e400 fps"), (parse_duration, "1e308 h"),
])
def test_a_quantity_that_overflows_to_infinity_is_refused(parse, text):
    with pytest.raises(UnitError, match=r"too large: expected a finite"):
        parse(text)


@pytest.mark.parametrize("text", [math.inf, -math.inf, math.nan, "inf s", "nan ms", ".inf", "-inf s"])
def test_infinities_and_nan_are_never_quantities(text):
    with pytest.raises(UnitError):
        parse_duration(text)


def test_the_largest_finite_quantities_still_parse():
    assert parse_duration("1e300 s") == 1e300
    assert parse_size("1e290 TB") == pytest.approx(1e302)
