"""The `real_es` suite: what a user runs against their own cluster (README, "Testing against a real
Elasticsearch"); without ELASTICSEARCH_URL the same tests run against the test server. Together with the
other `real_es` tests (field types, a window written twice, mapping errors, the cursor store) it covers
set-up in both modes, validate, writes, duplicates, TSDS and a writer-only API key."""

from __future__ import annotations

from typing import Any

import pytest
from elasticsearch import AsyncElasticsearch

from metrics_poller.config import Elasticsearch
from metrics_poller.model import Outcome
from metrics_poller.sinks.elasticsearch import ElasticsearchSink, SinkError, build_client, check_access, setup

pytestmark = pytest.mark.real_es


@pytest.mark.parametrize("tsds", [False, True], ids=["standard", "tsds"])
async def test_setup_then_write_and_rewrite_in_both_modes(
    docs: Any, client: AsyncElasticsearch, cfg: Elasticsearch, tsds: bool
) -> None:
    cfg = cfg.model_copy(update={"tsds": tsds, "look_back": "2h"})
    lines = await setup(client, cfg)
    assert lines[0].startswith("connected to Elasticsearch")
    assert all(line.endswith((": created", ": updated", ": unchanged")) for line in lines[1:4])
    assert all(line.endswith(": unchanged") for line in (await setup(client, cfg))[1:])

    sink = ElasticsearchSink(client, cfg, None, backoff_initial=0.01, backoff_max=0.05)
    documents = docs.requests(cfg.namespace, 6)
    assert await sink.write(documents) == [Outcome.CREATED] * 6
    assert await sink.write(documents) == [Outcome.DUPLICATE] * 6
    stream = (await client.indices.get_data_stream(name=cfg.data_stream))["data_streams"][0]
    assert stream.get("index_mode", "standard") == ("time_series" if tsds else "standard")

    lines = await check_access(client, cfg)
    assert any(line.startswith("elasticsearch: privileges ok") for line in lines) or any(
        "security is not enabled" in line for line in lines
    )
    assert lines[-1].endswith(": templates installed and current")


async def test_a_writer_only_api_key_writes_and_validates_but_cannot_set_up(
    docs: Any, client: AsyncElasticsearch, cfg: Elasticsearch
) -> None:
    await setup(client, cfg)
    writer = {
        "writer": {
            "cluster": ["monitor"],
            "indices": [{"names": [cfg.data_stream], "privileges": ["create_doc", "auto_configure"]}],
        }
    }
    created = await client.security.create_api_key(name=f"metrics-poller-test-{cfg.namespace}", role_descriptors=writer)
    writer_cfg = cfg.model_copy(update={"api_key": type(cfg.api_key)(created["encoded"]) if cfg.api_key else None})
    if writer_cfg.api_key is None:
        pytest.skip("the cluster runs without security")
    writer_client = build_client(writer_cfg)
    try:
        lines = await check_access(writer_client, writer_cfg)
        assert f"elasticsearch: privileges ok for writing {cfg.data_stream}" in lines
        assert any("manage_index_templates" in line for line in lines)
        documents = docs.requests(cfg.namespace, 3)
        outcomes = await ElasticsearchSink(writer_client, writer_cfg, None).write(documents)
        assert outcomes == [Outcome.CREATED] * 3
        with pytest.raises(SinkError, match="manage_index_templates"):
            await setup(writer_client, writer_cfg.model_copy(update={"overwrite_templates": True, "retention": "9d"}))
    finally:
        await writer_client.close()
        await client.options(ignore_status=(400, 404)).security.invalidate_api_key(ids=[created["id"]])


async def test_a_tag_explosion_never_rejects_documents(
    docs: Any, client: AsyncElasticsearch, cfg: Elasticsearch
) -> None:
    """Tags are mapped dynamically, one field each; past the settings component's field limit they stay
    in `_source` unmapped instead of failing the document (Elasticsearch's default would refuse it)."""
    await setup(client, cfg)
    moment = docs.recent_minute(3)
    tags = {f"team-{i:04d}": "x" for i in range(2500)}
    document = docs.make(cfg.namespace, moment, {"requests": {"total": 1}}, {"region": "eastus"}, tags=tags)
    assert await ElasticsearchSink(client, cfg, None).write([document]) == [Outcome.CREATED]
