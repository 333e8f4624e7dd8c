"""The one parser for Azure metric response JSON (azure-monitor.md §3.1, §3.3, §8).

An ARM Metrics-List response and each `values[]` item of a getBatch response share one per-resource
shape: `{"interval", "value": [metric, ...], ...}` with `metric = {"name": {"value"}, "errorCode",
"timeseries": [{"metadatavalues": [...], "data": [{"timeStamp", "total", ...}]}]}`. Pure functions, no
SDK: the caller hands over decoded JSON. Anything unreadable raises `AzureDataError` with a one-line
message naming the place; extra keys are ignored and optional ones may be missing.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson

from metrics_poller.catalog import AGGREGATION_KEY, METRICS_BY_LOWER_NAME, canonical_dimension
from metrics_poller.model import Account, Point, Series
from metrics_poller.shaping import collector_paused


class AzureDataError(ValueError):
    """Azure returned metric JSON this parser cannot read; the message is one line."""


@dataclass(slots=True)
class ParsedResource:
    """Everything one resource's response says."""

    series: list[Series] = field(default_factory=list)
    # Metric name → "code: message" for metrics that failed inside a 200 (`errorCode` ≠ Success).
    metric_errors: dict[str, str] = field(default_factory=dict)
    # Metric name → number of series returned; equal to the request's `top` suggests truncation.
    series_counts: dict[str, int] = field(default_factory=dict)
    interval: str | None = None  # the interval Azure echoed (may differ from the request's)


_METRICS_PATH = re.compile(r"/providers/microsoft\.insights/metrics/", re.IGNORECASE)
_KEY_BY_LOWER_AGGREGATION = {name.lower(): key for name, key in AGGREGATION_KEY.items()}
_ALL_KEYS = tuple(AGGREGATION_KEY.values())


# Every byte → "0" for an ASCII digit, " " otherwise: `bytes.translate` with it plus one substring search
# finds a run of digits at C speed (a regex over a multi-megabyte body costs more than the decoding).
_DIGITS_TO_ZERO = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
# orjson turns an integer beyond 64 bits into a float without a word; such an integer has at least 19
# digits (-9223372036854775809), so a body with a run of 19 digits anywhere goes to the stdlib.
_LONG_DIGIT_RUN = b"0" * 19


def loads(body: bytes | bytearray | str) -> Any:
    """Decode a response body with exactly `json.loads`'s result and exceptions, at orjson's speed.

    orjson is used only where it provably agrees with the stdlib: it refuses what only the stdlib
    accepts (NaN/Infinity, numbers beyond double range, lone surrogates, a BOM, UTF-16/32) and the
    stdlib then decides, raising what it always raised; the one thing orjson accepts differently
    (integers beyond 64 bits) is routed to the stdlib up front. Floats agree (both round correctly).
    """
    with collector_paused():  # a body becomes ~100,000 small containers, none in a cycle
        if type(body) is not bytes or _LONG_DIGIT_RUN in body.translate(_DIGITS_TO_ZERO):
            return json.loads(body)
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            return json.loads(body)


def resource_id_of(item: object) -> str | None:
    """The resource a response item describes: getBatch's `resourceid`, else the prefix of the first
    metric's `id` before `/providers/Microsoft.Insights/metrics/`. Case is preserved."""
    if not isinstance(item, Mapping):
        return None
    for key in ("resourceid", "resourceId"):
        value = item.get(key)
        if isinstance(value, str) and value:
            return value
    metrics = item.get("value")
    if isinstance(metrics, list) and metrics and isinstance(metrics[0], Mapping):
        metric_id = metrics[0].get("id")
        if isinstance(metric_id, str):
            match = _METRICS_PATH.search(metric_id)
            if match and match.start() > 0:
                return metric_id[: match.start()]
    return None


