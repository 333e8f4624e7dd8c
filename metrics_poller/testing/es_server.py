"""A loopback imitation of Elasticsearch 8.19 for tests, demos and benchmarks.

It speaks enough of the REST API for the real `elasticsearch` client: templates (validated when they are
put), data streams created from matching index templates, `_bulk` with create semantics (409 on a
repeated `_id`), TSDS backing indices with fixed time bounds and `_id` derivation, mapping enforcement
from the template's mappings, ingest pipeline existence, the failure store, API keys with role
descriptors and per-request privilege checks, `filter_path`, size limits, a small `_search`, and
injectable faults. It sends `X-Elastic-Product: Elasticsearch` on every response because the 8.x
client refuses a product it cannot identify (elastic-compat.md §12). docs/elasticsearch-conformance.md
lists what is modelled, the source of each behaviour, and what is not modelled.

Run it on its own with `python -m metrics_poller.testing.es_server [--host H] [--port N]
[--api-key-out FILE]`: it prints its URL as the first line and serves until SIGTERM.

Usage::

    with ElasticsearchServer() as server:
        client = AsyncElasticsearch(server.url)
        ...
        server.documents("metrics-azure.open_ai-default")
"""

from __future__ import annotations

import argparse
import base64
import fnmatch
import gzip
import hashlib
import math
import os
import re
import signal
import socket
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import orjson

from metrics_poller.testing.es_security import (
    SUPERUSER,
    Denied,
    Principal,
    Realm,
    deny_cluster,
    deny_index,
)

VERSION = "8.19.0"
# `http.max_content_length` (HttpTransportSettings.SETTING_HTTP_MAX_CONTENT_LENGTH, default 100mb).
MAX_CONTENT_LENGTH = 100 * 1024 * 1024
# `index.mapping.total_fields.limit` (MapperService.INDEX_MAPPING_TOTAL_FIELDS_LIMIT_SETTING, default 1000).
DEFAULT_TOTAL_FIELDS_LIMIT = 1000
# `index.look_back_time` bounds (DataStreamsPlugin.LOOK_BACK_TIME: default 2h, min 1m, max 7d).
LOOK_BACK_MIN, LOOK_BACK_MAX = timedelta(minutes=1), timedelta(days=7)
JSON_TYPE = "application/vnd.elasticsearch+json;compatible-with=8"
DEFAULT_LOOK_BACK = "2h"
DEFAULT_LOOK_AHEAD = "30m"
NUMERIC_INTEGRAL = frozenset({"long", "integer", "short", "byte", "unsigned_long"})
NUMERIC_FRACTIONAL = frozenset({"float", "double", "half_float", "scaled_float"})
STRING_TYPES = frozenset({"keyword", "text", "wildcard", "match_only_text"})
REQUEST_FAULTS = ("timeout", "reset")
ITEM_FAULTS = ("item_429", "item_400", "item_403", "item_500")
ERROR_TYPES = {
    400: "document_parsing_exception",
    401: "security_exception",
    403: "security_exception",
    404: "index_not_found_exception",
    429: "es_rejected_execution_exception",
    500: "internal_server_error",
    503: "unavailable_shards_exception",
}

Json = dict[str, Any]


class EsError(Exception):
    """An error Elasticsearch would answer with: HTTP status, error type and reason."""

    def __init__(self, status: int, kind: str, reason: str, caused_by: EsError | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.kind = kind
        self.reason = reason
        self.caused_by = caused_by

    def cause(self) -> Json:
        """The error object of a bulk item or an `error` body."""
        out: Json = {"type": self.kind, "reason": self.reason}
        if self.caused_by is not None:
            out["caused_by"] = self.caused_by.cause()
        return out

    def body(self) -> Json:
        root = self
        while root.caused_by is not None:
            root = root.caused_by
        error = {"root_cause": [{"type": root.kind, "reason": root.reason}], **self.cause()}
        return {"error": error, "status": self.status}


# ------------------------------------------------------------------------------------ pure helpers


def parse_time_value(text: str) -> timedelta:
    """Elasticsearch time value (`90d`, `2h`, `30m`, `10s`, `500ms`) → `timedelta`."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    for suffix in ("ms", "s", "m", "h", "d"):
        if text.endswith(suffix) and text[: -len(suffix)].isdigit():
            return timedelta(seconds=int(text[: -len(suffix)]) * units[suffix])
    raise ValueError(f"failed to parse time value [{text}]")


# The default date format `strict_date_optional_time||epoch_millis` (DateFieldMapper.DEFAULT_DATE_TIME_FORMATTER;
# DateFormatters.STRICT_DATE_OPTIONAL_TIME): a date, optionally `T` and a time, optionally a zone. A space
# instead of `T` is refused. Epoch milliseconds may come as a number or as a numeric string.
_STRICT_DATE_OPTIONAL_TIME = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2})(?::(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?"
    r"(Z|[+-]\d{2}(?::?\d{2})?)?)?)?)?"
)
_EPOCH_MILLIS = re.compile(r"-?\d+(?:\.\d+)?")


def parse_date(value: Any) -> datetime | None:
    """A value of a `date` field with the default format → aware datetime; None if it does not parse."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(value / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str):
        return None
    match = _STRICT_DATE_OPTIONAL_TIME.fullmatch(value)
    if match is None:
        return parse_date(float(value)) if _EPOCH_MILLIS.fullmatch(value) else None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        moment = datetime(
            int(year),
            int(month or 1),
            int(day or 1),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((fraction or "0")[:6].ljust(6, "0")),
            tzinfo=UTC,
        )
    except ValueError:
        return None
    if zone and zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        moment -= sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))
    return moment


def format_instant(moment: datetime) -> str:
    """An instant as Elasticsearch prints it in messages: `2022-03-15T06:29:36.000Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def flatten_settings(settings: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"index": {"mode": "x"}}` and `{"index.mode": "x"}` both → `{"index.mode": "x"}`."""
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_settings(value, f"{path}."))
        else:
            flat[path] = value
    if not prefix:
        flat = {(k if k.startswith("index.") else f"index.{k}"): v for k, v in flat.items()}
    return flat


