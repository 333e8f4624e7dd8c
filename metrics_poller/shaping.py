"""Series → Elasticsearch documents: the only module that knows the document layout.

The layout is `shared/reference/elastic-compat.md`: documents in the final form Elastic's azure_openai
integration stores, one per (bucket, account, dimension map, time grain) holding every metric aggregate
that shares that key (§6), with `azure.dimensions.fingerprint` computed exactly as Elasticsearch's
`fingerprint` ingest processor would (§8) and integral values written as JSON integers (§9).

Every object's keys are written in ascending order, so equal documents serialise to equal bytes.
Documents share their static sub-objects (account block, dimensions, constant blocks) to keep shaping
cheap; treat `Document.source` as read-only.
"""

from __future__ import annotations

import base64
import gc
import hashlib
import math
import struct
from binascii import b2a_base64
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from functools import cache, lru_cache

import orjson

from metrics_poller.catalog import (
    AGGREGATION_KEY,
    AGGREGATION_SUFFIX,
    METRICS_BY_LOWER_NAME,
    METRICS_BY_NAME,
    NAMESPACE,
    dimension_key,
    manage_property_name,
)
from metrics_poller.model import Account, Document, Series

DATASET = "azure.open_ai"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)
_INT32 = range(-(2**31), 2**31)
_INT64_MIN, _UINT64_MAX = -(2**63), 2**64 - 1  # what orjson can write natively


# ---------------------------------------------------------------------------------------------------
# Fingerprint (elastic-compat.md §8)


def fingerprint_values(values: Mapping[str, object], *, salt: str = "") -> str | None:
    """Elasticsearch's `fingerprint` processor (SHA-1) over already-resolved field values.

    `values` maps each configured field name to its value; a field that is absent or `None` is skipped,
    as with `ignore_missing: true`. Returns `None` when no field had a value (ES then writes nothing).
    """
    present = [(name, value) for name, value in values.items() if value is not None]
    if not present:
        return None
    digest = hashlib.sha1(usedforsecurity=False)
    if salt.strip():  # ES ignores a salt without text
        digest.update(salt.encode("utf-8"))
    for _, value in sorted(present, key=lambda item: _java_order(item[0])):
        _feed(digest, value)
    return base64.b64encode(digest.digest()).decode("ascii")


def _feed(digest: hashlib._Hash, value: object) -> None:
    """Depth-first walk of one value, as `FingerprintProcessor.execute` does."""
    if isinstance(value, Mapping):
        for key in sorted(value, key=_java_order):
            digest.update(b"\x00" + _java_utf8(str(key)))
            _feed(digest, value[key])
    elif isinstance(value, list | tuple):
        for element in value:
            _feed(digest, element)
    elif isinstance(value, set | frozenset):
        for element in sorted(value):
            _feed(digest, element)
    else:
        digest.update(b"\x00" + _scalar_bytes(value))


def _scalar_bytes(value: object) -> bytes:
    """`FingerprintProcessor.toBytes`: UTF-8 strings, little-endian numbers, 0x01/0x02 booleans."""
    if isinstance(value, str):
        return _java_utf8(value)
    if isinstance(value, bytes):
        return value
    if isinstance(value, bool):
        return b"\x01" if value else b"\x02"
    if isinstance(value, int):
        # A JSON parser hands ES an Integer when the number fits 32 bits, a Long otherwise.
        return struct.pack("<i" if value in _INT32 else "<q", value)
    if isinstance(value, float):
        return struct.pack("<d", value)
    if value is None:
        return b""
    raise TypeError(f"cannot fingerprint a value of type {type(value).__name__}")


def _java_order(key: str) -> bytes:
    """Sort key equal to Java's `String.compareTo` (UTF-16 code units), not Python's code points."""
    return key.encode("utf-16-be", "surrogatepass")


def _java_utf8(text: str) -> bytes:
    # Java's getBytes(UTF_8) writes "?" for a lone surrogate; Python's "replace" handler does the same.
    return text.encode("utf-8", "replace")


