"""Plain data passed between the pipeline stages (discover → plan → fetch → shape → write → commit)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import msgspec

from metrics_poller.catalog import MetricGroup

ACCOUNT_TYPE = "Microsoft.CognitiveServices/accounts"
PROJECT_TYPE = "Microsoft.CognitiveServices/accounts/projects"  # Foundry projects, children of accounts


@dataclass(frozen=True, slots=True)
class Account:
    """One Azure Cognitive Services account, as discovered (ids keep their original case); also a Foundry
    project of one (`type` PROJECT_TYPE, with its parent's subscription, group and kind)."""

    id: str
    name: str
    subscription_id: str
    resource_group: str
    location: str
    kind: str
    type: str = ACCOUNT_TYPE
    tags: Mapping[str, str] = field(default_factory=dict)
    # Case-insensitive identity: Azure compares resource ids without case. Computed once: every series
    # and document of a cycle looks it up.
    key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", self.id.lower())


@dataclass(frozen=True, slots=True)
class Window:
    """A half-open time range `[start, end)` aligned to `grain`; all datetimes are UTC-aware."""

    start: datetime
    end: datetime
    grain: timedelta

    @property
    def timegrain(self) -> str:
        """ISO-8601 duration of the grain, as Azure writes it (PT1M, PT5M, PT1H, P1D)."""
        return iso_duration(self.grain)


@dataclass(frozen=True, slots=True)
class Query:
    """One Azure call's worth of work: ≤ 50 accounts of one (subscription, region), one metric group."""

    subscription_id: str
    region: str
    accounts: tuple[Account, ...]
    group: MetricGroup
    window: Window
    top: int
    namespace: str = ACCOUNT_TYPE  # the metric namespace of the accounts' resource type


class Point(msgspec.Struct, frozen=True, gc=False, rename={"timestamp": "timeStamp"}):
    """One bucket exactly as Azure sends it (`{"timeStamp", "total", ...}`): its start time and the
    aggregates present. Decoded straight from the response bytes (azure_json); `gc=False` because a
    cycle holds hundreds of thousands of them and none can be part of a reference cycle. The time
    stays text: a response repeats a few distinct times, so each is parsed once per call, not per
    bucket, and a string hashes far faster than an aware datetime."""

    timestamp: str  # ISO 8601 as Azure wrote it (checked by azure_json); no zone means UTC
    average: float | None = None
    minimum: float | None = None
    maximum: float | None = None
    total: float | None = None
    count: float | None = None

    @property
    def time(self) -> datetime:
        """`timestamp` as an aware UTC datetime."""
        moment = datetime.fromisoformat(self.timestamp)
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)

    @property
    def values(self) -> dict[str, float]:
        """The aggregates present, by response key (`total`, `average`, ...)."""
        return {key: value for key in AGGREGATE_KEYS if (value := getattr(self, key)) is not None}


# Response keys of the five aggregates, in `Point`'s field order.
AGGREGATE_KEYS = ("average", "minimum", "maximum", "total", "count")


class Series(msgspec.Struct, frozen=True, gc=False):
    """One time series of one metric for one account and one dimension combination.

    `dimensions` uses canonical Azure dimension names (`ModelDeploymentName`), never the lower-cased
    names Azure returns. `points` may include empty buckets; only the aggregates named in
    `aggregations` (response keys) are read from them. Untracked by the cyclic GC (`gc=False`): a
    cycle holds tens of thousands, and nothing they reference can refer back to them.
    """

    account: Account
    group: str  # name of the request group it was fetched with (catalog.GROUPS)
    metric: str
    timegrain: str
    dimensions: Mapping[str, str]
    points: Sequence[Point]
    aggregations: tuple[str, ...] = AGGREGATE_KEYS


class Outcome(StrEnum):
    """What became of one document in the sink."""

    CREATED = "created"
    DUPLICATE = "duplicate"  # already stored (409): success for cursor purposes
    RETRYABLE = "retryable"  # not stored; fetched and written again next cycle
    PERMANENT = "permanent"  # rejected; dead-lettered
    FAILURE_STORE = "failure_store"  # rejected, kept in the data stream's failure store: not stored

    @property
    def stored(self) -> bool:
        return self in (Outcome.CREATED, Outcome.DUPLICATE)


class Document(msgspec.Struct, frozen=True, gc=False):
    """One Elasticsearch document with its deterministic `_id`, its dataset and the cursor units it belongs to.

    `body` is the source as compact JSON, exactly as it is stored: shaping writes it once and every
    sink sends those bytes unchanged. Untracked by the cyclic GC: it holds only strings and bytes.
    """

    id: str
    body: bytes
    account_key: str
    groups: frozenset[str]
    dataset: str = "azure.open_ai"  # names the data stream it goes to: `metrics-<dataset>-<namespace>`

    @property
    def source(self) -> dict[str, Any]:
        """The source as objects (for dead letters, reports and tests; not on the hot path)."""
        result: dict[str, Any] = json.loads(self.body)
        return result


@dataclass(slots=True)
class Failure:
    """A unit of work that did not complete: reported, counted, and retried next cycle."""

    scope: str  # "account", "group", "region", "discovery", "sink"
    target: str  # account id, "subscription/region", group name, ...
    reason: str  # one line; never a secret


def iso_duration(delta: timedelta) -> str:
    """`timedelta` → ISO-8601 duration with Azure's spelling (PT1M, PT1H, P1D)."""
    seconds = int(delta.total_seconds())
    if seconds <= 0:
        raise ValueError("a time grain must be positive")
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    out = "P"
    if days:
        out += f"{days}D"
    if hours or minutes or secs:
        out += "T"
        if hours:
            out += f"{hours}H"
        if minutes:
            out += f"{minutes}M"
        if secs:
            out += f"{secs}S"
    return out


def parse_iso_duration(text: str) -> timedelta:
    """ISO-8601 duration of days, hours, minutes and seconds (no years or months) → `timedelta`."""
    import re

    match = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?", text.strip().upper())
    if not match or text.strip().upper() in ("P", "PT"):
        raise ValueError(f"not an ISO-8601 duration: {text!r}")
    days, hours, minutes, seconds = match.groups()
    return timedelta(days=int(days or 0), hours=int(hours or 0), minutes=int(minutes or 0), seconds=float(seconds or 0))


@dataclass(frozen=True, slots=True)
class MetricDefinition:
    """What Azure says one metric offers on one (subscription, region): from metricDefinitions."""

    name: str
    dimensions: tuple[str, ...]  # canonical casing
    aggregations: tuple[str, ...]  # Azure names, `None` dropped
    timegrains: tuple[str, ...]  # ISO-8601 durations, e.g. ("PT1M", "PT5M", ...)