def lookup(source: Mapping[str, Any], path: str) -> Any:
    """Value at a dotted path (objects or dotted keys); None when absent."""
    if path in source:
        return source[path]
    head, _, rest = path.partition(".")
    while rest:
        if head in source and isinstance(source[head], Mapping):
            return lookup(source[head], rest)
        nxt, _, rest = rest.partition(".")
        head = f"{head}.{nxt}"
    return source.get(head)


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> Json:
    """Recursive merge where `override` wins (how templates compose)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "long"
    if isinstance(value, float):
        return "double"
    if isinstance(value, Mapping):
        return "object"
    return "string"


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        try:
            return math.isfinite(float(value))
        except ValueError:
            return False
    return False


# ---------------------------------------------------------------------------------------- mappings


class Node:
    """One mapped field: an object (`props` set) or a leaf with a type."""

    __slots__ = ("dimension", "fast", "fields", "origin", "props", "range", "type", "value")

    def __init__(
        self,
        type_: str | None,
        origin: str,
        *,
        dimension: bool = False,
        value: Any = None,
        fields: dict[str, Node] | None = None,
    ) -> None:
        self.type = type_
        self.props: dict[str, Node] | None = {} if type_ is None else None
        self.origin = origin  # "explicit", "dynamic_template" or "dynamic"
        self.dimension = dimension
        self.value = value
        self.fields = fields or {}  # multi-fields, e.g. the `.keyword` of a dynamic string
        # Python types a value may have to be accepted without a closer look.
        self.fast: frozenset[type] | None = _FAST_TYPES.get(type_ or "")
        self.range = _INTEGRAL_RANGES.get(type_ or "")  # integers must fit the type


_FAST_TYPES: dict[str, frozenset[type]] = {
    **dict.fromkeys(STRING_TYPES, frozenset({str, int, float, bool})),
    **dict.fromkeys(NUMERIC_INTEGRAL | NUMERIC_FRACTIONAL, frozenset({int, float})),
}


def compile_properties(properties: Mapping[str, Any], origin: str = "explicit") -> dict[str, Node]:
    """An Elasticsearch `properties` tree → `Node`s (dotted names are expanded)."""
    out: dict[str, Node] = {}
    for name, spec in properties.items():
        head, *rest = name.split(".")
        if rest:
            spec = {"properties": {".".join(rest): spec}}
        if "properties" in spec or spec.get("type") in (None, "object"):
            node = out.get(head) or Node(None, origin)
            assert node.props is not None
            node.props.update(compile_properties(spec.get("properties", {}), origin))
        else:
            node = Node(
                spec["type"],
                origin,
                dimension=bool(spec.get("time_series_dimension")),
                value=spec.get("value"),
                fields={name: Node(sub.get("type"), origin) for name, sub in spec.get("fields", {}).items()},
            )
        out[head] = node
    return out


def count_fields(props: Mapping[str, Node]) -> int:
    """Mapped fields as `index.mapping.total_fields.limit` counts them: objects, leaves and multi-fields
    (MappingLookup.checkFieldLimit: field mappers + object mappers, metadata fields excluded)."""
    total = 0
    for node in props.values():
        total += 1 + len(node.fields)
        if node.props is not None:
            total += count_fields(node.props)
    return total


@dataclass
class LiveMapping:
    """The live mapping of one index: explicit fields, dynamic templates and fields learnt on the way."""

    root: dict[str, Node]
    dynamic_templates: list[tuple[str, Json]]
    date_detection: bool = True
    dynamic: Any = True
    field_limit: int = DEFAULT_TOTAL_FIELDS_LIMIT
    # `index.mapping.total_fields.ignore_dynamic_beyond_limit`: new dynamic fields past the limit are
    # left unmapped (kept in `_source`, listed in `_ignored`) instead of failing the document.
    ignore_beyond_limit: bool = False
    field_count: int = 0
    # id(properties dict) → shapes (keys, value types) of objects accepted on the fast path.
    _accepted_shapes: dict[int, set[tuple[Any, ...]]] = field(default_factory=dict)
    _careful: bool = False

    @classmethod
    def from_body(cls, mappings: Mapping[str, Any], settings: Mapping[str, Any] | None = None) -> LiveMapping:
        templates = [next(iter(t.items())) for t in mappings.get("dynamic_templates", [])]
        settings = settings or {}
        root = compile_properties(mappings.get("properties", {}))
        return cls(
            root,
            [(name, dict(spec)) for name, spec in templates],
            bool(mappings.get("date_detection", True)),
            mappings.get("dynamic", True),
            int(settings.get("index.mapping.total_fields.limit", DEFAULT_TOTAL_FIELDS_LIMIT)),
            str(settings.get("index.mapping.total_fields.ignore_dynamic_beyond_limit", "false")).lower() == "true",
            count_fields(root),
        )

    def check(self, source: Mapping[str, Any], *, careful: bool = False) -> EsError | None:
        """Validate a document against the mapping, learning new fields as Elasticsearch does.
        `careful` skips the accepted-shape shortcut (a value may be out of range for its type)."""
        self._careful = careful
        try:
            self._walk(source, self.root, "")
        except EsError as exc:
            return exc
        return None

    def _walk(self, source: Mapping[str, Any], props: dict[str, Node], prefix: str) -> None:
        # The hot loop of every bulk. Plain type() checks cover the common cases (a string into a
        # string field, a number into a numeric one), and an object whose keys and value types were
        # already accepted that way is accepted again without a loop.
        shape = (*source, *map(type, source.values()))
        accepted = self._accepted_shapes.get(id(props))
        if accepted is None:
            accepted = self._accepted_shapes[id(props)] = set()
        elif shape in accepted and not self._careful:
            return
        simple = True
        for key, value in source.items():
            node = props.get(key)
            if node is None or "." in key:
                self._walk_slow(key, value, props, prefix)
                simple = False
                continue
            fast = node.fast
            if fast is not None:
                kind = type(value)
                if kind in fast and (kind is not int or node.range is None or node.range[0] <= value <= node.range[1]):
                    continue
            elif node.props is not None:
                if type(value) is dict:
                    self._walk(value, node.props, f"{prefix}{key}.")
                    simple = False
                    continue
                raise EsError(
                    400,
                    "document_parsing_exception",
                    f"object mapping for [{prefix}{key}] tried to parse field [{key}] as object, "
                    "but found a concrete value",
                )
            simple = False
            for item in value if type(value) is list else (value,):
                _check_leaf(node, f"{prefix}{key}", item)
        if simple and len(accepted) < 10_000:
            accepted.add(shape)

    def _walk_slow(self, key: str, value: Any, props: dict[str, Node], prefix: str) -> None:
        """Dotted keys and fields seen for the first time."""
        if "." in key:
            head, rest = key.split(".", 1)
            self._walk({head: {rest: value}}, props, prefix)
            return
        if value is None:
            return
        node = self._learn(f"{prefix}{key}", key, value)
        added = 1 + len(node.fields)
        # DocumentParserContext.addDynamicMapper: the limit is checked before a dynamic field is added.
        if self.field_count + added > self.field_limit:
            if self.ignore_beyond_limit:
                return
            raise EsError(
                400,
                "document_parsing_exception",
                f"[1:1] failed to parse: Limit of total fields [{self.field_limit}] has been exceeded "
                f"while adding new fields [{added}]",
            )
        self.field_count += added
        props[key] = node
        self._walk({key: value}, props, prefix)

    def _learn(self, path: str, name: str, value: Any) -> Node:
        if self.dynamic == "strict":
            raise EsError(
                400,
                "strict_dynamic_mapping_exception",
                f"[1:1] mapping set to strict, dynamic introduction of [{name}] within [_doc] is not allowed",
            )
        sample = value[0] if isinstance(value, list) and value else value
        kind = _json_kind(sample)
        if kind == "object":
            return Node(None, "dynamic")
        for _, spec in self.dynamic_templates:
            if _template_matches(spec, path, name, kind):
                mapping = spec.get("mapping", {})
                type_ = mapping.get("type") or {"string": "keyword", "double": "float"}.get(kind, kind)
                return Node(type_, "dynamic_template", dimension=bool(mapping.get("time_series_dimension")))
        if kind == "string":
            detected = self.date_detection and _STRICT_DATE_OPTIONAL_TIME.fullmatch(sample) is not None
            if detected:
                return Node("date", "dynamic")
            # A new string with no template: `text` with a `keyword` multi-field (ignore_above 256), as
            # in the docs' "Dynamic field mapping" table.
            return Node("text", "dynamic", fields={"keyword": Node("keyword", "dynamic")})
        return Node({"double": "float"}.get(kind, kind), "dynamic")

    def leaves(self) -> Iterator[tuple[str, Node]]:
        """Every leaf field with its full path."""
        stack: list[tuple[str, dict[str, Node]]] = [("", self.root)]
        while stack:
            prefix, props = stack.pop()
            for name, node in props.items():
                if node.props is not None:
                    stack.append((f"{prefix}{name}.", node.props))
                else:
                    yield f"{prefix}{name}", node
                    for sub, child in node.fields.items():
                        yield f"{prefix}{name}.{sub}", child

    def to_body(self) -> Json:
        """The mapping as `GET <index>/_mapping` shows it."""
        body: Json = {"properties": _render(self.root)}
        if self.dynamic_templates:
            body["dynamic_templates"] = [{name: spec} for name, spec in self.dynamic_templates]
        return body


def _render(props: Mapping[str, Node]) -> Json:
    out: Json = {}
    for name, node in sorted(props.items()):
        if node.props is not None:
            out[name] = {"properties": _render(node.props)}
            continue
        spec: Json = {"type": node.type}
        if node.dimension:
            spec["time_series_dimension"] = True
        if node.value is not None:
            spec["value"] = node.value
        if node.fields:
            spec["fields"] = {
                sub: {"type": child.type, **({"ignore_above": 256} if child.type == "keyword" else {})}
                for sub, child in node.fields.items()
            }
        out[name] = spec
    return out


def _template_matches(spec: Mapping[str, Any], path: str, name: str, kind: str) -> bool:
    def any_match(patterns: Any, text: str) -> bool:
        items = patterns if isinstance(patterns, list) else [patterns]
        return any(fnmatch.fnmatchcase(text, p) for p in items)

    # DynamicTemplate.XContentFieldType: a JSON integer is `long`, a JSON fraction `double`, so
    # `match_mapping_type: double` matches only floating-point values (DynamicTemplatesTests).
    wanted = spec.get("match_mapping_type", "*")
    if wanted not in ("*", kind) and not (isinstance(wanted, list) and kind in wanted):
        return False
    if "path_match" in spec and not any_match(spec["path_match"], path):
        return False
    if "match" in spec and not any_match(spec["match"], name):
        return False
    if "path_unmatch" in spec and any_match(spec["path_unmatch"], path):
        return False
    return not ("unmatch" in spec and any_match(spec["unmatch"], name))


def _check_leaf(node: Node, path: str, value: Any) -> None:
    if value is None:
        return
    type_ = node.type or ""
    if isinstance(value, Mapping):
        raise EsError(
            400,
            "document_parsing_exception",
            f"failed to parse field [{path}] of type [{type_}]: tried to index an object into a leaf field",
        )
    if type_ in NUMERIC_INTEGRAL or type_ in NUMERIC_FRACTIONAL:
        if not _is_number(value):
            raise EsError(
                400,
                "document_parsing_exception",
                f"failed to parse field [{path}] of type [{type_}] in document. Preview of field's value: '{value}'",
            )
        bounds = _INTEGRAL_RANGES.get(type_)
        if bounds is not None and not bounds[0] <= _exact(value) <= bounds[1]:
            # NumberFieldMapper.NumberType: "Value [x] is out of range for a long".
            raise EsError(
                400,
                "document_parsing_exception",
                f"[1:1] failed to parse field [{path}] of type [{type_}] in document. Preview of field's "
                f"value: '{value}'",
                EsError(400, "illegal_argument_exception", f"Value [{value}] is out of range for a {type_}"),
            )
    elif type_ == "constant_keyword":
        text = str(value)
        if node.value is None:
            node.value = text  # the first document fixes the value, as in Elasticsearch
        elif node.value != text:
            raise EsError(
                400,
                "document_parsing_exception",
                f"[constant_keyword] field [{path}] only accepts values that are equal to the value defined "
                f"in the mappings [{node.value}], but got [{text}]",
            )
    elif type_ == "date" and parse_date(value) is None:
        raise EsError(
            400,
            "document_parsing_exception",
            f"[1:1] failed to parse field [{path}] of type [date] in document. Preview of field's value: '{value}'",
            EsError(
                400,
                "illegal_argument_exception",
                f"failed to parse date field [{value}] with format [strict_date_optional_time||epoch_millis]",
            ),
        )
    elif type_ == "boolean" and value not in (True, False, "true", "false"):
        raise EsError(400, "document_parsing_exception", f"failed to parse field [{path}] of type [boolean]")


_INTEGRAL_RANGES: dict[str, tuple[int, int]] = {
    "long": (-(2**63), 2**63 - 1),
    "integer": (-(2**31), 2**31 - 1),
    "short": (-(2**15), 2**15 - 1),
    "byte": (-128, 127),
    "unsigned_long": (0, 2**64 - 1),
}


_LONG_DIGITS = re.compile(rb"\d{19}")


def _exact(value: Any) -> int | float:
    """A number without float rounding when it is integral (2**63 must not round down to fit a long)."""
    if isinstance(value, int):
        return value
    text = str(value)
    return int(text) if re.fullmatch(r"-?\d+", text) else float(text)


# ----------------------------------------------------------------------------------- search queries


def matches(source: Mapping[str, Any], doc_id: str, query: Mapping[str, Any]) -> bool:
    """The subset of the query DSL tests need: match_all, term(s), ids, exists, range, bool."""
    if not query:
        return True
    kind, spec = next(iter(query.items()))
    if kind == "match_all":
        return True
    if kind == "ids":
        return doc_id in spec.get("values", [])
    if kind in ("term", "terms"):
        path, wanted = next(iter(spec.items()))
        actual = doc_id if path == "_id" else lookup(source, path)
        if kind == "term":
            wanted = [wanted.get("value") if isinstance(wanted, Mapping) else wanted]
        return any(_equal(actual, w) for w in wanted)
    if kind == "exists":
        return lookup(source, spec["field"]) is not None
    if kind == "range":
        path, bounds = next(iter(spec.items()))
        return _in_range(lookup(source, path), bounds)
    if kind == "bool":
        return _bool(source, doc_id, spec)
    raise EsError(400, "parsing_exception", f"unknown query [{kind}] (not supported by the test server)")


def _listify(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _bool(source: Mapping[str, Any], doc_id: str, spec: Mapping[str, Any]) -> bool:
    required = _listify(spec.get("must")) + _listify(spec.get("filter"))
    if not all(matches(source, doc_id, q) for q in required):
        return False
    if any(matches(source, doc_id, q) for q in _listify(spec.get("must_not"))):
        return False
    should = _listify(spec.get("should"))
    minimum = int(spec.get("minimum_should_match", 0 if required else 1))
    return not should or sum(matches(source, doc_id, q) for q in should) >= min(minimum, len(should))


def _equal(actual: Any, wanted: Any) -> bool:
    if isinstance(actual, list):
        return any(_equal(a, wanted) for a in actual)
    if _is_number(actual) and _is_number(wanted) and not isinstance(actual, str):
        return float(actual) == float(wanted)
    return actual is not None and str(actual) == str(wanted)


def _comparable(value: Any) -> Any:
    if _is_number(value) and not isinstance(value, str):
        return float(value)
    moment = parse_date(value)
    return moment.timestamp() if moment is not None else value


def _in_range(value: Any, bounds: Mapping[str, Any]) -> bool:
    if value is None:
        return False
    actual = _comparable(value)
    try:
        for op, bound in bounds.items():
            limit = _comparable(bound)
            if (
                (op == "gte" and not actual >= limit)
                or (op == "gt" and not actual > limit)
                or (op == "lte" and not actual <= limit)
                or (op == "lt" and not actual < limit)
            ):
                return False
    except TypeError:
        return False
    return True


def _sort_keys(sort: Any) -> list[tuple[str, bool]]:
    """`["a", {"b": "desc"}, {"c": {"order": "asc"}}]` → `[("a", False), ("b", True), ("c", False)]`."""
    out: list[tuple[str, bool]] = []
    for item in _listify(sort):
        if isinstance(item, str):
            out.append((item, False))
            continue
        name, order = next(iter(item.items()))
        order = order.get("order", "asc") if isinstance(order, Mapping) else order
        out.append((name, order == "desc"))
    return out


# ------------------------------------------------------------------------------------ state objects


@dataclass
class Index:
    """One concrete index (a data stream's backing index or a plain index)."""

    name: str
    mapping: LiveMapping
    settings: dict[str, Any]
    data_stream: str | None = None
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    # Raw bytes, parsed on read: millions of live dicts would make every GC pass crawl.
    docs: dict[str, bytes] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)

    def sources(self) -> Iterator[tuple[str, Json]]:
        for doc_id, raw in self.docs.items():
            yield doc_id, orjson.loads(raw)

    # `index.time_series.start_time` / `end_time` of a TSDS backing index: `[start, end)`.
    start: datetime | None = None
    end: datetime | None = None

    @property
    def time_series(self) -> bool:
        return self.settings.get("index.mode") == "time_series"

    @property
    def look_back(self) -> timedelta:
        return parse_time_value(str(self.settings.get("index.look_back_time", DEFAULT_LOOK_BACK)))

    @property
    def look_ahead(self) -> timedelta:
        return parse_time_value(str(self.settings.get("index.look_ahead_time", DEFAULT_LOOK_AHEAD)))