def fingerprint(dimensions: Mapping[str, str]) -> str:
    """`azure.dimensions.fingerprint`: what `fingerprint` with `fields: [azure.dimensions]` writes.

    That is `base64(sha1(concat(0x00 key 0x00 value for key in sorted(dims))))`. Elasticsearch's
    encoding cannot tell `{"a": "b\\0c\\0d"}` from `{"a": "b", "c": "d"}`, so a map whose keys or values
    contain NUL (or lone surrogates) is hashed with a length-prefixed pre-image instead, marked by a
    leading 0xFF byte that no ES pre-image can start with. Distinct maps then always have distinct
    pre-images; Azure never sends such values, so real documents match Elasticsearch exactly.
    """
    keys = sorted(dimensions, key=_java_order)
    text = "".join(f"\x00{key}\x00{dimensions[key]}" for key in keys)
    if text.count("\x00") == 2 * len(keys):
        try:
            return _sha1_base64(text.encode("utf-8"))
        except UnicodeEncodeError:
            pass
    return _sha1_base64(_length_prefixed(keys, dimensions))


def _length_prefixed(keys: list[str], dimensions: Mapping[str, str]) -> bytes:
    parts = [b"\xff"]
    for key in keys:
        for text in (key, dimensions[key]):
            encoded = text.encode("utf-8", "surrogatepass")
            parts.append(len(encoded).to_bytes(8, "big") + encoded)
    return b"".join(parts)


def _sha1_base64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha1(data, usedforsecurity=False).digest()).decode("ascii")


# ---------------------------------------------------------------------------------------------------
# Document id


def document_id(account_key: str, timegrain: str, timestamp: datetime, fingerprint: str | None) -> str:
    """Deterministic `_id`: 24 URL-safe characters, the base64url form of a 144-bit BLAKE2b digest.

    The digest covers `lower(account id) ␟ timegrain ␟ fingerprint ␟ epoch milliseconds` (␟ = U+001F;
    no fingerprint → empty). Only the first part is free text and the other three never contain U+001F,
    so different keys cannot run together into the same input. Re-shaping the same bucket always gives
    the same `_id`, which turns a repeated write into a harmless 409.
    """
    return _finish_id(_id_prefix(account_key.lower(), timegrain, fingerprint), _epoch_ms(timestamp))


def _id_prefix(account_key: str, timegrain: str, fingerprint: str | None) -> hashlib.blake2b:
    """The digest state after the per-series part, copied for each bucket (saves re-hashing it)."""
    material = f"{account_key}\x1f{timegrain}\x1f{fingerprint or ''}\x1f"
    return hashlib.blake2b(
        material.encode("utf-8", "surrogatepass"), digest_size=18, person=b"metrics-poller-1"
    )


def _finish_id(prefix: hashlib.blake2b, epoch_ms: int) -> str:
    digest = prefix.copy()
    digest.update(b"%d" % epoch_ms)
    # 18 bytes encode to exactly 24 characters, so there is never padding to strip.
    return base64.urlsafe_b64encode(digest.digest()).decode("ascii")


def _epoch_ms(timestamp: datetime) -> int:
    if timestamp.tzinfo is None:
        raise ValueError(f"timestamp {timestamp.isoformat()} has no time zone; expected UTC")
    return (timestamp - _EPOCH) // _MILLISECOND


def _iso_millis(timestamp: datetime) -> str:
    """`2024-04-11T01:46:00.000Z`: the form of the sample event's `@timestamp`."""
    t = timestamp.astimezone(UTC)
    return (
        f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
        f".{t.microsecond // 1000:03d}Z"
    )


# ---------------------------------------------------------------------------------------------------
# Shaping


@dataclass(frozen=True, kw_only=True)
class DocumentContext:
    """Per-cycle values every document carries."""

    namespace: str = "default"  # data stream namespace
    period_ms: int  # metricset.period
    agent: Mapping[str, str] = field(default_factory=dict)  # the poller's identity; empty → no `agent`
    event_duration_ns: int | None = None
    ecs_version: str = "8.11.0"


