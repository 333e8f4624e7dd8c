"""Fault injection: every kind, its wire shape, `times`, `match`, probability, and the call counters."""

from __future__ import annotations

import json
import time

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    DecodeError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.identity import ClientSecretCredential
from azure.mgmt.monitor import MonitorManagementClient
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

from metrics_poller.simulator import FaultRule, Simulator


def _batch_raw(
    sim: Simulator, token: str, metric: str = "AzureOpenAIRequests,TokenTransaction"
) -> tuple[int, dict, bytes]:
    account = openai_accounts(sim)[0]
    start, end = window()
    path = batch_path(
        account.subscription_id,
        account.location,
        starttime=iso(start),
        endtime=iso(end),
        metricnames=metric,
        aggregation="total",
    )
    answer = raw(sim, "POST", path, token=token, body=json.dumps({"resourceids": [account.id]}).encode())
    return answer.status, answer.headers, answer.body


def _arm_metrics_raw(sim: Simulator, token: str) -> tuple[int, dict, bytes]:
    account = openai_accounts(sim)[0]
    start, end = window()
    path = (
        f"{account.id}/providers/Microsoft.Insights/metrics?api-version=2024-02-01&metricnames=AzureOpenAIRequests"
        f"&timespan={start:%Y-%m-%dT%H:%M:%SZ}/{end:%Y-%m-%dT%H:%M:%SZ}"
    )
    answer = raw(sim, "GET", path, token=token)
    return answer.status, answer.headers, answer.body


def test_429_is_wrapped_with_retry_after_and_counted(sim: Simulator, metrics_token: str) -> None:
    sim.faults.add(FaultRule(route="getBatch", kind="429", retry_after=7, times=1))
    sim.reset_calls()
    first = _batch_raw(sim, metrics_token)
    assert first[0] == 429
    body = json.loads(first[2])
    assert body["error"]["code"] == "SubscriptionRequestsThrottled"
    assert first[1]["retry-after"] == "7" and first[1]["x-ms-error-code"] == "SubscriptionRequestsThrottled"
    sim.faults.holds.clear()
    assert _batch_raw(sim, metrics_token)[0] == 200
    assert sim.calls[("getBatch", 429)] == 1 and sim.calls[("getBatch", 200)] == 1


def test_a_request_before_retry_after_elapsed_gets_a_new_429(sim: Simulator, metrics_token: str) -> None:
    """ARM refuses a caller that comes back before its Retry-After (azure-monitor.md §4)."""
    sim.faults.add(FaultRule(route="getBatch", kind="429", retry_after=1, times=1))
    sim.reset_calls()
    first = _batch_raw(sim, metrics_token)
    early = _batch_raw(sim, metrics_token)
    assert (first[0], early[0]) == (429, 429)
    assert early[1]["retry-after"] == "1"  # the wait that is left, rounded up
    assert json.loads(early[2])["error"]["code"] == "SubscriptionRequestsThrottled"
    assert sim.faults.holds.early == 1 and sim.faults.fired["429"] >= 1
    time.sleep(1.05)
    assert _batch_raw(sim, metrics_token)[0] == 200
    assert sim.faults.holds.early == 1


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        ("400", "BadRequest"),
        ("401", "InvalidAuthenticationToken"),
        ("403", "AuthorizationFailed"),
        ("404", "ResourceNotFound"),
        ("500", "InternalServerError"),
        ("503", "ServiceUnavailable"),
    ],
)
def test_status_faults_have_azure_envelopes(
    sim: Simulator, metrics_token: str, arm_token: str, kind: str, code: str
) -> None:
    sim.faults.add(FaultRule(route="getBatch", kind=kind, times=1))
    status, headers, body = _batch_raw(sim, metrics_token)
    wrapped = json.loads(body)
    assert status == int(kind) and wrapped["error"]["code"] == code and headers["x-ms-error-code"] == code
    assert wrapped["error"]["additionalInfo"]
    sim.faults.add(FaultRule(route="metrics", kind=kind, times=1))
    status, _, body = _arm_metrics_raw(sim, arm_token)
    arm = json.loads(body)
    assert status == int(kind)
    if kind in ("400", "500", "503"):
        assert arm["code"] == code, "metrics backend errors are relayed flat"
    else:
        assert arm["error"]["code"] == code


def test_529_has_an_undocumented_body(sim: Simulator, metrics_token: str) -> None:
    sim.faults.add(FaultRule(route="getBatch", kind="529", times=1))
    status, headers, body = _batch_raw(sim, metrics_token)
    assert status == 529 and headers["content-type"].startswith("text/plain")
    with pytest.raises(ValueError):
        json.loads(body)


def test_sdk_sees_the_faults_as_azure_errors(
    sim: Simulator, credential: ClientSecretCredential, monitor: MonitorManagementClient
) -> None:
    account = openai_accounts(sim)[0]
    start, end = window()
    client = metrics_client(sim, credential, account.location)
    query = {
        "resource_ids": [account.id],
        "metric_namespace": NAMESPACE,
        "metric_names": ["AzureOpenAIRequests"],
        "timespan": (start, end),
    }
    sim.faults.add(FaultRule(route="getBatch", kind="403", times=1))
    with pytest.raises(HttpResponseError) as forbidden:
        client.query_resources(**query)
    assert forbidden.value.status_code == 403 and forbidden.value.error.code == "AuthorizationFailed"
    sim.faults.add(FaultRule(route="metrics", kind="404", times=1))
    with pytest.raises(ResourceNotFoundError):
        monitor.metrics.list(account.id, timespan=f"{start.isoformat()}/{end.isoformat()}")
    sim.faults.add(FaultRule(route="metrics", kind="401", times=1))
    with pytest.raises(ClientAuthenticationError):
        monitor.metrics.list(account.id, timespan=f"{start.isoformat()}/{end.isoformat()}")
    sim.faults.add(FaultRule(route="getBatch", kind="malformed", times=1))
    with pytest.raises((DecodeError, ValueError)):
        client.query_resources(**query)


