"""Sovereign clouds: `azure.cloud` sets the five endpoints and the ARM read pacing; the simulator
accepts only the chosen cloud's token audiences, so the whole path is checked end to end."""

from __future__ import annotations

import time

import pytest

from metrics_poller import azure_http, config
from metrics_poller.config import CLOUD_ENDPOINTS

from .conftest import assert_intact, azure_cfg, group, queries, recent_window, simulator, stack


@pytest.mark.parametrize("cloud", ["usgovernment", "china"])
def test_cloud_sets_the_five_endpoints_and_explicit_ones_still_win(cloud: str) -> None:
    chosen = config.parse({"azure": {"cloud": cloud}}, environ={}).azure.endpoints
    assert chosen.model_dump() == CLOUD_ENDPOINTS[cloud]
    mixed = config.parse(
        {"azure": {"cloud": cloud, "endpoints": {"resource_manager": "https://arm.example.net"}}}, environ={}
    ).azure.endpoints
    assert mixed.resource_manager == "https://arm.example.net"
    assert mixed.resource_manager_audience == CLOUD_ENDPOINTS[cloud]["resource_manager_audience"]


def test_an_unknown_cloud_is_one_line() -> None:
    with pytest.raises(config.ConfigError) as info:
        config.parse({"azure": {"cloud": "moon"}}, environ={})
    (line,) = info.value.lines
    assert line.startswith("config: azure.cloud:") and "public" in line and "china" in line


def test_sovereign_pacing_never_passes_12000_reads_an_hour() -> None:
    public = azure_http.ARM_READ_PACING["public"]
    assert public == (250.0, 25.0)
    for cloud in ("usgovernment", "china"):
        burst, rate = azure_http.ARM_READ_PACING[cloud]
        assert burst + 3600 * rate == pytest.approx(12_000)


async def test_china_end_to_end_with_its_audiences_and_pacing() -> None:
    with simulator(seed=13, subscriptions=1, regions=("chinanorth3",), accounts_per_region=3, cloud="china") as sim:
        async with stack(sim) as s:  # endpoints point at the simulator; audiences come from `cloud`
            assert s.cfg.endpoints.metrics_audience == "https://metrics.monitor.azure.cn"
            discovered = await s.discoverer.accounts()
            assert not discovered.failures and discovered.accounts
            results = [await s.fetcher.fetch(q, time.monotonic() + 30)
                       for q in queries(discovered.accounts, [group("tokens")], recent_window())]
            assert_intact(sim, results)
            bucket = s.pacing._buckets[("china", sim.subscription_ids[0].lower())]  # made by these reads
        assert (bucket.capacity, bucket.rate) == azure_http.ARM_READ_PACING["china"]

        # The public cloud's audiences are refused by a China endpoint.
        public = azure_cfg(sim, cloud="public")
        assert public.endpoints.resource_manager_audience == "https://management.azure.com"
        async with stack(sim, cloud="public") as s:
            results = [await s.fetcher.fetch(q, time.monotonic() + 30)
                       for q in queries(discovered.accounts, [group("tokens")], recent_window())]
        reasons = [r for result in results for r in result.failed.values()]
        assert reasons and all("401" in r and "audience" in r for r in reasons)
