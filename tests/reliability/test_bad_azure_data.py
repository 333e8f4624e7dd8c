"""Hostile Azure data: one account answers with broken, odd or injection-shaped JSON. That account is
reported, every other account is stored exactly, the cycle never raises, and no value can break or
inject into a bulk request. Through the real SDKs (ARM per-resource metrics, so one account has its
own call) and, for the injection test, the real elasticsearch client and the ES test server."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from reliability_support import base_config, openai_accounts, parse, with_elasticsearch

from metrics_poller.catalog import select_groups
from metrics_poller.runtime import create_poller
from metrics_poller.simulator import FaultRule, SimSpec, Simulator
from metrics_poller.simulator.spec import SimAccount
from metrics_poller.testing.es_server import ElasticsearchServer
from metrics_poller.testing.ground_truth import compare, expected_documents
from metrics_poller.windows import window_end

NOW = datetime(2026, 3, 2, 12, 7, 30, tzinfo=UTC)
END = window_end(NOW, timedelta(seconds=240), timedelta(minutes=1))
START = END - timedelta(minutes=5)
STREAM = "metrics-azure.open_ai-default"
GROUP = "tokens"


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    spec = SimSpec(seed=11, subscriptions=1, regions=("eastus", "westeurope"), accounts_per_region=3)
    with Simulator(spec) as simulator:
        simulator.clock = lambda: NOW + timedelta(minutes=10)
        yield simulator


def victim_of(sim: Simulator) -> SimAccount:
    victim = next(a for a in sim.accounts if a.kind == "OpenAI")
    assert [a.id for a in sim.accounts if victim.name.lower() in a.id.lower()] == [victim.id]
    return victim


def metric_item(account_id: str, metric: str, timeseries: Any) -> dict[str, Any]:
    return {
        "id": f"{account_id}/providers/Microsoft.Insights/metrics/{metric}",
        "type": "Microsoft.Insights/metrics",
        "name": {"value": metric, "localizedValue": metric},
        "unit": "Count",
        "timeseries": timeseries,
        "errorCode": "Success",
    }


def arm_body(account_id: str, metrics: list[Any], **extra: Any) -> bytes:
    body = {
        "cost": 0,
        "timespan": f"{START:%Y-%m-%dT%H:%M:%SZ}/{END:%Y-%m-%dT%H:%M:%SZ}",
        "interval": "PT1M",
        "value": metrics,
        "namespace": "Microsoft.CognitiveServices/accounts",
        "resourceregion": "eastus",
        **extra,
    }
    return orjson.dumps(body)


def one_series(values: list[Any], dims: dict[str, str] | None = None) -> list[dict[str, Any]]:
    dims = dims or {
        "apiname": "a",
        "modeldeploymentname": "d",
        "featurename": "f",
        "usagechannel": "API",
        "region": "eastus",
        "modelversion": "1",
    }
    return [
        {
            "metadatavalues": [{"name": {"value": k, "localizedValue": k}, "value": v} for k, v in dims.items()],
            "data": [
                {"timeStamp": f"{START + timedelta(minutes=i):%Y-%m-%dT%H:%M:%SZ}", "total": v}
                for i, v in enumerate(values)
            ],
        }
    ]


def hostile_bodies(account_id: str) -> dict[str, tuple[bytes, bool]]:
    """name → (body, must the account be reported). Bodies the parser may legitimately accept
    (NaN dropped, unknown metric ignored) only have to leave everything else intact."""
    good = metric_item(account_id, "ProcessedPromptTokens", one_series([1, 2, 3, 4, 5]))
    number = b'{"timeStamp": "%s", "total": %s}'
    stamp_text = f"{START:%Y-%m-%dT%H:%M:%SZ}".encode()
    raw_good = arm_body(account_id, [good])

    def with_total(literal: bytes) -> bytes:
        return raw_good.replace(b'"total":1}', b'"total":' + literal + b"}", 1)

    assert with_total(b"0") != raw_good
    return {
        "truncated": (raw_good[: len(raw_good) // 2], True),
        "empty": (b"", True),
        "not_json": (b"<html>Service Unavailable</html>", True),
        "invalid_utf8": (b"\xff\xfe" + raw_good, True),
        "top_level_list": (b"[]", True),
        "top_level_null": (b"null", True),
        "value_not_list": (arm_body(account_id, "nope"), True),  # type: ignore[arg-type]
        "metric_not_object": (arm_body(account_id, [42]), True),
        "timeseries_not_list": (arm_body(account_id, [metric_item(account_id, "ProcessedPromptTokens", {})]), True),
        "total_is_string": (with_total(b'"12"'), True),
        "timestamp_garbage": (raw_good.replace(b'"timeStamp":"' + stamp_text, b'"timeStamp":"yesterday', 1), True),
        "timestamp_number": (raw_good.replace(b'"timeStamp":"' + stamp_text + b'"', b'"timeStamp":12', 1), True),
        "dimension_value_number": (raw_good.replace(b'"value":"a"', b'"value":7', 1), True),
        "missing_metric_name": (arm_body(account_id, [{"timeseries": []}]), True),
        "deeply_nested": (b"[" * 200_000 + b"]" * 200_000, True),
        "nan": (with_total(b"NaN"), False),
        "infinity": (with_total(b"Infinity"), False),
        "minus_infinity": (with_total(b"-Infinity"), False),
        "huge_float": (with_total(b"1e400"), False),
        "huge_integer": (with_total(b"1" + b"0" * 400), False),
        "unknown_metric": (arm_body(account_id, [metric_item(account_id, "NotAMetric", one_series([1]))]), False),
        "missing_timeseries": (arm_body(account_id, [{"name": {"value": "ProcessedPromptTokens"}}]), False),
        "extra_keys": (arm_body(account_id, [good], surprise={"a": [1, {"b": None}]}), False),
        "number_template": (number % (stamp_text, b"1"), True),
    }


def finite_numbers(value: Any) -> bool:
    if isinstance(value, dict):
        return all(finite_numbers(v) for v in value.values())
    if isinstance(value, list):
        return all(finite_numbers(v) for v in value)
    if isinstance(value, float):
        return math.isfinite(value)
    return True


def read_ndjson(path: Path) -> list[dict[str, Any]]:
    # The json module, not orjson: a huge integral value is written as an integer literal of any length.
    return [json.loads(line) for line in path.read_bytes().splitlines() if line.strip()] if path.exists() else []


async def test_each_hostile_body_is_reported_and_every_other_account_proceeds(sim: Simulator, tmp_path: Path) -> None:
    victim = victim_of(sim)
    others = [a for a in openai_accounts(sim) if a[1] != victim.key]
    expected_others = expected_documents(sim, others, select_groups([GROUP]), START, END)
    problems: list[str] = []
    for name, (body, must_report) in hostile_bodies(victim.id).items():
        where = tmp_path / name
        data = base_config(sim, where, api="arm", metric_groups=[GROUP])
        cfg = parse(data)
        sim.faults.clear()
        sim.faults.add(FaultRule(route="metrics", kind="hostile", body=body, match=victim.name))
        poller = await create_poller(cfg)
        try:
            report = await poller.run_cycle(NOW)  # must not raise
        except Exception as exc:  # reported below with the case name
            problems.append(f"{name}: the cycle raised {type(exc).__name__}: {exc}"[:300])
            continue
        finally:
            sim.faults.clear()
            await poller.close()
        stored = read_ndjson(where / "out.ndjson")
        mine = [d for d in stored if d["azure"]["resource"]["id"].lower() == victim.key]
        theirs = [d for d in stored if d["azure"]["resource"]["id"].lower() != victim.key]
        result = compare(expected_others, theirs)
        if not result.perfect:
            problems.append(f"{name}: other accounts not intact: {result.summary()}")
        if report.unreachable:
            problems.append(f"{name}: the whole cycle was declared unreachable ({report.unreachable})")
        if must_report:
            reasons = [f.reason for f in report.failures if f.target == victim.id]
            if victim.key not in report.failed_accounts or not reasons:
                problems.append(f"{name}: the victim was not reported")
            elif any("\n" in r or len(r) > 400 for r in reasons):
                problems.append(f"{name}: the reason is not one short line: {reasons[0]!r}")
            if mine:
                problems.append(f"{name}: {len(mine)} documents stored for a reported account")
            if report.exit_code != 1:
                problems.append(f"{name}: exit code {report.exit_code}, expected 1 (partial)")
        if not all(finite_numbers(d) for d in mine):
            problems.append(f"{name}: a non-finite or out-of-range number was stored")
    assert not problems, "\n".join(problems)


HOSTILE_VALUES = (
    'quote " and backslash \\ and \\" escaped',
    "line1\nline2\r\nline3",
    '{"index":{"_index":"evil"}}\n{"pwned":true}\n',
    '"}\n{"create":{"_index":"evil","_id":"x"}}\n{"a":1}\n{"b":"',
    "ünïcødé 🚀 中文 \u2028\u2029 \t tab",
    "nul\u0000byte",
    "' or 1=1 --",
    " ",
)


async def test_hostile_dimension_values_are_stored_verbatim_and_never_inject_bulk_actions(
    sim: Simulator, es: ElasticsearchServer, tmp_path: Path
) -> None:
    victim = victim_of(sim)
    series = []
    for i, value in enumerate(HOSTILE_VALUES):
        dims = {
            "apiname": value,
            "modeldeploymentname": f"d{i}",
            "featurename": value,
            "usagechannel": "API",
            "region": "eastus",
            "modelversion": value,
        }
        series += one_series([i + 1, i + 2], dims)
    body = arm_body(victim.id, [metric_item(victim.id, "ProcessedPromptTokens", series)])
    data = with_elasticsearch(base_config(sim, tmp_path, api="arm", metric_groups=[GROUP]), es)
    cfg = parse(data)
    sim.faults.add(FaultRule(route="metrics", kind="hostile", body=body, match=victim.name))
    poller = await create_poller(cfg)
    try:
        report = await poller.run_cycle(NOW)
    finally:
        sim.faults.clear()
        await poller.close()
    assert report.ok, report.failures
    created = report.documents["created"]
    stored = [d["_source"] for d in es.documents(STREAM)]
    assert len(stored) == created  # one bulk item per document, nothing extra
    # No "evil" index appeared: the data stream and its backing index are all there is.
    assert set(es.store.data_streams) == {STREAM}
    assert all(name.startswith(f".ds-{STREAM}-") for name in es.store.indices), list(es.store.indices)
    mine = [d for d in stored if d["azure"]["resource"]["id"].lower() == victim.key]
    assert len(mine) == 2 * len(HOSTILE_VALUES)
    seen = {(d["azure"]["dimensions"]["api_name"], d["azure"]["dimensions"]["model_version"]) for d in mine}
    assert seen == {(v, v) for v in HOSTILE_VALUES}
    assert all("pwned" not in d and "create" not in d and "index" not in d for d in stored)
    # Everyone else's data is exactly the ground truth.
    others = [a for a in openai_accounts(sim) if a[1] != victim.key]
    theirs = [d for d in stored if d["azure"]["resource"]["id"].lower() != victim.key]
    result = compare(expected_documents(sim, others, select_groups([GROUP]), START, END), theirs)
    assert result.perfect, result.summary()


@pytest.mark.parametrize("literal", [b"1e300", b"-9223372036854775809", b"1" + b"0" * 400])
async def test_huge_values_never_break_a_bulk_request(
    sim: Simulator, es: ElasticsearchServer, tmp_path: Path, literal: bytes
) -> None:
    victim = victim_of(sim)
    good = arm_body(victim.id, [metric_item(victim.id, "ProcessedPromptTokens", one_series([1, 2, 3, 4, 5]))])
    body = good.replace(b'"total":1}', b'"total":' + literal + b"}", 1)
    assert body != good
    cfg = parse(with_elasticsearch(base_config(sim, tmp_path, api="arm", metric_groups=[GROUP]), es))
    sim.faults.add(FaultRule(route="metrics", kind="hostile", body=body, match=victim.name))
    poller = await create_poller(cfg)
    try:
        report = await poller.run_cycle(NOW)  # must not raise
    finally:
        sim.faults.clear()
        await poller.close()
    assert not report.unreachable
    stored = [d["_source"] for d in es.documents(STREAM)]
    others = [a for a in openai_accounts(sim) if a[1] != victim.key]
    theirs = [d for d in stored if d["azure"]["resource"]["id"].lower() != victim.key]
    result = compare(expected_documents(sim, others, select_groups([GROUP]), START, END), theirs)
    assert result.perfect, result.summary()
    # The victim's four ordinary buckets are stored whatever became of the huge one.
    mine = [d for d in stored if d["azure"]["resource"]["id"].lower() == victim.key]
    assert len(mine) >= 4
