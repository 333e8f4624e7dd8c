"""The one parser for Azure metric response JSON (azure-monitor.md §3.1, §3.3, §8).

An ARM Metrics-List response and each `values[]` item of a getBatch response share one per-resource
shape: `{"interval", "value": [metric, ...], ...}` with `metric = {"name": {"value"}, "errorCode",
"timeseries": [{"metadatavalues": [...], "data": [{"timeStamp", "total", ...}]}]}`.

Response bytes are decoded by msgspec straight into the typed structs below, which validates them and
skips every field the poller never reads. A body the typed decoder refuses (one malformed item, or
JSON only the stdlib reads, such as NaN) is decoded by `loads` instead and each item is checked on its
own, so a bad item fails only its resource, with a one-line `AzureDataError` naming the place.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec
import orjson

from metrics_poller.catalog import AGGREGATION_KEY, METRICS_BY_LOWER_NAME, canonical_dimension
from metrics_poller.model import AGGREGATE_KEYS, Account, Point, Series
from metrics_poller.shaping import collector_paused


class AzureDataError(ValueError):
    """Azure returned metric JSON this parser cannot read; the message is one line."""


# ------------------------------------------------------------------------------------ wire structs
# All `gc=False` (never tracked by the cyclic collector): a decoded JSON tree has no cycles.


class _Name(msgspec.Struct, frozen=True, gc=False):
    """A LocalizableString; only `value` is read."""

    value: str


class _Dimension(msgspec.Struct, frozen=True, gc=False):
    name: _Name | str
    value: str


class _TimeSeries(msgspec.Struct, frozen=True, gc=False):
    metadatavalues: list[_Dimension] | None = None
    data: list[Point] | None = None


class _Metric(msgspec.Struct, frozen=True, gc=False):
    name: _Name | str
    id: str | None = None
    timeseries: list[_TimeSeries] | None = None
    error_code: str | None = msgspec.field(default=None, name="errorCode")
    error_message: str | None = msgspec.field(default=None, name="errorMessage")


class ResourceMetrics(msgspec.Struct, frozen=True, gc=False):
    """One resource's metrics: an ARM Metrics-List body, or one item of getBatch's `values`."""

    value: list[_Metric]
    interval: str | None = None
    resourceid: str | None = None
    resource_id: str | None = msgspec.field(default=None, name="resourceId")


class _Batch(msgspec.Struct, frozen=True, gc=False):
    values: list[ResourceMetrics]


_BATCH_DECODER = msgspec.json.Decoder(_Batch)
_RESOURCE_DECODER = msgspec.json.Decoder(ResourceMetrics)


def decode_batch(body: bytes) -> list[Any]:
    """The `values` of a getBatch body: `ResourceMetrics` when the whole body is well-formed, else the
    plain decoded items (each checked by `parse_resource_metrics`). Raises `ValueError` for a body that
    is not JSON and `AzureDataError` for one without a `values` list."""
    with collector_paused():  # one burst of allocations, none in a cycle
        try:
            return _BATCH_DECODER.decode(body).values
        except msgspec.DecodeError:  # ValidationError included: re-read leniently below
            pass
    decoded = loads(body)
    if not isinstance(decoded, dict) or not isinstance(decoded.get("values"), list):
        raise AzureDataError("getBatch response has no 'values' list")
    values: list[Any] = decoded["values"]
    return values


def decode_resource(body: bytes) -> Any:
    """An ARM Metrics-List body: `ResourceMetrics` when well-formed, else the plain decoded JSON."""
    with collector_paused():
        try:
            return _RESOURCE_DECODER.decode(body)
        except msgspec.DecodeError:
            pass
    return loads(body)


@dataclass(slots=True)
class ParsedResource:
    """Everything one resource's response says."""

    series: list[Series] = field(default_factory=list)
    # Metric name → "code: message" for metrics that failed inside a 200 (`errorCode` ≠ Success).
    metric_errors: dict[str, str] = field(default_factory=dict)
    # Metric name → its `errorCode` alone, for those metrics (the caller decides what each code means).
    error_codes: dict[str, str] = field(default_factory=dict)
    # Metric name → number of series returned; equal to the request's `top` suggests truncation.
    series_counts: dict[str, int] = field(default_factory=dict)
    interval: str | None = None  # the interval Azure echoed (may differ from the request's)


