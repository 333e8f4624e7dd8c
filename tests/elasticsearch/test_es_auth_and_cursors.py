"""Credentials (right header, no leaks) and the Elasticsearch cursor store."""

from __future__ import annotations

import base64
import hashlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from elasticsearch import AsyncElasticsearch

from metrics_poller.config import Elasticsearch
from metrics_poller.model import Outcome
from metrics_poller.sinks.elasticsearch import (
    CURSOR_INDEX,
    ElasticsearchCursorStore,
    ElasticsearchSink,
    SinkError,
    build_client,
    setup,
)
from metrics_poller.testing.es_server import ElasticsearchServer

API_KEY = "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw=="
USER, PASSWORD = "poller", "pa55-w0rd-very-secret"
BEARER = "eyJhbGciOi.bearer-token-value.signature"

MODES = {
    "api_key": ({"api_key": API_KEY}, {"api_key": API_KEY}, f"ApiKey {API_KEY}", API_KEY),
    "api_key_pair": (
        {"api_key": "key-id:key-secret-123456"},
        {"api_key": "key-id:key-secret-123456"},
        "ApiKey " + base64.b64encode(b"key-id:key-secret-123456").decode(),
        "key-secret-123456",
    ),
    "basic": (
        {"username": USER, "password": PASSWORD},
        {"username": USER, "password": PASSWORD},
        "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
        PASSWORD,
    ),
    "bearer": ({"bearer": BEARER}, {"bearer_token": BEARER}, f"Bearer {BEARER}", BEARER),
}