@dataclass(slots=True)
class _Static:
    """What every document of one (account, time grain, dimension map) shares."""

    account_key: str
    timegrain: str
    dimensions: dict[str, str] | None  # sorted, fingerprint included
    account: _AccountBlocks
    id_prefix: hashlib.blake2b


@dataclass(slots=True)
class _AccountBlocks:
    subscription_id: str
    resource: dict[str, object]
    cloud: dict[str, str]


@dataclass(slots=True)
class _Pending:
    """A document being merged: its static part, bucket time and the aggregates gathered so far."""

    static: _Static
    timestamp: datetime
    values: dict[tuple[str, str], int | float]  # (field stem, suffix) → value
    groups: frozenset[str]  # replaced (never mutated): usually the shared one-group set


# Response key of an aggregate (`total`) → document suffix (`total`).
_SUFFIX_BY_KEY = {AGGREGATION_KEY[name]: suffix for name, suffix in AGGREGATION_SUFFIX.items()}


@cache
def _columns(metric: str) -> dict[str, tuple[str, str]]:
    """Response key → (field stem, suffix) for one metric; unknown metrics use Metricbeat's rule."""
    spec = METRICS_BY_NAME.get(metric) or METRICS_BY_LOWER_NAME.get(metric.lower())
    stem = spec.field if spec else manage_property_name(metric)
    return {key: (stem, suffix) for key, suffix in _SUFFIX_BY_KEY.items()}


def json_number(value: object) -> int | float | None:
    """A metric value as written: integral → `int`, other finite floats unchanged, anything else → None."""
    if type(value) is float:
        if not math.isfinite(value):
            return None
        return int(value) if value.is_integer() else value
    if type(value) is int:
        return value
    return None


def shape(series: Iterable[Series], context: DocumentContext) -> list[Document]:
    """Merge series into documents: one per (bucket, account, dimension map, time grain).

    Documents come out in order of first appearance. A document gets only finite values; one left
    without any is not emitted. If two series give the same aggregate different values, the larger
    wins, so the result never depends on series order. `Document.groups` names the request groups
    that contributed at least one value.
    """
    accounts: dict[str, _AccountBlocks] = {}
    statics: dict[tuple[str, str, tuple[tuple[str, str], ...]], _Static] = {}
    # The same key as `statics` but with the dimensions in the order the series lists them: most
    # series of a call repeat an order already seen, and this skips renaming and sorting them.
    seen: dict[tuple[str, str, tuple[tuple[str, str], ...]], _Static] = {}
    pending: dict[tuple[int, datetime], _Pending] = {}
    with collector_paused():
        for one in series:
            account_key = one.account.key
            fast_key = (account_key, one.timegrain, tuple(one.dimensions.items()))
            static = seen.get(fast_key)
            if static is None:
                static = seen[fast_key] = _static_for(one, account_key, statics, accounts)
            _gather(one, static, pending)
        return _finish(pending.values(), context)


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for one synchronous burst of allocations.

    Decoding, parsing and shaping allocate hundreds of thousands of small, acyclic containers, and
    each allocation burst makes the collector rescan the growing heap: about half the run time. Nothing
    there creates cycles and reference counting still frees everything, so pausing is safe; the
    previous state is restored. Never hold it across an `await`: other tasks would run paused too.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _gather(one: Series, static: _Static, pending: dict[tuple[int, datetime], _Pending]) -> None:
    """Add one series' values to the pending documents (the hot loop: kept flat on purpose)."""
    columns = _columns(one.metric)
    group = one.group
    only_group = _group_set(group)
    static_id = id(static)
    for point in one.points:
        slot = None
        for key, raw in point.values.items():
            column = columns.get(key)
            if column is None:
                continue
            # json_number, inlined: this runs once per Azure value.
            kind = type(raw)
            if kind is float:
                if raw - raw != 0.0:  # NaN or ±Inf
                    continue
                value = int(raw) if raw.is_integer() else raw
            elif kind is int:
                value = raw
            else:
                continue
            if slot is None:
                slot_key = (static_id, point.timestamp)
                slot = pending.get(slot_key)
                if slot is None:
                    slot = pending[slot_key] = _Pending(static, point.timestamp, {}, only_group)
                elif group not in slot.groups:
                    slot.groups = slot.groups | only_group
            current = slot.values.get(column)
            if current is None or value > current:
                slot.values[column] = value


