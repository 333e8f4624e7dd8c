"""Parsing and validating metric query parameters exactly as strictly as Azure does (pure)."""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from metrics_poller.catalog import ACCOUNT_METRICS, AGENT_METRICS, NAMESPACE, PROJECT_NAMESPACE, MetricSpec
from metrics_poller.model import iso_duration, parse_iso_duration
from metrics_poller.simulator.data import Bucket, plan_buckets
from metrics_poller.simulator.spec import SimSpec

GRAINS = {
    "PT1M": 60,
    "PT5M": 300,
    "PT15M": 900,
    "PT30M": 1800,
    "PT1H": 3600,
    "PT6H": 21600,
    "PT12H": 43200,
    "P1D": 86400,
}
RETENTION = timedelta(days=93)
# Resource type (= metric namespace) → the metrics its resources offer (foundry.md §3.2, §3.3).
CATALOGUES: dict[str, tuple[MetricSpec, ...]] = {NAMESPACE: ACCOUNT_METRICS, PROJECT_NAMESPACE: AGENT_METRICS}
_TYPES = {t.lower(): t for t in CATALOGUES}
_BY_LOWER_NAME = {t: {m.name.lower(): m for m in metrics} for t, metrics in CATALOGUES.items()}


def catalogue_of(resource_type: str) -> tuple[MetricSpec, ...]:
    return CATALOGUES[_TYPES[resource_type.lower()]]


def metric_of(resource_type: str, name: str) -> MetricSpec | None:
    return _BY_LOWER_NAME[_TYPES[resource_type.lower()]].get(name.lower())
AGGREGATIONS = ("average", "minimum", "maximum", "total", "count")
MAX_METRICS = 20


class ApiError(Exception):
    """An Azure error answer. `backend` marks errors raised by the metrics backend, which ARM relays
    flat (`{"code","message"}`) while its own errors are wrapped in `{"error": …}`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        backend: bool = True,
        exception_type: str = "Microsoft.Online.Metrics.MetricsMP.Utilities.RPRequestFormatException",
        retry_after: int | None = None,
    ):
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status
        self.code = code
        self.message = message
        self.backend = backend
        self.exception_type = exception_type


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


@dataclass(frozen=True, slots=True)
class MetricQuery:
    """One validated metrics request (ARM or getBatch); times in epoch seconds, grain None = FULL."""

    metrics: tuple[MetricSpec, ...]
    aggregations: tuple[str, ...] | None  # lower-case keys; None = each metric's primary aggregation
    start: float
    end: float
    grain: int | None
    interval: str
    split: tuple[str, ...] = ()  # canonical dimension names to split by
    filters: dict[str, frozenset[str]] = field(default_factory=dict)  # lower-cased name -> lower values
    has_filter: bool = False
    top: int = 10
    order_by: str | None = None
    descending: bool = True
    metadata_only: bool = False
    buckets: tuple[Bucket, ...] = ()
    labels: tuple[str, ...] = ()  # bucket labels as Azure writes them

    def aggregations_for(self, metric: MetricSpec) -> tuple[str, ...]:
        return self.aggregations or (primary_aggregation(metric).lower(),)


def with_buckets(query: MetricQuery) -> MetricQuery:
    """The query with its buckets planned once (every metric and resource of a call shares them)."""
    buckets = tuple(plan_buckets(math.floor(query.start), math.ceil(query.end), query.grain))
    return replace(query, buckets=buckets, labels=tuple(timestamp(b.label) for b in buckets))


@functools.lru_cache(maxsize=65536)
def timestamp(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def primary_aggregation(metric: MetricSpec) -> str:
    return metric.aggregations[0]


# ------------------------------------------------------------------------------------------------ time


def parse_time(text: str) -> datetime:
    """An ISO-8601 instant as Azure accepts it (`Z` or an offset, optional fraction); naive means UTC."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise bad_request(f"Detected invalid time parameter: '{text}'.") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def parse_timespan(text: str | None, now: datetime) -> tuple[datetime, datetime]:
    """ARM `timespan`: `start/end`, `start/duration`, or a lone duration ending now; default last hour."""
    if not text:
        return now - timedelta(hours=1), now
    first, _, second = text.partition("/")
    if not second:
        return now - _duration(first), now
    start = parse_time(first)
    end = start + _duration(second) if second.strip().upper().startswith("P") else parse_time(second)
    return start, end


