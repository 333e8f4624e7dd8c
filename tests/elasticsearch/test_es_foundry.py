"""The azure.ai_foundry data stream beside Elastic's azure_ai_foundry integration (foundry.md §2.5).

The integration's default pipeline divides the two percentages by 100 and is not idempotent, so the
poller's final documents go in with `pipeline=_none` unless the user names a pipeline. Both situations
run against the test server with the integration's template and pipeline installed as Fleet would.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from metrics_poller import templates
from metrics_poller.config import Elasticsearch
from metrics_poller.datasets import AI_FOUNDRY, OPEN_AI
from metrics_poller.model import Account, Point, Series
from metrics_poller.shaping import DocumentContext, shape
from metrics_poller.sinks.elasticsearch import ElasticsearchSink, build_client, ensure_templates, setup
from metrics_poller.testing.es_server import ElasticsearchServer

ACCOUNT = Account(
    id="/subscriptions/12cabcb4-86e8-404f-a3d2-1dc9982f45ca/resourceGroups/rg-ai"
    "/providers/Microsoft.CognitiveServices/accounts/ai-hub-01",
    name="ai-hub-01",
    subscription_id="12cabcb4-86e8-404f-a3d2-1dc9982f45ca",
    resource_group="rg-ai",
    location="eastus2",
    kind="AIServices",
)
# The integration's pipeline, processor for processor (elastic/integrations
# packages/azure_ai_foundry/data_stream/metrics/elasticsearch/ingest_pipeline/default.yml).
INTEGRATION_PIPELINE: dict[str, Any] = {
    "processors": [
        {"rename": {"field": "azure.metrics", "target_field": "azure.ai_foundry", "ignore_missing": True}},
        *(
            {
                "rename": {
                    "field": f"azure.ai_foundry.{old}.avg",
                    "target_field": f"azure.ai_foundry.{new}.avg",
                    "ignore_missing": True,
                }
            }
            for old, new in (
                ("time_toresponse", "time_to_response"),
                ("normalized_time_tofirst_token", "normalized_time_to_first_token"),
                ("time_tolast_byte", "time_to_last_byte"),
            )
        ),
        *(
            {
                "script": {
                    "lang": "painless",
                    "if": f"ctx.azure.ai_foundry.{field}.avg != null",
                    "params": {"param_percent": 100},
                    "source": f"ctx.azure.ai_foundry.{field}.avg = ctx.azure.ai_foundry.{field}.avg"
                    " / params.param_percent;",
                    "ignore_failure": True,
                }
            }
            for field in ("model_availability_rate", "provisioned_utilization")
        ),
    ],
    "on_failure": [{"set": {"field": "error.message", "value": "{{ _ingest.on_failure_message }}"}}],
}
PIPELINE = "metrics-azure.ai_foundry-0.9.1"


async def _install_integration(client: Any) -> None:
    """What Fleet installs for azure_ai_foundry: its pipeline and a template that runs it by default."""
    await client.ingest.put_pipeline(id=PIPELINE, **INTEGRATION_PIPELINE)
    await client.indices.put_index_template(
        name=AI_FOUNDRY.integration_template,
        index_patterns=[AI_FOUNDRY.index_pattern],
        data_stream={},
        priority=200,
        template={"settings": {"index": {"default_pipeline": PIPELINE}}},
    )


def _documents(namespace: str) -> list[Any]:
    """One M1 document as the poller shapes it: availability 99.75 % and utilization 100 % from Azure."""
    moment = (datetime.now(UTC) - timedelta(minutes=10)).replace(second=0, microsecond=0)
    dims = {"Region": "eastus2", "ModelDeploymentName": "gpt-4o", "ModelName": "gpt-4o", "ModelVersion": "2024-11-20"}
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    series = [
        Series(ACCOUNT, "models_availability", metric, "PT1M", dims, [Point(stamp, average=value)], ("average",))
        for metric, value in (("ModelAvailabilityRate", 99.75), ("ProvisionedUtilization", 100.0))
    ]
    return shape(series, DocumentContext(namespace=namespace, period_ms=300_000), AI_FOUNDRY)


def _stored(server: ElasticsearchServer, namespace: str) -> dict[str, Any]:
    (document,) = server.documents(AI_FOUNDRY.data_stream(namespace))
    values: dict[str, Any] = document["_source"]["azure"]["ai_foundry"]
    return values


async def test_final_documents_bypass_the_integration_pipeline(namespace: str) -> None:
    with ElasticsearchServer() as server:
        cfg = Elasticsearch(hosts=[server.url], namespace=namespace)
        client = build_client(cfg)
        try:
            await _install_integration(client)
            documents = _documents(namespace)
            assert documents[0].source["azure"]["ai_foundry"]["model_availability_rate"] == {"avg": 0.9975}
            outcomes = await ElasticsearchSink(client, cfg, None).write(documents)
            assert [o.value for o in outcomes] == ["created"]
            assert _stored(server, namespace) == {
                "model_availability_rate": {"avg": 0.9975},
                "provisioned_utilization": {"avg": 1},
            }
            bulk = [r for r in server.recent if r.path.endswith("/_bulk")]
            assert bulk and bulk[-1].query.get("pipeline") == "_none"

            # Without the bypass the integration's pipeline would scale the final values again.
            other = f"{namespace}x"
            await client.bulk(
                index=AI_FOUNDRY.data_stream(other),
                operations=[{"create": {}}, _documents(other)[0].source],
            )
            assert _stored(server, other) == {
                "model_availability_rate": {"avg": 0.9975 / 100},  # 0.009975000000000001
                "provisioned_utilization": {"avg": 0},  # Painless: integer 1 / 100 is 0
            }
        finally:
            await client.close()


async def test_a_pipeline_the_user_names_runs_instead(namespace: str) -> None:
    with ElasticsearchServer() as server:
        cfg = Elasticsearch(hosts=[server.url], namespace=namespace, pipeline="poller-extra")
        client = build_client(cfg)
        try:
            await _install_integration(client)
            await client.ingest.put_pipeline(
                id="poller-extra", processors=[{"set": {"field": "labels.source", "value": "poller"}}]
            )
            await ElasticsearchSink(client, cfg, None).write(_documents(namespace))
            (document,) = server.documents(AI_FOUNDRY.data_stream(namespace))
            assert document["_source"]["labels"] == {"source": "poller"}
            assert _stored(server, namespace)["model_availability_rate"] == {"avg": 0.9975}
        finally:
            await client.close()


async def test_the_azure_open_ai_stream_keeps_its_default_pipeline(namespace: str) -> None:
    """Only datasets whose integration pipeline is unsafe on final documents bypass it."""
    assert OPEN_AI.pipeline(None) is None and AI_FOUNDRY.pipeline(None) == "_none"
    assert AI_FOUNDRY.pipeline("mine") == "mine" and OPEN_AI.pipeline("mine") == "mine"


async def test_setup_installs_one_template_set_per_dataset_and_respects_the_integration(namespace: str) -> None:
    with ElasticsearchServer() as server:
        cfg = Elasticsearch(hosts=[server.url], namespace=namespace)
        client = build_client(cfg)
        try:
            await _install_integration(client)
            lines = await setup(client, cfg, (OPEN_AI, AI_FOUNDRY))
            assert f"index template {OPEN_AI.index_template}: created" in lines
            assert any(AI_FOUNDRY.integration_template in line and "left it alone" in line for line in lines)
            assert any("pipeline=_none" in line for line in lines)
            assert AI_FOUNDRY.index_template not in server.store.index_templates
            # `run`/`once` install only where nothing governs the stream.
            assert await ensure_templates(client, cfg, (OPEN_AI, AI_FOUNDRY)) == []
        finally:
            await client.close()
    with ElasticsearchServer() as server:
        cfg = Elasticsearch(hosts=[server.url], namespace=namespace)
        client = build_client(cfg)
        try:
            assert await ensure_templates(client, cfg, (OPEN_AI, AI_FOUNDRY)) == ["azure.open_ai", "azure.ai_foundry"]
            body = server.store.index_templates[AI_FOUNDRY.index_template]
            assert body["index_patterns"] == ["metrics-azure.ai_foundry-*"]
            await ElasticsearchSink(client, cfg, None).write(_documents(namespace))
            types = server.field_types(AI_FOUNDRY.data_stream(namespace))
            assert types["azure.ai_foundry.model_availability_rate.avg"] == ("float", "explicit")
            assert types["azure.dimensions.model_deployment_name"] == ("keyword", "explicit")
            assert templates.field_mappings(AI_FOUNDRY)["azure.ai_foundry.model_requests.total"]["type"] == "long"
        finally:
            await client.close()