@pytest.mark.parametrize("mode", sorted(MODES))
async def test_auth_mode_sends_its_header(
    docs: Any, mode: str, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    server_side, config_side, header, secret = MODES[mode]
    caplog.set_level(logging.DEBUG)
    with ElasticsearchServer(**server_side) as server:
        cfg = Elasticsearch.model_validate({"hosts": [server.url], "namespace": namespace, **config_side})
        client = build_client(cfg)
        try:
            await setup(client, cfg)
            outcomes = await ElasticsearchSink(client, cfg, None).write(docs.requests(namespace, 2))
        finally:
            await client.close()
        assert outcomes == [Outcome.CREATED] * 2
        assert set(server.authorizations()) == {header}
    assert secret not in caplog.text


@pytest.mark.parametrize("mode", sorted(MODES))
async def test_refused_credentials_raise_without_the_secret(
    docs: Any, mode: str, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    _, config_side, _, secret = MODES[mode]
    caplog.set_level(logging.DEBUG)
    with ElasticsearchServer(api_key="the-only-accepted-key") as server:
        cfg = Elasticsearch.model_validate({"hosts": [server.url], "namespace": namespace, **config_side})
        client = build_client(cfg)
        try:
            with pytest.raises(SinkError) as from_setup:
                await setup(client, cfg)
            with pytest.raises(SinkError) as from_write:
                await ElasticsearchSink(client, cfg, None).write(docs.requests(namespace, 1))
        finally:
            await client.close()
    for caught in (from_setup, from_write):
        text = str(caught.value)
        assert "401" in text and "\n" not in text
        assert secret not in text and secret not in repr(caught.value)
        assert caught.value.__cause__ is None
    assert secret not in caplog.text


async def test_missing_privilege_per_item_raises(docs: Any, server: ElasticsearchServer, namespace: str) -> None:
    cfg = Elasticsearch(hosts=[server.url], namespace=namespace)
    client = build_client(cfg)
    server.inject("item_403", times=1)
    try:
        with pytest.raises(SinkError, match="refused the write"):
            await ElasticsearchSink(client, cfg, None).write(docs.requests(namespace, 2))
    finally:
        await client.close()


def test_disabled_verification_warns(caplog: pytest.LogCaptureFixture) -> None:
    cfg = Elasticsearch(hosts=["https://es.example:9200"], verify_certs=False, password=None)
    with caplog.at_level(logging.WARNING):
        build_client(cfg)
    assert "verify_certs is false" in caplog.text


# ------------------------------------------------------------------------------------------- cursors


def test_default_cursor_index_is_not_captured_by_fleet_data_stream_patterns() -> None:
    import fnmatch

    assert not any(fnmatch.fnmatchcase(CURSOR_INDEX, p) for p in ("metrics-*-*", "logs-*-*", "traces-*-*"))


@pytest.mark.real_es
async def test_cursor_store_round_trips_and_survives_a_new_client(
    client: AsyncElasticsearch, cfg: Elasticsearch, namespace: str
) -> None:
    index = f"metrics_poller_cursors_{namespace}"
    store = ElasticsearchCursorStore(client, index)
    try:
        assert await store.load() == {}
        t1 = datetime(2024, 4, 11, 1, 45, tzinfo=UTC)
        account = "/SUBSCRIPTIONS/ABC/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/A1"
        requests, tokens = (account, "azure.open_ai", "requests"), ("acc2", "azure.ai_foundry", "tokens")
        await store.save({requests: t1, tokens: t1 + timedelta(minutes=5)})
        await store.save({requests: t1 + timedelta(minutes=10)})
        await store.save({tokens: t1})  # stores exactly what it is given, even backwards

        fresh = build_client(cfg)
        try:
            loaded = await ElasticsearchCursorStore(fresh, index).load()
        finally:
            await fresh.close()
        assert loaded == {
            (account.lower(), "azure.open_ai", "requests"): t1 + timedelta(minutes=10),
            ("acc2", "azure.ai_foundry", "tokens"): t1,
        }
        assert all(v.tzinfo is not None and v.utcoffset() == timedelta(0) for v in loaded.values())
    finally:
        await client.options(ignore_status=404).indices.delete(index=index)


async def test_cursor_store_pages_and_coexists_with_fleet_templates(server: ElasticsearchServer) -> None:
    cfg = Elasticsearch(hosts=[server.url])
    client = build_client(cfg)
    try:
        # Fleet's built-in template turns every metrics-*-* name into a data stream.
        await client.indices.put_index_template(
            name="metrics", index_patterns=["metrics-*-*"], data_stream={}, priority=100
        )
        store = ElasticsearchCursorStore(client)
        moment = datetime(2024, 1, 1, tzinfo=UTC)
        cursors = {
            (f"account-{i:04d}", "azure.open_ai", "requests"): moment + timedelta(minutes=i) for i in range(2100)
        }
        await store.save(cursors)
        assert await ElasticsearchCursorStore(client).load() == cursors
        assert server.store.indices[CURSOR_INDEX].data_stream is None
        assert server.requests["POST _search"] >= 3  # 1000 per page
    finally:
        await client.close()


async def test_cursor_documents_written_before_datasets_are_read_and_overwritten(server: ElasticsearchServer) -> None:
    """A cursor index an older poller wrote (strict mapping, bare group names) keeps working: its
    cursors are `azure.open_ai`'s, saving one overwrites its document, other datasets are added."""
    cfg = Elasticsearch(hosts=[server.url])
    client = build_client(cfg)
    try:
        legacy_mappings = {
            "dynamic": "strict",
            "properties": {
                name: {"type": "date" if name in ("cursor", "updated") else "keyword"}
                for name in ("key", "account", "group", "cursor", "updated")
            },
        }
        await client.indices.create(index=CURSOR_INDEX, mappings=legacy_mappings)
        account = "/subscriptions/s/resourcegroups/rg/providers/microsoft.cognitiveservices/accounts/a"
        old_id = hashlib.sha256(f"{account}\x00requests".encode()).hexdigest()  # the id older versions used
        source = {"key": old_id, "account": account, "group": "requests", "cursor": "2024-01-01T00:05:00.000Z"}
        await client.bulk(index=CURSOR_INDEX, operations=[{"index": {"_id": old_id}}, source], refresh=True)

        store = ElasticsearchCursorStore(client)
        t0 = datetime(2024, 1, 1, 0, 5, tzinfo=UTC)
        assert await store.load() == {(account, "azure.open_ai", "requests"): t0}
        later = t0 + timedelta(minutes=5)
        await store.save(
            {(account, "azure.open_ai", "requests"): later, (account, "azure.ai_foundry", "models_tokens"): t0}
        )
        assert await ElasticsearchCursorStore(client).load() == {
            (account, "azure.open_ai", "requests"): later,
            (account, "azure.ai_foundry", "models_tokens"): t0,
        }
        response = await client.count(index=CURSOR_INDEX)
        assert response["count"] == 2  # the old document was overwritten, not duplicated
    finally:
        await client.close()


async def test_check_access_reports_privileges_and_templates(namespace: str) -> None:
    from metrics_poller.sinks.elasticsearch import check_access

    with ElasticsearchServer(api_key=API_KEY) as server:
        cfg = Elasticsearch(hosts=[server.url], namespace=namespace, api_key=API_KEY)
        client = build_client(cfg)
        try:
            lines = await check_access(client, cfg)
            assert any("privileges ok" in line for line in lines)
            assert lines[-1].endswith("run `metrics-poller setup`")
            await setup(client, cfg)
            assert (await check_access(client, cfg))[-1].endswith("installed and current")

            server.denied_privileges = {"create_index"}
            assert any("state.backend" in line for line in await check_access(client, cfg))
            server.denied_privileges = {"create_doc"}
            with pytest.raises(SinkError, match=f"create_doc on metrics-azure.open_ai-{namespace}"):
                await check_access(client, cfg)
        finally:
            await client.close()


async def test_check_access_without_security(server: ElasticsearchServer, namespace: str) -> None:
    from metrics_poller.sinks.elasticsearch import check_access

    cfg = Elasticsearch(hosts=[server.url], namespace=namespace)
    client = build_client(cfg)
    try:
        lines = await check_access(client, cfg)
    finally:
        await client.close()
    assert any("security is not enabled" in line for line in lines)
