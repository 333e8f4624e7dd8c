"""metrics:getBatch through azure-monitor-querymetrics and raw HTTPS: limits, envelopes, top, buckets."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from azure.core.exceptions import HttpResponseError
from azure.identity import ClientSecretCredential
from azure.monitor.querymetrics import MetricAggregationType
from simulator_support import (
    NAMESPACE,
    batch_path,
    credential_for,
    iso,
    make_sim,
    metrics_client,
    openai_accounts,
    raw,
    window,
)

from metrics_poller.catalog import METRICS_BY_NAME
from metrics_poller.simulator import Simulator

REQUEST_SPLIT = " and ".join(f"{d} eq '*'" for d in METRICS_BY_NAME["AzureOpenAIRequests"].dimensions)


def _batch(sim: Simulator, token: str, ids: list[str], region: str, **params: str) -> tuple[int, dict[str, str], dict]:
    subscription = ids[0].split("/")[2]
    answer = raw(
        sim,
        "POST",
        batch_path(subscription, region, **params),
        token=token,
        body=json.dumps({"resourceids": ids}).encode(),
    )
    return answer.status, answer.headers, answer.json()


def _window_params(minutes: int = 10, interval: str = "PT1M") -> dict[str, str]:
    start, end = window(minutes)
    return {"starttime": iso(start), "endtime": iso(end), "interval": interval}


def test_query_resources_through_the_sdk(sim: Simulator, credential: ClientSecretCredential) -> None:
    subscription, region = sim.subscription_ids[1], "westeurope"
    accounts = openai_accounts(sim, subscription, region)
    client = metrics_client(sim, credential, region)
    start, end = window(10)
    results = client.query_resources(
        resource_ids=[a.id for a in accounts],
        metric_namespace=NAMESPACE,
        metric_names=["AzureOpenAIRequests", "TokenTransaction"],
        timespan=(start, end),
        granularity=timedelta(minutes=5),
        aggregations=[MetricAggregationType.TOTAL],
        filter="ModelDeploymentName eq '*'",
        max_results=100,
        order_by="total desc",
    )
    assert len(results) == len(accounts)
    for result, account in zip(results, accounts, strict=True):
        assert result.namespace == "microsoft.cognitiveservices/accounts"
        assert result.resource_region == region
        assert result.granularity == timedelta(minutes=5)
        requests = result.metrics["AzureOpenAIRequests"]
        assert requests.id.startswith(account.id)
        deployments = {d.name for d in account.deployments}
        for series in requests.timeseries:
            assert set(series.metadata_values) == {"modeldeploymentname"}
            assert series.metadata_values["modeldeploymentname"] in deployments
            assert [p.timestamp for p in series.data] == [start, start + timedelta(minutes=5)]


def test_batch_item_shape_and_lower_cased_metadata(sim: Simulator, metrics_token: str) -> None:
    account = openai_accounts(sim)[0]
    status, _, body = _batch(
        sim,
        metrics_token,
        [account.id],
        account.location,
        metricnames="AzureOpenAIRequests",
        aggregation="total",
        filter=REQUEST_SPLIT,
        top="1000",
        **_window_params(),
    )
    assert status == 200
    item = body["values"][0]
    assert set(item) >= {"starttime", "endtime", "interval", "namespace", "resourceregion", "resourceid", "value"}
    assert item["namespace"] == "microsoft.cognitiveservices/accounts" and item["resourceid"] == account.id
    metric = item["value"][0]
    assert metric["errorCode"] == "Success" and metric["unit"] == "Count"
    names = {m["name"]["value"] for s in metric["timeseries"] for m in s["metadatavalues"]}
    assert names == {d.lower() for d in METRICS_BY_NAME["AzureOpenAIRequests"].dimensions}
    assert all(
        m["name"]["localizedValue"] == m["name"]["value"] for s in metric["timeseries"] for m in s["metadatavalues"]
    )
    points = [p for s in metric["timeseries"] for p in s["data"]]
    assert any(set(p) == {"timeStamp"} for p in points), "sparse series leave bare empty buckets"
    assert all(set(p) <= {"timeStamp", "total"} for p in points)
    assert all(p["timeStamp"].endswith(":00Z") for p in points)
    regions = {m["value"] for s in metric["timeseries"] for m in s["metadatavalues"] if m["name"]["value"] == "region"}
    assert regions == {"East US"}  # request metrics carry the display name


def test_token_metrics_carry_the_short_region_name(sim: Simulator, metrics_token: str) -> None:
    account = openai_accounts(sim)[0]
    _, _, body = _batch(
        sim,
        metrics_token,
        [account.id],
        account.location,
        metricnames="TokenTransaction",
        aggregation="total",
        filter="Region eq '*'",
        **_window_params(),
    )
    values = {m["value"] for s in body["values"][0]["value"][0]["timeseries"] for m in s["metadatavalues"]}
    assert values == {account.location}


def test_top_defaults_to_ten_with_a_filter_and_is_ignored_without(sim: Simulator, metrics_token: str) -> None:
    counts = {}
    for account in openai_accounts(sim):
        _, _, body = _batch(
            sim,
            metrics_token,
            [account.id],
            account.location,
            metricnames="AzureOpenAIRequests",
            aggregation="total",
            filter=REQUEST_SPLIT,
            top="1000",
            **_window_params(60),
        )
        counts[account.id] = len(body["values"][0]["value"][0]["timeseries"])
    busy = max(counts, key=counts.__getitem__)
    assert counts[busy] > 10, "some account must have more than ten request series"
    region = next(a.location for a in sim.accounts if a.id == busy)
    params = {"metricnames": "AzureOpenAIRequests", "aggregation": "total", **_window_params(60)}
    _, _, default = _batch(sim, metrics_token, [busy], region, filter=REQUEST_SPLIT, **params)
    assert len(default["values"][0]["value"][0]["timeseries"]) == 10, default
    _, _, three = _batch(sim, metrics_token, [busy], region, filter=REQUEST_SPLIT, top="3", **params)
    top3 = three["values"][0]["value"][0]["timeseries"]
    assert len(top3) == 3
    _, _, everything = _batch(sim, metrics_token, [busy], region, filter=REQUEST_SPLIT, top="1000", **params)
    totals = sorted(
        (sum(p.get("total", 0) for p in s["data"]) for s in everything["values"][0]["value"][0]["timeseries"]),
        reverse=True,
    )
    assert [sum(p.get("total", 0) for p in s["data"]) for s in top3] == totals[:3]
    _, _, ascending = _batch(
        sim, metrics_token, [busy], region, filter=REQUEST_SPLIT, top="2", orderby="total asc", **params
    )
    assert [
        sum(p.get("total", 0) for p in s["data"]) for s in ascending["values"][0]["value"][0]["timeseries"]
    ] == sorted(totals)[:2]
    _, _, unsplit = _batch(sim, metrics_token, [busy], region, top="1", **params)
    series = unsplit["values"][0]["value"][0]["timeseries"]
    assert len(series) == 1 and series[0]["metadatavalues"] == []
    assert sum(p.get("total", 0) for p in series[0]["data"]) == pytest.approx(sum(totals))


def test_value_filters_split_by_the_filtered_dimension(sim: Simulator, metrics_token: str) -> None:
    account = openai_accounts(sim)[0]
    _, _, body = _batch(
        sim,
        metrics_token,
        [account.id],
        account.location,
        metricnames="AzureOpenAIRequests",
        aggregation="total",
        filter="StatusCode eq '200' or StatusCode eq '429'",
        **_window_params(60),
    )
    series = body["values"][0]["value"][0]["timeseries"]
    assert series
    assert {s["metadatavalues"][0]["value"] for s in series} <= {"200", "429"}
    _, _, bad = _batch(
        sim,
        metrics_token,
        [account.id],
        account.location,
        metricnames="AzureOpenAIRequests",
        filter="StatusCode eq '200' or ApiName eq 'x'",
        **_window_params(),
    )
    assert bad["error"]["code"] == "BadRequest"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"timespan": "2026-01-01T00:00:00Z/2026-01-01T01:00:00Z"},
            "Detected invalid time range parameters for API version 2024-02-01",
        ),
        ({"metricnames": ",".join(["AzureOpenAIRequests"] * 21)}, "at most 20"),
        ({"interval": "PT2M"}, "Invalid time grain"),
        ({"aggregation": "average"}, "does not support requested aggregation"),
        ({"filter": "TextType eq '*'"}, "does not support requested dimension combination: texttype"),
        ({"metricnames": "NoSuchMetric"}, "Failed to find metric configuration"),
        (
            {"starttime": "2025-01-01T00:00:00.000Z", "endtime": "2025-01-01T01:00:00.000Z"},
            "out of the Max metrics retention period",
        ),
    ],
)
def test_bad_requests_are_wrapped_with_additional_info(
    sim: Simulator, metrics_token: str, change: dict[str, str], message: str
) -> None:
    account = openai_accounts(sim)[0]
    params = {"metricnames": "AzureOpenAIRequests", "aggregation": "total", **_window_params(), **change}
    status, headers, body = _batch(sim, metrics_token, [account.id], account.location, **params)
    assert status == 400
    assert headers["x-ms-error-code"] == "BadRequest"
    assert body["error"]["code"] == "BadRequest" and message in body["error"]["message"]
    assert [i["info"].split("=")[0] for i in body["error"]["additionalInfo"]] == ["TraceId", "ExceptionType"]


def test_resource_limits_and_scope(sim: Simulator, credential: ClientSecretCredential, metrics_token: str) -> None:
    account = openai_accounts(sim, sim.subscription_ids[0], "eastus")[0]
    start, end = window()
    client = metrics_client(sim, credential, "eastus")
    fake_ids = [account.id + f"x{i}" for i in range(51)]
    with pytest.raises(HttpResponseError) as too_many:
        client.query_resources(
            resource_ids=fake_ids,
            metric_namespace=NAMESPACE,
            metric_names=["AzureOpenAIRequests"],
            timespan=(start, end),
        )
    assert too_many.value.status_code == 400 and "maximum of 50" in str(too_many.value.message)
    with pytest.raises(HttpResponseError) as too_many_names:
        client.query_resources(
            resource_ids=[account.id],
            metric_namespace=NAMESPACE,
            metric_names=[f"AzureOpenAIRequests{i}" for i in range(21)],
            timespan=(start, end),
        )
    assert too_many_names.value.status_code == 400
    other_region = openai_accounts(sim, sim.subscription_ids[0], "westeurope")[0]
    status, _, body = _batch(
        sim,
        metrics_token,
        [account.id, other_region.id],
        "eastus",
        metricnames="AzureOpenAIRequests",
        **_window_params(),
    )
    assert status == 400 and "region" in body["error"]["message"]
    other_subscription = openai_accounts(sim, sim.subscription_ids[1], "eastus")[0]
    status, _, body = _batch(
        sim,
        metrics_token,
        [account.id, other_subscription.id],
        "eastus",
        metricnames="AzureOpenAIRequests",
        **_window_params(),
    )
    assert status == 400 and "subscription" in body["error"]["message"]


@pytest.mark.parametrize("mode", ["omit", "error"])
def test_deleted_account_in_a_batch(mode: str) -> None:
    with make_sim(accounts_per_region=3, batch_missing_resource=mode) as sim:
        token = credential_for(sim).get_token("https://metrics.monitor.azure.com/.default").token
        accounts = openai_accounts(sim)
        sim.delete_account(accounts[1].id)
        status, headers, body = _batch(
            sim, token, [a.id for a in accounts], "eastus", metricnames="AzureOpenAIRequests", **_window_params()
        )
        if mode == "omit":
            assert status == 200
            assert [v["resourceid"] for v in body["values"]] == [accounts[0].id, accounts[2].id]
        else:
            assert status == 400 and headers["x-ms-error-code"] == "BadRequest"
            assert accounts[1].id in body["error"]["message"]


async def test_async_metrics_client(sim: Simulator) -> None:
    from azure.identity.aio import ClientSecretCredential as AsyncCredential
    from azure.monitor.querymetrics.aio import MetricsClient as AsyncMetricsClient

    accounts = openai_accounts(sim, sim.subscription_ids[0], "swedencentral")
    start, end = window(5)
    async with (
        AsyncCredential(
            sim.tenant_id,
            sim.client_id,
            sim.client_secret,
            authority=sim.url,
            disable_instance_discovery=True,
            connection_verify=sim.ca_path,
        ) as credential,
        AsyncMetricsClient(
            f"{sim.url}/metrics/swedencentral", credential, connection_verify=sim.ca_path, retry_total=0
        ) as client,
    ):
        results = await client.query_resources(
            resource_ids=[a.id for a in accounts],
            metric_namespace=NAMESPACE,
            metric_names=["AzureOpenAIRequests"],
            timespan=(start, end),
            aggregations=["Total"],
        )
    assert [r.metrics["AzureOpenAIRequests"].id.rsplit("/providers/", 1)[0] for r in results] == [
        a.id for a in accounts
    ]
    expected = [sim.expected(a.id, "AzureOpenAIRequests", start, end, dimensions=[]) for a in accounts]
    served = [
        {p.timestamp: p.total for p in r.metrics["AzureOpenAIRequests"].timeseries[0].data if p.total is not None}
        for r in results
    ]
    assert served == [{t: v["total"] for t, v in e.get(frozenset(), {}).items()} for e in expected]