def parse_resource_metrics(
    item: object,
    *,
    account: Account,
    group: str,
    requested_dimensions: Sequence[str],
    requested_aggregations: Sequence[str],
    timegrain: str,
) -> ParsedResource:
    """Parse one resource's metrics into `Series` (empty buckets and NaN/±Inf values dropped).

    Dimension names are mapped back to the requested canonical names case-insensitively (Azure returns
    them lower-cased), then through the catalogue. Only the requested aggregations are read (all five
    when none are given). The series' time grain is the `interval` Azure echoed, else `timegrain`.
    """
    if not isinstance(item, Mapping):
        raise AzureDataError(f"resource item: expected an object, got {_kind(item)}")
    interval = item.get("interval")
    if interval is not None and not isinstance(interval, str):
        raise AzureDataError(f"interval: expected a string, got {_kind(interval)}")
    metrics = item.get("value")
    if not isinstance(metrics, list):
        raise AzureDataError(f"value: expected a list of metrics, got {_kind(metrics)}")
    reader = _Reader(
        account=account,
        group=group,
        timegrain=interval.upper() if interval else timegrain,
        dimension_names={name.lower(): name for name in requested_dimensions},
        keys=_aggregation_keys(requested_aggregations),
    )
    result = ParsedResource(interval=interval)
    with collector_paused():  # one Point and one dict per bucket, none in a cycle
        for index, metric in enumerate(metrics):
            reader.metric(index, metric, result)
    return result


def _aggregation_keys(aggregations: Sequence[str]) -> tuple[str, ...]:
    if not aggregations:
        return _ALL_KEYS
    keys = []
    for name in aggregations:
        key = _KEY_BY_LOWER_AGGREGATION.get(name.lower())
        if key is None:  # a caller's mistake, not Azure's
            raise ValueError(f"unknown aggregation {name!r}; expected one of {', '.join(AGGREGATION_KEY)}")
        keys.append(key)
    return tuple(keys)


@dataclass(frozen=True, slots=True)
class _Reader:
    account: Account
    group: str
    timegrain: str
    dimension_names: dict[str, str]
    keys: tuple[str, ...]
    # Raw dimension name → canonical name, filled as names are met (a response repeats a few names).
    canonical_names: dict[str, str] = field(default_factory=dict)

    def metric(self, index: int, metric: object, result: ParsedResource) -> None:
        if not isinstance(metric, Mapping):
            raise AzureDataError(f"value[{index}]: expected a metric object, got {_kind(metric)}")
        name = _metric_name(metric, index)
        try:
            error = _metric_error(metric)
            if error is not None:
                result.metric_errors[name] = error
                return
            timeseries = metric.get("timeseries")
            if not isinstance(timeseries, list):
                raise AzureDataError(f"timeseries: expected a list, got {_kind(timeseries)}")
            result.series_counts[name] = result.series_counts.get(name, 0) + len(timeseries)
            for position, element in enumerate(timeseries):
                series = self.series(name, position, element)
                if series is not None:
                    result.series.append(series)
        except AzureDataError as exc:
            raise AzureDataError(f"metric {name}: {exc}") from None

    def series(self, name: str, position: int, element: object) -> Series | None:
        where = f"timeseries[{position}]"
        if type(element) is not dict and not isinstance(element, Mapping):
            raise AzureDataError(f"{where}: expected an object, got {_kind(element)}")
        dimensions = self.dimensions(element.get("metadatavalues"), where)
        data = element.get("data")
        if data is None:
            return None
        if type(data) is not list and not isinstance(data, list):
            raise AzureDataError(f"{where}.data: expected a list, got {_kind(data)}")
        points = []
        keys = self.keys
        # The per-bucket work is inlined (no call per bucket): this loop runs once per Azure value.
        for number, bucket in enumerate(data):
            if type(bucket) is not dict and not isinstance(bucket, Mapping):
                raise AzureDataError(f"{where}.data[{number}]: expected an object, got {_kind(bucket)}")
            values: dict[str, float] = {}
            for key in keys:
                raw = bucket.get(key)
                if raw is None:
                    continue
                if type(raw) is float:
                    if raw - raw == 0.0:  # finite: NaN and ±Inf give NaN here
                        values[key] = raw
                else:
                    try:
                        value = _number(raw, key)
                    except AzureDataError as exc:
                        raise AzureDataError(f"{where}.data[{number}]: {exc}") from None
                    if value is not None:
                        values[key] = value
            if not values:
                continue  # an empty bucket: Azure writes bare {"timeStamp": …}
            stamp = bucket.get("timeStamp", _ABSENT)
            if stamp is _ABSENT:
                stamp = bucket.get("timestamp")
            if type(stamp) is not str and not isinstance(stamp, str):
                raise AzureDataError(f"{where}.data[{number}]: timeStamp: expected a string, got {_kind(stamp)}")
            try:
                moment = parse_timestamp(stamp)
            except AzureDataError as exc:
                raise AzureDataError(f"{where}.data[{number}]: {exc}") from None
            points.append(Point(moment, values))
        if not points:
            return None
        return Series(self.account, self.group, name, self.timegrain, dimensions, tuple(points))

    def dimensions(self, metadata: object, where: str) -> dict[str, str]:
        if metadata is None:
            return {}
        if type(metadata) is not list and not isinstance(metadata, list):
            raise AzureDataError(f"{where}.metadatavalues: expected a list, got {_kind(metadata)}")
        dimensions = {}
        canonical_names = self.canonical_names
        for number, entry in enumerate(metadata):
            if type(entry) is not dict and not isinstance(entry, Mapping):
                place = f"{where}.metadatavalues[{number}]"
                raise AzureDataError(f"{place}: expected an object, got {_kind(entry)}")
            raw_name = _localizable(entry.get("name"))
            if raw_name is None:
                raise AzureDataError(f"{where}.metadatavalues[{number}]: missing name")
            value = entry.get("value")
            if type(value) is not str and not isinstance(value, str):
                place = f"{where}.metadatavalues[{number}]"
                raise AzureDataError(f"{place}: value of {raw_name!r} is {_kind(value)}, expected a string")
            canonical = canonical_names.get(raw_name)
            if canonical is None:
                canonical = self.dimension_names.get(raw_name.lower()) or canonical_dimension(raw_name)
                canonical_names[raw_name] = canonical
            dimensions[canonical] = value
        return dimensions


