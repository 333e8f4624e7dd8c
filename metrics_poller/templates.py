"""Index and component templates per dataset (`metrics-<dataset>-*`), built from its metric catalogue.

Pure: no I/O. `sinks.elasticsearch.setup` installs what `build(dataset)` returns for each dataset. Every
field a document can carry is mapped explicitly (elastic-compat.md §9): with dynamic mapping a first
value written as `1` would map an average as `long` and silently truncate every later fraction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from metrics_poller.catalog import dimension_key
from metrics_poller.datasets import OPEN_AI, Dataset


def mappings_component(dataset: Dataset) -> str:
    return f"{dataset.index_template}@mappings"


def settings_component(dataset: Dataset) -> str:
    return f"{dataset.index_template}@settings"


def custom_component(dataset: Dataset) -> str:
    """Optional user overrides, composed last, like Fleet's `@custom` templates."""
    return f"{dataset.index_template}@custom"


# The names of the `azure.open_ai` dataset's templates.
INDEX_PATTERN = OPEN_AI.index_pattern
INDEX_TEMPLATE = OPEN_AI.index_template
MAPPINGS_COMPONENT = mappings_component(OPEN_AI)
SETTINGS_COMPONENT = settings_component(OPEN_AI)
CUSTOM_COMPONENT = custom_component(OPEN_AI)
# The template Elastic's azure_openai integration installs for the same pattern.
INTEGRATION_TEMPLATE = OPEN_AI.integration_template
# Fleet's built-in `metrics` template is 100 and integration templates are 200. Elasticsearch refuses
# two overlapping templates of equal priority, so 200 would break a later integration install.
PRIORITY = 250
MANAGED_BY = "metrics-poller"

Json = dict[str, Any]

_KEYWORD: Json = {"type": "keyword", "ignore_above": 1024}
_DIMENSION: Json = {"type": "keyword", "time_series_dimension": True}

# Routing of a time-series index: every dimension field (contract §3 "dim").
ROUTING_PATH = ("azure.namespace", "azure.timegrain", "azure.resource.id", "azure.dimensions.*")


@dataclass(frozen=True, slots=True)
class Templates:
    """What `setup` installs: component templates first (the index template refers to them)."""

    component_templates: Mapping[str, Json]
    index_templates: Mapping[str, Json]


def dimension_fields(dataset: Dataset = OPEN_AI) -> tuple[str, ...]:
    """Every `azure.dimensions.<key>` the dataset knows, including the fingerprint."""
    keys = sorted({dimension_key(d) for d in dataset.dimensions} | {"fingerprint"})
    return tuple(f"azure.dimensions.{k}" for k in keys)


def field_mappings(dataset: Dataset = OPEN_AI) -> dict[str, Json]:
    """Flat `path → mapping` of every explicitly mapped field."""
    fields: dict[str, Json] = {"@timestamp": {"type": "date"}}
    for path in ("azure.namespace", "azure.timegrain", "azure.resource.id", *dimension_fields(dataset)):
        fields[path] = dict(_DIMENSION)
    for path in (
        "azure.subscription_id",
        "azure.resource.name",
        "azure.resource.group",
        "azure.resource.type",
        "cloud.provider",
        "cloud.region",
        "cloud.account.id",
        "event.dataset",
        "event.module",
        "event.kind",
        "metricset.name",
        "service.type",
        "ecs.version",
        "agent.id",
        "agent.name",
        "agent.type",
        "agent.version",
        "agent.ephemeral_id",
    ):
        fields[path] = dict(_KEYWORD)
    fields["event.duration"] = {"type": "long"}
    fields["metricset.period"] = {"type": "long", "meta": {"unit": "ms"}}
    for part in ("type", "dataset", "namespace"):
        fields[f"data_stream.{part}"] = {"type": "constant_keyword"}
    for path, es_type in dataset.all_fields().items():
        fields[path] = {"type": es_type, "time_series_metric": "gauge"}
    return fields