@cache
def _group_set(group: str) -> frozenset[str]:
    """One shared `frozenset({group})` per group name: most documents come from a single group."""
    return frozenset((group,))


def _static_for(
    one: Series,
    account_key: str,
    statics: dict[tuple[str, str, tuple[tuple[str, str], ...]], _Static],
    accounts: dict[str, _AccountBlocks],
) -> _Static:
    dims = tuple(sorted((dimension_key(name), value) for name, value in one.dimensions.items()))
    key = (account_key, one.timegrain, dims)
    static = statics.get(key)
    if static is None:
        blocks = accounts.get(account_key)
        if blocks is None:
            blocks = accounts[account_key] = _account_blocks(one.account)
        static = statics[key] = _new_static(account_key, one.timegrain, dims, blocks)
    return static


def _new_static(
    account_key: str, timegrain: str, dims: tuple[tuple[str, str], ...], blocks: _AccountBlocks
) -> _Static:
    if not dims:
        return _Static(account_key, timegrain, None, blocks, _id_prefix(account_key, timegrain, None))
    dimensions, fp = _dimension_block(dims)
    return _Static(account_key, timegrain, dimensions, blocks, _id_prefix(account_key, timegrain, fp))


@lru_cache(maxsize=8192)
def _dimension_block(dims: tuple[tuple[str, str], ...]) -> tuple[dict[str, str], str]:
    """`azure.dimensions` (sorted, fingerprint included) and the fingerprint of sorted `dims`.

    Cached across calls: the same dimension maps recur in every window and across accounts (the same
    deployments, status codes, regions), and the SHA-1 and the dict are then made once. The dict is
    shared by every document that carries it, like the other static blocks (read-only).
    """
    plain = dict(dims)
    fp = fingerprint(plain)
    return _sorted_dict({**plain, "fingerprint": fp}), fp


def _account_blocks(account: Account) -> _AccountBlocks:
    resource: dict[str, object] = {
        "group": account.resource_group,
        "id": account.id,
        "name": account.name,
    }
    if account.tags:
        resource["tags"] = _sorted_dict(account.tags)
    resource["type"] = account.type
    cloud = {"provider": "azure", "region": account.location}
    return _AccountBlocks(account.subscription_id, resource, cloud)


def _sorted_dict(mapping: Mapping[str, str]) -> dict[str, str]:
    return {key: mapping[key] for key in sorted(mapping)}


# How to nest one set of (stem, suffix) columns, sorted: ((stem, ((suffix, column), ...)), ...).
_Layout = tuple[tuple[str, tuple[tuple[str, tuple[str, str]], ...]], ...]


def _finish(pending: Collection[_Pending], context: DocumentContext) -> list[Document]:
    constant = _constant_blocks(context)
    stamps: dict[datetime, tuple[str, bytes]] = {}
    # Documents from the same series combination have the same columns in the same order, so the
    # sorted nesting is worked out once per combination instead of once per document.
    layouts: dict[tuple[tuple[str, str], ...], _Layout] = {}
    documents: list[Document] = []
    append = documents.append
    for slot in pending:
        stamp = stamps.get(slot.timestamp)
        if stamp is None:
            stamp = stamps[slot.timestamp] = (_iso_millis(slot.timestamp), b"%d" % _epoch_ms(slot.timestamp))
        values = slot.values
        columns = tuple(values)
        layout = layouts.get(columns)
        if layout is None:
            layout = layouts[columns] = _layout(columns)
        open_ai = {stem: {suffix: values[column] for suffix, column in cells} for stem, cells in layout}
        static = slot.static
        digest = static.id_prefix.copy()
        digest.update(stamp[1])
        append(
            _document(
                # _finish_id, inlined: 18 bytes encode to exactly 24 characters, never padded.
                b2a_base64(digest.digest(), newline=False).translate(_URLSAFE).decode("ascii"),
                _source(static, stamp[0], open_ai, constant),
                static.account_key,
                slot.groups,
            )
        )
    return documents


