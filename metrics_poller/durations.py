"""Durations: integer seconds, `300s` / `5m` / `1h30m` / `7d` / `1w`, or ISO-8601 `PT5M` / `P1D`.

`parse_seconds` is the one parser, used by every duration-valued configuration key (through the
`Duration` pydantic marker) and by the relative times of `backfill --since -7d`. Units follow Beats'
`period: 300s` (Go durations) and Elasticsearch time values (`90d`, `500ms`), plus weeks; ISO-8601
years and months are refused because their length varies.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}
EXAMPLES = "300, 300s, 5m, 1h, 7d or PT5M"

_NUMBER = r"\d+(?:\.\d+)?"
_SUFFIXED = re.compile(rf"(?:{_NUMBER}(?:ms|s|m|h|d|w))+")
_SUFFIXED_PART = re.compile(rf"({_NUMBER})(ms|s|m|h|d|w)")
_ISO = re.compile(
    rf"P(?:(?P<w>{_NUMBER})W)?(?:(?P<d>{_NUMBER})D)?"
    rf"(?:T(?:(?P<h>{_NUMBER})H)?(?:(?P<m>{_NUMBER})M)?(?:(?P<s>{_NUMBER})S)?)?",
    re.I,
)
_ISO_YEARS_MONTHS = re.compile(r"P[^T]*[YM].*", re.I)


def parse_seconds(value: object) -> float:
    """Seconds in `value` (a number of seconds or a duration string); ValueError naming the unit."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"expected a duration: a number of seconds or a string such as {EXAMPLES}")
    seconds = _parse_text(value.strip()) if isinstance(value, str) else float(value)
    if not math.isfinite(seconds):
        raise ValueError(f"expected a finite duration in seconds, such as {EXAMPLES}")
    seconds = round(seconds, 6)  # `0.1h` is 360 seconds, not 360.00000000000006
    if seconds < 0:
        raise ValueError(f"expected a duration of 0 seconds or more, such as {EXAMPLES}")
    return seconds


def _parse_text(text: str) -> float:
    if text.startswith("-") and text[1:2].isdigit():
        _parse_text(text[1:])  # a well-formed duration with a minus sign gets the message about the sign
        raise ValueError(f"expected a duration of 0 seconds or more, such as {EXAMPLES}")
    if re.fullmatch(_NUMBER, text):
        return float(text)
    if _SUFFIXED.fullmatch(text):
        return sum(float(number) * UNITS[unit] for number, unit in _SUFFIXED_PART.findall(text))
    iso = _ISO.fullmatch(text)
    if iso and text.upper() not in ("P", "PT") and not text.upper().endswith("T"):
        return sum(float(amount) * UNITS[unit] for unit, amount in iso.groupdict().items() if amount)
    if _ISO_YEARS_MONTHS.fullmatch(text):
        raise ValueError("ISO-8601 years and months have no fixed length in seconds; use days, e.g. P30D")
    raise ValueError(
        f"expected a duration: a number of seconds or a string such as {EXAMPLES} (units ms, s, m, h, d, w)"
    )


def format_seconds(seconds: float) -> str:
    """The shortest exact `<n><unit>` form (`86400` → `1d`), as Elasticsearch time values are written."""
    for unit, size in UNITS.items():
        count = seconds / size
        if count >= 1 and count == int(count) and unit != "w":  # Elasticsearch has no week unit
            return f"{int(count)}{unit}"
    return f"{round(seconds * 1000)}ms"


@dataclass(frozen=True)
class Duration:
    """Pydantic marker for a duration-valued key: `Annotated[int, Duration(gt=0)]`.

    The annotated type is what the application reads: `int` (whole seconds), `float` (seconds) or
    `str` (an Elasticsearch time value such as `90d`). Bounds are in seconds.
    """

    gt: float | None = None
    ge: float | None = None
    le: float | None = None

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(lambda value: self.convert(value, source))

    def convert(self, value: object, kind: Any) -> int | float | str:
        seconds = parse_seconds(value)
        if self.gt is not None and not seconds > self.gt:
            raise ValueError(f"expected a duration greater than {_plain(self.gt)} seconds, such as {EXAMPLES}")
        if self.ge is not None and not seconds >= self.ge:
            raise ValueError(f"expected a duration of at least {_plain(self.ge)} seconds")
        if self.le is not None and not seconds <= self.le:
            raise ValueError(f"expected a duration of at most {_plain(self.le)} seconds ({format_seconds(self.le)})")
        if kind is str:
            return format_seconds(seconds)
        if kind is int:
            if seconds != int(seconds):
                raise ValueError("expected a whole number of seconds")
            return int(seconds)
        return seconds


def _plain(number: float) -> str:
    return str(int(number)) if number == int(number) else str(number)
