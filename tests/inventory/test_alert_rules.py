"""The README's ES|QL alert rules, run over the documents of two demo-configured cycles one
`inventory.interval` apart (both streams), so the enrich index holds several inventory runs.

Parsed, type-checked against the mapping of the streams each rule reads and evaluated with
`tests/esql/esql_subset.py` (see its docstring for why there is no engine).
"""

from __future__ import annotations

import copy
import fnmatch
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from esql_subset import Enrich, EsqlError, by_data_stream, check_types, enrich_index, evaluate, flatten, parse

from metrics_poller import config, inventory_templates, templates
from metrics_poller.demo import demo_settings, demo_spec
from metrics_poller.runtime import create_poller
from metrics_poller.simulator import Simulator

README = Path(__file__).resolve().parents[2] / "README.md"
NOW = datetime(2026, 3, 2, 12, 7, 30, tzinfo=UTC)
# The demo's inventory interval (every account read each cycle); the first cycle runs one interval earlier.
INTERVAL = timedelta(seconds=300)
# `_execute` runs right after the second inventory run, as the README says (after each interval).
EXECUTED = NOW


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
    mapping = mapping_of(body["indices"])
    return match.group(1), Enrich(body["indices"], body["match_field"], fields, mapping, body.get("query"))


@pytest.fixture(scope="module")
def documents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[dict[str, Any]]]:
    import asyncio

    out = tmp_path_factory.mktemp("demo")
    with Simulator(demo_spec()) as sim:
        sim.clock = lambda: NOW + timedelta(minutes=10)
        # The demo's configuration with 20 minutes of metrics, so "10 minutes above 80 %" can fire.
        settings = {**demo_settings(sim, out / "demo.ndjson", out), "initial_lookback": 1200}
        cfg = config.parse(settings, environ={})
        assert timedelta(seconds=cfg.inventory.interval) == INTERVAL

        async def cycles() -> None:
            poller = await create_poller(cfg)
            try:
                for at in (NOW - INTERVAL, NOW):
                    report = await poller.run_cycle(at)
                    assert report.ok, report.failures
            finally:
                await poller.close()

        asyncio.run(cycles())
    yield [orjson.loads(line) for line in (out / "demo.ndjson").read_bytes().splitlines()]


def deployment_documents(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        d
        for d in documents
        if d["data_stream"]["dataset"] == "azure.ai_deployment" and d["metricset"]["name"] == "deployment"
    ]


@pytest.fixture(scope="module")
def history(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The two cycles plus an inventory run two hours earlier, when every deployment with a TPM limit had
    a limit of 1 token per minute (before a scale-up; the simulator's capacities are fixed, so this run is
    the first run's deployment documents moved back and scaled down). A policy keeping it would put that
    limit under every deployment and the TPM rule would fire for nearly all of them."""
    earlier = []
    first_run = min(run_times(documents))
    for document in deployment_documents(documents):
        if datetime.fromisoformat(document["@timestamp"]) != first_run:
            continue
        older = copy.deepcopy(document)
        older["@timestamp"] = (first_run - timedelta(hours=2)).isoformat().replace("+00:00", "Z")
        if "tokens_per_minute" in older["azure"]["deployment"].get("rate_limit", {}):
            older["azure"]["deployment"]["rate_limit"]["tokens_per_minute"] = 1
        earlier.append(older)
    assert earlier
    return documents + earlier


def run_times(documents: list[dict[str, Any]]) -> set[datetime]:
    return {datetime.fromisoformat(d["@timestamp"]) for d in deployment_documents(documents)}


def indices_of(documents: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    return {
        stream: rows
        for governed, mapping in mappings().items()
        for stream, rows in by_data_stream(documents, mapping).items()
        if fnmatch.fnmatchcase(stream, governed)
    }


def rows(documents: list[dict[str, Any]], query: str) -> list[dict[str, Any]]:
    name, enrich = policy()
    commands = parse(query)
    (pattern,) = commands[0].args
    check_types(commands, mapping_of(pattern), {name: enrich})
    return evaluate(commands, indices_of(documents), now=NOW, policies={name: enrich}, executed=EXECUTED)


def test_the_readme_has_the_three_rules() -> None:
    assert len(rules()) == 3


def test_the_policy_window_is_one_and_a_half_default_intervals() -> None:
    _, enrich = policy()
    assert enrich.query == {"range": {"@timestamp": {"gte": "now-90m"}}}
    assert timedelta(minutes=90) == 1.5 * timedelta(seconds=config.Inventory().interval)


def test_the_enrich_index_holds_the_recent_runs_only(
    documents: list[dict[str, Any]], history: list[dict[str, Any]]
) -> None:
    _, enrich = policy()
    runs: dict[str, set[datetime]] = {}
    for row in enrich_index(enrich, indices_of(history), EXECUTED):
        if row.get("azure.deployment.id") is not None:
            runs.setdefault(row["azure.deployment.id"], set()).add(row["@timestamp"])
    recent = run_times(documents)
    assert len(recent) == 2 and len(run_times(history)) == 3
    ids = {d["azure"]["deployment"]["id"] for d in deployment_documents(history)}
    assert runs == {key: recent for key in ids}, "both recent runs of every deployment, not the older one"


def test_tpm_above_80_percent_for_10_minutes(history: list[dict[str, Any]]) -> None:
    flat = [flatten(d) for d in history]
    runs = sorted((d for d in flat if d.get("metricset.name") == "deployment"), key=lambda d: d["@timestamp"])
    latest = {d["azure.deployment.id"]: d for d in runs}  # the limit in force: the latest inventory run's
    limits = {k: d.get("azure.deployment.rate_limit.tokens_per_minute") for k, d in latest.items()}
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
    result = rows(history, rules()[0])
    assert {r["deployment_id"]: r["minutes_above_80_pct"] for r in result} == expected
    assert expected, "the demo estate has deployments running hot"
    assert set(expected) <= set(limits)


def test_the_tpm_rule_without_mv_min_is_silent_once_the_inventory_has_run_twice(
    history: list[dict[str, Any]],
) -> None:
    rule = rules()[0]
    unreduced = rule.replace("| EVAL tpm_limit = MV_MIN(tpm_limit)\n", "")
    assert unreduced != rule
    assert rows(history, rule), "the README's rule fires"
    assert rows(history, unreduced) == [], "each limit is a multi-value of two runs, and tokens >= 0.8 * it is null"


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
