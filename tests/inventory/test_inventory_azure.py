"""The inventory readers through the real azure-mgmt-cognitiveservices SDK against the simulator."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.cognitiveservices.aio import CognitiveServicesManagementClient

from metrics_poller import config
from metrics_poller.credentials import build_credential, client_kwargs
from metrics_poller.headroom import join
from metrics_poller.inventory import InventoryReader, InventoryReadError
from metrics_poller.model import Account
from metrics_poller.simulator import FaultRule, SimSpec, Simulator

FAST_RETRY = {"attempts": 3, "backoff_initial": 0.01, "backoff_max": 0.05, "retry_after_cap": 2.0}


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(SimSpec(seed=5, subscriptions=1, regions=("eastus",), accounts_per_region=4)) as s:
        yield s


@pytest.fixture(autouse=True)
def _clean(sim: Simulator) -> Iterator[None]:
    yield
    sim.faults.clear()
    sim.reset_calls()


def accounts(sim: Simulator) -> list[Account]:
    return [
        Account(a.id, a.name, a.subscription_id, a.resource_group, a.location, a.kind)
        for a in sim.accounts
        if a.kind in ("OpenAI", "AIServices")
    ]


@asynccontextmanager
async def reader(sim: Simulator) -> AsyncIterator[InventoryReader]:
    cfg = config.parse({"azure": sim.azure_config(retry=FAST_RETRY)}, environ={}).azure
    credential = build_credential(cfg)
    inventory = InventoryReader(cfg, credential, catalogue_ttl=3600, concurrency=2)
    try:
        yield inventory
    finally:
        await inventory.close()
        await credential.close()


def deadline() -> float:
    return time.monotonic() + 30


async def test_deployments_of_every_page_are_read(sim: Simulator) -> None:
    async with reader(sim) as inventory:
        for account in accounts(sim):
            listed = await inventory.deployments(account, deadline())
            truths = sim.deployment_truths(account.id)
            assert [d.name for d in listed] == [t.deployment.name for t in truths]
            assert [(d.sku_name, d.capacity) for d in listed] == [(t.sku, t.capacity) for t in truths]
    # An account without listed deployments still answers one (empty) page.
    pages = sum(max(1, -(-len(sim.deployment_truths(a.id)) // 2)) for a in accounts(sim))
    assert sim.call_count("deployments") == pages  # two per page: nextLink followed to the end


async def test_the_catalogue_is_read_once_per_subscription_and_region(sim: Simulator) -> None:
    account = accounts(sim)[0]
    async with reader(sim) as inventory:
        first = await inventory.catalogue(account.subscription_id, "eastus", deadline())
        second = await inventory.catalogue(account.subscription_id, "EastUS", deadline())
    assert first is second and sim.call_count("models") == 1
    assert ("openai", "gpt-35-turbo", "0125") in first


async def test_a_throttled_read_is_retried_after_retry_after(sim: Simulator) -> None:
    sim.faults.add(FaultRule(route="usages", kind="429", retry_after=1, times=1))
    account = accounts(sim)[0]
    started = time.monotonic()
    async with reader(sim) as inventory:
        rows = await inventory.usages(account.subscription_id, "eastus", deadline())
    assert time.monotonic() - started >= 1.0
    assert {q.name for q in rows} >= {q.name for q in sim.quota_truths(account.subscription_id, "eastus")}
    assert sim.call_count("usages") == 2


async def test_a_malformed_body_fails_that_read_with_one_line(sim: Simulator) -> None:
    account = accounts(sim)[0]
    sim.faults.add(FaultRule(route="deployments", kind="hostile", body=b'{"value": "nope"}'))
    async with reader(sim) as inventory:
        with pytest.raises(InventoryReadError) as caught:
            await inventory.deployments(account, deadline())
    assert "malformed" in str(caught.value) and "\n" not in str(caught.value)


async def test_an_unknown_type_without_rate_limits_is_stored_as_unknown(sim: Simulator) -> None:
    account = accounts(sim)[0]
    item = {
        "id": account.id + "/deployments/future",
        "name": "future",
        "type": "Microsoft.CognitiveServices/accounts/deployments",
        "sku": {"name": "FutureTier", "capacity": 7},
        "properties": {"model": {"format": "OpenAI", "name": "gpt-4o", "version": "2024-11-20"}},
    }
    sim.faults.add(FaultRule(route="deployments", kind="hostile", body=orjson.dumps({"value": [item]})))
    async with reader(sim) as inventory:
        listed = await inventory.deployments(account, deadline())
        catalogue = await inventory.catalogue(account.subscription_id, "eastus", deadline())
    (record,) = join(account, listed, catalogue, {}, datetime.now(UTC))
    assert record.deployment.family == "unknown"
    # The catalogue knows gpt-4o's Standard limits, but this is not a Standard deployment: no guess.
    assert record.limits.tokens_per_minute is None and record.limits.source is None
    assert record.lifecycle_status == "GenerallyAvailable"  # the model's facts still apply


async def test_the_simulator_refuses_an_api_version_arm_does_not_know(sim: Simulator) -> None:
    cfg = config.parse({"azure": sim.azure_config()}, environ={}).azure
    credential = build_credential(cfg)
    client = CognitiveServicesManagementClient(
        credential,
        sim.subscription_ids[0],
        base_url=sim.url,
        api_version="2019-01-01",
        **client_kwargs(cfg),
    )
    try:
        with pytest.raises(HttpResponseError) as caught:
            async for _ in client.models.list("eastus"):
                pass
    finally:
        await client.close()
        await credential.close()
    assert caught.value.status_code == 400 and "NoRegisteredProviderFound" in str(caught.value)


async def test_non_openai_deployments_join_the_catalogue_with_unknown_limits(sim: Simulator) -> None:
    """A Foundry account's DeepSeek, Llama, Phi, Mistral… deployments are listed with their publisher's
    `model.format`; the catalogue gives their lifecycle and MaaS quota key, and no limit is guessed."""
    foundry = [a for a in accounts(sim) if any(t.model_format != "OpenAI" for t in sim.deployment_truths(a.id))]
    assert foundry, "the estate has Foundry accounts with non-OpenAI deployments"
    now = datetime.now(UTC)
    async with reader(sim) as inventory:
        catalogue = await inventory.catalogue(foundry[0].subscription_id, "eastus", deadline())
        records = []
        for account in foundry:
            records += join(account, await inventory.deployments(account, deadline()), catalogue, {}, now)
    others = [r for r in records if r.deployment.model_format != "OpenAI"]
    truths = {t.id.lower(): t for a in foundry for t in sim.deployment_truths(a.id)}
    assert others and len(others) == sum(1 for t in truths.values() if t.model_format != "OpenAI")
    for record in others:
        truth = truths[record.deployment.id.lower()]
        assert record.deployment.model_format == truth.model_format  # e.g. "Meta", "Mistral AI"
        assert record.limits.tokens_per_minute is None and record.limits.requests_per_minute is None
        assert record.limits.source is None  # unknown, not derived from any table
        assert (record.quota_name, record.quota_guessed) == ("AIServices.GlobalStandard.MaaS", False)
        assert record.lifecycle_status is not None  # the catalogue entry was found by (format, name, version)
    # Llama's 2099 placeholder means "no date"; a dated model gets its days to retirement.
    assert all(r.retirement is None for r in others if r.deployment.model_name == "Meta-Llama-3.1-405B-Instruct")
    assert all(
        (r.days_to_retirement is not None) == (r.retirement is not None) for r in others
    )


async def test_the_deployments_list_holds_every_deployment_the_foundry_metrics_name(sim: Simulator) -> None:
    """Simulator consistency: what the azure.ai_foundry metrics measure is what Deployments_List lists
    (OpenAI and other models alike), and each listed model has its catalogue entry."""
    end = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=10)
    start, split = end - timedelta(hours=2), ["ModelDeploymentName"]
    measured_any = False
    async with reader(sim) as inventory:
        catalogue = await inventory.catalogue(sim.subscription_ids[0], "eastus", deadline())
        for account in accounts(sim):
            listed = await inventory.deployments(account, deadline())
            names = {d.name for d in listed}
            for metric in ("TotalTokens", "ModelRequests"):
                served = sim.expected(account.id, metric, start, end, "PT1M", split)
                measured = {dict(dims)["ModelDeploymentName"] for dims in served}
                measured_any = measured_any or bool(measured - {d.name for d in listed if d.model_format == "OpenAI"})
                assert measured <= names, (account.id, metric, measured - names)
            for deployment in listed:
                key = (deployment.model_format or "", deployment.model_name or "", deployment.model_version or "")
                assert tuple(k.lower() for k in key) in catalogue, key
    assert measured_any  # some non-OpenAI deployment had Foundry traffic in the window
