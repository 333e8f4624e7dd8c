"""Entra ID imitation: real azure-identity credentials, audiences bound to tokens."""

from __future__ import annotations

import json

import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ClientSecretCredential
from azure.identity.aio import ClientSecretCredential as AsyncClientSecretCredential
from simulator_support import ARM_SCOPE, METRICS_SCOPE, batch_path, openai_accounts, raw

from metrics_poller.simulator import Simulator


def test_sync_credential_gets_a_token_and_the_server_remembers_its_audience(sim: Simulator) -> None:
    credential = ClientSecretCredential(
        sim.tenant_id,
        sim.client_id,
        sim.client_secret,
        authority=sim.url,
        disable_instance_discovery=True,
        connection_verify=sim.ca_path,
    )
    before = sim.call_count("token")
    token = credential.get_token(ARM_SCOPE)
    assert token.token and token.expires_on > 0
    assert sim.call_count("token") == before + 1
    subscription = sim.subscription_ids[0]
    assert (
        raw(sim, "GET", f"/subscriptions/{subscription}/resources?api-version=2025-04-01", token=token.token).status
        == 200
    )


async def test_async_credential_gets_a_token(sim: Simulator) -> None:
    async with AsyncClientSecretCredential(
        sim.tenant_id,
        sim.client_id,
        sim.client_secret,
        authority=sim.url,
        disable_instance_discovery=True,
        connection_verify=sim.ca_path,
    ) as credential:
        token = await credential.get_token(METRICS_SCOPE)
    assert token.token


def test_wrong_secret_is_an_authentication_error(sim: Simulator) -> None:
    credential = ClientSecretCredential(
        sim.tenant_id,
        sim.client_id,
        "not-the-secret",
        authority=sim.url,
        disable_instance_discovery=True,
        connection_verify=sim.ca_path,
    )
    with pytest.raises(ClientAuthenticationError, match="AADSTS7000215"):
        credential.get_token(ARM_SCOPE)
    assert sim.calls[("token", 401)] >= 1


def test_token_endpoint_wire_shapes(sim: Simulator) -> None:
    config = raw(sim, "GET", f"/{sim.tenant_id}/v2.0/.well-known/openid-configuration").json()
    assert config["token_endpoint"] == f"{sim.url}/{sim.tenant_id}/oauth2/v2.0/token"
    assert config["issuer"].startswith(sim.url) and "authorization_endpoint" in config
    form = f"grant_type=client_credentials&client_id={sim.client_id}&client_secret=x&scope={ARM_SCOPE}"
    wrong = raw(
        sim,
        "POST",
        f"/{sim.tenant_id}/oauth2/v2.0/token",
        body=form.encode(),
        content_type="application/x-www-form-urlencoded",
    )
    assert wrong.status == 401
    assert wrong.json()["error"] == "invalid_client"
    assert wrong.json()["error_description"].startswith("AADSTS7000215")
    good = form.replace("client_secret=x", f"client_secret={sim.client_secret}").replace(
        ARM_SCOPE, "api://anything/.default"
    )
    issued = raw(
        sim,
        "POST",
        f"/{sim.tenant_id}/oauth2/v2.0/token",
        body=good.encode(),
        content_type="application/x-www-form-urlencoded",
    )
    assert issued.status == 200
    assert issued.json()["token_type"] == "Bearer" and issued.json()["access_token"]
    unknown_tenant = raw(sim, "GET", "/00000000-0000-0000-0000-000000000000/v2.0/.well-known/openid-configuration")
    assert unknown_tenant.status == 400


def test_api_routes_reject_missing_unknown_and_wrong_audience_tokens(
    sim: Simulator, arm_token: str, metrics_token: str
) -> None:
    subscription = sim.subscription_ids[0]
    arm_path = f"/subscriptions/{subscription}/resources?api-version=2025-04-01"
    account = openai_accounts(sim, subscription)[0]
    body = json.dumps({"resourceids": [account.id]}).encode()
    get_batch = batch_path(subscription, account.location, metricnames="AzureOpenAIRequests")

    missing = raw(sim, "GET", arm_path)
    assert missing.status == 401
    assert missing.json()["error"]["code"] == "AuthenticationFailed"
    assert raw(sim, "GET", arm_path, token="forged").status == 401
    wrong_for_arm = raw(sim, "GET", arm_path, token=metrics_token)
    assert wrong_for_arm.status == 401
    assert wrong_for_arm.json()["error"]["code"] == "InvalidAuthenticationTokenAudience"
    wrong_for_batch = raw(sim, "POST", get_batch, token=arm_token, body=body)
    assert wrong_for_batch.status == 401
    assert wrong_for_batch.headers["x-ms-error-code"] == "InvalidAuthenticationTokenAudience"
    assert raw(sim, "POST", get_batch, token=metrics_token, body=body).status == 200
