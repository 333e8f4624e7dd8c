"""Series → Elasticsearch documents: the only module that knows the document layout.

The layout is `shared/reference/elastic-compat.md` (and `foundry.md` for the Foundry datasets):
documents in the final form the dataset's Elastic integration stores, one per (bucket, account,
dimension map, time grain) holding every metric aggregate that shares that key (§6), with
`azure.dimensions.fingerprint` computed exactly as Elasticsearch's `fingerprint` ingest processor would
(§8) and integral values written as JSON integers (§9).

Documents are written straight to their final bytes (`Document.body`), every object's keys in ascending
order, so equal documents are equal bytes. What a document shares with others of the same account and
dimension map (resource, dimensions with fingerprint, constant blocks) is encoded once per call; per
document only `@timestamp`, the metric object (`azure.open_ai`, `azure.ai_foundry`, ...) and the `_id`
are made. Where the values sit, and how they are scaled, is the dataset's declaration.
"""

from __future__ import annotations

import base64
import gc
import hashlib
import struct
from binascii import b2a_base64
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import TypeVar

import orjson

from metrics_poller.catalog import AGGREGATION_KEY, AGGREGATION_SUFFIX, dimension_key, manage_property_name
from metrics_poller.datasets import OPEN_AI, Dataset
from metrics_poller.model import Document, Series

T = TypeVar("T")
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
    keys = sorted(dimensions)
    joined = "".join(keys)
    # Python orders code points, Java UTF-16 units: they differ only between an astral character and
    # one in U+E000–U+FFFF, so the (slower) Java order is needed only when such a key is present.
    if joined and max(joined) >= "\ue000":
        keys.sort(key=_java_order)
    text = "".join([f"\x00{key}\x00{dimensions[key]}" for key in keys])
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
    return b2a_base64(hashlib.sha1(data, usedforsecurity=False).digest(), newline=False).decode("ascii")


# ---------------------------------------------------------------------------------------------------
# Document id


def document_id(account_key: str, timegrain: str, timestamp: datetime, fingerprint: str | None) -> str:
    """Deterministic `_id`: 24 URL-safe characters, the base64url form of a 144-bit BLAKE2b digest.

    The digest covers `lower(account id) ␟ timegrain ␟ fingerprint ␟ epoch milliseconds` (␟ = U+001F;
    no fingerprint → empty). Only the first part is free text and the other three never contain U+001F,
    so different keys cannot run together into the same input. Re-shaping the same bucket always gives
    the same `_id`, which turns a repeated write into a harmless 409.
    """
    digest = _id_prefix(account_key.lower(), timegrain)
    digest.update(f"{fingerprint or ''}\x1f".encode("ascii"))
    return _finish_id(digest, _epoch_ms(timestamp))


def _id_prefix(account_key: str, timegrain: str) -> hashlib.blake2b:
    """The digest state after `account ␟ timegrain ␟`, copied for each series and bucket (saves
    re-hashing it); the fingerprint (ASCII base64) and `␟` come next."""
    material = f"{account_key}\x1f{timegrain}\x1f"
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
    """What every document of one (account, time grain, dimension map) shares: the document's bytes
    around `@timestamp` and the metric object, and the `_id` digest state of the per-series part."""

    account_key: str
    before_metrics: bytes  # from the end of `@timestamp`'s value up to the metric object's value
    after_metrics: bytes  # from the end of the metric object to the end of the document
    id_prefix: hashlib.blake2b


@dataclass(slots=True)
class _AccountParts:
    """Per (account, time grain): its `azure.*` members, what closes the document, the `_id` state."""

    entries: tuple[tuple[str, bytes], ...]  # `azure` members as (key, `"key":value` bytes)
    closing: bytes  # `},"cloud":{...},...}`: ends `azure` and the document
    id_prefix: hashlib.blake2b  # over `account ␟ timegrain ␟`