_STATS = frozenset({"average", "minimum", "maximum"})


def without_zero_fill(points: Sequence[Point], zero_is_reading: bool) -> Sequence[Point]:
    """Drop average/minimum/maximum from the buckets of a zero-filled empty minute.

    A resource provider may declare `fillGapWithZero`: Azure then answers 0 for a minute without
    samples instead of an empty bucket. A total (or count) of 0 is a fact, nothing happened, and is kept;
    an average, minimum or maximum of nothing is no reading, and a 0 there would be a false one (a 0 ms
    latency). Such a bucket is told apart by a count of 0, or, without a count, by every statistic and
    the total (if asked) being exactly 0. Where 0 is a plausible reading (`zero_is_reading`: Percent
    metrics, where 0 % availability is an outage and 0 % utilisation an idle PTU) only a count of 0
    decides, so a real 0 % is never hidden.
    """
    out: list[Point] | None = None
    for index, point in enumerate(points):
        stats = (point.average, point.minimum, point.maximum)
        if stats == (None, None, None):
            continue
        if point.count == 0:
            empty = True
        elif zero_is_reading or point.count is not None or point.total not in (None, 0):
            empty = False
        else:
            empty = all(value is None or value == 0 for value in stats)
        if empty:
            if out is None:
                out = list(points)
            out[index] = msgspec.structs.replace(point, average=None, minimum=None, maximum=None)
    return points if out is None else out


_METRICS_PATH = re.compile(r"/providers/microsoft\.insights/metrics/", re.IGNORECASE)
_KEY_BY_LOWER_AGGREGATION = {name.lower(): key for name, key in AGGREGATION_KEY.items()}


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
    if isinstance(item, ResourceMetrics):
        candidates: list[object] = [item.resourceid, item.resource_id]
        first_metric_id = item.value[0].id if item.value else None
    elif isinstance(item, dict):
        candidates = [item.get("resourceid"), item.get("resourceId")]
        metrics = item.get("value")
        first = metrics[0] if isinstance(metrics, list) and metrics else None
        first_metric_id = first.get("id") if isinstance(first, dict) else None
    else:
        return None
    for value in candidates:
        if isinstance(value, str) and value:
            return value
    if isinstance(first_metric_id, str):
        match = _METRICS_PATH.search(first_metric_id)
        if match and match.start() > 0:
            return first_metric_id[: match.start()]
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
    """Parse one resource's metrics (a `ResourceMetrics`, or plain decoded JSON) into `Series`.

    Dimension names are mapped back to the requested canonical names case-insensitively (Azure returns
    them lower-cased), then through the catalogue. The series read only the requested aggregations
    (all five when none are given). Their time grain is the `interval` Azure echoed, else `timegrain`.
    Series without any bucket are left out; empty buckets and non-finite values are skipped by shaping.
    """
    resource = item if type(item) is ResourceMetrics else _checked(item)
    keys = _aggregation_keys(requested_aggregations)
    with_stats = not _STATS.isdisjoint(keys)
    if resource.interval:
        timegrain = resource.interval.upper()
    requested = {name.lower(): name for name in requested_dimensions}
    canonical_names: dict[str, str] = {}  # raw name → canonical: a response repeats a few names
    times: set[str] = set()  # bucket times already checked: a response repeats a few
    result = ParsedResource(interval=resource.interval)
    for index, metric in enumerate(resource.value):
        name = _metric_name(metric, index)
        error = _metric_error(metric)
        if error is not None:
            result.metric_errors[name] = error
            result.error_codes[name] = metric.error_code or ""
            continue
        if metric.timeseries is None:
            raise AzureDataError(f"metric {name}: timeseries: expected a list, got null")
        result.series_counts[name] = result.series_counts.get(name, 0) + len(metric.timeseries)
        spec = METRICS_BY_LOWER_NAME.get(name.lower()) if with_stats else None
        zero_is_reading = spec is not None and spec.unit == "Percent"
        for position, element in enumerate(metric.timeseries):
            if not element.data:
                continue
            for point in element.data:
                if point.timestamp not in times:
                    _check_time(point.timestamp, name, position, element.data)
                    times.add(point.timestamp)
            dimensions = {}
            for entry in element.metadatavalues or ():
                raw = entry.name if type(entry.name) is str else entry.name.value  # type: ignore[union-attr]
                canonical = canonical_names.get(raw)
                if canonical is None:
                    if not raw:
                        raise AzureDataError(f"metric {name}: metadatavalues: a dimension without a name")
                    canonical = requested.get(raw.lower()) or canonical_dimension(raw)
                    canonical_names[raw] = canonical
                dimensions[canonical] = entry.value
            points = without_zero_fill(element.data, zero_is_reading) if with_stats else element.data
            result.series.append(Series(account, group, name, timegrain, dimensions, points, keys))
    return result