@dataclass
class DataStream:
    name: str
    template: str
    indices: list[Index]
    lifecycle: Json | None = None
    failure_store: bool = False
    failure_indices: list[Index] = field(default_factory=list)

    @property
    def write_index(self) -> Index:
        return self.indices[-1]


@dataclass(frozen=True)
class BulkOptions:
    pipeline: str | None
    require_data_stream: bool
    principal: Principal | None  # None: security off


@dataclass
class Fault:
    kind: str
    remaining: int
    match: str | None
    delay: float


@dataclass(frozen=True, slots=True)
class RequestRecord:
    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]  # names lower-cased


def _ds_backing_name(stream: str, generation: int) -> str:
    return f".ds-{stream}-{datetime.now(UTC):%Y.%m.%d}-{generation:06d}"


def _generated_id() -> str:
    return base64.urlsafe_b64encode(os.urandom(15)).decode()


def _tsdb_id(index: Index, source: Mapping[str, Any]) -> str | EsError:
    """The `_id` Elasticsearch derives in a time-series index: from dimensions and `@timestamp`."""
    dims = sorted(
        (path, str(value))
        for path, node in index.mapping.leaves()
        if node.dimension and (value := lookup(source, path)) is not None
    )
    if not dims:
        return EsError(
            400,
            "illegal_argument_exception",
            "Error extracting routing: source didn't contain any routing fields",
        )
    moment = parse_date(lookup(source, "@timestamp"))
    if moment is None:
        return EsError(400, "illegal_argument_exception", "data stream timestamp field [@timestamp] is missing")
    digest = hashlib.sha256(orjson.dumps(dims) + str(int(moment.timestamp() * 1000)).encode()).digest()
    return base64.urlsafe_b64encode(digest[:15]).decode()


# ------------------------------------------------------------------------------------ PUT validation

# Body fields the parsers accept; anything else is `x_content_parse_exception` "[l:c] [name] unknown
# field [x]" (ComposableIndexTemplate.PARSER, ComponentTemplate.PARSER, Template.PARSER).
INDEX_TEMPLATE_FIELDS = frozenset(
    {
        "index_patterns",
        "template",
        "composed_of",
        "priority",
        "version",
        "_meta",
        "data_stream",
        "allow_auto_create",
        "ignore_missing_component_templates",
        "deprecated",
    }
)
COMPONENT_TEMPLATE_FIELDS = frozenset({"template", "version", "_meta", "deprecated"})
TEMPLATE_FIELDS = frozenset({"settings", "mappings", "aliases", "lifecycle", "data_stream_options"})
# Index settings the server knows (IndexScopedSettings.BUILT_IN_INDEX_SETTINGS plus the data-streams and
# mapper settings a metrics template uses). Anything else is "unknown setting [x] …" (AbstractScopedSettings).
KNOWN_SETTINGS = frozenset(
    {
        "index.number_of_shards",
        "index.number_of_replicas",
        "index.auto_expand_replicas",
        "index.codec",
        "index.mode",
        "index.routing_path",
        "index.look_back_time",
        "index.look_ahead_time",
        "index.refresh_interval",
        "index.hidden",
        "index.default_pipeline",
        "index.final_pipeline",
        "index.mapping.total_fields.limit",
        "index.mapping.total_fields.ignore_dynamic_beyond_limit",
        "index.mapping.depth.limit",
        "index.mapping.nested_fields.limit",
        "index.mapping.ignore_malformed",
        "index.mapping.dimension_fields.limit",
        "index.mapping.source.mode",
        "index.max_result_window",
        "index.priority",
        "index.time_series.start_time",
        "index.time_series.end_time",
    }
)
KNOWN_SETTING_PREFIXES = (
    "index.sort.",
    "index.lifecycle.",
    "index.routing.allocation.",
    "index.analysis.",
    "index.blocks.",
    "index.merge.",
    "index.translog.",
    "index.query.",
    "index.search.slowlog.",
    "index.indexing.slowlog.",
)
FIELD_TYPES = frozenset(
    {
        "keyword",
        "constant_keyword",
        "wildcard",
        "text",
        "match_only_text",
        "long",
        "integer",
        "short",
        "byte",
        "double",
        "float",
        "half_float",
        "scaled_float",
        "unsigned_long",
        "date",
        "date_nanos",
        "boolean",
        "object",
        "nested",
        "flattened",
        "ip",
        "geo_point",
        "alias",
        "histogram",
        "aggregate_metric_double",
        "version",
        "binary",
    }
)
ROUTING_PATH_RULE = (
    "All fields that match routing_path must be configured with [time_series_dimension: true] or flattened "
    "fields with a list of dimensions in [time_series_dimensions] and without the [script] parameter."
)


def check_body_fields(body: Mapping[str, Any], allowed: frozenset[str], parser: str, raw: bytes) -> None:
    """Unknown top-level fields of a request body fail as the real parser fails."""
    for key in body:
        if key not in allowed:
            column = raw.find(orjson.dumps(key)) + 1
            raise EsError(400, "x_content_parse_exception", f"[1:{max(column, 1)}] [{parser}] unknown field [{key}]")


