"""A loopback imitation of Elasticsearch 8.19 for tests, demos and benchmarks.

It speaks enough of the REST API for the real `elasticsearch` client: templates, data streams created
from matching index templates, `_bulk` with create semantics (409 on a repeated `_id`), TSDS `_id`
derivation and time bounds, mapping enforcement from the template's mappings, a small `_search`, and
injectable faults. It sends `X-Elastic-Product: Elasticsearch` on every response because the 8.x
client refuses a product it cannot identify (elastic-compat.md §12).

Usage::

    with ElasticsearchServer() as server:
        client = AsyncElasticsearch(server.url)
        ...
        server.documents("metrics-azure.open_ai-default")
"""

from __future__ import annotations

import base64
import fnmatch
import gzip
import hashlib
import math
import os
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

from metrics_poller.testing import ingest

VERSION = "8.19.0"
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

    def __init__(self, status: int, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.kind = kind
        self.reason = reason

    def body(self) -> Json:
        cause = {"type": self.kind, "reason": self.reason}
        return {"error": {"root_cause": [cause], **cause}, "status": self.status}


# ------------------------------------------------------------------------------------ pure helpers


def parse_time_value(text: str) -> timedelta:
    """Elasticsearch time value (`90d`, `2h`, `30m`, `10s`, `500ms`) → `timedelta`."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    for suffix in ("ms", "s", "m", "h", "d"):
        if text.endswith(suffix) and text[: -len(suffix)].isdigit():
            return timedelta(seconds=int(text[: -len(suffix)]) * units[suffix])
    raise ValueError(f"failed to parse time value [{text}]")


def parse_date(value: Any) -> datetime | None:
    """An ISO-8601 string or epoch milliseconds → aware datetime; None if it is neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000, UTC)
    if not isinstance(value, str) or len(value) < 4:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


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

    __slots__ = ("dimension", "fast", "origin", "props", "type", "value")

    def __init__(self, type_: str | None, origin: str, *, dimension: bool = False, value: Any = None) -> None:
        self.type = type_
        self.props: dict[str, Node] | None = {} if type_ is None else None
        self.origin = origin  # "explicit", "dynamic_template" or "dynamic"
        self.dimension = dimension
        self.value = value
        # Python types a value may have to be accepted without a closer look.
        self.fast: frozenset[type] | None = _FAST_TYPES.get(type_ or "")


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
            )
        out[head] = node
    return out


@dataclass
class LiveMapping:
    """The live mapping of one index: explicit fields, dynamic templates and fields learnt on the way."""

    root: dict[str, Node]
    dynamic_templates: list[tuple[str, Json]]
    date_detection: bool = True
    dynamic: Any = True
    # id(properties dict) → shapes (keys, value types) of objects accepted on the fast path.
    _accepted_shapes: dict[int, set[tuple[Any, ...]]] = field(default_factory=dict)

    @classmethod
    def from_body(cls, mappings: Mapping[str, Any]) -> LiveMapping:
        templates = [next(iter(t.items())) for t in mappings.get("dynamic_templates", [])]
        return cls(
            compile_properties(mappings.get("properties", {})),
            [(name, dict(spec)) for name, spec in templates],
            bool(mappings.get("date_detection", True)),
            mappings.get("dynamic", True),
        )

    def check(self, source: Mapping[str, Any]) -> EsError | None:
        """Validate a document against the mapping, learning new fields as Elasticsearch does."""
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
        elif shape in accepted:
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
                if type(value) in fast:
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
        props[key] = self._learn(f"{prefix}{key}", key, value)
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
            detected = self.date_detection and parse_date(sample) is not None and sample[:4].isdigit()
            return Node("date" if detected else "text", "dynamic")
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
        out[name] = spec
    return out


def _template_matches(spec: Mapping[str, Any], path: str, name: str, kind: str) -> bool:
    def any_match(patterns: Any, text: str) -> bool:
        items = patterns if isinstance(patterns, list) else [patterns]
        return any(fnmatch.fnmatchcase(text, p) for p in items)

    wanted = spec.get("match_mapping_type", "*")
    if wanted not in ("*", kind) and not (wanted == "double" and kind == "long"):
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
        raise EsError(400, "document_parsing_exception", f"failed to parse field [{path}] of type [date]: '{value}'")
    elif type_ == "boolean" and value not in (True, False, "true", "false"):
        raise EsError(400, "document_parsing_exception", f"failed to parse field [{path}] of type [boolean]")


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

    @property
    def time_series(self) -> bool:
        return self.settings.get("index.mode") == "time_series"

    def bounds(self) -> tuple[datetime, datetime]:
        """Writable `@timestamp` range; the end follows the clock, as ES bumps the write index."""
        look_back = parse_time_value(str(self.settings.get("index.look_back_time", DEFAULT_LOOK_BACK)))
        look_ahead = parse_time_value(str(self.settings.get("index.look_ahead_time", DEFAULT_LOOK_AHEAD)))
        return self.created - look_back, max(self.created, datetime.now(UTC)) + look_ahead


