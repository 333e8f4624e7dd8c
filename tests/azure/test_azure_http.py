"""The shared Azure HTTP layer: discovery, metric definitions and the inventory draw on one ARM read
budget per (cloud, subscription), through the real SDKs against the simulator's ARM rate limit."""

from __future__ import annotations

import asyncio

import pytest

from metrics_poller import config
from metrics_poller.azure_http import ARM_READ_PACING, Pacing, TokenBucket
from metrics_poller.credentials import build_credential
from metrics_poller.discovery import Discoverer
from metrics_poller.fetching import Fetcher
from metrics_poller.inventory import InventoryReader, InventoryReadError
from metrics_poller.model import Account
from metrics_poller.simulator import SimSpec, Simulator

from .conftest import FAST_RETRY

ARM_READ_ROUTES = ("resource", "metricDefinitions", "deployments", "usages", "models")


async def test_discovery_definitions_and_inventory_share_one_arm_read_bucket() -> None:
    """Every reader counts its reads against the same bucket, so together they never pass ARM's limit.

    The readers' clock stands still, so their bucket never refills: it holds back every read past the
    250-read burst for 1/25 s more than the one before, while the simulator's bucket (ARM's 250 reads,
    25/s) refills in real time. Shared, the bucket counts every read the simulator answered and ARM
    never throttles; a reader with a bucket of its own would send its reads as if none had been made."""
    spec = SimSpec(seed=31, subscriptions=1, regions=("eastus", "westus"), accounts_per_region=50, arm_rate_limit=True)
    with Simulator(spec) as sim:
        ids = [a.id for a in sim.accounts if a.kind in ("OpenAI", "AIServices")]
        # One GET per configured resource id: discovery alone takes a good part of the burst.
        section = sim.azure_config(subscriptions=[], resource_ids=ids, retry=FAST_RETRY)
        cfg = config.parse({"azure": section}, environ={}).azure
        credential = build_credential(cfg)
        pacing = Pacing()
        frozen = lambda: 0.0  # noqa: E731
        discoverer = Discoverer(cfg, credential, frozen, pacing=pacing)
        fetcher = Fetcher(cfg, credential, frozen, pacing=pacing)
        reader = InventoryReader(cfg, credential, catalogue_ttl=3600, concurrency=8, clock=frozen, pacing=pacing)
        try:
            found = await discoverer.accounts()
            assert not found.failures and len(found.accounts) == len(ids)
            accounts = found.accounts
            await asyncio.gather(*(fetcher.definitions(a, deadline=60.0) for a in accounts))
            regions = sorted({(a.subscription_id, a.location) for a in accounts})
            listed = await asyncio.gather(
                *(reader.deployments(a, 60.0) for a in accounts),
                *(reader.catalogue(s, r, 60.0) for s, r in regions),
                *(reader.usages(s, r, 60.0) for s, r in regions),
            )
            assert sum(len(d) for d in listed[: len(accounts)]) > 0
        finally:
            await reader.close()
            await fetcher.close()
            await discoverer.close()
            await credential.close()

        answered = {route: sim.call_count(route) for route in ARM_READ_ROUTES}
        burst, _rate = ARM_READ_PACING["public"]
        assert answered["resource"] == len(ids) and answered["deployments"] >= len(ids)
        assert answered["metricDefinitions"] >= 1 and min(answered["models"], answered["usages"]) >= len(regions)
        assert sum(answered.values()) > burst  # more than one burst: the pacing had to hold reads back
        bucket = pacing._buckets[("public", sim.subscription_ids[0].lower())]
        assert burst - bucket.tokens == sum(answered.values())  # every reader's reads, counted once each
        assert not any(status == 429 for (_route, status) in sim.calls)  # ARM never had to throttle


async def test_a_later_page_that_must_wait_past_the_deadline_fails_the_whole_read() -> None:
    """Each page of a paged list is paced; a page that would have to wait past the deadline fails the
    read (never a partial list taken for the whole one)."""
    spec = SimSpec(seed=32, subscriptions=1, regions=("eastus",), accounts_per_region=4)
    with Simulator(spec) as sim:
        paged = next(a for a in sim.accounts if len(sim.deployment_truths(a.id)) > spec.deployment_page_size)
        cfg = config.parse({"azure": sim.azure_config(retry=FAST_RETRY)}, environ={}).azure
        credential = build_credential(cfg)
        pacing = Pacing()
        # One read left and almost no refill: the first page goes, the second would wait ~1000 s.
        pacing._buckets[("public", paged.subscription_id.lower())] = TokenBucket(250.0, 0.001, 1.0, 0.0)
        reader = InventoryReader(cfg, credential, catalogue_ttl=3600, concurrency=2, clock=lambda: 0.0, pacing=pacing)
        account = Account(paged.id, paged.name, paged.subscription_id, paged.resource_group, paged.location, paged.kind)
        try:
            with pytest.raises(InventoryReadError) as caught:
                await reader.deployments(account, 30.0)
        finally:
            await reader.close()
            await credential.close()
        assert "pacing of the next page would pass the deadline" in str(caught.value)
        assert sim.call_count("deployments") == 1  # the second page was never asked for
