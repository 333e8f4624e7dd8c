"""Golden tests: Azure wire-shape responses → NDJSON documents, byte for byte.

Inputs are `fixtures/azure/<case>/<group>.json` (one per-resource item per request group, as Azure sends
it); expected output is `fixtures/expected/<case>.ndjson` (what the NDJSON sink writes) and
`<case>.ids` (the `_id` of each line: these must never change, or re-polling stops being idempotent).

Regenerate with `UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/shaping -k golden`, then check every
changed line by hand against `shared/reference/elastic-compat.md`.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from metrics_poller.azure_json import ParsedResource, parse_resource_metrics, resource_id_of
from metrics_poller.catalog import GROUPS, GROUPS_BY_NAME
from metrics_poller.model import Account, Document
from metrics_poller.shaping import DocumentContext, fingerprint, shape
from metrics_poller.sinks.ndjson import NdjsonSink

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
AGENT = {"type": "metrics-poller", "name": "golden-host", "version": "0.1.0"}


@dataclass(frozen=True)
class Case:
    account: Account
    groups: tuple[str, ...]
    context: DocumentContext


SAMPLE_ACCOUNT = Account(
    id="/subscriptions/12cabcb4-86e8-404f-a3d2-1dc9982f45ca/resourceGroups/obs-openai-service-rs"
    "/providers/Microsoft.CognitiveServices/accounts/obs-openai-test-01",
    name="obs-openai-test-01",
    subscription_id="12cabcb4-86e8-404f-a3d2-1dc9982f45ca",
    resource_group="obs-openai-service-rs",
    location="eastus",
    kind="OpenAI",
)
JAPAN_ACCOUNT = Account(
    id="/subscriptions/5b1f6c2e-3d4a-4b8c-9e0f-1a2b3c4d5e6f/resourceGroups/rg-openai-jp"
    "/providers/Microsoft.CognitiveServices/accounts/aoai-japan-01",
    name="aoai-japan-01",
    subscription_id="5b1f6c2e-3d4a-4b8c-9e0f-1a2b3c4d5e6f",
    resource_group="rg-openai-jp",
    location="japaneast",
    kind="OpenAI",
)
PROD_ACCOUNT = Account(
    id="/subscriptions/3f2b6c1e-8d4a-4e59-9c1f-2a7b5d9e0c11/resourceGroups/rg-ai-prod"
    "/providers/Microsoft.CognitiveServices/accounts/aoai-prod-1",
    name="aoai-prod-1",
    subscription_id="3f2b6c1e-8d4a-4e59-9c1f-2a7b5d9e0c11",
    resource_group="rg-ai-prod",
    location="swedencentral",
    kind="AIServices",
    tags={"env": "prod", "cost-center": "4711"},
)

CASES = {
    "sample_event": Case(
        SAMPLE_ACCOUNT,
        ("requests",),
        DocumentContext(period_ms=300_000, agent=AGENT, event_duration_ns=2216811793),
    ),
    "token_document": Case(JAPAN_ACCOUNT, ("tokens",), DocumentContext(period_ms=300_000, agent=AGENT)),
    "all_groups": Case(
        PROD_ACCOUNT,
        tuple(group.name for group in GROUPS),
        DocumentContext(namespace="prod", period_ms=60_000, agent=AGENT, event_duration_ns=1_500_000_000),
    ),
}


def load(case: str, group: str) -> object:
    return json.loads((FIXTURES / "azure" / case / f"{group}.json").read_text(encoding="utf-8"))


def parse_case(name: str) -> dict[str, ParsedResource]:
    case = CASES[name]
    parsed = {}
    for group_name in case.groups:
        group = GROUPS_BY_NAME[group_name]
        parsed[group_name] = parse_resource_metrics(
            load(name, group_name),
            account=case.account,
            group=group.name,
            requested_dimensions=group.dimensions,
            requested_aggregations=group.aggregations,
            timegrain="PT1M",
        )
    return parsed


def shape_case(name: str) -> list[Document]:
    series = [s for parsed in parse_case(name).values() for s in parsed.series]
    return shape(series, CASES[name].context)


async def sink_bytes(documents: list[Document], tmp_path: Path) -> bytes:
    target = tmp_path / "out" / "documents.ndjson"
    sink = NdjsonSink(str(target))
    await sink.write(documents)
    await sink.close()
    return target.read_bytes()


def check_golden(path: Path, actual: bytes) -> None:
    if UPDATE:
        path.write_bytes(actual)
    assert actual == path.read_bytes(), f"{path.name} differs; see the module docstring to regenerate"


@pytest.mark.parametrize("name", sorted(CASES))
async def test_golden_ndjson(name: str, tmp_path: Path) -> None:
    documents = shape_case(name)
    check_golden(FIXTURES / "expected" / f"{name}.ndjson", await sink_bytes(documents, tmp_path))
    check_golden(FIXTURES / "expected" / f"{name}.ids", "".join(f"{d.id}\n" for d in documents).encode())


def test_sample_event_matches_elastic_sample() -> None:
    """Our document for the sample's data equals Elastic's sample event, bar agent-added fields."""
    (document,) = shape_case("sample_event")
    sample = json.loads((FIXTURES / "elastic" / "sample_event.json").read_text(encoding="utf-8"))
    expected = copy.deepcopy(sample)
    del expected["elastic_agent"]
    del expected["event"]["ingested"], expected["event"]["agent_id_status"]
    expected["agent"] = AGENT
    dimensions = expected["azure"]["dimensions"]
    dimensions["fingerprint"] = fingerprint(sample["azure"]["dimensions"])
    assert document.source == expected
    assert document.account_key == SAMPLE_ACCOUNT.id.lower()
    assert document.groups == {"requests"}


def test_token_document_merges_three_metrics() -> None:
    (document,) = shape_case("token_document")
    source = document.source
    assert source["@timestamp"] == "2024-04-24T05:01:00.000Z"
    azure = source["azure"]
    assert isinstance(azure, dict)
    assert azure["open_ai"] == {
        "generated_tokens": {"total": 46},
        "processed_prompt_tokens": {"total": 29},
        "token_transaction": {"total": 75},
    }
    assert {k: v for k, v in azure["dimensions"].items() if k != "fingerprint"} == {
        "api_name": "OpenAI",
        "feature_name": "gpt-35-turbo",
        "model_deployment_name": "turbo-35",
        "model_version": "0613",
        "region": "japaneast",
        "usage_channel": "Cloud",
    }
    assert source["cloud"] == {"provider": "azure", "region": "japaneast"}


def test_every_request_group_is_covered() -> None:
    documents = shape_case("all_groups")
    contributed = set().union(*(d.groups for d in documents))
    assert contributed == {group.name for group in GROUPS}


def test_ptu_total_and_stats_merge_into_one_document() -> None:
    documents = shape_case("all_groups")
    merged = [d for d in documents if d.groups == {"ptu_tokens_total", "ptu_tokens_stats"}]
    assert [d.source["@timestamp"] for d in merged] == [
        "2026-01-01T00:00:00.000Z",
        "2026-01-01T00:01:00.000Z",
    ]
    azure = merged[0].source["azure"]
    assert isinstance(azure, dict)
    assert azure["open_ai"] == {
        "active_tokens": {"avg": 866.6666666666666, "max": 2400, "min": 120, "total": 52000},
        "context_tokens_cache_match_rate": {"avg": 37.5, "max": 81.25, "min": 0},
        "normalized_time_between_tokens": {"avg": 12.25, "max": 31, "min": 8},
        "normalized_time_to_first_token": {"avg": 95.5, "max": 180, "min": 60},
        "time_to_last_byte": {"avg": 2150, "max": 4875.5, "min": 900},
        "tokens_per_second": {"avg": 81.6, "max": 125, "min": 32},
    }


def test_empty_buckets_produce_no_documents() -> None:
    for name in CASES:
        for document in shape_case(name):
            assert not str(document.source["@timestamp"]).startswith(("2026-01-01T00:02", "2024-04-11T01:47"))
    # 01:45 and 01:47 of the sample are bare buckets: only 01:46 remains.
    assert [d.source["@timestamp"] for d in shape_case("sample_event")] == ["2024-04-11T01:46:00.000Z"]


def test_tags_only_when_present() -> None:
    (sample,) = shape_case("sample_event")
    sample_azure = sample.source["azure"]
    assert isinstance(sample_azure, dict)
    assert "tags" not in sample_azure["resource"]
    prod_azure = shape_case("all_groups")[0].source["azure"]
    assert isinstance(prod_azure, dict)
    assert prod_azure["resource"]["tags"] == {"cost-center": "4711", "env": "prod"}


def test_metric_error_inside_a_200() -> None:
    parsed = parse_case("all_groups")["ptu_utilization"]
    assert parsed.metric_errors == {
        "AzureOpenAIProvisionedManagedUtilization": "InvalidSamplingType: Sampling type is not found. "
        "Metric: AzureOpenAIProvisionedManagedUtilization, Sampling type: Average."
    }
    assert parsed.series_counts == {"AzureOpenAIProvisionedManagedUtilizationV2": 1}
    assert {s.metric for s in parsed.series} == {"AzureOpenAIProvisionedManagedUtilizationV2"}


def test_fixtures_name_their_resource() -> None:
    for name, case in CASES.items():
        for group in case.groups:
            assert resource_id_of(load(name, group)) == case.account.id
