"""The azure.ai_foundry dataset end to end: simulator over HTTPS → real SDKs → shaping → NDJSON.

A small estate (seed 24: one AIServices account serving only non-OpenAI models, one serving both,
PTU deployments) polled with the default datasets; every stored value is checked against the
simulator's ground truth, and the two metric families against each other.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from runtime_support import NOW, one_cycle, parse, poller_config, read_ndjson

from metrics_poller.datasets import AI_FOUNDRY, OPEN_AI
from metrics_poller.runtime import create_poller
from metrics_poller.simulator import SimSpec, Simulator
from metrics_poller.simulator.world import model_of
from metrics_poller.testing.ground_truth import compare, expected_documents
from metrics_poller.windows import window_end

GRAIN = timedelta(minutes=1)
LATENCY = timedelta(seconds=240)


@pytest.fixture(scope="module")
def foundry_sim() -> Iterator[Simulator]:
    spec = SimSpec(seed=24, subscriptions=1, regions=("eastus", "westeurope"), accounts_per_region=3)
    with Simulator(spec) as simulator:
        simulator.clock = lambda: NOW + timedelta(minutes=10)
        yield simulator


@pytest.fixture(scope="module")
def stored(foundry_sim: Simulator, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """The documents of one cycle with the default datasets."""
    import asyncio

    tmp_path = tmp_path_factory.mktemp("foundry")
    cfg = parse(poller_config(foundry_sim, tmp_path))
    assert cfg.datasets == ["azure.open_ai", "azure.ai_foundry"]

    async def cycle() -> None:
        report = await one_cycle(cfg)
        assert report.ok, report.failures
        assert set(report.stored_by_dataset) == {"azure.open_ai", "azure.ai_foundry"}

    asyncio.run(cycle())
    return read_ndjson(tmp_path / "out.ndjson")


def polled(sim: Simulator) -> list[tuple[str, str]]:
    return [(a.id, a.id.lower()) for a in sim.accounts if a.kind in ("OpenAI", "AIServices")]


def of(documents: list[dict[str, Any]], dataset: str) -> list[dict[str, Any]]:
    return [d for d in documents if d["data_stream"]["dataset"] == dataset]


def test_every_value_of_both_datasets_equals_the_ground_truth(
    foundry_sim: Simulator, stored: list[dict[str, Any]]
) -> None:
    end = window_end(NOW, LATENCY, GRAIN)
    start = end - timedelta(minutes=5)
    for dataset in (OPEN_AI, AI_FOUNDRY):
        expected = expected_documents(foundry_sim, polled(foundry_sim), dataset.groups, start, end, dataset=dataset)
        result = compare(expected, stored, dataset=dataset)
        assert result.perfect, f"{dataset.name}: {result.summary()}"
        assert result.expected > 50
    foundry = of(stored, "azure.ai_foundry")
    assert {d["azure"]["namespace"] for d in foundry} == {"Microsoft.CognitiveServices/accounts"}
    assert all(d["event"]["dataset"] == "azure.ai_foundry" and "open_ai" not in d["azure"] for d in foundry)


def test_non_openai_models_appear_only_in_the_models_metrics(
    foundry_sim: Simulator, stored: list[dict[str, Any]]
) -> None:
    foundry_only = [
        a for a in foundry_sim.accounts if a.deployments and not any(model_of(d).openai for d in a.deployments)
    ]
    assert foundry_only and all(a.kind == "AIServices" for a in foundry_only)
    other_models = {d.model for a in foundry_sim.accounts for d in a.deployments if not model_of(d).openai}
    by_dataset: dict[str, set[str]] = {}
    accounts: dict[str, set[str]] = {}
    for document in stored:
        dataset = document["data_stream"]["dataset"]
        by_dataset.setdefault(dataset, set()).add(document["azure"]["dimensions"].get("model_name", ""))
        accounts.setdefault(dataset, set()).add(document["azure"]["resource"]["id"].lower())
    assert other_models <= by_dataset["azure.ai_foundry"]
    assert not other_models & by_dataset["azure.open_ai"]
    for account in foundry_only:
        assert account.key in accounts["azure.ai_foundry"]
        assert account.key not in accounts["azure.open_ai"]


def test_openai_models_show_the_same_traffic_in_both_families(stored: list[dict[str, Any]]) -> None:
    """ModelRequests equals AzureOpenAIRequests, InputTokens the sum of ProcessedPromptTokens over the
    dimensions only the Azure OpenAI metric has, for every OpenAI deployment and minute."""

    def sums(dataset: str, field: str, keys: tuple[str, ...]) -> Counter[tuple[str, ...]]:
        out: Counter[tuple[str, ...]] = Counter()
        for document in of(stored, dataset):
            value = document["azure"][dataset.split(".")[1]].get(field, {}).get("total")
            if value is not None:
                dims = document["azure"]["dimensions"]
                key = (document["azure"]["resource"]["id"], document["@timestamp"], *(dims[k] for k in keys))
                out[key] += value
        return out

    request_keys = ("model_deployment_name", "status_code", "api_name", "operation_name", "stream_type")
    models = sums("azure.ai_foundry", "model_requests", request_keys)
    openai = sums("azure.open_ai", "requests", request_keys)
    assert openai and all(models[key] == value for key, value in openai.items())
    token_keys = ("model_deployment_name", "api_name", "model_version")
    inputs = sums("azure.ai_foundry", "input_tokens", token_keys)
    prompts = sums("azure.open_ai", "processed_prompt_tokens", token_keys)
    assert prompts and all(inputs[key] == value for key, value in prompts.items())
    assert set(models) > set(openai)  # the non-OpenAI deployments' requests are only in Models


def test_percentages_are_stored_as_fractions(stored: list[dict[str, Any]]) -> None:
    seen: Counter[str] = Counter()
    for document in of(stored, "azure.ai_foundry"):
        for field in ("model_availability_rate", "provisioned_utilization"):
            for value in document["azure"]["ai_foundry"].get(field, {}).values():
                assert 0 <= value <= 1, (field, value)
                seen[field] += 1
    assert seen["model_availability_rate"] and seen["provisioned_utilization"]


def test_cursors_are_kept_per_dataset(foundry_sim: Simulator, stored: list[dict[str, Any]], tmp_path: Path) -> None:
    del stored
    names = {key[1] for key in _cursor_keys(foundry_sim, tmp_path)}
    assert names == {"azure.open_ai", "azure.ai_foundry"}


def _cursor_keys(sim: Simulator, tmp_path: Path) -> list[tuple[str, str, str]]:
    import asyncio

    from metrics_poller.state import FileCursorStore

    cfg = parse(poller_config(sim, tmp_path, azure={"metric_groups": ["requests", "models_requests"]}))

    async def cycle() -> list[tuple[str, str, str]]:
        poller = await create_poller(cfg)
        try:
            assert (await poller.run_cycle(NOW)).ok
        finally:
            await poller.close()
        return list(await FileCursorStore(cfg.state.path).load())

    return asyncio.run(cycle())


# Every field the azure_ai_foundry Overview dashboard, its saved search and its alert rule templates
# read (foundry.md §4.1, §4.2) → what the field must hold.
DASHBOARD_FIELDS: dict[str, str] = {
    "azure.subscription_id": "keyword",
    "azure.resource.group": "keyword",
    "azure.resource.name": "keyword",
    "azure.dimensions.model_name": "keyword",
    "azure.dimensions.model_version": "keyword",
    "azure.dimensions.model_deployment_name": "keyword",
    "azure.dimensions.status_code": "status",
    "azure.ai_foundry.model_requests.total": "count",
    "azure.ai_foundry.total_tokens.total": "count",
    "azure.ai_foundry.input_tokens.total": "count",
    "azure.ai_foundry.output_tokens.total": "count",
    "azure.ai_foundry.time_to_response.avg": "milliseconds",
    "azure.ai_foundry.normalized_time_between_tokens.avg": "milliseconds",
    "azure.ai_foundry.normalized_time_to_first_token.avg": "milliseconds",
    "azure.ai_foundry.time_to_last_byte.avg": "milliseconds",
    "azure.ai_foundry.model_availability_rate.avg": "fraction",
    "azure.ai_foundry.provisioned_utilization.avg": "fraction",
}
MAPPED_AS = {"keyword": {"keyword"}, "status": {"keyword"}, "count": {"long"}, "milliseconds": {"float"}}
MAPPED_AS["fraction"] = {"float"}


def _value(document: dict[str, Any], path: str) -> Any:
    node: Any = document
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def test_the_demo_feeds_every_field_elastics_dashboard_and_alerts_read(tmp_path: Path) -> None:
    from metrics_poller import templates
    from metrics_poller.demo import run_demo

    assert run_demo(str(tmp_path), accounts_per_region=2) == 0
    (output,) = tmp_path.glob("demo-*.ndjson")
    documents = of(read_ndjson(output), "azure.ai_foundry")
    assert documents and {d["data_stream"]["namespace"] for d in documents} == {"default"}  # the alerts' FROM
    mapping = templates.field_mappings(AI_FOUNDRY)
    for path, kind in DASHBOARD_FIELDS.items():
        assert mapping[path]["type"] in MAPPED_AS[kind], path
        values = [v for d in documents if (v := _value(d, path)) is not None]
        assert values, f"no document carries {path}"
        for value in values:
            if kind in ("keyword", "status"):
                assert isinstance(value, str) and value, (path, value)
            if kind == "status":  # compared as strings (`>= 400`): always three digits
                assert value.isdigit() and len(value) == 3, value
            if kind == "count":
                assert isinstance(value, int) and value >= 0, (path, value)
            if kind == "milliseconds":
                assert isinstance(value, int | float) and 0 < value < 600_000, (path, value)
            if kind == "fraction":  # the alerts multiply by 100 and compare with 99 and 85
                assert isinstance(value, int | float) and 0 <= value <= 1, (path, value)
    # The latency alert groups time_to_response by deployment; the errors panels count status codes.
    latency = "azure.ai_foundry.time_to_response.avg"
    assert any(_value(d, latency) and _value(d, "azure.dimensions.model_deployment_name") for d in documents)
    assert any(int(_value(d, "azure.dimensions.status_code") or 0) >= 400 for d in documents)


def test_an_upgraded_poller_resumes_from_a_cursor_file_written_before_datasets(
    foundry_sim: Simulator, tmp_path: Path
) -> None:
    """Version 1 cursors are the azure.open_ai ones: nothing of that dataset is fetched again, while
    the new dataset starts at `initial_lookback`."""
    import asyncio
    import json

    from metrics_poller.catalog import GROUPS
    from metrics_poller.state import encode_cursor

    end = window_end(NOW, LATENCY, GRAIN)
    old = {f"{key}|{group.name}": encode_cursor(end) for _, key in polled(foundry_sim) for group in GROUPS}
    (tmp_path / "cursors.json").write_text(json.dumps({"version": 1, "cursors": old}))
    cfg = parse(poller_config(foundry_sim, tmp_path))

    async def cycle() -> Any:
        poller = await create_poller(cfg)
        try:
            return await poller.run_cycle(NOW)
        finally:
            await poller.close()

    report = asyncio.run(cycle())
    assert report.ok, report.failures
    assert set(report.stored_by_dataset) == {"azure.ai_foundry"}
    saved = json.loads((tmp_path / "cursors.json").read_text())
    assert saved["version"] == 2
    assert sum(k.split("|")[-2] == "azure.open_ai" for k in saved["cursors"]) == len(old)