def validate_settings(flat: Mapping[str, Any]) -> None:
    """Unknown index settings and out-of-range values (IndexScopedSettings.validate)."""
    for key in flat:
        if key not in KNOWN_SETTINGS and not key.startswith(KNOWN_SETTING_PREFIXES):
            raise EsError(
                400,
                "illegal_argument_exception",
                f"unknown setting [{key}] please check that any required plugins are installed, or check the "
                "breaking changes documentation for removed settings",
            )
    if "index.look_back_time" in flat:
        text = str(flat["index.look_back_time"])
        try:
            look_back = parse_time_value(text)
        except ValueError:
            raise EsError(
                400, "illegal_argument_exception", f"failed to parse setting [index.look_back_time] with value [{text}]"
            ) from None
        # DataStreamsPlugin.LOOK_BACK_TIME, tested by TSDBIndexingIT/LookBackTimeTests: 1m ≤ value ≤ 7d.
        for op, shown, wrong in ((">=", "1m", look_back < LOOK_BACK_MIN), ("<=", "7d", look_back > LOOK_BACK_MAX)):
            if wrong:
                raise EsError(
                    400,
                    "illegal_argument_exception",
                    f"failed to parse value [{text}] for setting [index.look_back_time], must be {op} [{shown}]",
                )
    limit = flat.get("index.mapping.total_fields.limit")
    if limit is not None and not (str(limit).isdigit()):
        raise EsError(
            400,
            "illegal_argument_exception",
            f"Failed to parse value [{limit}] for setting [index.mapping.total_fields.limit] must be >= 0",
        )
    flag = flat.get("index.mapping.total_fields.ignore_dynamic_beyond_limit")
    if flag is not None and str(flag).lower() not in ("true", "false"):
        raise EsError(
            400,
            "illegal_argument_exception",
            f"Failed to parse value [{flag}] as only [true] or [false] are allowed.",
        )


def validate_mappings(mappings: Mapping[str, Any]) -> None:
    """Field parameters a mapper refuses at PUT time (KeywordFieldMapper, TypeParsers)."""
    for path, spec in _explicit_fields(mappings.get("properties", {})):
        type_ = spec.get("type", "object")
        if type_ not in FIELD_TYPES:
            raise _mapping_error(f"No handler for type [{type_}] declared on field [{path.rsplit('.', 1)[-1]}]")
        # KeywordFieldMapperTests.testDimensionAndIgnoreAbove.
        if spec.get("time_series_dimension") and "ignore_above" in spec:
            raise _mapping_error("Field [ignore_above] cannot be set in conjunction with field [time_series_dimension]")


def validate_time_series(mappings: Mapping[str, Any], flat: Mapping[str, Any]) -> None:
    """Every explicitly mapped field a `routing_path` pattern matches must be a dimension
    (DocumentMapper.validate → MappedFieldType.validateMatchedRoutingPath; TimeSeriesModeTests)."""
    if flat.get("index.mode") != "time_series":
        return
    patterns = _listify(flat.get("index.routing_path"))
    for path, spec in _explicit_fields(mappings.get("properties", {}), objects=True):
        if not any(fnmatch.fnmatchcase(path, p) for p in patterns):
            continue
        if "properties" in spec or spec.get("type", "object") == "object":
            if path in patterns:
                raise EsError(400, "illegal_argument_exception", f"{ROUTING_PATH_RULE} [{path}] was [object].")
            continue
        if not spec.get("time_series_dimension"):
            raise EsError(400, "illegal_argument_exception", f"{ROUTING_PATH_RULE} [{path}] was not a dimension.")