def _duration(text: str) -> timedelta:
    try:
        return parse_iso_duration(text)
    except ValueError:
        raise bad_request(f"Detected invalid time range parameter: '{text}'.") from None


def batch_times(params: dict[str, str], now: datetime) -> tuple[datetime, datetime]:
    """getBatch `starttime`/`endtime`; only a start means up to now, neither means the last hour."""
    if "timespan" in params:
        raise bad_request(
            "Detected invalid time range parameters for API version 2024-02-01. "
            "Please use only starttime and endtime to specify a time range."
        )
    start_text, end_text = params.get("starttime"), params.get("endtime")
    end = parse_time(end_text) if end_text else now
    start = parse_time(start_text) if start_text else end - timedelta(hours=1)
    return start, end


def check_range(start: datetime, end: datetime, now: datetime) -> None:
    if end <= start:
        raise bad_request(f"Detected invalid time range: start time {_iso(start)} is not before end time {_iso(end)}.")
    if end < now - RETENTION:
        raise bad_request(
            f"Query endTime: {end:%m/%d/%Y %H:%M:%S} is out of the Max metrics retention period: "
            "93.00:00:00, "
            "traceId: {00000000-0000-0000-0000-000000000000}"
        )


def parse_interval(text: str | None, span: timedelta, auto_adjust: bool = False) -> tuple[int | None, str]:
    """(grain seconds or None for FULL, the interval Azure echoes)."""
    if not text:
        return 60, "PT1M"
    if text.strip().upper() == "FULL":
        return None, iso_duration(timedelta(seconds=max(60, math.ceil(span.total_seconds() / 60) * 60)))
    try:
        seconds = int(parse_iso_duration(text).total_seconds())
    except ValueError:
        seconds = -1
    if seconds in GRAINS.values():
        return seconds, iso_duration(timedelta(seconds=seconds))
    if auto_adjust and seconds > 0:
        nearest = min(GRAINS.values(), key=lambda g: (abs(g - seconds), g))
        return nearest, iso_duration(timedelta(seconds=nearest))
    raise bad_request(f"Invalid time grain: {text}. Supported time grains are: {', '.join(GRAINS)}, FULL.")


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch_range(start: datetime, end: datetime) -> tuple[float, float]:
    return start.timestamp(), end.timestamp()


# --------------------------------------------------------------------------------------------- metrics


def parse_metrics(text: str | None, spec: SimSpec, resource_type: str = NAMESPACE) -> tuple[MetricSpec, ...]:
    if not text:
        raise bad_request("Parameter 'metricnames' is required.")
    names = [n.strip() for n in text.split(",") if n.strip()]
    if len(names) > MAX_METRICS:
        raise bad_request(f"Requested {len(names)} metrics; at most {MAX_METRICS} metric names are allowed per call.")
    out: list[MetricSpec] = []
    for name in names:
        metric = metric_of(resource_type, name)
        if metric is None or not spec.metric_defined(metric.name):
            raise bad_request(unknown_metric_message(name, spec, resource_type))
        if metric not in out:
            out.append(metric)
    return tuple(out)


def unknown_metric_message(name: str, spec: SimSpec, resource_type: str = NAMESPACE) -> str:
    valid = ",".join(m.name for m in catalogue_of(resource_type) if spec.metric_defined(m.name))
    return (
        "Failed to find metric configuration for provider: Microsoft.CognitiveServices, "
        f"resource Type: {resource_type.split('/', 1)[1]}, "
        f"metric: {name}, Valid metrics: {valid}"
    )


def check_namespace(text: str | None, required: bool, resource_type: str | None = None) -> str:
    """The resource type whose metrics are asked for: the namespace named (getBatch), which must be
    the resource's own type when one is given (ARM); a missing optional one means `resource_type`."""
    expected = resource_type or NAMESPACE
    if not text:
        if required:
            raise bad_request("Parameter 'metricnamespace' is required.")
        return expected
    named = _TYPES.get(text.strip().lower())
    if named is None or (resource_type is not None and named.lower() != resource_type.lower()):
        raise bad_request(f"Metric namespace '{text}' is not valid for resource type {expected}.")
    return named


