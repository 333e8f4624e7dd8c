"""Ground truth: `Simulator.expected` equals what the API serves; aggregation semantics; data invariants."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from simulator_support import batch_path, credential_for, iso, make_sim, openai_accounts, raw, window

from metrics_poller.catalog import GROUPS, METRICS_BY_NAME
from metrics_poller.simulator import Simulator
from metrics_poller.simulator.data import Publication

Truth = dict[frozenset[tuple[str, str]], dict[datetime, dict[str, float]]]


def _served(
    sim: Simulator,
    token: str,
    account_id: str,
    metric: str,
    start: datetime,
    end: datetime,
    grain: str,
    dimensions: tuple[str, ...],
) -> Truth:
    account = next(a for a in sim.accounts if a.id == account_id)
    spec = METRICS_BY_NAME[metric]
    params = {
        "starttime": iso(start),
        "endtime": iso(end),
        "interval": grain,
        "metricnames": metric,
        "aggregation": ",".join(spec.aggregations),
        "top": "100000",
    }
    if dimensions:
        params["filter"] = " and ".join(f"{d} eq '*'" for d in dimensions)
    answer = raw(
        sim,
        "POST",
        batch_path(account.subscription_id, account.location, **params),
        token=token,
        body=json.dumps({"resourceids": [account_id]}).encode(),
    )
    assert answer.status == 200, answer.body
    out: Truth = {}
    canonical = {d.lower(): d for d in spec.dimensions}
    for series in answer.json()["values"][0]["value"][0]["timeseries"]:
        key = frozenset((canonical[m["name"]["value"]], m["value"]) for m in series["metadatavalues"])
        points = {
            datetime.fromisoformat(p["timeStamp"].replace("Z", "+00:00")): {
                k: v for k, v in p.items() if k != "timeStamp"
            }
            for p in series["data"]
            if len(p) > 1
        }
        if points:
            out[key] = points
    return out


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: g.name)
def test_expected_equals_served_for_every_group_split_by_all_dimensions(
    sim: Simulator, metrics_token: str, group: Any
) -> None:
    start, end = window(15)
    for account in openai_accounts(sim)[:4]:
        for metric in group.metrics:
            truth = sim.expected(account.id, metric.name, start, end)
            assert _served(sim, metrics_token, account.id, metric.name, start, end, "PT1M", metric.dimensions) == truth


@pytest.mark.parametrize("grain", ["PT5M", "PT1H", "FULL"])
def test_expected_equals_served_unsplit_and_partially_split(sim: Simulator, metrics_token: str, grain: str) -> None:
    start, end = window(120)
    account = max(openai_accounts(sim), key=lambda a: len(a.deployments))
    for metric, dims in (
        ("AzureOpenAIRequests", ()),
        ("AzureOpenAITimeToResponse", ("ModelDeploymentName",)),
        ("ActiveTokens", ("Region",)),
        ("TokenTransaction", ("ApiName", "ModelDeploymentName")),
    ):
        truth = sim.expected(account.id, metric, start, end, grain=grain, dimensions=list(dims))
        assert _served(sim, metrics_token, account.id, metric, start, end, grain, dims) == truth


def test_coarser_splits_and_grains_aggregate_the_fine_data(sim: Simulator) -> None:
    start, end = window(60)
    account = max(openai_accounts(sim), key=lambda a: len(a.deployments))
    for metric in ("AzureOpenAIRequests", "AzureOpenAITimeToResponse"):
        fine = sim.expected(account.id, metric, start, end)
        coarse = sim.expected(account.id, metric, start, end, grain="PT5M", dimensions=["ModelDeploymentName"])
        rebuilt: dict[tuple[frozenset[tuple[str, str]], datetime], list[dict[str, float]]] = defaultdict(list)
        for key, points in fine.items():
            deployment = frozenset(kv for kv in key if kv[0] == "ModelDeploymentName")
            for stamp, values in points.items():
                bucket = stamp.replace(minute=stamp.minute - stamp.minute % 5)
                rebuilt[(deployment, bucket)].append(values)
        assert {(k, t) for k, pts in coarse.items() for t in pts} == set(rebuilt)
        for (key, stamp), parts in rebuilt.items():
            got = coarse[key][stamp]
            if "total" in got:
                assert got["total"] == pytest.approx(sum(p["total"] for p in parts))
            if "minimum" in got:
                assert got["minimum"] == min(p["minimum"] for p in parts)
                assert got["maximum"] == max(p["maximum"] for p in parts)
                assert min(p["average"] for p in parts) <= got["average"] <= max(p["average"] for p in parts)


def test_data_invariants_hold_for_every_metric(sim: Simulator) -> None:
    start, end = window(60)
    seen_ptu = set()
    for account in openai_accounts(sim):
        ptu = {d.name for d in account.deployments if d.sku == "ProvisionedManaged"}
        for name, metric in METRICS_BY_NAME.items():
            for key, points in sim.expected(account.id, name, start, end).items():
                dims = dict(key)
                if name.startswith("AzureOpenAIProvisioned") or name == "ActiveTokens":
                    assert dims["ModelDeploymentName"] in ptu
                    seen_ptu.add(account.id)
                for values in points.values():
                    if "minimum" in values:
                        assert values["minimum"] <= values["average"] <= values["maximum"]
                    if metric.unit == "Percent":
                        assert values["minimum"] >= 0 and values["maximum"] <= 100
                    if "total" in values and metric.es_type("Total") == "long":
                        assert values["total"] == int(values["total"])
    assert seen_ptu, "the estate must contain provisioned deployments"
    hours = [
        v["total"]
        for a in openai_accounts(sim)
        for p in sim.expected(a.id, "FineTunedTrainingHours", start, end).values()
        for v in p.values()
    ]
    assert hours and any(h != int(h) for h in hours)
    other = next(a for a in sim.accounts if a.kind not in ("OpenAI", "AIServices"))
    assert sim.expected(other.id, "AzureOpenAIRequests", start, end) == {}


def test_series_counts_are_modest_and_sparse() -> None:
    with make_sim(seed=11, accounts_per_region=30) as sim:
        start, end = window(60)
        counts = [len(sim.expected(a.id, "AzureOpenAIRequests", start, end)) for a in openai_accounts(sim)]
        assert max(counts) > 10 and min(counts) >= 1 and sum(counts) / len(counts) <= 30
        truth = sim.expected(openai_accounts(sim)[0].id, "AzureOpenAIRequests", start, end)
        assert any(len(points) < 60 for points in truth.values()), "some minutes carry no data"


def test_world_and_data_are_deterministic_per_seed() -> None:
    start, end = window(30)
    with make_sim(seed=9) as one, make_sim(seed=9) as two, make_sim(seed=10) as three:
        assert one.subscription_ids == two.subscription_ids != three.subscription_ids
        assert [a.id for a in one.accounts] == [a.id for a in two.accounts]
        account = openai_accounts(one)[0]
        assert one.expected(account.id, "TokenTransaction", start, end) == two.expected(
            account.id, "TokenTransaction", start, end
        )
        assert one.client_secret == two.client_secret


def test_publication_delay_hides_recent_minutes_and_marks_partial_ones() -> None:
    now = datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC)
    with make_sim(seed=4, accounts_per_region=1, publication_delay=180) as sim:
        sim.clock = lambda: now
        token = credential_for(sim).get_token("https://metrics.monitor.azure.com/.default").token
        account = openai_accounts(sim)[0]
        start, end = now.replace(second=0) - timedelta(minutes=20), now.replace(second=0)
        served = _served(sim, token, account.id, "AzureOpenAIRequests", start, end, "PT1M", ())
        truth = sim.expected(account.id, "AzureOpenAIRequests", start, end, dimensions=[])
        (points,) = served.values()
        published = Publication.at(now.timestamp(), 180)
        assert max(points) < datetime.fromtimestamp(published.missing_from * 60, UTC)
        partial = [t for t in points if t.timestamp() >= published.partial_from * 60]
        final = [t for t in points if t.timestamp() < published.partial_from * 60]
        assert partial and final
        assert all(points[t] == truth[frozenset()][t] for t in final)
        assert all(points[t]["total"] < truth[frozenset()][t]["total"] for t in partial)


@pytest.mark.parametrize("metric", ["ProcessedPromptTokens", "GeneratedTokens", "FineTunedTrainingHours"])
def test_token_metrics_carry_the_dimension_values_real_ones_do(sim: Simulator, metric: str) -> None:
    """ApiName "OpenAI", FeatureName = the model name, UsageChannel "Cloud" (Elastic's azure_openai
    pipeline test fixtures, elastic-compat.md §2), so demo data looks like production data."""
    start, end = window(60)
    seen = 0
    for account in openai_accounts(sim):
        models = {d.name: d.model for d in account.deployments}
        for dims in sim.expected(account.id, metric, start, end, grain="PT1H"):
            values = dict(dims)
            assert values["ApiName"] == "OpenAI" and values["UsageChannel"] == "Cloud"
            assert values["FeatureName"] == models[values["ModelDeploymentName"]]
            seen += 1
    assert seen
