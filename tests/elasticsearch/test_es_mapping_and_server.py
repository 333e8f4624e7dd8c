"""Every field lands with the contract's type; and the test server behaves like Elasticsearch."""

from __future__ import annotations

import gzip
import socket
import struct
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from elasticsearch import AsyncElasticsearch

from metrics_poller import templates
from metrics_poller.config import Elasticsearch
from metrics_poller.datasets import OPEN_AI
from metrics_poller.model import Outcome
from metrics_poller.sinks.elasticsearch import ElasticsearchSink, build_client, setup
from metrics_poller.testing.es_server import ElasticsearchServer, Store


@pytest.mark.real_es
async def test_every_document_field_gets_the_contract_type(
    docs: Any, client: AsyncElasticsearch, cfg: Elasticsearch
) -> None:
    await setup(client, cfg)
    documents = docs.every_field(cfg.namespace)
    assert await ElasticsearchSink(client, cfg, None).write(documents) == [Outcome.CREATED] * len(documents)

    response = await client.indices.get_mapping(index=cfg.data_stream)
    mapped: dict[str, str] = {}
    for index in response.body.values():
        mapped.update(docs.flatten_mapping(index["mappings"].get("properties", {})))
    explicit = {path: spec["type"] for path, spec in templates.field_mappings().items()}
    for document in documents:
        for path in templates.leaf_paths(document.source):
            expected = explicit.get(path, "keyword")  # tags: keyword via the dynamic template
            assert mapped.get(path) == expected, f"{path}: mapped {mapped.get(path)}, want {expected}"
    # Every value was written as a JSON integer; dynamic mapping would have said long everywhere.
    for path, es_type in OPEN_AI.all_fields().items():
        assert mapped[path] == es_type


async def test_no_field_is_mapped_dynamically(docs: Any, server: ElasticsearchServer, namespace: str) -> None:
    cfg = Elasticsearch(hosts=[server.url], namespace=namespace)
    client = build_client(cfg)
    try:
        await setup(client, cfg)
        await ElasticsearchSink(client, cfg, None).write(docs.every_field(namespace))
    finally:
        await client.close()
    types = server.field_types(cfg.data_stream)
    assert not [p for p, (_, origin) in types.items() if origin == "dynamic"]
    assert types["azure.resource.tags.cost-center"] == ("keyword", "dynamic_template")


# --------------------------------------------------------------------------------- server behaviour


def _call(
    server: ElasticsearchServer,
    method: str,
    path: str,
    body: Any = None,
    *,
    gzipped: bool = False,
    ndjson: bytes | None = None,
) -> tuple[int, dict[str, str], Any]:
    data = ndjson if ndjson is not None else (orjson.dumps(body) if body is not None else None)
    headers = {"Content-Type": "application/json"}
    if gzipped and data is not None:
        data, headers["Content-Encoding"] = gzip.compress(data), "gzip"
    request = urllib.request.Request(server.url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), orjson.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), orjson.loads(error.read() or b"null")


def test_product_header_on_every_response(server: ElasticsearchServer) -> None:
    for method, path in (("GET", "/"), ("GET", "/_index_template/nope"), ("POST", "/nope/_search")):
        _, headers, _ = _call(server, method, path)
        assert headers["X-Elastic-Product"] == "Elasticsearch"
    status, _, info = _call(server, "GET", "/")
    assert status == 200 and info["version"]["number"].startswith("8.19.")


def test_a_client_that_resets_mid_request_is_not_reported(
    server: ElasticsearchServer, capfd: pytest.CaptureFixture[str]
) -> None:
    host, port = urlsplit(server.url).hostname, urlsplit(server.url).port
    for _ in range(3):  # a killed poller leaves half-sent requests behind
        with socket.create_connection((host, port)) as sock:
            sock.sendall(b"POST /_bulk HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
    status, _, _ = _call(server, "GET", "/")  # the server still answers
    time.sleep(0.2)  # let the handler threads finish
    assert status == 200
    assert "Traceback" not in capfd.readouterr().err


def test_data_stream_rejects_index_op_and_accepts_gzip(server: ElasticsearchServer) -> None:
    _call(server, "PUT", "/_index_template/t", {"index_patterns": ["logs-x-*"], "data_stream": {}})
    lines = (
        b'{"index":{"_id":"a"}}\n{"@timestamp":"2024-01-01T00:00:00Z"}\n'
        b'{"create":{"_id":"b"}}\n{"@timestamp":"2024-01-01T00:00:00Z"}\n'
        b'{"create":{}}\n{"message":"no timestamp"}\n'
    )
    status, _, body = _call(server, "POST", "/logs-x-default/_bulk", ndjson=lines, gzipped=True)
    assert status == 200 and body["errors"] is True
    assert [next(iter(i.values()))["status"] for i in body["items"]] == [400, 201, 400]
    assert "op_type of create" in body["items"][0]["index"]["error"]["reason"]
    status, _, streams = _call(server, "GET", "/_data_stream/logs-x-default")
    assert streams["data_streams"][0]["indices"][0]["index_name"].startswith(".ds-logs-x-default-")
    status, _, _ = _call(server, "POST", "/_bulk", ndjson=b'{"create":{"_index":"plain"}}\n{"a":1}')
    assert status == 400  # not newline-terminated


def test_search_count_and_range(server: ElasticsearchServer) -> None:
    lines = b"".join(
        orjson.dumps({"index": {"_id": str(i)}})
        + b"\n"
        + orjson.dumps({"@timestamp": f"2024-01-01T00:0{i}:00Z", "n": i, "tag": "even" if i % 2 == 0 else "odd"})
        + b"\n"
        for i in range(6)
    )
    assert _call(server, "POST", "/plain/_bulk?refresh=true", ndjson=lines)[0] == 200
    query = {"range": {"@timestamp": {"gte": "2024-01-01T00:02:00Z", "lt": "2024-01-01T00:05:00Z"}}}
    _, _, found = _call(server, "POST", "/plain/_search", {"query": query, "sort": [{"n": "desc"}], "size": 2})
    assert [h["_id"] for h in found["hits"]["hits"]] == ["4", "3"] and found["hits"]["total"]["value"] == 3
    _, _, counted = _call(server, "POST", "/plain/_count", {"query": {"term": {"tag": "even"}}})
    assert counted["count"] == 3
    assert _call(server, "POST", "/plain/_refresh")[0] == 200
    assert _call(server, "GET", "/missing/_search")[0] == 404


def test_basic_auth_is_checked() -> None:
    with ElasticsearchServer(username="u", password="p") as server:
        status, headers, body = _call(server, "GET", "/")
    assert status == 401 and body["error"]["type"] == "security_exception"
    assert "Basic" in headers["WWW-Authenticate"]


def test_a_20000_document_bulk_is_stored_whole(docs: Any) -> None:
    """Server-side bulk processing (parse, mapping checks, storage) of 20k documents in one request.
    Its speed belongs in the benchmarks, not in a timed test."""
    store = Store()
    built = templates.build()
    store.component_templates.update(built.component_templates)
    for name, body in built.index_templates.items():
        store.put_index_template(name, body)
    documents = docs.requests("default", 20000)
    body = b"".join(orjson.dumps({"create": {"_id": d.id}}) + b"\n" + orjson.dumps(d.source) + b"\n" for d in documents)
    with store.lock:
        response = store.bulk(body, "metrics-azure.open_ai-default")
    assert response["errors"] is False and len(response["items"]) == 20000