@dataclass(slots=True)
class _Stamp:
    epoch_ms: int
    iso: bytes  # `2024-04-11T01:46:00.000Z`
    id_part: bytes  # epoch milliseconds as ASCII digits


@dataclass(slots=True)
class _Pending:
    """A document being merged: its static part, bucket time and the aggregates gathered so far."""

    static: _Static
    stamp: _Stamp
    metrics: dict[str, dict[str, int | float]]  # field stem → suffix → value (unordered)
    groups: frozenset[str]  # replaced (never mutated): usually the shared one-group set


# Response key of an aggregate (`total`) → document suffix (`total`).
_SUFFIX_BY_KEY = {AGGREGATION_KEY[name]: suffix for name, suffix in AGGREGATION_SUFFIX.items()}


@cache
def _columns(dataset: Dataset, metric: str, keys: tuple[str, ...]) -> tuple[tuple[str, str, str, int], ...]:
    """(response key, field stem, suffix, divisor) for each key read; unknown metrics use Metricbeat's
    rule and are written as Azure sent them."""
    spec = dataset.by_lower_name.get(metric.lower())
    stem = spec.field if spec else manage_property_name(metric)
    divisor = dataset.divisor(spec) if spec else 1
    return tuple((key, stem, _SUFFIX_BY_KEY[key], divisor) for key in keys if key in _SUFFIX_BY_KEY)


def shape(series: Iterable[Series], context: DocumentContext, dataset: Dataset = OPEN_AI) -> list[Document]:
    """Merge series into documents: one per (bucket, account, dimension map, time grain).

    Documents come out in order of first appearance. A document gets only finite values; one left
    without any is not emitted. If two series give the same aggregate different values, the larger
    wins, so the result never depends on series order. `Document.groups` names the request groups
    that contributed at least one value.
    """
    with collector_paused():
        # The work is a separate call so that its temporaries (one `_Pending` and one dict per
        # document) are freed while the collector is still paused; otherwise the first collection
        # after the pause would scan them all once more, just before they die.
        return _shape(series, context, dataset)


def _shape(series: Iterable[Series], context: DocumentContext, dataset: Dataset) -> list[Document]:
    constant = _constant_parts(context, dataset)
    accounts: dict[tuple[str, str], _AccountParts] = {}
    statics: dict[tuple[str, str, tuple[tuple[str, str], ...]], _Static] = {}
    # Dimension maps recur across the accounts of a call (same deployments, status codes, region):
    # their fingerprint and encoding are made once per call. Not across calls: an estate has far more
    # maps than a cache should hold, and a long-lived cache would load the cyclic collector.
    blocks: dict[tuple[tuple[str, str], ...], tuple[bytes, str]] = {}
    # The same key as `statics` but with the dimensions in the order the series lists them: most
    # series of a call repeat an order already seen, and this skips renaming and sorting them.
    seen: dict[tuple[str, str, tuple[tuple[str, str], ...]], _Static] = {}
    stamps: dict[str, _Stamp] = {}
    pending: dict[tuple[int, int], _Pending] = {}
    for one in series:
        account_key = one.account.key
        items = tuple(one.dimensions.items())
        fast_key = (account_key, one.timegrain, items)
        static = seen.get(fast_key)
        if static is None:
            static = seen[fast_key] = _static_for(one, account_key, items, statics, accounts, blocks, constant)
        _gather(one, static, pending, stamps, dataset)
    return _finish(pending.values(), dataset.name)


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


