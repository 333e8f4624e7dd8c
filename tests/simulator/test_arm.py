"""ARM discovery, metric definitions and per-resource metrics through the real management SDKs."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.monitor import MonitorManagementClient
from azure.mgmt.resource.resources import ResourceManagementClient
from simulator_support import NAMESPACE, SPEC, credential_for, make_sim, openai_accounts, raw, window

from metrics_poller.catalog import ACCOUNT_METRICS, METRICS_BY_NAME
from metrics_poller.simulator import Simulator

ACCOUNTS_FILTER = "resourceType eq 'Microsoft.CognitiveServices/accounts'"


def _timespan(minutes: int = 10) -> str:
    start, end = window(minutes)
    return f"{start:%Y-%m-%dT%H:%M:%SZ}/{end:%Y-%m-%dT%H:%M:%SZ}"


def test_resources_list_pages_through_every_account_of_the_subscription(
    sim: Simulator, resources: ResourceManagementClient
) -> None:
    subscription = sim.subscription_ids[0]
    listed = list(resources.resources.list(filter=ACCOUNTS_FILTER))
    expected = {a.id for a in sim.accounts if a.subscription_id == subscription}
    assert {r.id for r in listed} == expected
    assert len(expected) > SPEC.page_size  # so paging really happened
    assert {r.kind for r in listed} >= {"OpenAI", "SpeechServices"}
    unfiltered = list(resources.resources.list())
    assert any(r.type == "Microsoft.Storage/storageAccounts" for r in unfiltered)
    assert len(unfiltered) > len(listed)


def test_next_link_is_absolute_and_carries_a_skiptoken(sim: Simulator, arm_token: str) -> None:
    subscription = sim.subscription_ids[0]
    page = raw(sim, "GET", f"/subscriptions/{subscription}/resources?api-version=2025-04-01", token=arm_token)
    assert page.headers["x-ms-ratelimit-remaining-subscription-reads"].isdigit()
    body = page.json()
    assert len(body["value"]) == SPEC.page_size
    link = urlsplit(body["nextLink"])
    assert f"{link.scheme}://{link.netloc}" == sim.url
    assert "$skiptoken" in parse_qs(link.query)
    untagged = [i for i in body["value"] if "tags" not in i]
    tagged = [i for i in body["value"] if "tags" in i]
    assert set(body["value"][0]) >= {"id", "name", "type", "kind", "location", "sku"}
    assert untagged or tagged


def test_resource_group_scope(sim: Simulator, resources: ResourceManagementClient) -> None:
    subscription = sim.subscription_ids[0]
    group = next(a.resource_group for a in sim.accounts if a.subscription_id == subscription)
    listed = list(resources.resources.list_by_resource_group(group, filter=ACCOUNTS_FILTER))
    assert {r.id for r in listed} == {
        a.id for a in sim.accounts if a.subscription_id == subscription and a.resource_group == group
    }
    with pytest.raises(ResourceNotFoundError):
        list(resources.resources.list_by_resource_group("rg-does-not-exist"))


def test_get_by_id_and_deleted_accounts() -> None:
    with make_sim() as sim:
        credential = credential_for(sim)
        client = ResourceManagementClient(
            credential, sim.subscription_ids[0], base_url=sim.url, connection_verify=sim.ca_path, retry_total=0
        )
        account = openai_accounts(sim)[0]
        item = client.resources.get_by_id(account.id.lower(), api_version="2025-06-01")
        assert item.id == account.id and item.kind == account.kind and item.location == "eastus"
        assert item.properties["provisioningState"] == "Succeeded"
        sim.delete_account(account.id)
        with pytest.raises(ResourceNotFoundError) as caught:
            client.resources.get_by_id(account.id, api_version="2025-06-01")
        assert caught.value.error is not None and caught.value.error.code == "ResourceNotFound"
        assert account.id not in {r.id for r in client.resources.list(filter=ACCOUNTS_FILTER)}
        monitor = MonitorManagementClient(
            credential, sim.subscription_ids[0], base_url=sim.url, connection_verify=sim.ca_path, retry_total=0
        )
        with pytest.raises(ResourceNotFoundError):
            monitor.metrics.list(account.id, timespan=_timespan(), metricnames="AzureOpenAIRequests")


def test_metric_definitions(sim: Simulator, monitor: MonitorManagementClient, arm_token: str) -> None:
    account = openai_accounts(sim)[0]
    definitions = {d.name.value: d for d in monitor.metric_definitions.list(account.id, metricnamespace=NAMESPACE)}
    assert set(definitions) == {m.name for m in ACCOUNT_METRICS}  # both families of the namespace
    requests = definitions["AzureOpenAIRequests"]
    assert [d.value for d in requests.dimensions] == list(METRICS_BY_NAME["AzureOpenAIRequests"].dimensions)
    assert requests.primary_aggregation_type == "Total"
    assert "None" in requests.supported_aggregation_types
    assert requests.metric_availabilities[0].time_grain == timedelta(minutes=1)
    assert {a.retention for a in requests.metric_availabilities} == {timedelta(days=93)}
    body = raw(
        sim,
        "GET",
        f"{account.id}/providers/Microsoft.Insights/metricDefinitions?api-version=2024-02-01&metricnamespace={NAMESPACE}",
        token=arm_token,
    ).json()
    assert "nextLink" not in body
    assert "/providers/microsoft.insights/metricdefinitions/" in body["value"][0]["id"]


def test_undefined_metrics_and_dimensions_are_absent_and_rejected() -> None:
    with make_sim(
        seed=5,
        accounts_per_region=1,
        other_accounts_per_region=0,
        undefined_metrics=frozenset({"AzureOpenAITTLTInMS"}),
        undefined_dimensions={"AzureOpenAIRequests": frozenset({"IsSpillover"})},
    ) as sim:
        credential = credential_for(sim)
        monitor = MonitorManagementClient(
            credential, sim.subscription_ids[0], base_url=sim.url, connection_verify=sim.ca_path, retry_total=0
        )
        account = sim.accounts[0]
        definitions = {d.name.value: d for d in monitor.metric_definitions.list(account.id)}
        assert "AzureOpenAITTLTInMS" not in definitions
        assert "IsSpillover" not in [d.value for d in definitions["AzureOpenAIRequests"].dimensions]
        with pytest.raises(HttpResponseError) as unknown:
            monitor.metrics.list(account.id, timespan=_timespan(), metricnames="AzureOpenAITTLTInMS")
        assert "Failed to find metric configuration" in str(unknown.value.message)
        with pytest.raises(HttpResponseError) as hidden:
            monitor.metrics.list(
                account.id, timespan=_timespan(), metricnames="AzureOpenAIRequests", filter="IsSpillover eq '*'"
            )
        assert hidden.value.status_code == 400


def test_arm_metrics_response_shape(sim: Simulator, monitor: MonitorManagementClient) -> None:
    account = openai_accounts(sim)[0]
    response, headers = monitor.metrics.list(
        account.id,
        timespan=_timespan(10),
        interval="PT5M",
        metricnames="AzureOpenAIRequests,ProcessedPromptTokens",
        aggregation="total",
        filter="ModelDeploymentName eq '*'",
        top=100,
        orderby="total desc",
        metricnamespace=NAMESPACE,
        cls=lambda pipeline, model, _: (model, pipeline.http_response.headers),
    )
    assert int(headers["x-ms-ratelimit-remaining-subscription-reads"]) > 0
    assert response.namespace == "microsoft.cognitiveservices/accounts"
    assert response.resourceregion == account.location
    assert response.interval == "PT5M"
    assert isinstance(response.cost, int)
    assert [m.name.value for m in response.value] == ["AzureOpenAIRequests", "ProcessedPromptTokens"]
    metric = response.value[0]
    assert metric.error_code == "Success"
    assert metric.id == f"{account.id}/providers/Microsoft.Insights/metrics/AzureOpenAIRequests"
    assert metric.timeseries, "every OpenAI account has request traffic"
    for series in metric.timeseries:
        assert [v.name.value for v in series.metadatavalues] == ["modeldeploymentname"]
        assert len(series.data) == 2
        assert all(p.average is None for p in series.data)
    totals = [sum(p.total or 0 for p in s.data) for s in metric.timeseries]
    assert totals == sorted(totals, reverse=True)


def test_arm_metrics_errors_are_flat(sim: Simulator, arm_token: str) -> None:
    account = openai_accounts(sim)[0]
    base = f"{account.id}/providers/Microsoft.Insights/metrics?api-version=2024-02-01&timespan={_timespan()}"
    unknown = raw(sim, "GET", base + "&metricnames=NoSuchMetric", token=arm_token)
    assert unknown.status == 400
    assert unknown.json()["code"] == "BadRequest"
    assert unknown.json()["message"].startswith("Failed to find metric configuration for provider")
    assert "Valid metrics: AzureOpenAIRequests" in unknown.json()["message"]
    dimension = raw(sim, "GET", base + "&metricnames=ActiveTokens&%24filter=StatusCode%20eq%20%27*%27", token=arm_token)
    assert dimension.status == 400 and "error" not in dimension.json()
    assert "does not support requested dimension combination: statuscode" in dimension.json()["message"]
    aggregation = raw(sim, "GET", base + "&metricnames=AzureOpenAIRequests&aggregation=average", token=arm_token)
    assert aggregation.status == 400 and aggregation.json()["code"] == "BadRequest"
    grain = raw(sim, "GET", base + "&metricnames=AzureOpenAIRequests&interval=PT2M", token=arm_token)
    assert grain.status == 400


def test_arm_rate_limit_answers_429_when_the_bucket_is_empty() -> None:
    """600 reads from 16 threads drain the 250-read bucket faster than it refills (25/s) even on a slow,
    busy machine (down to ~50 reads/s), so the answer does not depend on the machine's speed."""
    from concurrent.futures import ThreadPoolExecutor

    with make_sim(accounts_per_region=1, arm_rate_limit=True) as sim:
        credential = credential_for(sim)
        token = credential.get_token("https://management.azure.com/.default").token
        path = f"{sim.accounts[0].id}?api-version=2025-06-01"
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda _: raw(sim, "GET", path, token=token), range(600)))
        throttled = [a for a in answers if a.status == 429]
        remaining = [int(a.headers["x-ms-ratelimit-remaining-subscription-reads"]) for a in answers if a.status == 200]
        assert throttled and {a.status for a in answers} == {200, 429}
        assert throttled[0].json()["error"]["code"] == "SubscriptionRequestsThrottled"
        assert int(throttled[0].headers["retry-after"]) >= 1
        assert max(remaining) == 249 and min(remaining) >= 0
