"""The README's ES|QL alert rules, run over the documents of a demo-configured cycle (both streams).

Parsed, type-checked against the mapping of the streams each rule reads and evaluated with
`tests/esql/esql_subset.py` (see its docstring for why there is no engine).
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from esql_subset import Enrich, EsqlError, by_data_stream, check_types, evaluate, flatten, parse

from metrics_poller import config, inventory_templates, templates
from metrics_poller.demo import demo_settings, demo_spec
from metrics_poller.runtime import create_poller
from metrics_poller.simulator import Simulator

README = Path(__file__).resolve().parents[2] / "README.md"
NOW = datetime(2026, 3, 2, 12, 7, 30, tzinfo=UTC)


def section() -> str:
    text = README.read_text(encoding="utf-8")
    return text.split("## Inventory and quota headroom", 1)[1].split("\n## ", 1)[0]


def rules() -> list[str]:
    return re.findall(r"```esql\n(.*?)```", section(), re.S)


def mappings() -> dict[str, dict[str, str]]:
    """Each stream's mapping (path → type), by the data stream pattern its index template governs."""
    return {
        "metrics-azure.open_ai-*": {p: spec["type"] for p, spec in templates.field_mappings().items()},
        "metrics-azure.ai_deployment-*": {p: spec["type"] for p, spec in inventory_templates.field_mappings().items()},
    }


def mapping_of(pattern: str) -> dict[str, str]:
    (mapping,) = [m for governed, m in mappings().items() if fnmatch.fnmatchcase(pattern, governed)]
    return mapping


def policy() -> tuple[str, Enrich]:
    match = re.search(r"PUT _enrich/policy/(\S+)\n(\{.*\})\n", section())
    assert match, "the README gives the enrich policy"
    body = json.loads(match.group(2))["match"]
    fields = tuple(body["enrich_fields"])
    return match.group(1), Enrich(body["indices"], body["match_field"], fields, mapping_of(body["indices"]))


@pytest.fixture(scope="module")
def documents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[dict[str, Any]]]:
    import asyncio

    out = tmp_path_factory.mktemp("demo")
    with Simulator(demo_spec()) as sim:
        sim.clock = lambda: NOW + timedelta(minutes=10)
        # The demo's configuration with 20 minutes of metrics, so "10 minutes above 80 %" can fire.
        settings = {**demo_settings(sim, out / "demo.ndjson", out), "initial_lookback": 1200}
        cfg = config.parse(settings, environ={})

        async def cycle() -> None:
            poller = await create_poller(cfg)
            try:
                report = await poller.run_cycle(NOW)
            finally:
                await poller.close()
            assert report.ok, report.failures

        asyncio.run(cycle())
    yield [orjson.loads(line) for line in (out / "demo.ndjson").read_bytes().splitlines()]


def rows(documents: list[dict[str, Any]], query: str) -> list[dict[str, Any]]:
    name, enrich = policy()
    commands = parse(query)
    (pattern,) = commands[0].args
    check_types(commands, mapping_of(pattern), {name: enrich})
    indices = {
        stream: rows
        for governed, mapping in mappings().items()
        for stream, rows in by_data_stream(documents, mapping).items()
        if fnmatch.fnmatchcase(stream, governed)
    }
    return evaluate(commands, indices, now=NOW, policies={name: enrich})


def test_the_readme_has_the_three_rules() -> None:
    assert len(rules()) == 3


def test_tpm_above_80_percent_for_10_minutes(documents: list[dict[str, Any]]) -> None:
    flat = [flatten(d) for d in documents]
    limits = {
        d["azure.deployment.id"]: d.get("azure.deployment.rate_limit.tokens_per_minute")
        for d in flat
        if d.get("metricset.name") == "deployment"
    }
    per_minute: dict[tuple[str, str], float] = {}
    for d in flat:
        value = d.get("azure.open_ai.token_transaction.total")
        stamp = datetime.fromisoformat(d["@timestamp"].replace("Z", "+00:00"))
        if value is None or stamp < NOW - timedelta(minutes=20):
            continue
        key = (f"{d['azure.resource.id']}/deployments/{d['azure.dimensions.model_deployment_name']}", d["@timestamp"])
        per_minute[key] = per_minute.get(key, 0) + value
    hot: dict[str, int] = {}
    for (deployment, _minute), tokens in per_minute.items():
        limit = limits.get(deployment)
        if limit is not None and tokens >= 0.8 * limit:
            hot[deployment] = hot.get(deployment, 0) + 1
    expected = {k: v for k, v in hot.items() if v >= 10}
    result = rows(documents, rules()[0])
    assert {r["deployment_id"]: r["minutes_above_80_pct"] for r in result} == expected
    assert expected, "the demo estate has deployments running hot"
    assert set(expected) <= set(limits)


def test_any_429s(documents: list[dict[str, Any]]) -> None:
    expected: dict[tuple[str, str], float] = {}
    for d in map(flatten, documents):
        stamp = d["@timestamp"]
        requests = d.get("azure.open_ai.requests.total")
        if d.get("azure.dimensions.status_code") != "429" or stamp < "2026-03-02T11:52:30" or requests is None:
            continue
        key = (d["azure.resource.id"], d["azure.dimensions.model_deployment_name"])
        expected[key] = expected.get(key, 0) + requests
    result = rows(documents, rules()[1])
    got = {(r["azure.resource.id"], r["azure.dimensions.model_deployment_name"]): r["throttled"] for r in result}
    assert got == {k: v for k, v in expected.items() if v > 0} and got
    assert [r["throttled"] for r in result] == sorted((r["throttled"] for r in result), reverse=True)


def test_model_retires_within_30_days(documents: list[dict[str, Any]]) -> None:
    expected = {
        d["azure"]["deployment"]["id"]: d["azure"]["deployment"]["model"]["days_to_retirement"]
        for d in documents
        if d["metricset"]["name"] == "deployment"
        and d["azure"]["deployment"]["model"].get("days_to_retirement", 999) <= 30
    }
    result = rows(documents, rules()[2])
    assert {r["azure.deployment.id"]: r["days_to_retirement"] for r in result} == expected
    assert min(expected.values()) < 0 <= max(expected.values()) <= 30  # retired-but-deployed and soon


def test_a_misspelt_field_is_an_error_not_an_empty_result(documents: list[dict[str, Any]]) -> None:
    broken = rules()[2].replace("days_to_retirement <= 30", "days_to_retire <= 30")
    with pytest.raises(EsqlError, match="Unknown column"):
        rows(documents, broken)