def _check_time(text: str, metric: str, position: int, data: Sequence[Point]) -> None:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        number = next(i for i, point in enumerate(data) if point.timestamp == text)
        where = f"metric {metric}: timeseries[{position}].data[{number}].timeStamp"
        raise AzureDataError(f"{where}: not an ISO 8601 time: {_brief(text)}") from None


def _brief(text: str) -> str:
    shown = repr(text)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _checked(item: object) -> ResourceMetrics:
    """Plain decoded JSON → `ResourceMetrics`, or `AzureDataError` naming the first thing wrong."""
    try:
        with collector_paused():
            return msgspec.convert(item, ResourceMetrics)
    except msgspec.ValidationError as exc:
        if "Number out of range" not in str(exc):
            raise AzureDataError(_one_line(exc)) from None
    # An integer literal beyond double range (the stdlib keeps it exact) is no finite double: like
    # `1e400`, which the stdlib reads as inf, it becomes ±inf, which shaping drops.
    try:
        return msgspec.convert(_huge_integers_as_infinity(item), ResourceMetrics)
    except msgspec.ValidationError as exc:
        raise AzureDataError(_one_line(exc)) from None


def _huge_integers_as_infinity(value: object) -> object:
    if type(value) is int:
        try:
            float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
        return value
    if isinstance(value, dict):
        return {key: _huge_integers_as_infinity(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_huge_integers_as_infinity(item) for item in value]
    return value


def _one_line(exc: msgspec.ValidationError) -> str:
    """msgspec's "Expected `str`, got `int` - at `$.value[0].name`" → "value[0].name: expected `str`,
    got `int`"; a problem of the item itself is named "resource item"."""
    text = " ".join(str(exc).split())
    what, _, path = text.partition(" - at `")
    place = path.rstrip("`").removeprefix("$").removeprefix(".") or "resource item"
    return f"{place}: {what[:1].lower()}{what[1:]}"


def _aggregation_keys(aggregations: Sequence[str]) -> tuple[str, ...]:
    if not aggregations:
        return AGGREGATE_KEYS
    keys = []
    for name in aggregations:
        key = _KEY_BY_LOWER_AGGREGATION.get(name.lower())
        if key is None:  # a caller's mistake, not Azure's
            raise ValueError(f"unknown aggregation {name!r}; expected one of {', '.join(AGGREGATION_KEY)}")
        keys.append(key)
    return tuple(keys)


def _metric_name(metric: _Metric, index: int) -> str:
    raw = metric.name if type(metric.name) is str else metric.name.value  # type: ignore[union-attr]
    if not raw:
        raise AzureDataError(f"value[{index}]: metric without a name")
    spec = METRICS_BY_LOWER_NAME.get(raw.lower())
    return spec.name if spec else raw


def _metric_error(metric: _Metric) -> str | None:
    """`code: message` when the metric failed inside a 200; None for Success or no `errorCode`."""
    code = metric.error_code
    if code is None or code.lower() == "success":
        return None
    text = f"{code}: {metric.error_message}" if metric.error_message else code
    return " ".join(text.split())  # one line
