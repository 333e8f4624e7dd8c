"""The test server behaves like Elasticsearch 8.19/9.x where the poller depends on it.

One test (or a few) per behaviour of docs/elasticsearch-conformance.md; each fails if the server stops
modelling it. Requests go over HTTP, as a client's would.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from metrics_poller.testing.es_server import ElasticsearchServer, format_instant, parse_date


def call(
    server: ElasticsearchServer,
    method: str,
    path: str,
    body: Any = None,
    *,
    ndjson: bytes | None = None,
    key: str | None = None,
) -> tuple[int, Any]:
    data = ndjson if ndjson is not None else (orjson.dumps(body) if body is not None else None)
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"ApiKey {key}"
    request = urllib.request.Request(server.url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return response.status, orjson.loads(raw) if raw else raw
    except urllib.error.HTTPError as error:
        raw = error.read()
        return error.code, orjson.loads(raw) if raw else raw


def bulk(server: ElasticsearchServer, target: str, sources: list[Any], query: str = "", **kw: Any) -> list[Any]:
    lines = b"".join(b'{"create":{}}\n' + orjson.dumps(s) + b"\n" for s in sources)
    status, body = call(server, "POST", f"/{target}/_bulk{query}", ndjson=lines, **kw)
    assert status == 200, body
    return [item["create"] for item in body["items"]]


def stream_template(server: ElasticsearchServer, pattern: str, template: Any = None, **kw: Any) -> None:
    body = {"index_patterns": [pattern], "data_stream": {}, "priority": 300, "template": template or {}}
    status, answer = call(server, "PUT", f"/_index_template/t-{pattern.strip('*')}", body, **kw)
    assert status == 200, answer


def now_stamp(minutes_ago: int = 0) -> str:
    return format_instant(datetime.now(UTC) - timedelta(minutes=minutes_ago))


# ------------------------------------------------------------------------------------------- filter_path


def test_filter_path_keeps_only_the_named_paths(server: ElasticsearchServer) -> None:
    assert call(server, "GET", "/?filter_path=version.number")[1] == {"version": {"number": "8.19.0"}}
    assert call(server, "GET", "/?filter_path=**.number")[1] == {"version": {"number": "8.19.0"}}
    assert call(server, "GET", "/?filter_path=nothing.here")[1] == {}
    stream_template(server, "logs-f-*")
    lines = b'{"create":{}}\n{"@timestamp":"2024-01-01T00:00:00Z"}\n{"create":{}}\n{"message":"no timestamp"}\n'
    _, body = call(server, "POST", "/logs-f-default/_bulk?filter_path=errors,items.*.error", ndjson=lines)
    # Items without an error are dropped entirely: arrays are transparent to the filter.
    assert body == {"errors": True, "items": [{"create": {"error": body["items"][0]["create"]["error"]}}]}


# ------------------------------------------------------------------------------------- ingest pipelines


def test_pipelines_exist_or_fail_each_item(server: ElasticsearchServer) -> None:
    assert call(server, "GET", "/_ingest/pipeline/missing") == (404, {})
    assert call(server, "PUT", "/_ingest/pipeline/p1", {"processors": []})[0] == 200
    assert call(server, "GET", "/_ingest/pipeline/p1") == (200, {"p1": {"processors": []}})
    stream_template(server, "logs-p-*")
    source = {"@timestamp": now_stamp()}
    assert bulk(server, "logs-p-default", [source], "?pipeline=p1")[0]["status"] == 201
    assert bulk(server, "logs-p-default", [source], "?pipeline=_none")[0]["status"] == 201
    items = bulk(server, "logs-p-default", [source, source], "?pipeline=nope")
    assert [i["status"] for i in items] == [400, 400]
    assert items[0]["error"] == {
        "type": "illegal_argument_exception",
        "reason": "pipeline with id [nope] does not exist",
    }


def test_default_pipeline_setting_must_exist_unless_none(server: ElasticsearchServer) -> None:
    stream_template(server, "logs-d-*", {"settings": {"index.default_pipeline": "gone"}})
    source = {"@timestamp": now_stamp()}
    assert bulk(server, "logs-d-default", [source])[0]["error"]["reason"] == "pipeline with id [gone] does not exist"
    assert bulk(server, "logs-d-default", [source], "?pipeline=_none")[0]["status"] == 201


# ----------------------------------------------------------------------------------- template validation


def test_ignore_above_with_a_dimension_is_refused(server: ElasticsearchServer) -> None:
    mapping = {"properties": {"host": {"type": "keyword", "time_series_dimension": True, "ignore_above": 1024}}}
    status, body = call(server, "PUT", "/_component_template/c", {"template": {"mappings": mapping}})
    assert status == 400 and body["error"]["type"] == "mapper_parsing_exception"
    assert "Field [ignore_above] cannot be set in conjunction with field [time_series_dimension]" in str(body)


def test_routing_path_must_match_only_dimensions(server: ElasticsearchServer) -> None:
    template = {
        "settings": {"index.mode": "time_series", "index.routing_path": ["host", "labels.*"]},
        "mappings": {
            "properties": {
                "host": {"type": "keyword", "time_series_dimension": True},
                "labels": {"properties": {"zone": {"type": "keyword"}}},
            }
        },
    }
    body = {"index_patterns": ["metrics-r-*"], "data_stream": {}, "template": template}
    status, answer = call(server, "PUT", "/_index_template/r", body)
    assert status == 400 and answer["error"]["type"] == "illegal_argument_exception"
    assert answer["error"]["reason"] == "composable template [r] template after composition is invalid"
    assert answer["error"]["caused_by"]["reason"].endswith("[labels.zone] was not a dimension.")
    template["mappings"]["properties"]["labels"]["properties"]["zone"]["time_series_dimension"] = True
    assert call(server, "PUT", "/_index_template/r", body)[0] == 200


def test_unknown_body_fields_and_settings_are_refused(server: ElasticsearchServer) -> None:
    status, body = call(server, "PUT", "/_index_template/u", {"index_patterns": ["u-*"], "priorty": 5})
    assert status == 400 and body["error"]["type"] == "x_content_parse_exception"
    assert body["error"]["reason"].endswith("[index_template] unknown field [priorty]")
    status, body = call(server, "PUT", "/_component_template/u", {"template": {"setings": {}}})
    assert status == 400 and body["error"]["reason"].endswith("[template] unknown field [setings]")
    status, body = call(server, "PUT", "/_component_template/u", {"template": {"settings": {"index.modee": "x"}}})
    assert status == 400 and body["error"]["reason"].startswith("unknown setting [index.modee] please check")


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("30s", "must be >= [1m]"),
        ("8d", "must be <= [7d]"),
        ("1m", None),
        ("7d", None),
    ],
)
def test_look_back_time_is_range_checked(server: ElasticsearchServer, value: str, error: str | None) -> None:
    settings = {"index": {"mode": "time_series", "routing_path": ["host"], "look_back_time": value}}
    status, body = call(server, "PUT", "/_component_template/lb", {"template": {"settings": settings}})
    if error is None:
        assert status == 200
    else:
        assert status == 400
        reason = f"failed to parse value [{value}] for setting [index.look_back_time], {error}"
        assert body["error"]["reason"] == reason


# ------------------------------------------------------------------------------------- TSDS backing indices


class Clock:
    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment


def test_tsds_routes_by_timestamp_across_backing_indices() -> None:
    t0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    clock = Clock(t0)
    with ElasticsearchServer(clock=clock) as server:
        template = {
            "settings": {"index.mode": "time_series", "index.routing_path": ["host"], "index.look_back_time": "1h"},
            "mappings": {"properties": {"host": {"type": "keyword", "time_series_dimension": True}}},
        }
        stream_template(server, "metrics-t-*", template)

        def doc(moment: datetime) -> dict[str, Any]:
            return {"@timestamp": format_instant(moment), "host": "a"}

        first = bulk(server, "metrics-t-default", [doc(t0 - timedelta(minutes=30))])[0]
        assert first["status"] == 201
        # First backing index: [t0 - look_back, t0 + look_ahead(30m)).
        clock.moment = t0 + timedelta(hours=2)
        assert call(server, "POST", "/metrics-t-default/_rollover")[0] == 200
        stream = server.data_stream("metrics-t-default")
        assert stream is not None
        old, new = stream.indices
        assert (old.start, old.end) == (t0 - timedelta(hours=1), t0 + timedelta(hours=2, minutes=30))
        assert new.start == old.end

        # A point covered by the older backing index goes there, and a repeat of it is a 409 there.
        items = bulk(server, "metrics-t-default", [doc(t0 + timedelta(minutes=10))] * 2)
        assert [i["status"] for i in items] == [201, 409]
        assert items[0]["_index"] == old.name
        assert bulk(server, "metrics-t-default", [doc(t0 + timedelta(hours=2, minutes=40))])[0]["_index"] == new.name

        late = bulk(server, "metrics-t-default", [doc(t0 - timedelta(hours=3))])[0]
        assert late["status"] == 400
        assert late["error"]["reason"] == (
            f"the document timestamp [{format_instant(t0 - timedelta(hours=3))}] is outside of ranges of "
            f"currently writable indices [[{format_instant(old.start)},{format_instant(old.end)}]"
            f"[{format_instant(new.start)},{format_instant(new.end)}]]"
        )


# -------------------------------------------------------------------------------------------- limits


def test_total_fields_limit_and_ignore_dynamic_beyond_limit(server: ElasticsearchServer) -> None:
    stream_template(server, "logs-l-*", {"settings": {"index.mapping.total_fields.limit": 4}})
    # @timestamp + tags (object) + tags.a: 3 fields; a second tag is a 4th, a third is over the limit.
    ok = bulk(server, "logs-l-default", [{"@timestamp": now_stamp(), "tags": {"a": 1, "b": 2}}])
    assert ok[0]["status"] == 201
    over = bulk(server, "logs-l-default", [{"@timestamp": now_stamp(), "tags": {"c": 3}}])[0]
    assert over["status"] == 400 and over["error"]["type"] == "document_parsing_exception"
    assert "Limit of total fields [4] has been exceeded while adding new fields [1]" in over["error"]["reason"]

    settings = {"index.mapping.total_fields.limit": 4, "index.mapping.total_fields.ignore_dynamic_beyond_limit": True}
    stream_template(server, "logs-i-*", {"settings": settings})
    items = bulk(server, "logs-i-default", [{"@timestamp": now_stamp(), "tags": {"a": 1, "b": 2, "c": 3}}])
    assert items[0]["status"] == 201
    assert "tags.c" not in server.field_types("logs-i-default")
    assert server.documents("logs-i-default")[0]["_source"]["tags"]["c"] == 3  # kept in _source


def test_request_larger_than_max_content_length_is_413_without_body() -> None:
    with ElasticsearchServer(max_content_length=2048) as server:
        lines = b'{"create":{}}\n' + orjson.dumps({"@timestamp": now_stamp(), "pad": "x" * 3000}) + b"\n"
        assert call(server, "POST", "/plain/_bulk", ndjson=lines) == (413, b"")
        assert call(server, "GET", "/")[0] == 200  # the connection-level refusal leaves the server serving


def test_require_data_stream_never_creates_a_plain_index(server: ElasticsearchServer) -> None:
    item = bulk(server, "metrics-none-default", [{"@timestamp": now_stamp()}], "?require_data_stream=true")[0]
    assert item["status"] == 404 and item["error"]["type"] == "index_not_found_exception"
    assert "requires a data stream" in item["error"]["reason"]
    assert "metrics-none-default" not in server.store.indices


# ------------------------------------------------------------------------------------------ failure store


def test_failure_store_takes_failed_documents_and_answers_used(server: ElasticsearchServer) -> None:
    template = {
        "data_stream_options": {"failure_store": {"enabled": True}},
        "mappings": {"properties": {"n": {"type": "long"}}},
    }
    stream_template(server, "logs-fs-*", template)
    good = {"@timestamp": now_stamp(), "n": 1}
    items = bulk(server, "logs-fs-default", [good, {"@timestamp": now_stamp(), "n": "not a number"}])
    assert items[0]["status"] == 201 and "failure_store" not in items[0]
    assert items[1]["status"] == 201 and items[1]["failure_store"] == "used"
    assert items[1]["_index"].startswith(".fs-logs-fs-default-")
    failures = server.failure_documents("logs-fs-default")
    assert len(failures) == 1 and failures[0]["_source"]["error"]["type"] == "document_parsing_exception"
    assert len(server.documents("logs-fs-default")) == 1


def test_failure_store_by_cluster_setting_and_not_for_conflicts(server: ElasticsearchServer) -> None:
    settings = {"persistent": {"data_streams.failure_store.enabled": "logs-cs-*"}}
    assert call(server, "PUT", "/_cluster/settings", settings)[0] == 200
    stream_template(server, "logs-cs-*", {"mappings": {"properties": {"n": {"type": "long"}}}})
    assert bulk(server, "logs-cs-default", [{"@timestamp": now_stamp(), "n": "x"}])[0]["failure_store"] == "used"
    lines = b'{"create":{"_id":"1"}}\n{"@timestamp":"2024-01-01T00:00:00Z"}\n' * 2
    _, body = call(server, "POST", "/logs-cs-default/_bulk", ndjson=lines)
    assert [i["create"]["status"] for i in body["items"]] == [201, 409]


# ----------------------------------------------------------------------------------------------- security


WRITER = {
    "writer": {
        "cluster": ["monitor"],
        "indices": [{"names": ["metrics-*"], "privileges": ["create_doc", "auto_configure"]}],
    }
}


def test_api_key_role_descriptors_limit_each_request() -> None:
    with ElasticsearchServer(api_key="admin-key") as server:
        stream_template(server, "metrics-s-*", key="admin-key")
        writer = server.create_api_key("writer", WRITER)
        reader = server.create_api_key("reader", {"r": {"indices": [{"names": ["*"], "privileges": ["read"]}]}})

        assert call(server, "GET", "/", key=writer)[0] == 200
        status, body = call(server, "GET", "/", key=reader)
        assert status == 403 and body["error"]["type"] == "security_exception"
        assert body["error"]["reason"].startswith("action [cluster:monitor/main] is unauthorized for API key id [")
        assert body["error"]["reason"].endswith(
            "of user [elastic], this action is granted by the cluster privileges [monitor,manage,all]"
        )
        status, body = call(server, "PUT", "/_index_template/x", {"index_patterns": ["x-*"]}, key=writer)
        assert status == 403 and "[indices:admin/index_template/put]" in body["error"]["reason"]
        assert "cluster privileges [manage_index_templates,manage,all]" in body["error"]["reason"]
        status, body = call(server, "GET", "/_data_stream/metrics-s-default", key=writer)
        assert status == 403
        assert body["error"]["reason"].endswith(
            "on indices [metrics-s-default], this action is granted by the index privileges "
            "[view_index_metadata,manage,all]"
        )
        assert bulk(server, "metrics-s-default", [{"@timestamp": now_stamp()}], key=writer)[0]["status"] == 201


def test_bulk_items_are_checked_one_by_one() -> None:
    with ElasticsearchServer(api_key="admin-key") as server:
        stream_template(server, "metrics-b-*", key="admin-key")
        no_auto = server.create_api_key(
            "w", {"w": {"indices": [{"names": ["metrics-*"], "privileges": ["create_doc"]}]}}
        )
        item = bulk(server, "metrics-b-default", [{"@timestamp": now_stamp()}], key=no_auto)[0]
        assert item["status"] == 403 and item["error"]["type"] == "security_exception"
        assert item["error"]["reason"].endswith(
            "on indices [metrics-b-default], this action is granted by the index privileges "
            "[auto_configure,create_index,manage,all]"
        )
        assert bulk(server, "metrics-b-default", [{"@timestamp": now_stamp()}], key="admin-key")[0]["status"] == 201
        # The stream exists now: create_doc suffices. Another name is outside the key's indices.
        assert bulk(server, "metrics-b-default", [{"@timestamp": now_stamp()}], key=no_auto)[0]["status"] == 201
        assert call(server, "PUT", "/other", {}, key="admin-key")[0] == 200
        lines = b'{"create":{"_index":"other"}}\n{"a":1}\n{"create":{"_index":"metrics-b-default"}}\n'
        lines += orjson.dumps({"@timestamp": now_stamp()}) + b"\n"
        _, body = call(server, "POST", "/_bulk", ndjson=lines, key=no_auto)
        first, second = (i["create"] for i in body["items"])
        assert first["status"] == 403 and second["status"] == 201
        assert "action [indices:data/write/bulk[s]] is unauthorized" in first["error"]["reason"]
        assert "index privileges [create_doc,create,index,write,all]" in first["error"]["reason"]


def test_has_privileges_answers_from_the_callers_role() -> None:
    with ElasticsearchServer(api_key="admin-key") as server:
        writer = server.create_api_key("writer", WRITER)
        query = {
            "cluster": ["monitor", "manage_index_templates"],
            "index": [{"names": ["metrics-x-default"], "privileges": ["create_doc", "auto_configure", "read"]}],
        }
        status, body = call(server, "POST", "/_security/user/_has_privileges", query, key=writer)
        assert status == 200 and body["has_all_requested"] is False
        assert body["cluster"] == {"monitor": True, "manage_index_templates": False}
        assert body["index"]["metrics-x-default"] == {"create_doc": True, "auto_configure": True, "read": False}
        status, body = call(server, "POST", "/_security/user/_has_privileges", query, key="admin-key")
        assert body["has_all_requested"] is True


def test_api_keys_are_created_over_http_within_the_owners_privileges() -> None:
    with ElasticsearchServer(api_key="admin-key") as server:
        status, created = call(
            server, "POST", "/_security/api_key", {"name": "k", "role_descriptors": WRITER}, key="admin-key"
        )
        assert status == 200 and set(created) >= {"id", "api_key", "encoded"}
        assert call(server, "GET", "/", key=created["encoded"])[0] == 200
        assert call(server, "GET", "/_index_template", key=created["encoded"])[0] == 403
        assert call(server, "GET", "/", key="not-a-key")[0] == 401


# ------------------------------------------------------------------------------------------ mapping details


def test_dates_need_a_t_and_epoch_millis_may_be_a_string(server: ElasticsearchServer) -> None:
    assert parse_date("2024-04-11T01:45:00Z") is not None
    assert parse_date("2024-04-11 01:45:00") is None
    assert parse_date("1712799900000") == datetime(2024, 4, 11, 1, 45, tzinfo=UTC)
    stream_template(server, "logs-dt-*", {"mappings": {"properties": {"seen": {"type": "date"}}}})
    items = bulk(
        server,
        "logs-dt-default",
        [
            {"@timestamp": now_stamp(), "seen": "2024-04-11 01:45:00"},
            {"@timestamp": now_stamp(), "seen": "1712799900000"},
            {"@timestamp": "2024-04-11T01:45:00.123+02:00"},
        ],
    )
    assert [i["status"] for i in items] == [400, 201, 201]
    assert "strict_date_optional_time||epoch_millis" in items[0]["error"]["caused_by"]["reason"]


def test_long_overflow_is_a_400(server: ElasticsearchServer) -> None:
    stream_template(server, "logs-n-*", {"mappings": {"properties": {"n": {"type": "long"}}}})
    sources = [{"@timestamp": now_stamp(), "n": n} for n in (2**63 - 1, 2**63, 2**63 - 1)]
    items = bulk(server, "logs-n-default", sources)
    assert [i["status"] for i in items] == [201, 400, 201]
    assert items[1]["error"]["caused_by"]["reason"] == "Value [9223372036854775808] is out of range for a long"


def test_match_mapping_type_double_matches_only_fractions(server: ElasticsearchServer) -> None:
    dynamic = [{"fractions": {"match_mapping_type": "double", "mapping": {"type": "scaled_float"}}}]
    stream_template(server, "logs-mm-*", {"mappings": {"dynamic_templates": dynamic}})
    bulk(server, "logs-mm-default", [{"@timestamp": now_stamp(), "whole": 3, "part": 0.5, "word": "hello"}])
    types = server.field_types("logs-mm-default")
    assert types["whole"] == ("long", "dynamic")
    assert types["part"] == ("scaled_float", "dynamic_template")
    # A new string with no template: text plus a keyword multi-field.
    assert types["word"] == ("text", "dynamic") and types["word.keyword"] == ("keyword", "dynamic")
    _, mapping = call(server, "GET", "/logs-mm-default/_mapping")
    word = next(iter(mapping.values()))["mappings"]["properties"]["word"]
    assert word == {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}}


def test_version_is_configurable() -> None:
    with ElasticsearchServer(version="9.1.0") as server:
        assert call(server, "GET", "/")[1]["version"]["number"] == "9.1.0"


# -------------------------------------------------------------------------------------------- command line


def test_command_line_prints_its_url_first_and_stops_on_sigterm(tmp_path: Path) -> None:
    key_file = tmp_path / "es.key"
    process = subprocess.Popen(
        [sys.executable, "-m", "metrics_poller.testing.es_server", "--port", "0", "--api-key-out", str(key_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        assert oct(key_file.stat().st_mode & 0o777) == "0o600"
        key = key_file.read_text().strip()
        request = urllib.request.Request(url + "/", headers={"Authorization": f"ApiKey {key}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert orjson.loads(response.read())["version"]["number"] == "8.19.0"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url + "/", timeout=10)
        assert refused.value.code == 401
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=20)
    assert code == 0
    assert "Traceback" not in (process.stderr.read() if process.stderr else "")