_URLSAFE = bytes.maketrans(b"+/", b"-_")
# `Document` is a frozen dataclass, whose generated __init__ sets each field through
# `object.__setattr__`; writing the slots directly builds the same object in about half the time.
_DOCUMENT_SLOTS = tuple(Document.__dict__[name].__set__ for name in ("id", "source", "account_key", "groups"))
if tuple(f.name for f in fields(Document)) != ("id", "source", "account_key", "groups"):
    raise RuntimeError("model.Document changed its fields: update shaping._document")


def _document(id: str, source: dict[str, object], account_key: str, groups: frozenset[str]) -> Document:
    """`Document(id, source, account_key, groups)`, built without the frozen-dataclass __init__."""
    document = object.__new__(Document)
    set_id, set_source, set_account_key, set_groups = _DOCUMENT_SLOTS
    set_id(document, id)
    set_source(document, source)
    set_account_key(document, account_key)
    set_groups(document, groups)
    return document


def _layout(columns: tuple[tuple[str, str], ...]) -> _Layout:
    stems: dict[str, list[tuple[str, tuple[str, str]]]] = {}
    for column in sorted(columns):
        stems.setdefault(column[0], []).append((column[1], column))
    return tuple((stem, tuple(cells)) for stem, cells in stems.items())


@dataclass(frozen=True, slots=True)
class _Constant:
    agent: dict[str, str] | None
    data_stream: dict[str, str]
    ecs: dict[str, str]
    event: dict[str, object]
    metricset: dict[str, object]
    service: dict[str, str]


def _constant_blocks(context: DocumentContext) -> _Constant:
    event: dict[str, object] = {"dataset": DATASET}
    if context.event_duration_ns is not None:
        event["duration"] = context.event_duration_ns
    event["module"] = "azure"
    return _Constant(
        agent=_sorted_dict(context.agent) if context.agent else None,
        data_stream={"dataset": DATASET, "namespace": context.namespace, "type": "metrics"},
        ecs={"version": context.ecs_version},
        event=event,
        metricset={"name": "monitor", "period": context.period_ms},
        service={"type": "azure"},
    )


def _source(static: _Static, timestamp: str, open_ai: object, constant: _Constant) -> dict[str, object]:
    azure: dict[str, object] = {}
    if static.dimensions is not None:
        azure["dimensions"] = static.dimensions
    azure["namespace"] = NAMESPACE
    azure["open_ai"] = open_ai
    azure["resource"] = static.account.resource
    azure["subscription_id"] = static.account.subscription_id
    azure["timegrain"] = static.timegrain
    source: dict[str, object] = {"@timestamp": timestamp}
    if constant.agent is not None:
        source["agent"] = constant.agent
    source["azure"] = azure
    source["cloud"] = static.account.cloud
    source["data_stream"] = constant.data_stream
    source["ecs"] = constant.ecs
    source["event"] = constant.event
    source["metricset"] = constant.metricset
    source["service"] = constant.service
    return source


# ---------------------------------------------------------------------------------------------------
# Serialisation


def encode(source: Mapping[str, object]) -> bytes:
    """One document as compact JSON, keys in insertion order; ints stay ints at any magnitude."""
    try:
        return orjson.dumps(source)
    except orjson.JSONEncodeError:
        # orjson writes integers only within 64 bits and only plain dicts; rare, so fix up and retry.
        return orjson.dumps(_plain(source))


def _plain(value: object) -> object:
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if type(value) is int and not _INT64_MIN <= value <= _UINT64_MAX:
        return orjson.Fragment(str(value).encode("ascii"))
    return value