def test_timeout_and_reset_drop_the_connection(sim: Simulator, credential: ClientSecretCredential) -> None:
    account = openai_accounts(sim)[0]
    start, end = window()
    client = metrics_client(sim, credential, account.location)
    query = {
        "resource_ids": [account.id],
        "metric_namespace": NAMESPACE,
        "metric_names": ["AzureOpenAIRequests"],
        "timespan": (start, end),
    }
    client.query_resources(**query)  # the token is cached before the faults apply
    sim.reset_calls()
    sim.faults.add(FaultRule(route="getBatch", kind="reset", times=1))
    with pytest.raises((ServiceRequestError, ServiceResponseError)):
        client.query_resources(**query)
    sim.faults.add(FaultRule(route="getBatch", kind="timeout", delay=0.2, times=1))
    began = time.monotonic()
    with pytest.raises((ServiceRequestError, ServiceResponseError)):
        client.query_resources(**query)
    assert time.monotonic() - began >= 0.2
    time.sleep(0.05)
    assert sim.calls[("getBatch", 0)] == 2


def test_slow_answers_normally_after_the_delay(sim: Simulator, metrics_token: str) -> None:
    sim.faults.add(FaultRule(route="getBatch", kind="slow", delay=0.3, times=1))
    began = time.monotonic()
    status, _, _ = _batch_raw(sim, metrics_token)
    assert status == 200 and time.monotonic() - began >= 0.3


def test_metric_error_marks_only_the_named_metric(sim: Simulator, metrics_token: str) -> None:
    sim.faults.add(FaultRule(route="getBatch", kind="metric_error", match="TokenTransaction", times=1))
    status, _, body = _batch_raw(sim, metrics_token)
    metrics = {m["name"]["value"]: m for m in json.loads(body)["values"][0]["value"]}
    assert status == 200
    assert metrics["TokenTransaction"]["errorCode"] == "InvalidSamplingType"
    assert metrics["TokenTransaction"]["timeseries"] == [] and metrics["TokenTransaction"]["errorMessage"]
    assert metrics["AzureOpenAIRequests"]["errorCode"] == "Success"


def test_match_times_order_and_wildcard_route(sim: Simulator, metrics_token: str, arm_token: str) -> None:
    sim.faults.add(FaultRule(route="*", kind="500", match="no-such-account-name"))
    sim.faults.add(FaultRule(route="getBatch", kind="503", match="azureopenairequests", times=1))
    sim.faults.add(FaultRule(route="*", kind="429", retry_after=0, times=1))  # 0: no hold afterwards
    assert _batch_raw(sim, metrics_token, "TokenTransaction")[0] == 429  # first rule does not match
    assert _batch_raw(sim, metrics_token)[0] == 503  # matched in the query string, in order
    assert _batch_raw(sim, metrics_token)[0] == 200  # both single-shot rules are used up
    assert _arm_metrics_raw(sim, arm_token)[0] == 200


def test_probability_is_seeded(sim: Simulator, metrics_token: str) -> None:
    sim.faults.add(FaultRule(route="getBatch", kind="500", probability=0.5))
    statuses = [_batch_raw(sim, metrics_token)[0] for _ in range(30)]
    assert 0 < statuses.count(500) < 30 and set(statuses) == {200, 500}


def test_token_route_faults_use_the_oauth_shape(sim: Simulator) -> None:
    sim.faults.add(FaultRule(route="token", kind="503", times=1))
    no_retries = ClientSecretCredential(
        sim.tenant_id,
        sim.client_id,
        sim.client_secret,
        authority=sim.url,
        disable_instance_discovery=True,
        connection_verify=sim.ca_path,
        retry_total=0,
    )
    with pytest.raises(ClientAuthenticationError, match="503"):
        no_retries.get_token("https://management.azure.com/.default")
    # MSAL caches a 5xx per application for a while, so the recovery is seen by a fresh credential.
    assert credential_for(sim).get_token("https://management.azure.com/.default").token
    sim.faults.add(FaultRule(route="token", kind="400", times=1))
    form = f"grant_type=client_credentials&client_id={sim.client_id}&client_secret={sim.client_secret}&scope=x/.default"
    answer = raw(
        sim,
        "POST",
        f"/{sim.tenant_id}/oauth2/v2.0/token",
        body=form.encode(),
        content_type="application/x-www-form-urlencoded",
    )
    assert answer.status == 400 and answer.json()["error"] == "invalid_request"


def test_latency_is_added_to_every_answer() -> None:
    with make_sim(accounts_per_region=1, latency=0.2) as sim:
        began = time.monotonic()
        assert raw(sim, "GET", f"/{sim.tenant_id}/v2.0/.well-known/openid-configuration").status == 200
        assert time.monotonic() - began >= 0.2