def dynamic_templates() -> list[Json]:
    """Strings under the open-ended objects become keywords, never analysed text."""
    return [
        {
            "azure_dimensions": {
                "path_match": "azure.dimensions.*",
                "match_mapping_type": "string",
                "mapping": dict(_DIMENSION),
            }
        },
        {
            "azure_resource_tags": {
                "path_match": "azure.resource.tags.*",
                "match_mapping_type": "string",
                "mapping": dict(_KEYWORD),
            }
        },
        {"agent": {"path_match": "agent.*", "match_mapping_type": "string", "mapping": dict(_KEYWORD)}},
    ]


def nest(flat: Mapping[str, Json]) -> Json:
    """`{"a.b": m}` → `{"a": {"properties": {"b": m}}}` (Elasticsearch's `properties` tree)."""
    root: Json = {}
    for path, mapping in sorted(flat.items()):
        node = root
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {"properties": {}})["properties"]
        node[leaf] = dict(mapping)
    return root


def mappings(dataset: Dataset = OPEN_AI) -> Json:
    """The `mappings` body shared by both modes (dimension/metric flags are harmless without TSDS)."""
    return {
        "dynamic": True,
        "date_detection": False,
        "dynamic_templates": dynamic_templates(),
        "properties": nest(field_mappings(dataset)),
    }


# Fields each backing index may map. Resource tags are mapped dynamically, one field each, so an estate
# with many distinct tag keys would hit Elasticsearch's default of 1000 and every document adding one more
# would be refused; beyond this limit new tag fields stay in `_source` unmapped instead (8.13+).
TOTAL_FIELDS_LIMIT = 2000


def settings(*, tsds: bool, look_back: str) -> Json:
    """Index settings; the time-series ones only in TSDS mode."""
    index: Json = {
        "codec": "best_compression",
        "mapping": {"total_fields": {"limit": TOTAL_FIELDS_LIMIT, "ignore_dynamic_beyond_limit": True}},
    }
    if tsds:
        index.update(
            {
                "mode": "time_series",
                "routing_path": list(ROUTING_PATH),
                "look_back_time": look_back,
            }
        )
    return {"index": index}


def build(
    dataset: Dataset = OPEN_AI, *, tsds: bool = False, look_back: str = "7d", retention: str | None = None
) -> Templates:
    """The dataset's component templates and index template for the given options."""
    return compose(
        dataset.index_template,
        dataset.index_pattern,
        mappings(dataset),
        settings(tsds=tsds, look_back=look_back),
        retention=retention,
    )


def compose(name: str, pattern: str, mappings: Json, settings: Json, *, retention: str | None) -> Templates:
    """Index template `name` for `pattern`, composed of `<name>@mappings`, `<name>@settings` and the
    optional `<name>@custom` (user overrides, last, like Fleet's), with a data stream lifecycle."""
    custom = f"{name}@custom"
    components = {
        f"{name}@mappings": _with_meta({"template": {"mappings": mappings}}),
        f"{name}@settings": _with_meta({"template": {"settings": settings}}),
    }
    body: Json = {
        "index_patterns": [pattern],
        "data_stream": {},
        "priority": PRIORITY,
        "composed_of": [*components, custom],
        "ignore_missing_component_templates": [custom],
    }
    if retention is not None:
        body["template"] = {"lifecycle": {"data_retention": retention}}
    return Templates(components, {name: _with_meta(body)})


def fingerprint(body: Mapping[str, Any]) -> str:
    """Stable digest of a template body without its `_meta`, used to detect a needed update."""
    content = {k: v for k, v in body.items() if k != "_meta"}
    return hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def installed_fingerprint(body: Mapping[str, Any]) -> str | None:
    """The digest a template was installed with, if metrics-poller installed it."""
    meta = body.get("_meta")
    if not isinstance(meta, Mapping) or meta.get("managed_by") != MANAGED_BY:
        return None
    value = meta.get("fingerprint")
    return value if isinstance(value, str) else None


def _with_meta(body: Json) -> Json:
    # The digest lives in `_meta`, which Elasticsearch returns verbatim; comparing normalised
    # settings instead would misfire on its string-typed, nested echo of them.
    return {**body, "_meta": {"managed_by": MANAGED_BY, "fingerprint": fingerprint(body)}}


def leaf_paths(source: Mapping[str, Any], prefix: str = "") -> Iterable[str]:
    """Every leaf path of a document (lists count as leaves of their parent path)."""
    for key, value in source.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from leaf_paths(value, f"{path}.")
        else:
            yield path
