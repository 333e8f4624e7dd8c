"""Discovery through the real azure-mgmt-resource / resourcegraph SDKs against the simulator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from metrics_poller.credentials import build_credential
from metrics_poller.discovery import AzureAuthError, AzureUnreachable, Discoverer
from metrics_poller.simulator import FaultRule, Simulator

from .conftest import azure_cfg, sim_accounts, simulator, stack


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    # A page size smaller than one subscription's resources forces nextLink paging.
    with simulator(seed=7, accounts_per_region=4, page_size=5) as s:
        yield s


def ids(accounts: object) -> set[str]:
    return {a.id.lower() for a in accounts}  # type: ignore[attr-defined]


async def test_whole_subscriptions_with_paging_and_kind_filter(sim: Simulator) -> None:
    async with stack(sim) as s:
        result = await s.discoverer.accounts()
    expected = sim_accounts(sim)
    assert result.failures == []
    assert ids(result.accounts) == ids(expected)
    assert len(result.accounts) == len(expected)  # de-duplicated
    # other kinds (Speech, Face, ...) exist in the estate and were dropped
    assert any(a.kind not in ("OpenAI", "AIServices") for a in sim.accounts)
    by_id = {a.key: a for a in result.accounts}
    for want in expected:
        got = by_id[want.key]
        assert (got.name, got.subscription_id, got.resource_group, got.location, got.kind) == (
            want.name, want.subscription_id, want.resource_group, want.location, want.kind,
        )
        assert dict(got.tags) == dict(want.tags)
    # several pages per subscription were read
    assert sim.call_count("resources") > len(sim.subscription_ids)


async def test_resource_groups_and_kinds(sim: Simulator) -> None:
    sub = sim.subscription_ids[0]
    group = next(a.resource_group for a in sim.accounts if a.subscription_id == sub)
    async with stack(sim, subscriptions=[{"id": sub, "resource_groups": [group]}], kinds=["AIServices"]) as s:
        result = await s.discoverer.accounts()
    want = [a for a in sim_accounts(sim, ["AIServices"]) if a.subscription_id == sub and a.resource_group == group]
    assert want and ids(result.accounts) == ids(want)


async def test_resource_ids_with_deleted_and_other_kind(sim: Simulator) -> None:
    chosen = sim_accounts(sim)[:3]
    other = next(a for a in sim.accounts if a.kind not in ("OpenAI", "AIServices"))
    gone = chosen[0].id.rsplit("/", 1)[0] + "/does-not-exist"
    rids = [a.id for a in chosen] + [chosen[1].id.upper(), other.id, gone]
    async with stack(sim, subscriptions=[], resource_ids=rids) as s:
        result = await s.discoverer.accounts()
    assert ids(result.accounts) == ids(chosen)
    assert [f.target for f in result.failures] == [gone]
    assert "not found" in result.failures[0].reason


async def test_cache_within_refresh_interval(sim: Simulator) -> None:
    now = [1000.0]
    cfg = azure_cfg(sim, refresh_interval=600)
    credential = build_credential(cfg)
    discoverer = Discoverer(cfg, credential, clock=lambda: now[0])
    try:
        first = await discoverer.accounts()
        calls = sim.call_count("resources")
        now[0] += 599
        assert (await discoverer.accounts()).accounts == first.accounts
        assert sim.call_count("resources") == calls
        await discoverer.accounts(force=True)
        assert sim.call_count("resources") > calls
        calls = sim.call_count("resources")
        now[0] += 601
        await discoverer.accounts()
        assert sim.call_count("resources") > calls
    finally:
        await discoverer.close()
        await credential.close()


async def test_forbidden_subscription_is_skipped(sim: Simulator) -> None:
    denied, allowed = sim.subscription_ids
    sim.faults.add(FaultRule(route="resources", kind="403", match=denied, times=None))
    async with stack(sim) as s:
        result = await s.discoverer.accounts()
    assert ids(result.accounts) == ids(a for a in sim_accounts(sim) if a.subscription_id == allowed)
    assert len(result.failures) == 1 and denied in result.failures[0].target
    assert "403" in result.failures[0].reason


async def test_transient_failure_keeps_last_known_accounts(sim: Simulator) -> None:
    flaky = sim.subscription_ids[0]
    async with stack(sim) as s:
        before = await s.discoverer.accounts()
        sim.faults.add(FaultRule(route="resources", kind="500", match=flaky, times=None))
        after = await s.discoverer.accounts(force=True)
    assert ids(after.accounts) == ids(before.accounts)
    assert len(after.failures) == 1


async def test_resource_graph(sim: Simulator) -> None:
    sub = sim.subscription_ids[1]
    async with stack(sim, discovery="resource_graph", subscriptions=[{"id": sub}]) as s:
        result = await s.discoverer.accounts()
    assert result.failures == []
    want = [a for a in sim_accounts(sim) if a.subscription_id == sub]
    assert ids(result.accounts) == ids(want)
    assert {a.resource_group for a in result.accounts} <= {a.resource_group for a in want}


async def test_wrong_secret_is_a_clear_auth_error(sim: Simulator) -> None:
    bad = "wrong-secret-do-not-print"
    credential = {"type": "client_secret", "tenant_id": sim.tenant_id, "client_id": sim.client_id,
                  "client_secret": bad}
    async with stack(sim, credential=credential) as s:
        with pytest.raises(AzureAuthError) as info:
            await s.discoverer.accounts()
    message = str(info.value)
    assert "\n" not in message and bad not in message and sim.client_secret not in message
    assert "credential" in message.lower()


async def test_deleted_account_disappears_on_refresh() -> None:
    with simulator(seed=8, subscriptions=1, regions=("eastus",)) as sim:
        victim = sim_accounts(sim)[-1]
        async with stack(sim) as s:
            assert victim.key in ids((await s.discoverer.accounts()).accounts)
            sim.delete_account(victim.id)
            assert victim.key not in ids((await s.discoverer.accounts(force=True)).accounts)


async def test_unreachable_resource_manager_is_a_clear_error(sim: Simulator) -> None:
    endpoints = {"resource_manager": "https://127.0.0.1:1", "metrics": sim.url + "/metrics/{region}",
                 "authority": sim.url}
    async with stack(sim, endpoints=endpoints) as s:
        with pytest.raises(AzureUnreachable) as info:
            await s.discoverer.accounts()
    assert "\n" not in str(info.value) and "connection" in str(info.value).lower()


async def test_refresh_failure_keeps_serving_the_last_result(sim: Simulator) -> None:
    async with stack(sim) as s:
        before = await s.discoverer.accounts()
        sim.faults.add(FaultRule(route="resources", kind="503", times=None, retry_after=None))
        after = await s.discoverer.accounts(force=True)
    assert ids(after.accounts) == ids(before.accounts)
    assert [f.target for f in after.failures] == ["*"]
