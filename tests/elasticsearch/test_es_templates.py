"""The templates are pure data derived from the catalogue: check them without any server."""

from __future__ import annotations

import fnmatch
from typing import Any

import orjson

from metrics_poller import templates
from metrics_poller.catalog import dimension_key
from metrics_poller.datasets import DATASETS, OPEN_AI


def _dynamic_match(path: str) -> dict[str, object] | None:
    for entry in templates.dynamic_templates():
        spec = next(iter(entry.values()))
        if fnmatch.fnmatchcase(path, spec["path_match"]):
            return dict(spec["mapping"])
    return None


def test_every_catalogue_field_is_mapped_with_its_type_as_a_gauge() -> None:
    fields = templates.field_mappings()
    for path, es_type in OPEN_AI.all_fields().items():
        assert fields[path] == {"type": es_type, "time_series_metric": "gauge"}, path
    # The contract's types: integer totals long, statistics and fractional totals float.
    assert fields["azure.open_ai.requests.total"]["type"] == "long"
    assert fields["azure.open_ai.token_transaction.total"]["type"] == "long"
    assert fields["azure.open_ai.time_to_response.avg"]["type"] == "float"
    assert fields["azure.open_ai.active_tokens.max"]["type"] == "float"
    assert fields["azure.open_ai.fine_tuned_training_hours.total"]["type"] == "float"


def test_every_leaf_of_every_document_kind_is_mapped_explicitly_or_by_a_dynamic_template(docs: Any) -> None:
    fields = templates.field_mappings()
    documents = docs.every_field("default") + docs.requests("default", 3)
    seen = set()
    for document in documents:
        for path in templates.leaf_paths(document.source):
            seen.add(path)
            if path.startswith("azure.resource.tags."):
                assert _dynamic_match(path) == {"type": "keyword", "ignore_above": 1024}
            else:
                assert path in fields, f"{path} is not mapped explicitly"
    assert set(OPEN_AI.all_fields()) <= seen  # the documents really cover the catalogue


def test_dimensions_are_keyword_dimensions_and_unknown_ones_too() -> None:
    for dataset in DATASETS:
        for name in dataset.dimensions:
            assert templates.field_mappings(dataset)[f"azure.dimensions.{dimension_key(name)}"] == {
                "type": "keyword",
                "time_series_dimension": True,
            }
    fields = templates.field_mappings()
    for path in ("azure.dimensions.fingerprint", "azure.namespace", "azure.timegrain", "azure.resource.id"):
        assert fields[path]["time_series_dimension"] is True
    assert _dynamic_match("azure.dimensions.some_new_dimension") == {
        "type": "keyword",
        "time_series_dimension": True,
    }
    for path in ("data_stream.type", "data_stream.dataset", "data_stream.namespace"):
        assert fields[path] == {"type": "constant_keyword"}
    assert fields["@timestamp"] == {"type": "date"}
    assert fields["event.duration"]["type"] == "long"
    assert fields["metricset.period"]["type"] == "long"


def test_index_template_targets_the_stream_above_fleet_defaults_without_a_pipeline() -> None:
    built = templates.build()
    body = built.index_templates[templates.INDEX_TEMPLATE]
    assert templates.INDEX_TEMPLATE != templates.INTEGRATION_TEMPLATE
    assert body["index_patterns"] == ["metrics-azure.open_ai-*"]
    assert body["data_stream"] == {}
    assert body["priority"] > 200  # Fleet: metrics-*-* at 100, integration templates at 200
    assert set(built.component_templates) <= set(body["composed_of"])
    assert "template" not in body  # no retention unless asked
    assert b"pipeline" not in orjson.dumps(built.component_templates) + orjson.dumps(body)
    settings = built.component_templates[templates.SETTINGS_COMPONENT]["template"]["settings"]["index"]
    assert "mode" not in settings


def test_tsds_and_retention_options() -> None:
    built = templates.build(tsds=True, look_back="3d", retention="90d")
    settings = built.component_templates[templates.SETTINGS_COMPONENT]["template"]["settings"]["index"]
    assert settings["mode"] == "time_series"
    assert settings["look_back_time"] == "3d"
    assert settings["routing_path"] == [
        "azure.namespace",
        "azure.timegrain",
        "azure.resource.id",
        "azure.dimensions.*",
    ]
    body = built.index_templates[templates.INDEX_TEMPLATE]
    assert body["template"] == {"lifecycle": {"data_retention": "90d"}}


def test_fingerprint_tracks_content_only() -> None:
    plain = templates.build()
    again = templates.build()
    tsds = templates.build(tsds=True)
    name = templates.SETTINGS_COMPONENT
    assert plain.component_templates[name]["_meta"] == again.component_templates[name]["_meta"]
    assert plain.component_templates[name]["_meta"] != tsds.component_templates[name]["_meta"]
    body = plain.component_templates[name]
    assert templates.installed_fingerprint(body) == templates.fingerprint(body)
    assert templates.installed_fingerprint({"_meta": {"managed_by": "someone-else", "fingerprint": "x"}}) is None
