"""Shaping for azure.ai_foundry: Elastic's field names, percent scale, key order (foundry.md §2)."""

from __future__ import annotations

import orjson
import pytest

from metrics_poller.catalog import FOUNDRY_GROUPS, FOUNDRY_METRICS
from metrics_poller.datasets import AI_FOUNDRY, OPEN_AI
from metrics_poller.model import Account, Point, Series
from metrics_poller.shaping import DocumentContext, fingerprint, shape

# foundry.md §2.4: REST name → field stem after the package pipeline's renames.
ELASTIC_FIELDS = {
    "ModelRequests": "model_requests",
    "ModelAvailabilityRate": "model_availability_rate",
    "ProvisionedUtilization": "provisioned_utilization",
    "TimeToResponse": "time_to_response",
    "NormalizedTimeToFirstToken": "normalized_time_to_first_token",
    "TimeToLastByte": "time_to_last_byte",
    "NormalizedTimeBetweenTokens": "normalized_time_between_tokens",
    "TokensPerSecond": "tokens_per_second",
    "InputTokens": "input_tokens",
    "OutputTokens": "output_tokens",
    "TotalTokens": "total_tokens",
    # §3.2 notes: Metricbeat's rule for the lower-case names
    "cacheReadInputTokens": "cache_read_input_tokens",
    "ephemeral1hInputTokens": "ephemeral1h_input_tokens",
    "ephemeral5mInputTokens": "ephemeral5m_input_tokens",
}

# The account and data of Elastic's sample event (§2.6, an M4 document).
SAMPLE_ACCOUNT = Account(
    id="/subscriptions/12cabcb4-86e8-404f-a3d2-1dc9982f45ca/resourceGroups/rg-muthukumarparamasivam-0034_ai"
    "/providers/Microsoft.CognitiveServices/accounts/ai-muthuhub687016784742",
    name="ai-muthuhub687016784742",
    subscription_id="12cabcb4-86e8-404f-a3d2-1dc9982f45ca",
    resource_group="rg-muthukumarparamasivam-0034_ai",
    location="eastus2",
    kind="AIServices",
)
SAMPLE_TIME = "2025-06-16T09:59:00Z"
SAMPLE_DIMENSIONS = {
    "ApiName": "AIServices",
    "Region": "eastus2",
    "ModelDeploymentName": "Meta-Llama-3.1-405B-Instruct",
    "ModelName": "Meta-Llama-3.1-405B-Instruct",
    "ModelVersion": "1",
}


def test_field_names_are_the_integrations() -> None:
    fields = {m.name: m.field for m in FOUNDRY_METRICS}
    for name, field in ELASTIC_FIELDS.items():
        assert fields[name] == field
    assert {m.name for m in FOUNDRY_METRICS if m.official} == set(list(ELASTIC_FIELDS)[:11])
    # Every metric of every group is requested with every aggregation it offers, split by every
    # dimension (ModelRequests: all but the three Elastic leaves out, as for azure.open_ai).
    for group in FOUNDRY_GROUPS:
        for metric in group.metrics:
            assert set(group.aggregations) == set(metric.aggregations)
            extra = set(metric.dimensions) - set(group.dimensions)
            assert extra <= {"IsSpillover", "ServiceTierRequest", "ServiceTierResponse"}


def test_the_samples_data_shapes_into_the_samples_document() -> None:
    series = [
        Series(SAMPLE_ACCOUNT, "models_tokens", metric, "PT1M", SAMPLE_DIMENSIONS, [Point(SAMPLE_TIME, total=v)])
        for metric, v in (("InputTokens", 47.0), ("OutputTokens", 31.0), ("TotalTokens", 78.0))
    ]
    (document,) = shape(series, DocumentContext(period_ms=300_000), AI_FOUNDRY)
    source = document.source
    dims = {"api_name": "AIServices", "region": "eastus2", "model_deployment_name": "Meta-Llama-3.1-405B-Instruct"}
    dims |= {"model_name": "Meta-Llama-3.1-405B-Instruct", "model_version": "1"}
    assert source["azure"] == {
        "ai_foundry": {"input_tokens": {"total": 47}, "output_tokens": {"total": 31}, "total_tokens": {"total": 78}},
        "dimensions": {**dims, "fingerprint": fingerprint(dims)},
        "namespace": "Microsoft.CognitiveServices/accounts",
        "resource": {
            "group": SAMPLE_ACCOUNT.resource_group,
            "id": SAMPLE_ACCOUNT.id,
            "name": SAMPLE_ACCOUNT.name,
            "type": "Microsoft.CognitiveServices/accounts",
        },
        "subscription_id": SAMPLE_ACCOUNT.subscription_id,
        "timegrain": "PT1M",
    }
    assert source["@timestamp"] == "2025-06-16T09:59:00.000Z"
    assert source["data_stream"] == {"dataset": "azure.ai_foundry", "namespace": "default", "type": "metrics"}
    assert source["event"] == {"dataset": "azure.ai_foundry", "module": "azure"}
    assert source["cloud"] == {"provider": "azure", "region": "eastus2"}
    assert source["metricset"] == {"name": "monitor", "period": 300000}
    assert b'"input_tokens":{"total":47}' in document.body  # integral values as integers
    # Keys in ascending order at every level: equal documents are equal bytes.
    assert document.body == orjson.dumps(source, option=orjson.OPT_SORT_KEYS)


@pytest.mark.parametrize(
    ("azure", "stored"),
    [(78.01, 0.7801), (100.0, 1), (99.5, 0.995), (0.0, 0), (37.0, 0.37)],
)
def test_percentages_are_written_as_the_integrations_pipeline_leaves_them(azure: float, stored: float) -> None:
    """§2.5 pipeline test: 78.01 → 0.7801, 100 → 1; every aggregation of a Percent metric alike."""
    dims = {"Region": "eastus2", "ModelDeploymentName": "d", "ModelName": "m", "ModelVersion": "1"}
    point = Point("2025-06-16T09:59:00Z", average=azure, minimum=azure, maximum=azure)
    series = [Series(SAMPLE_ACCOUNT, "models_availability", "ModelAvailabilityRate", "PT1M", dims, [point])]
    (document,) = shape(series, DocumentContext(period_ms=300_000), AI_FOUNDRY)
    values = document.source["azure"]["ai_foundry"]["model_availability_rate"]
    assert values == {"avg": stored, "min": stored, "max": stored}
    assert all(type(v) is type(stored) for v in values.values())


def test_the_same_bucket_in_both_datasets_gets_the_same_id_in_its_own_stream() -> None:
    dims = {"Region": "eastus2", "ModelDeploymentName": "d", "ModelName": "m", "ModelVersion": "1"}
    point = [Point("2025-06-16T09:59:00Z", total=5.0)]
    (foundry,) = shape(
        [Series(SAMPLE_ACCOUNT, "models_audio_tokens", "AudioInputTokens", "PT1M", dims, point, ("total",))],
        DocumentContext(period_ms=300_000),
        AI_FOUNDRY,
    )
    (openai,) = shape(
        [Series(SAMPLE_ACCOUNT, "ptu_tokens_total", "AudioPromptTokens", "PT1M", dims, point, ("total",))],
        DocumentContext(period_ms=300_000),
        OPEN_AI,
    )
    assert foundry.id == openai.id  # same key, different data streams: the _id rule is the dataset's alone
    assert (foundry.dataset, openai.dataset) == ("azure.ai_foundry", "azure.open_ai")
    assert foundry.source["azure"]["ai_foundry"] == {"audio_input_tokens": {"total": 5}}
