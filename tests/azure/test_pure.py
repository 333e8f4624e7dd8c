"""Pure cores of credentials, discovery, the Azure HTTP layer and fetching: no network."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trustme
from azure.identity.aio import (
    AzureCliCredential,
    CertificateCredential,
    ClientSecretCredential,
    DefaultAzureCredential,
    ManagedIdentityCredential,
    WorkloadIdentityCredential,
)
from hypothesis import given
from hypothesis import strategies as st

from metrics_poller import config
from metrics_poller.azure_http import backoff_delay, retry_after_seconds, scrub
from metrics_poller.credentials import build_credential, client_kwargs, secret_values
from metrics_poller.discovery import account_from_resource, id_segment, in_scope, select_accounts, select_projects
from metrics_poller.fetching import arm_timespan, batch_filter, order_by, parse_definitions
from metrics_poller.model import ACCOUNT_TYPE, PROJECT_TYPE

SUB = "00000000-0000-0000-0000-000000000001"
RID = f"/subscriptions/{SUB}/resourceGroups/rg-A/providers/Microsoft.CognitiveServices/accounts/aoai1"


def azure(**section: object) -> config.Azure:
    return config.parse({"azure": section}, environ={}).azure


def test_retry_after_variants() -> None:
    assert retry_after_seconds({"retry-after": "7"}) == 7.0
    assert retry_after_seconds({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after_seconds({"x-ms-retry-after-ms": "250"}) == 0.25
    assert retry_after_seconds({}) is None
    assert retry_after_seconds({"retry-after": "nonsense"}) is None
    date = "Thu, 01 Jan 2026 00:00:30 GMT"
    assert retry_after_seconds({"retry-after": date}, now=datetime(2026, 1, 1, tzinfo=UTC).timestamp()) == 30.0


def test_backoff_full_jitter_is_capped() -> None:
    assert backoff_delay(0, 1.0, 30.0, 1.0) == 1.0
    assert backoff_delay(3, 1.0, 30.0, 1.0) == 8.0
    assert backoff_delay(10, 1.0, 30.0, 1.0) == 30.0
    assert backoff_delay(10, 1.0, 30.0, 0.0) == 0.0


def test_request_parameters() -> None:
    assert batch_filter(("ModelDeploymentName", "StatusCode")) == "ModelDeploymentName eq '*' and StatusCode eq '*'"
    assert batch_filter(()) is None
    assert order_by(("Total",)) == "total desc"
    assert order_by(("Average", "Minimum")) == "average desc"
    start, end = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 0, 10, tzinfo=UTC)
    assert arm_timespan(start, end) == "2026-01-01T00:00:00Z/2026-01-01T00:10:00Z"


def test_scrub_masks_secrets_and_tokens() -> None:
    text = "failed\nfor s3cr3t-value with Authorization: Bearer eyJabc.def-ghi"
    out = scrub(text, ["s3cr3t-value"])
    assert "s3cr3t-value" not in out and "eyJabc" not in out and "\n" not in out


def test_parse_definitions() -> None:
    body = {
        "value": [
            {
                "name": {"value": "AzureOpenAIRequests", "localizedValue": "Azure OpenAI Requests"},
                "dimensions": [{"value": "modeldeploymentname"}, {"value": "StatusCode"}],
                "supportedAggregationTypes": ["None", "Total", "count"],
                "metricAvailabilities": [{"timeGrain": "PT1M", "retention": "P93D"}, {"timeGrain": "PT1H"}],
            },
            {"name": {}},
        ]
    }
    defs = parse_definitions([body])
    assert list(defs) == ["AzureOpenAIRequests"]
    d = defs["AzureOpenAIRequests"]
    assert d.dimensions == ("ModelDeploymentName", "StatusCode")
    assert d.aggregations == ("Total", "Count")
    assert d.timegrains == ("PT1M", "PT1H")
    with pytest.raises(ValueError):
        parse_definitions([{"nothing": 1}])


def test_accounts_from_resources() -> None:
    assert id_segment(RID, "resourcegroups") == "rg-A"
    openai = {"id": RID, "name": "aoai1", "type": "Microsoft.CognitiveServices/accounts", "kind": "OpenAI",
              "location": "East US", "tags": {"team": "x"}}
    speech = dict(openai, id=RID + "-speech", kind="Speech")
    lower = dict(openai, id=RID.upper(), type="microsoft.cognitiveservices/accounts")
    storage = dict(openai, id=RID + "-st", type="Microsoft.Storage/storageAccounts", kind="OpenAI")
    accounts = select_accounts([openai, speech, lower, storage], ["OpenAI", "AIServices"])
    assert [a.id for a in accounts] == [RID]
    account = accounts[0]
    assert (account.subscription_id, account.resource_group, account.location) == (SUB, "rg-A", "eastus")
    assert dict(account.tags) == {"team": "x"}
    assert account_from_resource({"id": RID}) is None
    subs = [config.Subscription(id=SUB, resource_groups=["RG-a"])]
    assert in_scope(account, subs)
    assert not in_scope(account, [config.Subscription(id=SUB, resource_groups=["other"])])


def test_client_kwargs_disable_sdk_retries() -> None:
    kwargs = client_kwargs(azure(request_timeout=12))
    assert kwargs["retry_total"] == 0
    assert kwargs["read_timeout"] == 12
    assert kwargs["connection_verify"] is True
    assert "metrics-poller" in kwargs["user_agent"]
    assert client_kwargs(azure(verify_tls=False))["connection_verify"] is False


async def test_build_credential_types(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    secret = {"type": "client_secret", "tenant_id": "t", "client_id": "c", "client_secret": "hush-123"}
    cases = [
        ({"type": "client_secret", **secret}, ClientSecretCredential),
        ({"type": "managed_identity", "client_id": "c"}, ManagedIdentityCredential),
        ({"type": "workload_identity", "tenant_id": "t", "client_id": "c", "federated_token_file": "/x"},
         WorkloadIdentityCredential),
        ({"type": "azure_cli"}, AzureCliCredential),
        ({"type": "default"}, DefaultAzureCredential),
    ]
    for section, expected in cases:
        cfg = azure(credential=section, endpoints={"authority": "https://login.microsoftonline.us"})
        credential = build_credential(cfg)
        try:
            assert isinstance(credential, expected)
        finally:
            await credential.close()
    assert secret_values(azure(credential=secret)) == ("hush-123",)
    with pytest.raises(Exception) as info:
        build_credential(azure(credential={"type": "certificate", "tenant_id": "t", "client_id": "c",
                                           "certificate_path": "/nonexistent.pem", "certificate_password": "pw-9"}))
    assert "pw-9" not in str(info.value)
    pem = tmp_path / "client.pem"
    leaf = trustme.CA().issue_cert("metrics-poller", key_type=trustme.KeyType.RSA)
    leaf.private_key_and_cert_chain_pem.write_to_path(str(pem))
    cert = build_credential(azure(credential={"type": "certificate", "tenant_id": "t", "client_id": "c",
                                              "certificate_path": str(pem)}))
    assert isinstance(cert, CertificateCredential)
    await cert.close()
    with caplog.at_level("WARNING"):
        await build_credential(azure(verify_tls=False, credential=secret)).close()
    assert "NOT verified" in caplog.text
    await asyncio.sleep(0)


@given(gaps=st.lists(st.floats(min_value=0, max_value=2), min_size=1, max_size=600))
def test_arm_token_bucket_never_releases_more_than_burst_plus_rate(gaps: list[float]) -> None:
    from metrics_poller.azure_http import TokenBucket

    bucket = TokenBucket(capacity=250, rate=25, tokens=250, stamp=0.0)
    now, released = 0.0, []
    for gap in gaps:
        now += gap
        released.append(now + bucket.take(now))  # when this read may go
    released.sort()
    # In any window [t, t + d), at most burst + rate × d reads go out.
    for i, start in enumerate(released):
        for j in range(i, len(released)):
            span = released[j] - start
            assert j - i + 1 <= 250 + 25 * span + 1e-6
            if span > 5:
                break


def test_projects_are_kept_only_under_selected_accounts_with_their_own_name() -> None:
    base = "/subscriptions/S1/resourceGroups/RG/providers/Microsoft.CognitiveServices/accounts"
    parent = account_from_resource(
        {"id": f"{base}/hub", "kind": "AIServices", "location": "East US 2", "type": ACCOUNT_TYPE}
    )
    assert parent is not None
    projects = select_projects(
        [
            # ARM names a nested resource `account/project`; the type comes back in any case.
            {"id": f"{base}/HUB/projects/p1", "name": "hub/p1", "type": PROJECT_TYPE.lower(), "tags": {"a": 1}},
            {"id": f"{base}/hub/projects/p1", "name": "p1", "type": PROJECT_TYPE},  # the same, again
            {"id": f"{base}/other/projects/p2", "name": "other/p2", "type": PROJECT_TYPE},  # parent not selected
            {"id": f"{base}/hub/deployments/d", "name": "hub/d", "type": f"{ACCOUNT_TYPE}/deployments"},
        ],
        [parent],
    )
    assert [(p.name, p.type, p.kind, p.location, p.resource_group, dict(p.tags)) for p in projects] == [
        ("p1", PROJECT_TYPE, "AIServices", "eastus2", "RG", {"a": "1"})
    ]
