"""`setup`: templates installed once, left alone when current, Elastic's integration respected."""

from __future__ import annotations

from typing import Any

import pytest
from elasticsearch import AsyncElasticsearch

from metrics_poller import templates
from metrics_poller.config import Elasticsearch
from metrics_poller.sinks.elasticsearch import ElasticsearchSink, SinkError, build_client, setup
from metrics_poller.testing.es_server import ElasticsearchServer


def _puts(server: ElasticsearchServer) -> int:
    return server.requests["PUT _index_template"] + server.requests["PUT _component_template"]


@pytest.mark.real_es
async def test_setup_installs_then_reports_unchanged(client: AsyncElasticsearch, cfg: Elasticsearch) -> None:
    await setup(client, cfg)  # a real cluster may already hold them from an earlier run
    lines = await setup(client, cfg)
    assert any(line.startswith("connected to Elasticsearch") for line in lines)
    for name in (templates.MAPPINGS_COMPONENT, templates.SETTINGS_COMPONENT, templates.INDEX_TEMPLATE):
        assert any(name in line and line.endswith("unchanged") for line in lines), lines


async def test_first_setup_creates_and_second_issues_no_put(server: ElasticsearchServer, namespace: str) -> None:
    cfg = Elasticsearch(hosts=[server.url], namespace=namespace)
    client = build_client(cfg)
    try:
        first = await setup(client, cfg)
        assert [line.rsplit(": ", 1)[1] for line in first[1:]] == ["created"] * 3
        assert _puts(server) == 3
        second = await setup(client, cfg)
        assert [line.rsplit(": ", 1)[1] for line in second[1:]] == ["unchanged"] * 3
        assert _puts(server) == 3  # nothing written the second time

        changed = cfg.model_copy(update={"retention": "30d"})
        third = await setup(client, changed)
        assert f"index template {templates.INDEX_TEMPLATE}: updated" in third
        assert f"component template {templates.MAPPINGS_COMPONENT}: unchanged" in third
        assert _puts(server) == 4
    finally:
        await client.close()


async def test_changed_template_with_existing_stream_mentions_rollover(
    docs: Any, server: ElasticsearchServer, namespace: str
) -> None:
    cfg = Elasticsearch(hosts=[server.url], namespace=namespace)
    client = build_client(cfg)
    try:
        await setup(client, cfg)
        await ElasticsearchSink(client, cfg, None).write(docs.every_field(namespace)[:1])
        lines = await setup(client, cfg.model_copy(update={"retention": "7d"}))
        assert any("_rollover" in line for line in lines)
    finally:
        await client.close()


async def _install_integration_template(client: AsyncElasticsearch) -> None:
    await client.indices.put_index_template(
        name=templates.INTEGRATION_TEMPLATE,
        index_patterns=["metrics-azure.open_ai-*"],
        data_stream={},
        priority=200,
        template={"mappings": {"properties": {"azure": {"properties": {"open_ai": {"type": "object"}}}}}},
    )


async def test_integration_template_is_left_alone(server: ElasticsearchServer, namespace: str) -> None:
    cfg = Elasticsearch(hosts=[server.url], namespace=namespace)
    client = build_client(cfg)
    try:
        await _install_integration_template(client)
        before = _puts(server)
        lines = await setup(client, cfg)
        assert _puts(server) == before
        assert any("metrics-azure.open_ai" in line and "overwrite_templates" in line for line in lines)
        assert set(server.store.index_templates) == {templates.INTEGRATION_TEMPLATE}
    finally:
        await client.close()


async def test_overwrite_templates_installs_above_the_integration(
    docs: Any, server: ElasticsearchServer, namespace: str
) -> None:
    cfg = Elasticsearch(hosts=[server.url], namespace=namespace, overwrite_templates=True)
    client = build_client(cfg)
    try:
        await _install_integration_template(client)
        lines = await setup(client, cfg)
        assert f"index template {templates.INDEX_TEMPLATE}: created" in lines
        assert any("takes precedence" in line for line in lines)
        # The integration's template is still there, and new streams use ours.
        assert templates.INTEGRATION_TEMPLATE in server.store.index_templates
        await ElasticsearchSink(client, cfg, None).write(docs.every_field(namespace)[:1])
        stream = server.data_stream(cfg.data_stream)
        assert stream is not None and stream.template == templates.INDEX_TEMPLATE
    finally:
        await client.close()


async def test_setup_auth_failure_is_one_clear_line(namespace: str) -> None:
    with ElasticsearchServer(api_key="expected-key-0123456789") as server:
        cfg = Elasticsearch(hosts=[server.url], namespace=namespace, api_key="wrong-key-abcdefghij")
        client = build_client(cfg)
        try:
            with pytest.raises(SinkError) as caught:
                await setup(client, cfg)
        finally:
            await client.close()
    message = str(caught.value)
    assert "rejected the credentials" in message and "\n" not in message
    assert "wrong-key-abcdefghij" not in message