def _gather(
    one: Series,
    static: _Static,
    pending: dict[tuple[int, int], _Pending],
    stamps: dict[str, _Stamp],
    dataset: Dataset,
) -> None:
    """Add one series' values to the pending documents (the hot loop: kept flat on purpose)."""
    columns = _columns(dataset, one.metric, one.aggregations)
    group = one.group
    only_group = _group_set(group)
    static_id = id(static)
    for point in one.points:
        metrics = None
        for key, stem, suffix, divisor in columns:
            raw = getattr(point, key)
            # Integral values are written as integers (§9). Runs once per Azure value: a float (`Point`).
            if raw is None or raw - raw:  # absent, or NaN/±Inf (whose difference is NaN, truthy)
                continue
            if divisor != 1:
                raw = raw / divisor  # as the integration's pipeline would (foundry.md §2.5)
            value = int(raw) if raw.is_integer() else raw
            if metrics is None:
                stamp = stamps.get(point.timestamp)
                if stamp is None:
                    stamp = stamps[point.timestamp] = _stamp(point.timestamp)
                slot_key = (static_id, stamp.epoch_ms)
                slot = pending.get(slot_key)
                if slot is None:
                    slot = pending[slot_key] = _Pending(static, stamp, {}, only_group)
                elif group not in slot.groups:
                    slot.groups = slot.groups | only_group
                metrics = slot.metrics
            aggregates = metrics.get(stem)
            if aggregates is None:
                metrics[stem] = {suffix: value}
            else:
                current = aggregates.get(suffix)
                if current is None or value > current:
                    aggregates[suffix] = value


def _stamp(text: str) -> _Stamp:
    timestamp = datetime.fromisoformat(text)  # checked by azure_json
    if timestamp.tzinfo is None:  # Azure's times are UTC even when it omits the zone
        timestamp = timestamp.replace(tzinfo=UTC)
    epoch_ms = _epoch_ms(timestamp)
    return _Stamp(epoch_ms, _iso_millis(timestamp).encode("ascii"), b"%d" % epoch_ms)


@cache
def _group_set(group: str) -> frozenset[str]:
    """One shared `frozenset({group})` per group name: most documents come from a single group."""
    return frozenset((group,))


def _static_for(
    one: Series,
    account_key: str,
    items: tuple[tuple[str, str], ...],
    statics: dict[tuple[str, str, tuple[tuple[str, str], ...]], _Static],
    accounts: dict[tuple[str, str], _AccountParts],
    blocks: dict[tuple[tuple[str, str], ...], tuple[bytes, str]],
    constant: _Constant,
) -> _Static:
    dims = tuple(sorted([(dimension_key(name), value) for name, value in items]))
    key = (account_key, one.timegrain, dims)
    static = statics.get(key)
    if static is None:
        parts = accounts.get(key[:2])  # type: ignore[call-overload]
        if parts is None:
            parts = accounts[(account_key, one.timegrain)] = _account_parts(one, account_key, constant)
        static = statics[key] = _new_static(account_key, dims, parts, blocks, constant)
    return static


def _new_static(
    account_key: str,
    dims: tuple[tuple[str, str], ...],
    parts: _AccountParts,
    blocks: dict[tuple[tuple[str, str], ...], tuple[bytes, str]],
    constant: _Constant,
) -> _Static:
    id_prefix = parts.id_prefix.copy()
    entries = [*constant.entries, *parts.entries]
    if dims:
        known = blocks.get(dims)
        if known is None:
            known = blocks[dims] = _dimension_block(dims)
        block, fp = known
        id_prefix.update(fp.encode("ascii"))
        entries.append(("dimensions", block))
    id_prefix.update(b"\x1f")
    # `azure`'s members in key order, the metric object among them where its key sorts.
    entries.sort()
    key = constant.metric_key
    before = b"".join(member + b"," for name, member in entries if name < key)
    after = b"".join(b"," + member for name, member in entries if name > key)
    return _Static(
        account_key,
        b"".join((b'",', constant.agent, b'"azure":{', before, constant.metric_open)),
        b"".join((constant.metric_close, after, parts.closing)),
        id_prefix,
    )