def parse_aggregations(text: str | None, metrics: tuple[MetricSpec, ...]) -> tuple[str, ...] | None:
    if not text:
        return None
    wanted: list[str] = []
    for raw in text.split(","):
        name = raw.strip().lower()
        if not name or name == "none":
            continue
        if name not in AGGREGATIONS:
            raise bad_request(f"Invalid aggregation type: {raw.strip()}.")
        if name not in wanted:
            wanted.append(name)
    for metric in metrics:
        offered = {a.lower() for a in metric.aggregations}
        for name in wanted:
            if name not in offered:
                raise bad_request(
                    f"Metric: {metric.name} does not support requested aggregation type: {name}, "
                    "supported ones "
                    f"are: {','.join(metric.aggregations)}"
                )
    return tuple(wanted) or None


def parse_top(text: str | None) -> int:
    if text is None or text == "":
        return 10
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 2_147_483_647:
        raise bad_request(f"Detected invalid TopN value: {text}.")
    return value


def parse_orderby(text: str | None) -> tuple[str | None, bool]:
    if not text:
        return None, True
    parts = text.split()
    name = parts[0].lower()
    direction = parts[1].lower() if len(parts) > 1 else "desc"
    if name not in AGGREGATIONS or direction not in ("asc", "desc") or len(parts) > 2:
        raise bad_request(f"Invalid orderby clause: '{text}'.")
    return name, direction == "desc"


# ---------------------------------------------------------------------------------------------- filter

_TOKEN = re.compile(
    r"\s*(?:(?P<paren>[()])|(?P<conj>and|or)(?=[\s(])|(?P<dim>[A-Za-z_][\w.\-]*)\s+(?P<op>\w+)\s+"
    r"'(?P<value>(?:[^']|'')*)')",
    re.IGNORECASE,
)


def parse_filter(text: str | None) -> list[tuple[str, frozenset[str] | None]]:
    """`A eq '*' and B eq 'x' or B eq 'y'` → [("A", None), ("B", {"x","y"})] (None = every value).

    `or` may only join values of one dimension, as Azure requires; values are lower-cased because
    Azure compares them without case.
    """
    if not text or not text.strip():
        return []
    clauses: dict[str, tuple[str, set[str] | None]] = {}
    previous: str | None = None
    pending = "and"
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            if text[position:].strip():
                raise bad_request(f"Invalid $filter: unexpected text at position {position}: '{text[position:]}'.")
            break
        position = match.end()
        if match.group("paren"):
            continue
        if match.group("conj"):
            pending = match.group("conj").lower()
            continue
        if match.group("op").lower() != "eq":
            raise bad_request(f"Invalid $filter: operator '{match.group('op')}' is not supported for dimensions.")
        dim, value = match.group("dim"), match.group("value").replace("''", "'")
        if pending == "or" and (previous is None or previous.lower() != dim.lower()):
            raise bad_request("Invalid $filter: 'or' is only allowed between values of the same dimension.")
        _add_clause(clauses, dim, value)
        previous, pending = dim, ""
    return [(name, None if values is None else frozenset(values)) for name, values in clauses.values()]


def _add_clause(clauses: dict[str, tuple[str, set[str] | None]], dim: str, value: str) -> None:
    name, values = clauses.get(dim.lower(), (dim, set()))
    if value == "*" or values is None:
        clauses[dim.lower()] = (name, None)
    else:
        values.add(value.lower())
        clauses[dim.lower()] = (name, values)


def resolve_dimensions(
    metrics: tuple[MetricSpec, ...],
    clauses: list[tuple[str, frozenset[str] | None]],
    rollup: str | None,
    spec: SimSpec,
) -> tuple[tuple[str, ...], dict[str, frozenset[str]]]:
    """Check every filtered dimension exists on every metric; return (split dims, value filters)."""
    rolled = {d.strip().lower() for d in (rollup or "").split(",") if d.strip()}
    named = [name for name, _ in clauses] + sorted(rolled)
    for metric in metrics:
        offered = {d.lower(): d for d in metric.dimensions if d.lower() not in spec.hidden_dimensions(metric.name)}
        unknown = [n for n in named if n.lower() not in offered]
        if unknown:
            raise bad_request(
                f"Metric: {metric.name} does not support requested dimension combination: "
                f"{','.join(n.lower() for n in unknown)}, supported ones are: {','.join(offered.values())}, "
                "TraceId: {00000000-0000-0000-0000-000000000000}"
            )
    canonical = {d.lower(): d for m in metrics for d in m.dimensions}
    split = tuple(canonical[n.lower()] for n, _ in clauses if n.lower() not in rolled)
    filters = {n.lower(): values for n, values in clauses if values is not None}
    return split, filters
