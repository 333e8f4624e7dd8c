"""The azure.ai_foundry.agent data stream (preview) in Elasticsearch: its own template set, installed
by `setup` and by `run`/`once` when nothing governs the stream, left alone when Elastic's preview
integration template governs it; documents go in final, with `pipeline=_none`, and keep their types."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from metrics_poller.config import Elasticsearch
from metrics_poller.datasets import AI_FOUNDRY, AI_FOUNDRY_AGENT, OPEN_AI
from metrics_poller.model import PROJECT_TYPE, Account, Point, Series
from metrics_poller.shaping import DocumentContext, shape
from metrics_poller.sinks.elasticsearch import ElasticsearchSink, build_client, ensure_templates, setup
from metrics_poller.testing.es_server import ElasticsearchServer

PROJECT = Account(
    id="/subscriptions/12cabcb4-86e8-404f-a3d2-1dc9982f45ca/resourceGroups/rg-ai"
    "/providers/Microsoft.CognitiveServices/accounts/ai-hub-01/projects/my-agent-project",
    name="my-agent-project",
    subscription_id="12cabcb4-86e8-404f-a3d2-1dc9982f45ca",
    resource_group="rg-ai",
    location="eastus2",
    kind="AIServices",
    type=PROJECT_TYPE,
)
# Elastic's preview pipeline (PR #17422, foundry.md §2.5): renames that match none of Metricbeat's keys.
PIPELINE = "metrics-azure.ai_foundry.agent-0.9.0"
INTEGRATION_PIPELINE: dict[str, Any] = {
    "processors": [
        {"rename": {"field": "azure.metrics", "target_field": "azure.ai_foundry.agent", "ignore_missing": True}},
        {
            "rename": {
                "field": "azure.ai_foundry.agent.inputtokens.total",
                "target_field": "azure.ai_foundry.agent.input_tokens.total",
                "ignore_missing": True,
            }
        },
    ],
}


def _documents(namespace: str) -> list[Any]:
    """One A5 (runs) document: every aggregation, integral count and total, fractional average."""
    moment = (datetime.now(UTC) - timedelta(minutes=10)).replace(second=0, microsecond=0)
    dims = {
        "AgentId": "asst_1",
        "ModelName": "gpt-4o",
        "RunStatus": "completed",
        "StatusCode": "200",
        "ThreadId": "thread_1",
        "StreamType": "Streaming",
    }
    point = Point(moment.strftime("%Y-%m-%dT%H:%M:%SZ"), average=1.5, minimum=1.0, maximum=2.0, total=3.0, count=2.0)
    series = [Series(PROJECT, "agent_runs", "AgentRuns", "PT1M", dims, [point])]
    return shape(series, DocumentContext(namespace=namespace, period_ms=300_000), AI_FOUNDRY_AGENT)


async def test_setup_installs_the_agent_templates_and_documents_keep_their_types(namespace: str) -> None:
    with ElasticsearchServer() as server:
        cfg = Elasticsearch(hosts=[server.url], namespace=namespace)
        client = build_client(cfg)
        try:
            lines = await setup(client, cfg, (OPEN_AI, AI_FOUNDRY, AI_FOUNDRY_AGENT))
            assert f"index template {AI_FOUNDRY_AGENT.index_template}: created" in lines
            body = server.store.index_templates[AI_FOUNDRY_AGENT.index_template]
            assert body["index_patterns"] == ["metrics-azure.ai_foundry.agent-*"]
            outcomes = await ElasticsearchSink(client, cfg, None).write(_documents(namespace))
            assert [o.value for o in outcomes] == ["created"]
            (stored,) = server.documents(AI_FOUNDRY_AGENT.data_stream(namespace))
            assert stored["_source"]["azure"]["ai_foundry"] == {
                "agent": {"agent_runs": {"avg": 1.5, "count": 2, "max": 2, "min": 1, "total": 3}}
            }
            types = server.field_types(AI_FOUNDRY_AGENT.data_stream(namespace))
            assert types["azure.ai_foundry.agent.agent_runs.total"] == ("long", "explicit")
            assert types["azure.ai_foundry.agent.agent_runs.count"] == ("long", "explicit")
            assert types["azure.ai_foundry.agent.agent_runs.avg"] == ("float", "explicit")
            assert types["azure.dimensions.thread_id"] == ("keyword", "explicit")
            # The Models stream's pattern does not take the agent stream's documents.
            assert server.documents(AI_FOUNDRY.data_stream(namespace)) == []
        finally:
            await client.close()


async def test_beside_elastic_preview_template_the_poller_leaves_it_and_bypasses_its_pipeline(
    namespace: str,
) -> None:
    with ElasticsearchServer() as server:
        cfg = Elasticsearch(hosts=[server.url], namespace=namespace)
        client = build_client(cfg)
        try:
            await client.ingest.put_pipeline(id=PIPELINE, **INTEGRATION_PIPELINE)
            await client.indices.put_index_template(
                name=AI_FOUNDRY_AGENT.integration_template,
                index_patterns=[AI_FOUNDRY_AGENT.index_pattern],
                data_stream={},
                priority=200,
                template={"settings": {"index": {"default_pipeline": PIPELINE}}},
            )
            lines = await setup(client, cfg, (AI_FOUNDRY_AGENT,))
            assert any(AI_FOUNDRY_AGENT.integration_template in line and "left it alone" in line for line in lines)
            assert AI_FOUNDRY_AGENT.index_template not in server.store.index_templates
            assert await ensure_templates(client, cfg, (OPEN_AI, AI_FOUNDRY_AGENT)) == ["azure.open_ai"]
            await ElasticsearchSink(client, cfg, None).write(_documents(namespace))
            bulk = [r for r in server.recent if r.path.endswith("/_bulk")]
            assert bulk and bulk[-1].query.get("pipeline") == "_none"
            (stored,) = server.documents(AI_FOUNDRY_AGENT.data_stream(namespace))
            assert stored["_source"]["azure"]["ai_foundry"]["agent"]["agent_runs"]["total"] == 3
        finally:
            await client.close()