def _dimension_block(dims: tuple[tuple[str, str], ...]) -> tuple[bytes, str]:
    """`"dimensions":{...}` (sorted, fingerprint included) and the fingerprint of sorted `dims`."""
    block = dict(dims)
    fp = fingerprint(block)
    block["fingerprint"] = fp
    try:  # OPT_SORT_KEYS orders by code point, as `sorted` does
        encoded = orjson.dumps(block, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        encoded = encode(_sorted_dict(block))
    return b'"dimensions":' + encoded, fp


def _account_parts(one: Series, account_key: str, constant: _Constant) -> _AccountParts:
    account = one.account
    resource: dict[str, object] = {
        "group": account.resource_group,
        "id": account.id,
        "name": account.name,
    }
    if account.tags:
        resource["tags"] = _sorted_dict(account.tags)
    resource["type"] = account.type
    entries = (
        ("resource", b'"resource":' + encode(resource)),
        ("subscription_id", b'"subscription_id":' + encode(account.subscription_id)),  # type: ignore[arg-type]
        ("timegrain", b'"timegrain":' + encode(one.timegrain)),  # type: ignore[arg-type]
    )
    closing = b"".join((b'},"cloud":', encode({"provider": "azure", "region": account.location}), constant.tail))
    return _AccountParts(entries, closing, _id_prefix(account_key, one.timegrain))


def _sorted_dict(mapping: Mapping[str, T]) -> dict[str, T]:
    return {key: mapping[key] for key in sorted(mapping)}


_DOCUMENT_HEAD = b'{"@timestamp":"'


def _finish(pending: Collection[_Pending], dataset: str) -> list[Document]:
    documents: list[Document] = []
    append = documents.append
    join = b"".join
    dumps = orjson.dumps
    for slot in pending:
        try:  # OPT_SORT_KEYS sorts the nested objects too, by code point
            metrics_json = dumps(slot.metrics, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:  # an integral value beyond 64 bits
            metrics_json = encode({stem: _sorted_dict(slot.metrics[stem]) for stem in sorted(slot.metrics)})
        static = slot.static
        stamp = slot.stamp
        digest = static.id_prefix.copy()
        digest.update(stamp.id_part)
        append(
            Document(
                # _finish_id, inlined: 18 bytes encode to exactly 24 characters, never padded.
                b2a_base64(digest.digest(), newline=False).translate(_URLSAFE).decode("ascii"),
                join((_DOCUMENT_HEAD, stamp.iso, static.before_metrics, metrics_json, static.after_metrics)),
                static.account_key,
                slot.groups,
                dataset,
            )
        )
    return documents


_URLSAFE = bytes.maketrans(b"+/", b"-_")


@dataclass(frozen=True, slots=True)
class _Constant:
    """The encoded parts every document of a cycle and dataset shares."""

    agent: bytes  # `"agent":{...},` or empty
    tail: bytes  # `,"data_stream":{...},...,"service":{...}}`: closes the document
    entries: tuple[tuple[str, bytes], ...]  # constant `azure` members: the metric namespace
    metric_key: str  # the member of `azure` that holds the values, e.g. `open_ai`
    metric_open: bytes  # `"open_ai":`, or `"ai_foundry":{"agent":` for a nested object
    metric_close: bytes  # closes what `metric_open` opened beyond the value itself


def _constant_parts(context: DocumentContext, dataset: Dataset) -> _Constant:
    name = dataset.name
    event: dict[str, object] = {"dataset": name}
    if context.event_duration_ns is not None:
        event["duration"] = context.event_duration_ns
    event["module"] = "azure"
    tail = {
        "data_stream": {"dataset": name, "namespace": context.namespace, "type": "metrics"},
        "ecs": {"version": context.ecs_version},
        "event": event,
        "metricset": {"name": "monitor", "period": context.period_ms},
        "service": {"type": "azure"},
    }
    agent = b'"agent":' + encode(_sorted_dict(context.agent)) + b"," if context.agent else b""
    key, *inner = dataset.metric_object
    opening = b"".join(b"{" + orjson.dumps(part) + b":" for part in inner)
    return _Constant(
        agent,
        b"," + encode(tail)[1:],
        (("namespace", b'"namespace":' + orjson.dumps(dataset.namespace)),),
        key,
        orjson.dumps(key) + b":" + opening,
        b"}" * len(inner),
    )


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