@dataclass
class DataStream:
    name: str
    template: str
    indices: list[Index]
    lifecycle: Json | None = None

    @property
    def write_index(self) -> Index:
        return self.indices[-1]


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


# ------------------------------------------------------------------------------------------ the store


class Store:
    """Cluster state and the API operations, independent of HTTP (every method runs under `lock`)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.index_templates: dict[str, Json] = {}
        self.component_templates: dict[str, Json] = {}
        self.indices: dict[str, Index] = {}
        self.data_streams: dict[str, DataStream] = {}
        self.pipelines: dict[str, ingest.Pipeline] = {}
        self.faults: list[Fault] = []

    # ---- templates

    def put_index_template(self, name: str, body: Json) -> Json:
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
        missing = [
            c for c in _listify(body.get("composed_of")) if c not in self.component_templates and c not in ignored
        ]
        if missing:
            raise EsError(
                400,
                "invalid_index_template_exception",
                f"index_template [{name}] invalid, cause [index template [{name}] specifies component "
                f"templates {missing} that do not exist]",
            )
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
        index = Index(_ds_backing_name(name, 1), LiveMapping.from_body(mappings), settings, data_stream=name)
        self.indices[index.name] = index
        stream = DataStream(name, tname, [index], lifecycle)
        self.data_streams[name] = stream
        return stream

    def rollover(self, name: str) -> Json:
        stream = self._stream(name)
        old = stream.write_index
        mappings, settings, _ = self.compose(self.index_templates[stream.template])
        index = Index(_ds_backing_name(name, len(stream.indices) + 1), LiveMapping.from_body(mappings), settings, name)
        self.indices[index.name] = index
        stream.indices.append(index)
        return {"acknowledged": True, "old_index": old.name, "new_index": index.name, "rolled_over": True}

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
        index = Index(name, LiveMapping.from_body(mappings), settings)
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

    def bulk(self, body: bytes, default_index: str | None, pipeline: str | None = None) -> Json:
        started = time.perf_counter()
        if body and not body.endswith(b"\n"):
            raise EsError(400, "illegal_argument_exception", "The bulk request must be terminated by a newline [\\n]")
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
            item = self._bulk_item(op, meta, raw_source, default_index, raw_action, meta.get("pipeline", pipeline))
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
        pipeline: str | None = None,
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
            try:
                source = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise EsError(400, "document_parsing_exception", f"failed to parse: {exc}") from None
            result.update(self._store(op, meta.get("_id"), target, source, raw, pipeline))
        except EsError as exc:
            result.update({"status": exc.status, "error": {"type": exc.kind, "reason": exc.reason}})
        return {op: result}

    def _target(self, name: str) -> Index:
        if name in self.data_streams:
            return self.data_streams[name].write_index
        if name in self.indices:
            return self.indices[name]
        found = self.matching_template(name)
        if found is not None and found[1].get("data_stream") is not None:
            return self.create_data_stream(name).write_index
        return self.create_index(name, {})

    def _store(
        self, op: str, doc_id: str | None, target: str, source: Any, raw: bytes, pipeline: str | None = None
    ) -> Json:
        if not isinstance(source, dict):
            raise EsError(400, "document_parsing_exception", "the document must be a JSON object")
        index = self._target(target)
        name = ingest.resolve(pipeline, index.settings.get("index.default_pipeline"))
        if name is not None:
            if name not in self.pipelines:
                raise EsError(400, "illegal_argument_exception", f"pipeline with id [{name}] does not exist")
            try:
                source = self.pipelines[name].run(source)
            except ingest.PipelineError as exc:
                raise EsError(exc.status, exc.kind, exc.reason) from None
            raw = orjson.dumps(source)
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
        error = index.mapping.check(source)
        if error is not None:
            raise error
        if index.time_series:
            doc_id = self._tsdb_checks(index, doc_id, source)
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

    def _tsdb_checks(self, index: Index, doc_id: str | None, source: Json) -> str:
        start, end = index.bounds()
        moment = parse_date(lookup(source, "@timestamp"))
        assert moment is not None
        if not start <= moment < end:
            raise EsError(
                400,
                "illegal_argument_exception",
                f"the document timestamp [{moment.isoformat()}] is outside of ranges of currently writable "
                f"indices [[{start.isoformat()},{end.isoformat()}]]",
            )
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
        if not owner._authorized(self.headers.get("Authorization")):
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
                status, payload = owner._route(method, parts, params, body)
            except EsError as exc:
                status, payload = exc.status, exc.body()
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
    """The test server. Optional `api_key`, `username`/`password` or `bearer` turn on credential checks
    (any one configured credential is accepted; anything else gets 401)."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        username: str | None = None,
        password: str | None = None,
        bearer: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.store = Store()
        self.requests: Counter[str] = Counter()
        self.recent: deque[RequestRecord] = deque(maxlen=500)
        self.max_bulk_in_flight = 0  # most `_bulk` requests seen in progress at once
        self.denied_privileges: set[str] = set()  # what `_has_privileges` reports as missing
        self._bulk_in_flight = 0
        self._accepted = self._credentials(api_key, username, password, bearer)
        self._httpd = _HttpServer((host, port), _Handler)
        self._httpd.owner = self
        self._thread: threading.Thread | None = None

    @staticmethod
    def _credentials(api_key: str | None, username: str | None, password: str | None, bearer: str | None) -> set[str]:
        accepted = set()
        if api_key:
            # The client sends a tuple key as base64("id:key"), a string key as given.
            encoded = base64.b64encode(api_key.encode()).decode() if ":" in api_key else api_key
            accepted.add(f"ApiKey {encoded}")
        if username is not None:
            accepted.add("Basic " + base64.b64encode(f"{username}:{password or ''}".encode()).decode())
        if bearer:
            accepted.add(f"Bearer {bearer}")
        return accepted

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

    def _has_privileges(self, body: Json) -> tuple[int, Any]:
        if not self._accepted:
            raise EsError(500, "security_exception", "Security must be explicitly enabled")
        cluster = {name: name not in self.denied_privileges for name in body.get("cluster", [])}
        index = {
            name: {p: p not in self.denied_privileges for p in entry.get("privileges", [])}
            for entry in body.get("index", [])
            for name in entry.get("names", [])
        }
        granted = all(cluster.values()) and all(all(v.values()) for v in index.values())
        return 200, {
            "username": "test",
            "has_all_requested": granted,
            "cluster": cluster,
            "index": index,
            "application": {},
        }

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

    def _authorized(self, header: str | None) -> bool:
        return not self._accepted or header in self._accepted

    def _route(self, method: str, parts: list[str], params: Mapping[str, str], raw: bytes) -> tuple[int, Any]:
        store = self.store
        head = parts[0] if parts else ""
        if head == "_bulk" or (len(parts) == 2 and parts[1] == "_bulk"):
            if method not in ("POST", "PUT"):
                raise EsError(405, "method_not_allowed", f"Incorrect HTTP method for uri [{'/'.join(parts)}]")
            with store.lock:
                return 200, store.bulk(raw, parts[0] if len(parts) == 2 else None, params.get("pipeline"))
        body: Json = orjson.loads(raw) if raw.strip() else {}
        with store.lock:
            return self._route_json(method, parts, params, body)

    def _route_json(self, method: str, parts: list[str], params: Mapping[str, str], body: Json) -> tuple[int, Any]:
        store = self.store
        if not parts:
            return 200, _info()
        head, name = parts[0], parts[1] if len(parts) > 1 else None
        if head in ("_index_template", "_component_template"):
            kind = "index" if head == "_index_template" else "component"
            if method == "PUT" and name:
                if kind == "index":
                    return 200, store.put_index_template(name, body)
                store.component_templates[name] = body
                return 200, {"acknowledged": True}
            if method == "DELETE" and name:
                return 200, store.delete_template(kind, name)
            if method in ("GET", "HEAD"):
                return 200, store.get_templates(kind, name)
        if head == "_ingest" and name == "pipeline" and len(parts) == 3:
            if method == "PUT":
                try:
                    store.pipelines[parts[2]] = ingest.Pipeline.parse(parts[2], body)
                except ingest.PipelineError as exc:
                    raise EsError(exc.status, exc.kind, exc.reason) from None
                return 200, {"acknowledged": True}
            if method == "DELETE":
                store.pipelines.pop(parts[2], None)
                return 200, {"acknowledged": True}
        if head == "_data_stream":
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
            return self._has_privileges(body)
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


def _info() -> Json:
    return {
        "name": "es-test-server",
        "cluster_name": "metrics-poller-test",
        "cluster_uuid": "test-cluster-uuid",
        "version": {
            "number": VERSION,
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
