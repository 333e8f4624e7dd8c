"""Helpers for the simulator tests: one shared simulator with a fixed clock, real SDK clients."""

from __future__ import annotations

import http.client
import json
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from azure.identity import ClientSecretCredential
from azure.mgmt.monitor import MonitorManagementClient
from azure.mgmt.resource.resources import ResourceManagementClient
from azure.monitor.querymetrics import MetricsClient

from metrics_poller.simulator import SimAccount, SimSpec, Simulator

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NAMESPACE = "Microsoft.CognitiveServices/accounts"
ARM_SCOPE = "https://management.azure.com/.default"
METRICS_SCOPE = "https://metrics.monitor.azure.com/.default"
SPEC = SimSpec(seed=7, page_size=5)


@pytest.fixture(scope="session")
def sim() -> Iterator[Simulator]:
    with Simulator(SPEC, clock=lambda: NOW) as simulator:
        yield simulator


@pytest.fixture(autouse=True)
def _clean(sim: Simulator) -> Iterator[None]:
    sim.faults.clear()
    yield
    sim.faults.clear()


@pytest.fixture(scope="session")
def credential(sim: Simulator) -> ClientSecretCredential:
    return ClientSecretCredential(
        sim.tenant_id,
        sim.client_id,
        sim.client_secret,
        authority=sim.url,
        disable_instance_discovery=True,
        connection_verify=sim.ca_path,
    )


@pytest.fixture(scope="session")
def arm_token(credential: ClientSecretCredential) -> str:
    return str(credential.get_token(ARM_SCOPE).token)


@pytest.fixture(scope="session")
def metrics_token(credential: ClientSecretCredential) -> str:
    return str(credential.get_token(METRICS_SCOPE).token)


@pytest.fixture(scope="session")
def monitor(sim: Simulator, credential: ClientSecretCredential) -> MonitorManagementClient:
    return MonitorManagementClient(
        credential, sim.subscription_ids[0], base_url=sim.url, connection_verify=sim.ca_path, retry_total=0
    )


@pytest.fixture(scope="session")
def resources(sim: Simulator, credential: ClientSecretCredential) -> ResourceManagementClient:
    return ResourceManagementClient(
        credential, sim.subscription_ids[0], base_url=sim.url, connection_verify=sim.ca_path, retry_total=0
    )


def metrics_client(sim: Simulator, credential: ClientSecretCredential, region: str) -> MetricsClient:
    return MetricsClient(f"{sim.url}/metrics/{region}", credential, connection_verify=sim.ca_path, retry_total=0)


def openai_accounts(sim: Simulator, subscription: str | None = None, region: str | None = None) -> list[SimAccount]:
    return [
        a
        for a in sim.accounts
        if a.kind in ("OpenAI", "AIServices")
        and (subscription is None or a.subscription_id == subscription)
        and (region is None or a.location == region)
    ]


def window(minutes: int = 10, end: datetime = NOW - timedelta(hours=1)) -> tuple[datetime, datetime]:
    return end - timedelta(minutes=minutes), end


@dataclass
class Raw:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def raw(
    sim: Simulator,
    method: str,
    path: str,
    *,
    token: str | None = None,
    body: bytes | None = None,
    content_type: str = "application/json",
) -> Raw:
    """One HTTPS request with the standard library, trusting only the simulator's CA."""
    parts = urlsplit(sim.url)
    context = ssl.create_default_context(cafile=sim.ca_path)
    connection = http.client.HTTPSConnection(parts.hostname or "", parts.port, context=context, timeout=10)
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return Raw(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        connection.close()


def batch_path(subscription: str, region: str, **params: str) -> str:
    from urllib.parse import urlencode

    query = {"api-version": "2024-02-01", "metricnamespace": NAMESPACE, **params}
    return f"/metrics/{region}/subscriptions/{subscription}/metrics:getBatch?{urlencode(query)}"


def iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def make_sim(**spec: Any) -> Simulator:
    """A small private simulator on the shared fixed clock (start it with `with`)."""
    defaults: dict[str, Any] = {"seed": 3, "subscriptions": 1, "regions": ("eastus",), "accounts_per_region": 2}
    return Simulator(SimSpec(**{**defaults, **spec}), clock=lambda: NOW)


def credential_for(sim: Simulator) -> ClientSecretCredential:
    return ClientSecretCredential(
        sim.tenant_id,
        sim.client_id,
        sim.client_secret,
        authority=sim.url,
        disable_instance_discovery=True,
        connection_verify=sim.ca_path,
    )