def _explicit_fields(
    properties: Mapping[str, Any], prefix: str = "", *, objects: bool = False
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for name, spec in properties.items():
        path = f"{prefix}{name}"
        if "properties" in spec:
            if objects:
                yield path, spec
            yield from _explicit_fields(spec["properties"], f"{path}.", objects=objects)
        else:
            yield path, spec


def _check_field_total(mappings: Mapping[str, Any], flat: Mapping[str, Any]) -> None:
    limit = int(flat.get("index.mapping.total_fields.limit", DEFAULT_TOTAL_FIELDS_LIMIT))
    if count_fields(compile_properties(mappings.get("properties", {}))) > limit:
        raise EsError(400, "illegal_argument_exception", f"Limit of total fields [{limit}] has been exceeded")


def _mapping_error(reason: str) -> EsError:
    return EsError(
        400,
        "mapper_parsing_exception",
        f"Failed to parse mapping: {reason}",
        EsError(400, "illegal_argument_exception", reason),
    )


# ------------------------------------------------------------------------------------------ the store


class Store:
    """Cluster state and the API operations, independent of HTTP (every method runs under `lock`)."""

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        self.lock = threading.RLock()
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self.index_templates: dict[str, Json] = {}
        self.component_templates: dict[str, Json] = {}
        self.indices: dict[str, Index] = {}
        self.data_streams: dict[str, DataStream] = {}
        self.pipelines: dict[str, Json] = {}
        # `data_streams.failure_store.enabled`: name patterns of data streams whose failure store is on.
        self.failure_store_patterns: list[str] = []
        self.faults: list[Fault] = []

    # ---- templates

    def put_component_template(self, name: str, body: Json, raw: bytes = b"") -> Json:
        check_body_fields(body, COMPONENT_TEMPLATE_FIELDS, "component_template", raw)
        template = body.get("template", {})
        check_body_fields(template, TEMPLATE_FIELDS, "template", raw)
        # MetadataIndexTemplateService.addComponentTemplate validates a component on its own.
        validate_settings(flatten_settings(template.get("settings", {})))
        validate_mappings(template.get("mappings", {}))
        self.component_templates[name] = body
        return {"acknowledged": True}

    def put_index_template(self, name: str, body: Json, raw: bytes = b"") -> Json:
        check_body_fields(body, INDEX_TEMPLATE_FIELDS, "index_template", raw)
        check_body_fields(body.get("template", {}), TEMPLATE_FIELDS, "template", raw)
        patterns = _listify(body.get("index_patterns"))
        if not patterns:
            raise EsError(400, "action_request_validation_exception", "index patterns are missing")
        priority = int(body.get("priority", 0))
        for other_name, other in self.index_templates.items():
            overlap = any(
                fnmatch.fnmatchcase(a.replace("*", "x"), b) or fnmatch.fnmatchcase(b.replace("*", "x"), a)
                for a in patterns
                for b in _listify(other.get("index_patterns"))
            )
            if other_name != name and overlap and int(other.get("priority", 0)) == priority:
                raise EsError(
                    400,
                    "illegal_argument_exception",
                    f"index template [{name}] has index patterns {patterns} matching patterns from existing "
                    f"templates [{other_name}] that have the same priority [{priority}]",
                )
        ignored = set(_listify(body.get("ignore_missing_component_templates")))
        components = _listify(body.get("composed_of"))
        missing = [c for c in components if c not in self.component_templates and c not in ignored]
        if missing:
            raise EsError(
                400,
                "invalid_index_template_exception",
                f"index_template [{name}] invalid, cause [index template [{name}] specifies component "
                f"templates {missing} that do not exist]",
            )
        mappings, settings, _ = self.compose(body)
        validate_settings(settings)
        try:
            # MetadataIndexTemplateService.validateIndexTemplateV2: the composed template must make a valid index.
            validate_mappings(mappings)
            validate_time_series(mappings, settings)
            _check_field_total(mappings, settings)
        except EsError as exc:
            raise EsError(
                400,
                "illegal_argument_exception",
                f"composable template [{name}] template after composition "
                + (f"with component templates [{', '.join(components)}] " if components else "")
                + "is invalid",
                exc,
            ) from None
        self.index_templates[name] = body
        return {"acknowledged": True}


    def get_templates(self, kind: str, name: str | None) -> Json:
        store = self.index_templates if kind == "index" else self.component_templates
        names = [n for n in store if name is None or any(fnmatch.fnmatchcase(n, p) for p in name.split(","))]
        if name is not None and not names:
            raise EsError(404, "resource_not_found_exception", f"{kind} template matching [{name}] not found")
        key, inner = (
            ("index_templates", "index_template") if kind == "index" else ("component_templates", "component_template")
        )
        return {key: [{"name": n, inner: store[n]} for n in names]}

    def delete_template(self, kind: str, name: str) -> Json:
        store = self.index_templates if kind == "index" else self.component_templates
        if name not in store:
            raise EsError(404, "resource_not_found_exception", f"{kind} template matching [{name}] not found")
        del store[name]
        return {"acknowledged": True}

    def matching_template(self, name: str) -> tuple[str, Json] | None:
        """The highest-priority index template whose patterns match `name`."""
        candidates = [
            (int(body.get("priority", 0)), tname, body)
            for tname, body in self.index_templates.items()
            if any(fnmatch.fnmatchcase(name, p) for p in _listify(body.get("index_patterns")))
        ]
        if not candidates:
            return None
        _, tname, body = max(candidates, key=lambda c: c[0])
        return tname, body

    def compose(self, body: Mapping[str, Any]) -> tuple[Json, Json, Json | None]:
        """Mappings, settings and lifecycle of an index template with its component templates."""
        mappings: Json = {}
        settings: Json = {}
        lifecycle: Json | None = None
        parts = [
            self.component_templates[c].get("template", {})
            for c in _listify(body.get("composed_of"))
            if c in self.component_templates
        ]
        for part in [*parts, body.get("template", {})]:
            dynamic = mappings.get("dynamic_templates", []) + part.get("mappings", {}).get("dynamic_templates", [])
            mappings = deep_merge(mappings, part.get("mappings", {}))
            if dynamic:
                mappings["dynamic_templates"] = dynamic
            settings.update(flatten_settings(part.get("settings", {})))
            lifecycle = part.get("lifecycle", lifecycle)
        return mappings, settings, lifecycle

    # ---- indices and data streams

    def create_data_stream(self, name: str) -> DataStream:
        if name in self.data_streams:
            raise EsError(400, "resource_already_exists_exception", f"data_stream [{name}] already exists")
        found = self.matching_template(name)
        if found is None or found[1].get("data_stream") is None:
            raise EsError(
                400,
                "illegal_argument_exception",
                f"no matching index template found for data stream [{name}]",
            )
        tname, body = found
        mappings, settings, lifecycle = self.compose(body)
        index = Index(
            _ds_backing_name(name, 1), LiveMapping.from_body(mappings, settings), settings, data_stream=name
        )
        if index.time_series:
            # DataStreamIndexSettingsProvider: the first backing index covers [now - look_back, now + look_ahead).
            now = self.clock()
            index.start, index.end = now - index.look_back, now + index.look_ahead
        self.indices[index.name] = index
        stream = DataStream(name, tname, [index], lifecycle, self._failure_store_enabled(name, body))
        self.data_streams[name] = stream
        return stream

    def _failure_store_enabled(self, name: str, body: Mapping[str, Any]) -> bool:
        """Failure store on for a new stream: the template's `data_stream_options` (9.1, "Failure store"
        docs) or the cluster setting `data_streams.failure_store.enabled` naming it."""
        enabled = False
        parts = [self.component_templates.get(c, {}).get("template", {}) for c in _listify(body.get("composed_of"))]
        for part in [*parts, body.get("template", {})]:
            option = part.get("data_stream_options", {}).get("failure_store", {}).get("enabled")
            if option is not None:
                enabled = bool(option)
        return enabled or any(fnmatch.fnmatchcase(name, p) for p in self.failure_store_patterns)

    def rollover(self, name: str) -> Json:
        stream = self._stream(name)
        old = stream.write_index
        mappings, settings, _ = self.compose(self.index_templates[stream.template])
        index = Index(
            _ds_backing_name(name, len(stream.indices) + 1), LiveMapping.from_body(mappings, settings), settings, name
        )
        if index.time_series:
            # The old write index keeps its (last bumped) end; the new one starts there
            # (DataStreamIndexSettingsProvider, TSDBIndexingIT.testTsdbTemplatesNoKeywordFieldType's rollovers).
            now = self.clock()
            self._bump(old, now)
            index.start = old.end or (now - index.look_back)
            index.end = max(now, index.start) + index.look_ahead
        self.indices[index.name] = index
        stream.indices.append(index)
        return {"acknowledged": True, "old_index": old.name, "new_index": index.name, "rolled_over": True}

    @staticmethod
    def _bump(index: Index, now: datetime) -> None:
        # UpdateTimeSeriesRangeService moves the write index's end_time forward to now + look_ahead.
        if index.end is not None:
            index.end = max(index.end, now + index.look_ahead)

    def create_index(self, name: str, body: Mapping[str, Any]) -> Index:
        if name in self.indices or name in self.data_streams:
            raise EsError(400, "resource_already_exists_exception", f"index [{name}/uuid] already exists")
        mappings: Json = {}
        settings: Json = {}
        found = self.matching_template(name)
        if found is not None:
            if found[1].get("data_stream") is not None:
                raise EsError(
                    400,
                    "illegal_argument_exception",
                    f"cannot create index with name [{name}], because it matches with template [{found[0]}] "
                    "that creates data streams only, use create data stream api instead",
                )
            mappings, settings, _ = self.compose(found[1])
        mappings = deep_merge(mappings, body.get("mappings", {}))
        settings.update(flatten_settings(body.get("settings", {})))
        validate_settings(settings)
        validate_mappings(mappings)
        index = Index(name, LiveMapping.from_body(mappings, settings), settings)
        self.indices[name] = index
        return index

    def delete_index(self, name: str) -> Json:
        if name not in self.indices or self.indices[name].data_stream is not None:
            raise EsError(404, "index_not_found_exception", f"no such index [{name}]")
        del self.indices[name]
        return {"acknowledged": True}

    def delete_data_stream(self, name: str) -> Json:
        stream = self._stream(name)
        for index in stream.indices:
            self.indices.pop(index.name, None)
        del self.data_streams[name]
        return {"acknowledged": True}

    def _stream(self, name: str) -> DataStream:
        if name not in self.data_streams:
            raise EsError(404, "index_not_found_exception", f"no such index [{name}]")
        return self.data_streams[name]

    def describe_streams(self, name: str | None) -> Json:
        names = [
            n for n in self.data_streams if name is None or any(fnmatch.fnmatchcase(n, p) for p in name.split(","))
        ]
        if name is not None and "*" not in name and not names:
            raise EsError(404, "index_not_found_exception", f"no such index [{name}]")
        out = []
        for n in names:
            stream = self.data_streams[n]
            entry: Json = {
                "name": n,
                "timestamp_field": {"name": "@timestamp"},
                "indices": [
                    {"index_name": i.name, "index_uuid": hashlib.md5(i.name.encode()).hexdigest()[:22]}
                    for i in stream.indices
                ],
                "generation": len(stream.indices),
                "status": "GREEN",
                "template": stream.template,
                "hidden": False,
                "system": False,
                "index_mode": "time_series" if stream.write_index.time_series else "standard",
            }
            if stream.lifecycle is not None:
                entry["lifecycle"] = {"enabled": True, **stream.lifecycle}
            out.append(entry)
        return {"data_streams": out}

    def resolve(self, expression: str, *, missing_ok: bool = False) -> list[Index]:
        """Concrete indices behind an index expression (names, data streams, wildcards, commas)."""
        out: list[Index] = []
        for part in expression.split(","):
            if "*" in part:
                for name in sorted(self.data_streams):
                    if fnmatch.fnmatchcase(name, part):
                        out.extend(self.data_streams[name].indices)
                out.extend(
                    i for n, i in sorted(self.indices.items()) if i.data_stream is None and fnmatch.fnmatchcase(n, part)
                )
            elif part in self.data_streams:
                out.extend(self.data_streams[part].indices)
            elif part in self.indices:
                out.append(self.indices[part])
            elif part in ("_all",):
                out.extend(self.indices.values())
            elif not missing_ok:
                raise EsError(404, "index_not_found_exception", f"no such index [{part}]")
        return out

    # ---- bulk

    def take_fault(self, request: bool, text: str) -> Fault | None:
        """Consume one use of the first armed request (or item) fault whose `match` occurs in `text`."""
        for fault in self.faults:
            if (
                fault.remaining > 0
                and _is_request_fault(fault.kind) == request
                and (fault.match is None or fault.match in text)
            ):
                fault.remaining -= 1
                return fault
        return None

    def bulk(
        self,
        body: bytes,
        default_index: str | None,
        params: Mapping[str, str] | None = None,
        principal: Principal | None = None,
    ) -> Json:
        started = time.perf_counter()
        if body and not body.endswith(b"\n"):
            raise EsError(400, "illegal_argument_exception", "The bulk request must be terminated by a newline [\\n]")
        options = BulkOptions(
            (params or {}).get("pipeline"), (params or {}).get("require_data_stream") == "true", principal
        )
        lines = body.split(b"\n")
        items: list[Json] = []
        errors = False
        position = 0
        while position < len(lines) - 1:
            raw_action = lines[position]
            if not raw_action.strip():
                position += 1
                continue
            try:
                action = orjson.loads(raw_action)
                op, meta = next(iter(action.items()))
            except (orjson.JSONDecodeError, StopIteration, AttributeError):
                raise EsError(
                    400, "illegal_argument_exception", f"Malformed action/metadata line [{position + 1}]"
                ) from None
            raw_source = lines[position + 1] if op != "delete" else b""
            position += 1 if op == "delete" else 2
            item = self._bulk_item(op, meta, raw_source, default_index, raw_action, options)
            errors = errors or "error" in item[op]
            items.append(item)
        return {"took": int((time.perf_counter() - started) * 1000), "errors": errors, "items": items}

    def _bulk_item(
        self,
        op: str,
        meta: Mapping[str, Any],
        raw: bytes,
        default_index: str | None,
        raw_action: bytes,
        options: BulkOptions,
    ) -> Json:
        target = meta.get("_index") or default_index
        result: Json = {"_index": target, "_id": meta.get("_id")}
        try:
            if target is None:
                raise EsError(400, "action_request_validation_exception", "Validation Failed: 1: index is missing;")
            fault = self.take_fault(False, (raw_action + raw).decode()) if self.faults else None
            if fault is not None:
                status = int(fault.kind.split("_")[1])
                raise EsError(status, ERROR_TYPES[status], f"injected {fault.kind}")
            if op not in ("create", "index"):
                raise EsError(400, "illegal_argument_exception", f"the test server does not support [{op}]")
            self._authorize_item(op, target, options.principal)
            self._check_auto_create(target, options.require_data_stream)
            try:
                self._check_pipelines(target, options.pipeline)
                try:
                    source = orjson.loads(raw)
                except orjson.JSONDecodeError as exc:
                    raise EsError(400, "document_parsing_exception", f"failed to parse: {exc}") from None
                result.update(self._store(op, meta.get("_id"), target, source, raw))
            except EsError as exc:
                redirected = self._to_failure_store(target, exc, raw, meta.get("_id"))
                if redirected is None:
                    raise
                result.update(redirected)
        except EsError as exc:
            result.update({"status": exc.status, "error": exc.cause()})
        return {op: result}

    def _authorize_item(self, op: str, target: str, principal: Principal | None) -> None:
        """Per-item privileges (AuthorizationService.authorizeBulkItems): creating a missing index or data
        stream needs `indices:admin/auto_create`, writing needs the op type's write action."""
        if principal is None:
            return
        exists = target in self.data_streams or target in self.indices
        if not exists and not principal.role.allows_index("indices:admin/auto_create", target):
            denied = deny_index(principal, "indices:admin/auto_create", [target])
            raise EsError(403, "security_exception", denied.reason)
        action = f"indices:data/write/index:op_type/{op}"
        if not principal.role.allows_index(action, target):
            denied = deny_index(principal, action, [target], shown="indices:data/write/bulk[s]")
            raise EsError(403, "security_exception", denied.reason)

    def _check_auto_create(self, target: str, require_data_stream: bool) -> None:
        if not require_data_stream or target in self.data_streams:
            return
        found = self.matching_template(target)
        if target in self.indices or found is None or found[1].get("data_stream") is None:
            # MetadataCreateIndexService / AutoCreateAction with `require_data_stream=true`
            # (RequireDataStreamIT, docs "Bulk API": require_data_stream).
            raise EsError(
                404,
                "index_not_found_exception",
                f"no such index [{target}] and the index creation request requires a data stream, but no "
                "matching index template with data stream template was found for it",
            )

    def _check_pipelines(self, target: str, requested: str | None) -> None:
        """The request's `pipeline` (else the index's `default_pipeline`) and `final_pipeline` must exist
        (IngestService.executePipelines: "pipeline with id [x] does not exist"; `_none` means none)."""
        settings = self._settings_of(target)
        wanted = [requested if requested is not None else settings.get("index.default_pipeline")]
        wanted.append(settings.get("index.final_pipeline"))
        for pipeline in wanted:
            if pipeline and pipeline != "_none" and pipeline not in self.pipelines:
                raise EsError(400, "illegal_argument_exception", f"pipeline with id [{pipeline}] does not exist")

    def _settings_of(self, target: str) -> Mapping[str, Any]:
        if target in self.data_streams:
            return self.data_streams[target].write_index.settings
        if target in self.indices:
            return self.indices[target].settings
        found = self.matching_template(target)
        return self.compose(found[1])[1] if found is not None else {}

    def _to_failure_store(self, target: str, error: EsError, raw: bytes, doc_id: str | None) -> Json | None:
        """A document a data stream with its failure store on cannot take is stored there instead, and the
        item succeeds with `"failure_store":"used"` (docs "Failure store"; BulkItemResponse.FailureStoreStatus).
        Only document and ingest failures are redirected: not conflicts, rejections or security."""
        stream = self.data_streams.get(target)
        if stream is None or not stream.failure_store or error.status != 400:
            return None
        if not stream.failure_indices:
            name = f".fs-{target}-{self.clock():%Y.%m.%d}-{1:06d}"
            stream.failure_indices.append(Index(name, LiveMapping.from_body({"dynamic": False}), {}, data_stream=None))
        index = stream.failure_indices[-1]
        failure_id = _generated_id()
        record = {
            "@timestamp": format_instant(self.clock()),
            "document": {"id": doc_id, "index": target, "source": orjson.Fragment(raw or b"null")},
            "error": {"type": error.kind, "message": error.reason},
        }
        index.docs[failure_id] = orjson.dumps(record)
        index.versions[failure_id] = 1
        return {
            "_index": index.name,
            "_id": failure_id,
            "_version": 1,
            "result": "created",
            "_shards": {"total": 1, "successful": 1, "failed": 0},
            "_seq_no": len(index.docs) - 1,
            "_primary_term": 1,
            "status": 201,
            "failure_store": "used",
        }

    def _target(self, name: str) -> Index:
        if name in self.data_streams:
            return self.data_streams[name].write_index
        if name in self.indices:
            return self.indices[name]
        found = self.matching_template(name)
        if found is not None and found[1].get("data_stream") is not None:
            return self.create_data_stream(name).write_index
        return self.create_index(name, {})

    def _store(self, op: str, doc_id: str | None, target: str, source: Any, raw: bytes) -> Json:
        if not isinstance(source, dict):
            raise EsError(400, "document_parsing_exception", "the document must be a JSON object")
        index = self._target(target)
        if index.data_stream is not None:
            if op != "create":
                raise EsError(
                    400,
                    "illegal_argument_exception",
                    "only write ops with an op_type of create are allowed in data streams",
                )
            moment = parse_date(lookup(source, "@timestamp"))
            if moment is None:
                raise EsError(400, "document_parsing_exception", "data stream timestamp field [@timestamp] is missing")
            if index.time_series:
                index = self._tsdb_index(self.data_streams[index.data_stream], moment)
        # Only a 19-digit run can hold an integer beyond a long; other documents may take the shortcut.
        error = index.mapping.check(source, careful=_LONG_DIGITS.search(raw) is not None)
        if error is not None:
            raise error
        if index.time_series:
            doc_id = self._tsdb_id_checks(index, doc_id, source)
        doc_id = doc_id or _generated_id()
        exists = doc_id in index.docs
        if exists and op == "create":
            raise EsError(
                409,
                "version_conflict_engine_exception",
                f"[{doc_id}]: version conflict, document already exists (current version [{index.versions[doc_id]}])",
            )
        index.docs[doc_id] = raw
        index.versions[doc_id] = index.versions.get(doc_id, 0) + 1
        return {
            "_index": index.name,
            "_id": doc_id,
            "_version": index.versions[doc_id],
            "result": "updated" if exists else "created",
            "status": 200 if exists else 201,
            "_shards": {"total": 1, "successful": 1, "failed": 0},
            "_seq_no": len(index.docs) - 1,
            "_primary_term": 1,
        }

    def _tsdb_index(self, stream: DataStream, moment: datetime) -> Index:
        """The backing index whose `[start, end)` covers `moment` (DataStream.selectTimeSeriesWriteIndex;
        DataStreamTests.testGetIndexModeTimeSeriesWriteIndex)."""
        self._bump(stream.write_index, self.clock())
        for index in reversed(stream.indices):
            if index.start is not None and index.end is not None and index.start <= moment < index.end:
                return index
        ranges = "".join(
            f"[{format_instant(i.start)},{format_instant(i.end)}]"
            for i in stream.indices
            if i.start is not None and i.end is not None
        )
        raise EsError(
            400,
            "illegal_argument_exception",
            f"the document timestamp [{format_instant(moment)}] is outside of ranges of currently writable "
            f"indices [{ranges}]",
        )

    def _tsdb_id_checks(self, index: Index, doc_id: str | None, source: Json) -> str:
        derived = _tsdb_id(index, source)
        if isinstance(derived, EsError):
            raise derived
        if doc_id is not None and doc_id != derived:
            raise EsError(
                400,
                "illegal_argument_exception",
                f"_id must be unset or set to [{derived}] but was [{doc_id}] because [{index.name}] is in "
                "time_series mode",
            )
        return derived

    # ---- search

    def search(self, expression: str, body: Mapping[str, Any], params: Mapping[str, str]) -> Json:
        indices = self.resolve(expression, missing_ok=params.get("ignore_unavailable") == "true")
        query = body.get("query", {"match_all": {}})
        hits = [
            (index.name, doc_id, source)
            for index in indices
            for doc_id, source in index.sources()
            if matches(source, doc_id, query)
        ]
        keys = _sort_keys(body.get("sort", params.get("sort", "").split(",") if params.get("sort") else None))
        sort_values = [[lookup(s, k) if k != "_id" else i for k, _ in keys] for _, i, s in hits]
        ordered = list(zip(hits, sort_values, strict=True))
        # Stable sorts from the last key to the first give a multi-key order; missing values last.
        for position in range(len(keys) - 1, -1, -1):
            ordered.sort(key=_value_key(position), reverse=keys[position][1])
        after = body.get("search_after")
        if after is not None and keys:
            ordered = [h for h in ordered if _after(h[1], after, keys)]
        size = int(body.get("size", params.get("size", 10)))
        start = int(body.get("from", params.get("from", 0)))
        page = ordered[start : start + size]
        includes = [p for p in params.get("_source_includes", "").split(",") if p]
        rendered = []
        for (index_name, doc_id, source), values in page:
            hit: Json = {
                "_index": index_name,
                "_id": doc_id,
                "_score": None if keys else 1.0,
                "_source": _project(source, includes),
            }
            if keys:
                hit["sort"] = values
            rendered.append(hit)
        return {
            "took": 1,
            "timed_out": False,
            "_shards": {
                "total": max(1, len(indices)),
                "successful": max(1, len(indices)),
                "skipped": 0,
                "failed": 0,
            },
            "hits": {"total": {"value": len(hits), "relation": "eq"}, "max_score": None, "hits": rendered},
        }

    def count(self, expression: str, body: Mapping[str, Any]) -> Json:
        indices = self.resolve(expression)
        query = body.get("query", {"match_all": {}})
        total = sum(1 for i in indices for doc_id, s in i.sources() if matches(s, doc_id, query))
        return {"count": total, "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0}}


def _value_key(position: int) -> Callable[[tuple[Any, list[Any]]], tuple[bool, Any]]:
    def key(hit: tuple[Any, list[Any]]) -> tuple[bool, Any]:
        value = hit[1][position]
        return value is None, _comparable(value) if value is not None else 0

    return key


def _after(values: list[Any], after: Sequence[Any], keys: Sequence[tuple[str, bool]]) -> bool:
    for value, bound, (_, descending) in zip(values, after, keys, strict=False):
        left, right = _comparable(value), _comparable(bound)
        if left == right:
            continue
        try:
            return bool(left < right) if descending else bool(left > right)
        except TypeError:
            return str(left) > str(right)
    return False


def _project(source: Json, includes: Sequence[str]) -> Json:
    if not includes:
        return source
    out: Json = {}
    for path in includes:
        value = lookup(source, path)
        if value is not None:
            out[path] = value
    return out


# ------------------------------------------------------------------------------------------ HTTP shell


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HttpServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without this, Nagle's algorithm and delayed
        # ACKs add ~40 ms to every response.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: tests and benchmarks read counters instead."""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def _dispatch(self, method: str) -> None:
        owner = self.server.owner
        url = urlsplit(self.path)
        params = {k: v[-1] for k, v in parse_qs(url.query).items()}
        body = self._read_body()
        parts = [unquote(p) for p in url.path.split("/") if p]
        owner._record(method, url.path, params, {k.lower(): v for k, v in self.headers.items()}, parts)
        if len(body) > owner.max_content_length:
            # `http.max_content_length` (HttpTransportSettings; docs "HTTP settings"): the HTTP layer answers
            # 413 with no body before any handler runs (Netty4HttpAggregator.handleOversizedMessage).
            self._send_empty(413)
            return
        principal = owner.realm.authenticate(self.headers.get("Authorization"))
        if owner.realm.enabled and principal is None:
            error = EsError(
                401, "security_exception", f"missing authentication credentials for REST request [{url.path}]"
            )
            self._send(
                401,
                error.body(),
                {"WWW-Authenticate": 'ApiKey, Basic realm="security", Bearer realm="security"'},
            )
            return
        delay = 0.0
        if "_bulk" in parts:
            with owner.store.lock:
                fault = owner.store.take_fault(True, url.path)
            if fault is not None and fault.kind == "reset":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if fault is not None and fault.kind.startswith("bulk_"):
                status = int(fault.kind.split("_")[1])
                self._send(
                    status,
                    EsError(status, ERROR_TYPES.get(status, "exception"), f"injected {fault.kind}").body(),
                )
                return
            delay = fault.delay if fault is not None else 0.0
        with owner._in_flight(parts):
            try:
                status, payload = owner._route(method, parts, params, body, principal)
            except EsError as exc:
                status, payload = exc.status, exc.body()
            if params.get("filter_path") and isinstance(payload, dict):
                payload = filter_response(payload, params["filter_path"])
            if delay:
                time.sleep(delay)  # the request was applied; only the answer is late, as with a real timeout
        try:
            self._send(status, payload, head=method == "HEAD")
        except OSError:
            self.close_connection = True

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length) if length else b""
        if self.headers.get("Content-Encoding", "").lower() == "gzip" and data:
            data = gzip.decompress(data)
        return data

    def _send_empty(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _send(self, status: int, payload: Any, headers: Mapping[str, str] | None = None, *, head: bool = False) -> None:
        data = b"" if head else orjson.dumps(payload)
        self.send_response(status)
        self.send_header("X-Elastic-Product", "Elasticsearch")
        self.send_header("Content-Type", JSON_TYPE)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if data:
            self.wfile.write(data)


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    owner: ElasticsearchServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that goes away mid-request (a killed poller in the soak, a timeout) is normal
        # here; a real server logs nothing for it either. Anything else keeps the default report.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class ElasticsearchServer:
    """The test server. Optional `api_key`, `username`/`password` or `bearer` turn security on: each is a
    superuser credential, `create_api_key` adds keys limited by role descriptors, anything else gets 401.
    `version` is what `GET /` reports; `max_content_length` is `http.max_content_length`; `clock` moves
    the time TSDS bounds follow."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        username: str | None = None,
        password: str | None = None,
        bearer: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        version: str = VERSION,
        max_content_length: int = MAX_CONTENT_LENGTH,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.store = Store(clock)
        self.version = version
        self.max_content_length = max_content_length
        self.requests: Counter[str] = Counter()
        self.recent: deque[RequestRecord] = deque(maxlen=500)
        self.max_bulk_in_flight = 0  # most `_bulk` requests seen in progress at once
        self.denied_privileges: set[str] = set()  # also reported missing by `_has_privileges`
        self._bulk_in_flight = 0
        self.realm = self._realm(api_key, username, password, bearer)
        self._httpd = _HttpServer((host, port), _Handler)
        self._httpd.owner = self
        self._thread: threading.Thread | None = None

    @staticmethod
    def _realm(api_key: str | None, username: str | None, password: str | None, bearer: str | None) -> Realm:
        realm = Realm()
        if api_key:
            # The client sends a tuple key as base64("id:key"), a string key as given.
            encoded = base64.b64encode(api_key.encode()).decode() if ":" in api_key else api_key
            realm.add(f"ApiKey {encoded}", Principal("elastic", SUPERUSER, key_id="superuser-key"))
        if username is not None:
            header = "Basic " + base64.b64encode(f"{username}:{password or ''}".encode()).decode()
            realm.add(header, Principal(username, SUPERUSER))
        if bearer:
            realm.add(f"Bearer {bearer}", Principal("service", SUPERUSER))
        return realm

    def create_api_key(self, name: str, role_descriptors: Mapping[str, Any] | None = None) -> str:
        """A new API key (encoded, as `elasticsearch.api_key` takes it) limited to `role_descriptors`;
        turns security on if it was off."""
        with self.store.lock:
            _, _, encoded = self.realm.create_api_key(Principal("elastic", SUPERUSER), name, role_descriptors)
        return encoded

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> ElasticsearchServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="es-test-server", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ElasticsearchServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- test API

    def inject(self, kind: str, times: int = 1, match: str | None = None, delay: float = 2.0) -> None:
        """Arm a fault for the next `times` matching requests or items.

        Request kinds (on `_bulk` requests whose path contains `match`): `bulk_<status>` (e.g.
        bulk_429, bulk_503, bulk_401), `timeout` (the bulk is applied, the answer comes `delay` s late),
        `reset` (connection closed without an answer). Item kinds (items whose action or source line
        contains `match`): `item_429`, `item_400`, `item_403`, `item_500`; the item is not stored.
        """
        if not _is_request_fault(kind) and kind not in ITEM_FAULTS:
            raise ValueError(f"unknown fault kind {kind!r}")
        with self.store.lock:
            self.store.faults.append(Fault(kind, times, match, delay))

    def clear_faults(self) -> None:
        with self.store.lock:
            self.store.faults.clear()

    def pending_faults(self) -> int:
        """Fault uses not consumed yet."""
        with self.store.lock:
            return sum(f.remaining for f in self.store.faults)

    def documents(self, name: str) -> list[Json]:
        """Stored documents of an index or data stream: `{"_id", "_index", "_source"}` each."""
        with self.store.lock:
            return [
                {"_id": doc_id, "_index": index.name, "_source": source}
                for index in self.store.resolve(name, missing_ok=True)
                for doc_id, source in index.sources()
            ]

    def field_types(self, name: str) -> dict[str, tuple[str, str]]:
        """`path → (type, origin)` of every leaf field of an index or data stream's indices;
        origin is "explicit", "dynamic_template" or "dynamic"."""
        with self.store.lock:
            return {
                path: (node.type or "object", node.origin)
                for index in self.store.resolve(name, missing_ok=True)
                for path, node in index.mapping.leaves()
            }

    def data_stream(self, name: str) -> DataStream | None:
        with self.store.lock:
            return self.store.data_streams.get(name)

    def authorizations(self) -> list[str]:
        """`Authorization` headers of recent requests (test helper; secrets stay in this process)."""
        return [r.headers.get("authorization", "") for r in self.recent]

    # ---- internals used by the handler

    def _record(
        self,
        method: str,
        path: str,
        params: Mapping[str, str],
        headers: Mapping[str, str],
        parts: Sequence[str],
    ) -> None:
        with self.store.lock:
            self.requests[f"{method} {_api_name(parts)}"] += 1
            self.recent.append(RequestRecord(method, path, dict(params), headers))

    def _has_privileges(self, body: Json, principal: Principal | None) -> tuple[int, Any]:
        """`GET _security/user/_has_privileges` (docs "Has privileges API"), answered from the caller's role."""
        if principal is None:
            raise EsError(500, "security_exception", "Security must be explicitly enabled")
        role = principal.role
        cluster = {
            name: role.has_cluster_privilege(name) and name not in self.denied_privileges
            for name in body.get("cluster", [])
        }
        index = {
            name: {
                p: role.has_index_privilege(p, name) and p not in self.denied_privileges
                for p in entry.get("privileges", [])
            }
            for entry in body.get("index", [])
            for name in entry.get("names", [])
        }
        granted = all(cluster.values()) and all(all(v.values()) for v in index.values())
        return 200, {
            "username": principal.username,
            "has_all_requested": granted,
            "cluster": cluster,
            "index": index,
            "application": {},
        }

    def _pipelines(self, method: str, name: str | None, body: Json) -> tuple[int, Any]:
        """`_ingest/pipeline[/<id>]`. A missing id answers 404 with `{}` (RestGetPipelineAction).
        Processors are stored, never run: documents pass through unchanged."""
        pipelines = self.store.pipelines
        if method == "PUT" and name:
            if not isinstance(body.get("processors"), list):
                raise EsError(400, "parse_exception", "[processors] required property is missing")
            pipelines[name] = body
            return 200, {"acknowledged": True}
        if method == "DELETE" and name:
            if pipelines.pop(name, None) is None:
                raise EsError(404, "resource_not_found_exception", f"pipeline [{name}] is missing")
            return 200, {"acknowledged": True}
        names = [n for n in pipelines if name is None or any(fnmatch.fnmatchcase(n, p) for p in name.split(","))]
        if name is not None and not names:
            return 404, {}
        return 200, {n: pipelines[n] for n in names}

    def failure_documents(self, stream: str) -> list[Json]:
        """Documents in a data stream's failure store."""
        with self.store.lock:
            found = self.store.data_streams.get(stream)
            indices = found.failure_indices if found is not None else []
            return [{"_id": i, "_index": index.name, "_source": s} for index in indices for i, s in index.sources()]

    @contextmanager
    def _in_flight(self, parts: Sequence[str]) -> Iterator[None]:
        bulk = "_bulk" in parts
        if bulk:
            with self.store.lock:
                self._bulk_in_flight += 1
                self.max_bulk_in_flight = max(self.max_bulk_in_flight, self._bulk_in_flight)
        try:
            yield
        finally:
            if bulk:
                with self.store.lock:
                    self._bulk_in_flight -= 1

    def _route(
        self, method: str, parts: list[str], params: Mapping[str, str], raw: bytes, principal: Principal | None = None
    ) -> tuple[int, Any]:
        store = self.store
        head = parts[0] if parts else ""
        if head == "_bulk" or (len(parts) == 2 and parts[1] == "_bulk"):
            if method not in ("POST", "PUT"):
                raise EsError(405, "method_not_allowed", f"Incorrect HTTP method for uri [{'/'.join(parts)}]")
            with store.lock:
                return 200, store.bulk(raw, parts[0] if len(parts) == 2 else None, params, principal)
        denied = authorize(method, parts, principal) if principal is not None else None
        if denied is not None:
            raise EsError(403, "security_exception", denied.reason)
        body: Json = orjson.loads(raw) if raw.strip() else {}
        with store.lock:
            return self._route_json(method, parts, params, body, raw, principal)

    def _route_json(
        self,
        method: str,
        parts: list[str],
        params: Mapping[str, str],
        body: Json,
        raw: bytes = b"",
        principal: Principal | None = None,
    ) -> tuple[int, Any]:
        store = self.store
        if not parts:
            return 200, _info(self.version)
        head, name = parts[0], parts[1] if len(parts) > 1 else None
        if head in ("_index_template", "_component_template"):
            kind = "index" if head == "_index_template" else "component"
            if method == "PUT" and name:
                if kind == "index":
                    return 200, store.put_index_template(name, body, raw)
                return 200, store.put_component_template(name, body, raw)
            if method == "DELETE" and name:
                return 200, store.delete_template(kind, name)
            if method in ("GET", "HEAD"):
                return 200, store.get_templates(kind, name)
        if head == "_ingest" and name == "pipeline":
            return self._pipelines(method, parts[2] if len(parts) > 2 else None, body)
        if head == "_cluster" and name == "settings" and method == "PUT":
            patterns = lookup(body.get("persistent", {}), "data_streams.failure_store.enabled")
            if patterns is not None:
                store.failure_store_patterns = [p.strip() for p in str(patterns).split(",") if p.strip()]
            return 200, {"acknowledged": True, **body}
        if parts[:2] == ["_security", "api_key"] and method in ("PUT", "POST"):
            assert principal is not None  # authorize() refused anonymous callers
            key_id, secret, encoded = self.realm.create_api_key(principal, body["name"], body.get("role_descriptors"))
            return 200, {"id": key_id, "name": body["name"], "api_key": secret, "encoded": encoded}
        if head == "_data_stream":
            if method == "PUT" and name and parts[2:] == ["_options"]:
                enabled = body.get("failure_store", {}).get("enabled")
                store._stream(name).failure_store = bool(enabled)
                return 200, {"acknowledged": True}
            if method == "PUT" and name:
                store.create_data_stream(name)
                return 200, {"acknowledged": True}
            if method == "DELETE" and name:
                return 200, store.delete_data_stream(name)
            if method == "GET":
                return 200, store.describe_streams(name)
        if head == "_refresh" or (name == "_refresh"):
            return 200, {"_shards": {"total": 1, "successful": 1, "failed": 0}}
        if parts[:3] == ["_security", "user", "_has_privileges"]:
            return self._has_privileges(body, principal)
        if head in ("_search", "_count"):
            parts = ["*", head]
            head, name = parts
        if name == "_search":
            return 200, store.search(head, body, params)
        if name == "_count":
            return 200, store.count(head, body)
        if name == "_mapping":
            return 200, {i.name: {"mappings": i.mapping.to_body()} for i in store.resolve(head)}
        if name == "_rollover" and method == "POST":
            return 200, store.rollover(head)
        if len(parts) == 1 and not head.startswith("_"):
            if method == "PUT":
                store.create_index(head, body)
                return 200, {"acknowledged": True, "shards_acknowledged": True, "index": head}
            if method == "DELETE":
                return 200, store.delete_index(head)
            if method in ("GET", "HEAD"):
                indices = store.resolve(head)
                return 200, {i.name: {"mappings": i.mapping.to_body(), "settings": i.settings} for i in indices}
        raise EsError(
            400,
            "illegal_argument_exception",
            f"no handler found for uri [/{'/'.join(parts)}] and method [{method}]",
        )


# ------------------------------------------------------------------------------------ authorization


def authorize(method: str, parts: Sequence[str], principal: Principal) -> Denied | None:
    """The privilege check of one request (everything but `_bulk`, which is checked per item): the
    action each REST endpoint runs (its Transport*Action NAME) against the caller's role."""
    need = _required_action(method, parts)
    if need is None:
        return None
    kind, action, names = need
    if kind == "cluster":
        return None if principal.role.allows_cluster(action) else deny_cluster(principal, action)
    # A wildcard expression is resolved to the authorised indices instead of failing
    # (IndicesAndAliasesResolver), so only concrete names are checked.
    concrete = [n for n in names if "*" not in n and n != "_all"]
    refused = [n for n in concrete if not principal.role.allows_index(action, n)]
    return deny_index(principal, action, refused) if refused else None


def _required_action(method: str, parts: Sequence[str]) -> tuple[str, str, list[str]] | None:
    verb = {"GET": "get", "HEAD": "get", "PUT": "put", "POST": "put", "DELETE": "delete"}.get(method, "get")
    if not parts:
        return "cluster", "cluster:monitor/main", []
    head, name = parts[0], parts[1] if len(parts) > 1 else None
    if head == "_index_template":
        return "cluster", f"indices:admin/index_template/{verb}", []
    if head == "_component_template":
        return "cluster", f"cluster:admin/component_template/{verb}", []
    if head == "_ingest":
        return "cluster", f"cluster:admin/ingest/pipeline/{verb}", []
    if head == "_cluster":
        return "cluster", "cluster:admin/settings/update" if verb == "put" else "cluster:monitor/settings", []
    if head == "_security":
        if name == "api_key":
            return "cluster", "cluster:admin/xpack/security/api_key/create", []
        return None  # `_has_privileges` and `_authenticate`: every user may ask about itself
    if head == "_data_stream":
        if len(parts) > 2:
            return "index", "indices:admin/data_stream/options/put", [name or ""]
        action = {"get": "get", "put": "create", "delete": "delete"}[verb]
        return "index", f"indices:admin/data_stream/{action}", [name or "*"]
    if head in ("_search", "_count"):
        return "index", "indices:data/read/search", ["*"]
    if head == "_refresh":
        return "index", "indices:admin/refresh", ["*"]
    targets = head.split(",")
    if name in ("_search", "_count"):
        return "index", "indices:data/read/search", targets
    if name == "_refresh":
        return "index", "indices:admin/refresh", targets
    if name == "_mapping":
        return "index", "indices:admin/mappings/get", targets
    if name == "_rollover":
        return "index", "indices:admin/rollover", targets
    if name is None:
        action = {"get": "indices:admin/get", "put": "indices:admin/create", "delete": "indices:admin/delete"}[verb]
        return "index", action, targets
    return None


# ---------------------------------------------------------------------------------------- filter_path


def filter_response(payload: Json, expression: str) -> Json:
    """Response filtering (docs "Common options: response filtering"; FilterPath / FilterPathBasedFilter):
    comma-separated dotted paths, `*` within a name, `**` across levels; arrays are transparent and
    objects left empty are dropped."""
    paths = [p.split(".") for p in expression.split(",") if p and not p.startswith("-")]
    if not paths:
        return payload
    kept = _filter(payload, paths)
    return kept if isinstance(kept, dict) else {}


def _filter(value: Any, paths: list[list[str]]) -> Any:
    if any(not p or p == ["**"] for p in paths):
        return value
    if isinstance(value, list):
        kept_items = [kept for item in value if (kept := _filter(item, paths)) is not None]
        return kept_items or None
    if not isinstance(value, dict):
        return None
    out: Json = {}
    for key, child in value.items():
        rest: list[list[str]] = []
        for path in paths:
            if path[0] == "**":
                rest.append(path)  # `**` spans this level and maybe more
                if fnmatch.fnmatchcase(key, path[1]):
                    rest.append(path[2:])
            elif fnmatch.fnmatchcase(key, path[0]):
                rest.append(path[1:])
        if rest:
            kept = _filter(child, rest)
            if kept is not None:
                out[key] = kept
    return out or None


def _is_request_fault(kind: str) -> bool:
    return kind in REQUEST_FAULTS or kind.startswith("bulk_")


def _api_name(parts: Sequence[str]) -> str:
    """A stable name per API for `requests` counters: `_bulk`, `_index_template`, `index`, `info`…"""
    if not parts:
        return "info"
    for part in parts:
        if part.startswith("_"):
            return part
    return "index"


def _info(version: str = VERSION) -> Json:
    return {
        "name": "es-test-server",
        "cluster_name": "metrics-poller-test",
        "cluster_uuid": "test-cluster-uuid",
        "version": {
            "number": version,
            "build_flavor": "default",
            "build_type": "docker",
            "build_hash": "0" * 40,
            "build_date": "2025-01-01T00:00:00.000Z",
            "build_snapshot": False,
            "lucene_version": "9.12.2",
            "minimum_wire_compatibility_version": "7.17.0",
            "minimum_index_compatibility_version": "7.0.0",
        },
        "tagline": "You Know, for Search",
    }


# ------------------------------------------------------------------------------------------ command line


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT; the first line of stdout is the URL."""
    parser = argparse.ArgumentParser(
        prog="python -m metrics_poller.testing.es_server",
        description="Serve the Elasticsearch test server (an imitation of Elasticsearch 8.19 for trying "
        "metrics-poller on one machine; it keeps everything in memory).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=9200, help="port to listen on; 0 picks a free one (9200)")
    parser.add_argument(
        "--api-key-out",
        metavar="FILE",
        help="turn security on and write a superuser API key (encoded) to FILE, readable only by you; "
        "point elasticsearch.api_key_file at it",
    )
    args = parser.parse_args(argv)
    try:
        server = ElasticsearchServer(host=args.host, port=args.port)
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if args.api_key_out:
        key = server.create_api_key("es-test-server")
        descriptor = os.open(args.api_key_out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(key + "\n")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with server:
        print(server.url, flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