_ABSENT = object()


def _metric_name(metric: Mapping[str, object], index: int) -> str:
    raw = _localizable(metric.get("name"))
    if raw is None:
        raise AzureDataError(f"value[{index}]: metric without a name")
    spec = METRICS_BY_LOWER_NAME.get(raw.lower())
    return spec.name if spec else raw


def _metric_error(metric: Mapping[str, object]) -> str | None:
    """`code: message` when the metric failed inside a 200; None for Success or no `errorCode`."""
    code = metric.get("errorCode")
    if code is None or (isinstance(code, str) and code.lower() == "success"):
        return None
    message = metric.get("errorMessage")
    text = f"{code}: {message}" if message else str(code)
    return " ".join(text.split())  # one line


def _localizable(value: object) -> str | None:
    """The `value` of a LocalizableString (`{"value", "localizedValue"}`); a bare string also passes."""
    if type(value) is dict or isinstance(value, Mapping):
        value = value.get("value")
    return value if isinstance(value, str) and value else None


def _number(raw: object, key: str) -> float | None:
    """A JSON number as float; NaN/±Inf → None; an integer too big for a float is kept exact."""
    if type(raw) is float:
        return raw if math.isfinite(raw) else None
    if type(raw) is int:
        try:
            return float(raw)
        except OverflowError:
            return raw  # finite, just beyond double range; shaping writes it as an integer
    raise AzureDataError(f"{key}: expected a number, got {_kind(raw)}")


@lru_cache(maxsize=16_384)
def parse_timestamp(text: str) -> datetime:
    """Azure's `2026-01-01T00:00:00Z` (also with fractional seconds or `+00:00`) → aware UTC datetime.

    Cached: a response repeats the same few bucket times in every series.
    """
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise AzureDataError(f"timeStamp: not an ISO-8601 time: {_brief(text)}") from None
    if parsed.tzinfo is None:  # Azure's times are UTC even when it omits the zone
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool | int | float | str):
        return f"{type(value).__name__} {_brief(value)}"
    return type(value).__name__


def _brief(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
