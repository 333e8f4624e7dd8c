"""Fetching through the real querymetrics / azure-mgmt-monitor SDKs against the simulator."""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import replace
from datetime import timedelta

import pytest

from metrics_poller.catalog import AGGREGATION_KEY, GROUPS
from metrics_poller.credentials import build_credential
from metrics_poller.fetching import BATCH_REPROBE, DefinitionsError, Fetcher, QueryResult
from metrics_poller.simulator import FaultRule, Simulator
from metrics_poller.telemetry import REGISTRY

from .conftest import (
    assert_intact,
    azure_cfg,
    group,
    observed,
    queries,
    recent_window,
    sim_accounts,
    simulator,
    stack,
)

LIGHT = ("tokens", "time_to_response")  # two groups: one Total, one Average/Min/Max


async def run_all(fetcher: object, qs: list[object], budget: float = 30.0) -> list[QueryResult]:
    deadline = time.monotonic() + budget
    return list(await asyncio.gather(*(fetcher.fetch(q, deadline) for q in qs)))  # type: ignore[attr-defined]


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def failed(results: list[QueryResult]) -> dict[str, str]:
    out: dict[str, str] = {}
    for r in results:
        out.update(r.failed)
    return out


# ------------------------------------------------------------------------------------------- definitions


async def test_definitions_read_once_per_subscription_region_and_kind(sim: Simulator) -> None:
    accounts = sim_accounts(sim)
    async with stack(sim) as s:
        first = await asyncio.gather(*(s.fetcher.definitions(a) for a in accounts))
        again = await asyncio.gather(*(s.fetcher.definitions(a) for a in accounts))
    scopes = {(a.subscription_id, a.location, a.kind) for a in accounts}
    assert sim.call_count("metricDefinitions") == len(scopes)
    assert first == again
    requests = first[0]["AzureOpenAIRequests"]
    assert "ModelDeploymentName" in requests.dimensions and "StatusCode" in requests.dimensions
    assert "None" not in requests.aggregations and "Total" in requests.aggregations
    assert "PT1M" in requests.timegrains


async def test_definitions_failure_is_a_clear_error_and_not_retried_at_once(sim: Simulator) -> None:
    account = sim_accounts(sim)[0]
    sim.faults.add(FaultRule(route="metricDefinitions", kind="403", times=None))
    async with stack(sim) as s:
        for _ in range(2):
            with pytest.raises(DefinitionsError) as info:
                await s.fetcher.definitions(account)
            assert "403" in str(info.value) and "\n" not in str(info.value)
    assert sim.call_count("metricDefinitions") == 1  # the failure is remembered for a short while


# --------------------------------------------------------------------------------------- happy paths


async def test_batch_every_group_equals_ground_truth(sim: Simulator) -> None:
    accounts = sim_accounts(sim)
    qs = queries(accounts, GROUPS, recent_window())
    async with stack(sim) as s:
        results = await run_all(s.fetcher, qs)
    assert sim.call_count("getBatch") == len(qs)
    assert sim.call_count("metrics") == 0
    assert sum(r.calls for r in results) == len(qs)
    assert_intact(sim, results)


async def test_arm_mode_equals_ground_truth(sim: Simulator) -> None:
    accounts = sim_accounts(sim)
    qs = queries(accounts, [group(g) for g in LIGHT], recent_window())
    async with stack(sim, api="arm") as s:
        results = await run_all(s.fetcher, qs)
    assert sim.call_count("getBatch") == 0
    assert sim.call_count("metrics") == len(accounts) * len(LIGHT)
    assert_intact(sim, results)
    assert sample("metrics_poller_arm_remaining_reads") == 249  # the simulator's header value


async def test_all_calls_share_one_concurrency_limit() -> None:
    with simulator(seed=9, subscriptions=1, regions=("eastus",), accounts_per_region=6, latency=0.2) as sim:
        qs = queries(sim_accounts(sim), [group("tokens")], recent_window())
        async with stack(sim, api="arm", concurrency=2) as s:
            await s.fetcher.definitions(qs[0].accounts[0])  # token + definitions out of the way
            started = time.monotonic()
            results = await run_all(s.fetcher, qs)
            elapsed = time.monotonic() - started
        assert_intact(sim, results)
        assert elapsed >= 3 * 0.2  # six calls, two at a time, 0.2 s each


async def test_one_subscription_region_of_120_accounts() -> None:
    with simulator(seed=5, subscriptions=1, regions=("eastus",), accounts_per_region=120,
                   other_accounts_per_region=0) as sim:
        accounts = sim_accounts(sim)
        assert len(accounts) == 120
        qs = queries(accounts, GROUPS, recent_window(minutes=5))
        async with stack(sim) as s:
            results = await run_all(s.fetcher, qs)
        assert sim.call_count("getBatch") == math.ceil(120 / 50) * len(GROUPS)
        assert_intact(sim, results)


async def test_grouping_over_subscriptions_and_regions_with_a_large_region() -> None:
    with simulator(seed=11, subscriptions=2, regions=("eastus", "westeurope", "swedencentral"),
                   accounts_per_region=51, other_accounts_per_region=0) as sim:
        accounts = sim_accounts(sim)
        qs = queries(accounts, [group("realtime")], recent_window(minutes=5))
        assert len(qs) == 2 * 3 * 2  # each (subscription, region) holds 51 accounts: 50 + 1
        assert {len(q.accounts) for q in qs} == {50, 1}
        async with stack(sim) as s:
            results = await run_all(s.fetcher, qs)
        assert sim.call_count("getBatch") == len(qs)
        assert_intact(sim, results)


# ------------------------------------------------------------------------------------------ truncation


async def test_truncation_requeries_with_larger_top(sim: Simulator) -> None:
    qs = queries(sim_accounts(sim), [group("requests")], recent_window(), top=2)
    async with stack(sim, top=2, top_cap=10_000) as s:
        results = await run_all(s.fetcher, qs)
    assert sum(r.truncated for r in results) > 0
    assert sim.call_count("getBatch") > len(qs)
    assert_intact(sim, results)


async def test_truncation_at_the_cap_is_accepted_and_logged(sim: Simulator, caplog: pytest.LogCaptureFixture) -> None:
    qs = queries(sim_accounts(sim)[:3], [group("requests")], recent_window(), top=1)
    async with stack(sim, top=1, top_cap=1) as s:
        with caplog.at_level("WARNING", logger="metrics_poller.fetching"):
            results = await run_all(s.fetcher, qs)
    assert sum(r.truncated for r in results) > 0
    assert not failed(results)
    assert "requests" in caplog.text and "top_cap" in caplog.text
    assert sim.call_count("getBatch") == len(qs)


# ---------------------------------------------------------------------------------------- ARM fallback


async def test_auto_falls_back_to_arm_after_a_401_and_probes_getbatch_again_later(
    sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    """401 from getBatch: no subscription-level role. Per-resource calls for that subscription, one
    warning, and getBatch is tried again after BATCH_REPROBE (here: a transient 401 that is gone)."""
    accounts = sim_accounts(sim)
    qs = queries(accounts, [group("tokens")], recent_window())
    first, others = qs[0], qs[1:]
    refused = first.subscription_id
    sim.faults.add(FaultRule(route="getBatch", kind="401", match=refused, times=1))
    shift = [0.0]
    cfg = azure_cfg(sim, api="auto")
    credential = build_credential(cfg)
    fetcher = Fetcher(cfg, credential, clock=lambda: time.monotonic() + shift[0])
    try:
        with caplog.at_level("WARNING", logger="metrics_poller.fetching"):
            results = [await fetcher.fetch(first, time.monotonic() + 30)]
            results += await run_all(fetcher, others)
        assert_intact(sim, results)
        assert caplog.text.count("Monitoring Reader on the subscription") == 1  # once per subscription
        refused_accounts = [a for a in accounts if a.subscription_id == refused]
        assert sim.call_count("metrics") == len(refused_accounts)
        sim.reset_calls()
        results = await run_all(fetcher, qs)  # remembered: no getBatch for that subscription for now
        assert_intact(sim, results)
        assert sim.call_count("getBatch") == sum(1 for q in qs if q.subscription_id != refused)
        sim.reset_calls()
        shift[0] = BATCH_REPROBE + 1  # an hour later: getBatch is probed again, and works
        deadline = time.monotonic() + shift[0] + 30
        results = list(await asyncio.gather(*(fetcher.fetch(q, deadline) for q in qs)))
        assert_intact(sim, results)
        assert sim.call_count("getBatch") == len(qs) and sim.call_count("metrics") == 0
    finally:
        await fetcher.close()
        await credential.close()


@pytest.mark.parametrize("api", ["auto", "batch"])
async def test_getbatch_403_is_an_unregistered_provider_with_its_own_advice(
    api: str, caplog: pytest.LogCaptureFixture
) -> None:
    """403 from getBatch: Microsoft.Insights is not registered; per-resource calls would fail the same
    way (409), so no fallback, and the advice says how to register it."""
    with simulator(seed=5, subscriptions=2, regions=("eastus",), accounts_per_region=2,
                   insights_unregistered=frozenset({1})) as sim:
        unregistered = sim.subscription_ids[1]
        accounts = sim_accounts(sim)
        qs = queries(accounts, [group("tokens")], recent_window())
        async with stack(sim, api=api) as s:
            with caplog.at_level("WARNING", logger="metrics_poller.fetching"):
                results = await run_all(s.fetcher, qs)
                results += await run_all(s.fetcher, qs)
            lost = {a.key for a in accounts if a.subscription_id == unregistered}
            assert set(failed(results)) == lost
            assert all("az provider register --namespace Microsoft.Insights" in r for r in failed(results).values())
            assert caplog.text.count("Microsoft.Insights resource provider is not registered") == 1
            assert sim.call_count("metrics") == 0
            assert_intact(sim, results, skip=lost)
            victim = next(a for a in accounts if a.subscription_id == unregistered)
            with pytest.raises(DefinitionsError, match=r"az provider register --namespace Microsoft\.Insights"):
                await s.fetcher.definitions(victim)


async def test_batch_mode_reports_missing_subscription_rights(sim: Simulator) -> None:
    refused = sim.subscription_ids[1]
    sim.faults.add(FaultRule(route="getBatch", kind="401", match=refused, times=None))
    accounts = sim_accounts(sim)
    qs = queries(accounts, [group("tokens")], recent_window())
    async with stack(sim, api="batch") as s:
        results = await run_all(s.fetcher, qs)
    lost = {a.key for a in accounts if a.subscription_id == refused}
    assert set(failed(results)) == lost
    assert all("Monitoring Reader on the subscription" in reason for reason in failed(results).values())
    assert sim.call_count("metrics") == 0
    assert_intact(sim, results, skip=lost)


# ----------------------------------------------------------------------------------------------- faults


@pytest.mark.parametrize("kind", ["429", "529", "500", "503", "timeout", "reset", "malformed"])
@pytest.mark.parametrize("route", ["getBatch", "metrics"])
async def test_transient_faults_are_retried(sim: Simulator, kind: str, route: str) -> None:
    region = sim.accounts[0].location
    # "timeout" holds the request for 4 s, beyond its 3 s request timeout (which a loaded machine's
    # ordinary answers stay well within); the other kinds allow 30 s, so a slow ordinary answer on a
    # loaded machine is never a second, uncounted retry.
    sim.faults.add(FaultRule(route=route, kind=kind, retry_after=1, times=1, match=region, delay=4.0))
    api = "batch" if route == "getBatch" else "arm"
    qs = queries(sim_accounts(sim), [group("tokens")], recent_window())
    baseline = len(qs) if route == "getBatch" else sum(len(q.accounts) for q in qs)
    started = time.monotonic()
    async with stack(sim, api=api, request_timeout=3.0 if kind == "timeout" else 30.0) as s:
        results = await run_all(s.fetcher, qs)
    assert_intact(sim, results)
    if kind == "429":
        # A 429 holds back its whole scope, as ARM does: requests of that scope already on their way
        # are refused too; each is retried once the Retry-After has passed, none before.
        assert sim.faults.holds.early == sim.call_count(route) - baseline - 1
        assert sum(r.calls for r in results) == sim.call_count(route)
        return
    # (the simulator counts a held request only when it lets go of it, after this test's reads)
    assert sim.call_count(route) == baseline + (0 if kind == "timeout" else 1)
    # aiohttp itself re-sends an idempotent GET once when a reused connection is reset
    assert sum(r.calls for r in results) in (baseline, baseline + 1)
    if kind != "reset":
        assert sum(r.calls for r in results) == baseline + 1
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("kind", ["500", "malformed", "reset"])
async def test_persistent_fault_fails_only_its_accounts(sim: Simulator, kind: str) -> None:
    region = sim.accounts[0].location
    sim.faults.add(FaultRule(route="getBatch", kind=kind, match=region, times=None))
    accounts = sim_accounts(sim)
    qs = queries(accounts, [group("tokens")], recent_window())
    async with stack(sim, api="batch") as s:
        results = await run_all(s.fetcher, qs)
    lost = {a.key for a in accounts if a.location == region}
    assert set(failed(results)) == lost
    assert_intact(sim, results, skip=lost)


@pytest.mark.parametrize("mode", ["omit", "error"])
async def test_deleted_account_in_a_batch(mode: str) -> None:
    with simulator(seed=3, subscriptions=1, regions=("eastus", "westeurope"), accounts_per_region=9,
                   batch_missing_resource=mode) as sim:
        accounts = sim_accounts(sim)
        victim = next(a for a in accounts if a.location == "eastus")
        sim.delete_account(victim.id)
        qs = queries(accounts, [group("tokens")], recent_window())
        async with stack(sim, api="batch") as s:
            results = await run_all(s.fetcher, qs)
        assert list(failed(results)) == [victim.key]
        reason = failed(results)[victim.key]
        assert ("missing" in reason) if mode == "omit" else ("not be found" in reason or "400" in reason)
        assert_intact(sim, results, skip=[victim.key])


async def test_deleted_account_on_arm() -> None:
    with simulator(seed=3, subscriptions=1, regions=("eastus",), accounts_per_region=4) as sim:
        accounts = sim_accounts(sim)
        sim.delete_account(accounts[0].id)
        qs = queries(accounts, [group("tokens")], recent_window())
        async with stack(sim, api="arm") as s:
            results = await run_all(s.fetcher, qs)
        assert list(failed(results)) == [accounts[0].key]
        assert "not found (deleted?)" in failed(results)[accounts[0].key]
        assert_intact(sim, results, skip=[accounts[0].key])


async def test_permanent_per_metric_error_leaves_the_metric_out_until_definitions_are_read(
    sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    """InvalidSamplingType inside a 200: a permanent condition. The account's other metrics arrive,
    nothing fails, one warning per account, and the metric is not asked for again until the
    definitions are next read."""
    sim.faults.add(FaultRule(route="getBatch", kind="metric_error", match="GeneratedTokens", times=None))
    tokens = group("tokens")
    accounts = sim_accounts(sim)
    qs = queries(accounts, [tokens], recent_window())
    healthy = replace(tokens, metrics=tuple(m for m in tokens.metrics if m.name != "GeneratedTokens"))
    async with stack(sim, api="batch", definitions_refresh=1) as s:
        with caplog.at_level("WARNING", logger="metrics_poller.fetching"):
            results = await run_all(s.fetcher, qs)
            assert not failed(results)
            assert not any(s.metric == "GeneratedTokens" for r in results for s in r.series)
            assert_intact(sim, [replace(r, query=replace(r.query, group=healthy)) for r in results])
            assert caplog.text.count("GeneratedTokens is not available") == len(accounts)
            fired = sim.faults.fired["metric_error"]
            results = await run_all(s.fetcher, qs)  # left out: not even asked for
        assert sim.faults.fired["metric_error"] == fired and not failed(results)
        assert caplog.text.count("GeneratedTokens is not available") == len(accounts)
        await asyncio.sleep(1.1)  # definitions_refresh: the next read asks for it again
        await asyncio.gather(*(s.fetcher.definitions(a) for a in accounts))
        sim.faults.clear()
        results = await run_all(s.fetcher, qs)
    assert_intact(sim, results)


@pytest.mark.parametrize("code", ["InternalError", "Throttled", "SomethingNew"])
async def test_other_per_metric_errors_keep_the_window_for_the_next_cycle(sim: Simulator, code: str) -> None:
    """Any other errorCode may pass: the account's family is fetched again, like a failed call."""
    sim.faults.add(FaultRule(route="getBatch", kind="metric_error", match="GeneratedTokens", times=1,
                             error_code=code))
    accounts = sim_accounts(sim)
    qs = queries(accounts, [group("tokens")], recent_window())
    async with stack(sim, api="batch") as s:
        results = await run_all(s.fetcher, qs)
        coded = {key for key, reason in failed(results).items() if code in reason}
        # Whichever account the fault hits (its id, and so the message, varies in length), the reason
        # ends with what the poller does about it.
        assert coded and all(failed(results)[key].endswith("; fetched again next cycle") for key in coded)
        assert_intact(sim, results, skip=set(failed(results)))  # (a loaded machine may time out others)
        results = await run_all(s.fetcher, qs)
    assert_intact(sim, results)


# -------------------------------------------------------------------------------------- deadline, auth


async def test_retry_after_longer_than_the_cap_is_honoured_not_shortened(sim: Simulator) -> None:
    """A Retry-After beyond `retry_after_cap` is never cut short (ARM would refuse the early retry):
    the work is left for the next cycle, whose calls wait for the hold, then everything arrives."""
    region = sim.accounts[0].location
    sim.faults.add(FaultRule(route="getBatch", kind="429", retry_after=2, match=region, times=1))
    accounts = [a for a in sim_accounts(sim) if a.location == region and a.subscription_id == sim.subscription_ids[0]]
    query = queries(accounts, [group("tokens")], recent_window())[0]
    retry = {"attempts": 5, "backoff_initial": 0.01, "backoff_max": 0.05, "retry_after_cap": 1.0}
    async with stack(sim, api="batch", retry=retry) as s:
        started = time.monotonic()
        first = await s.fetcher.fetch(query, started + 30)
        assert time.monotonic() - started < 1.0  # did not wait: 2 s is more than this cycle may wait
        assert set(first.failed) == {a.key for a in accounts}
        assert all("left for the next cycle" in r and "429" in r for r in first.failed.values())
        again = await s.fetcher.fetch(query, time.monotonic() + 30)  # the next cycle, within the hold
        assert set(again.failed) == set(first.failed) and again.calls == 0
        assert sim.call_count("getBatch") == 1
        await asyncio.sleep(max(0.0, started + 2.05 - time.monotonic()))
        last = await s.fetcher.fetch(query, time.monotonic() + 30)
    assert sim.faults.holds.early == 0  # never asked before the Retry-After had passed
    assert sim.call_count("getBatch") == 2
    assert sample("metrics_poller_azure_throttled_total", route="getBatch", status="429") > 0
    assert_intact(sim, [last])


async def test_retry_after_past_the_deadline_is_not_waited_for(sim: Simulator) -> None:
    region = sim.accounts[0].location
    sim.faults.add(FaultRule(route="getBatch", kind="429", retry_after=2, match=region, times=None))
    accounts = sim_accounts(sim)
    qs = queries(accounts, [group("tokens")], recent_window())
    async with stack(sim, api="batch") as s:  # retry_after_cap 2 s: the wait would be honoured...
        started = time.monotonic()
        results = list(await asyncio.gather(*(s.fetcher.fetch(q, started + 1.0) for q in qs)))
        elapsed = time.monotonic() - started
    assert elapsed < 1.0  # ...but not past a deadline 1 s away: no sleeping towards it
    lost = {a.key for a in accounts if a.location == region}
    assert set(failed(results)) == lost
    assert all("past the cycle deadline" in reason for reason in failed(results).values())
    assert sim.faults.holds.early == 0
    assert_intact(sim, results, skip=lost)


async def test_wrong_secret_fails_accounts_without_leaking_it(sim: Simulator) -> None:
    bad = "definitely-wrong-secret"
    credential = {"type": "client_secret", "tenant_id": sim.tenant_id, "client_id": sim.client_id,
                  "client_secret": bad}
    qs = queries(sim_accounts(sim)[:2], [group("tokens")], recent_window())
    async with stack(sim, credential=credential) as s:
        results = await run_all(s.fetcher, qs)
    reasons = failed(results)
    assert reasons and all("authentication failed" in r for r in reasons.values())
    assert not any(bad in r or sim.client_secret in r for r in reasons.values())
    assert sim.call_count("getBatch") == 0


async def test_hand_built_batch_request_is_the_one_the_sdk_sends(sim: Simulator) -> None:
    """`send_batch` skips the SDK's result models; the request on the wire must not change."""
    from azure.monitor.querymetrics import MetricAggregationType
    from azure.monitor.querymetrics.aio import MetricsClient

    from metrics_poller.credentials import build_credential, client_kwargs
    from metrics_poller.fetching import batch_filter, batch_request, order_by, send_batch

    from .conftest import azure_cfg

    cfg = azure_cfg(sim)
    accounts = [a for a in sim_accounts(sim) if a.subscription_id == sim.subscription_ids[0]][:3]
    region = accounts[0].location
    accounts = [a for a in accounts if a.location == region]
    tokens = group("tokens")
    window = recent_window()
    seen: list[tuple[str, object]] = []

    def record(response: object) -> None:
        request = response.http_request  # type: ignore[attr-defined]
        body = request.content if hasattr(request, "content") else request.body
        seen.append((request.url, json.loads(body.decode() if isinstance(body, bytes) else body)))

    credential = build_credential(cfg)
    client = MetricsClient(cfg.endpoints.metrics.format(region=region), credential, **client_kwargs(cfg))
    try:
        flt = batch_filter(tokens.dimensions)
        await client.query_resources(
            resource_ids=[a.id for a in accounts],
            metric_namespace="Microsoft.CognitiveServices/accounts",
            metric_names=list(tokens.metric_names),
            timespan=(window.start, window.end),
            granularity=window.grain,
            aggregations=[MetricAggregationType.TOTAL],
            max_results=100,
            order_by=order_by(tokens.aggregations),
            filter=flt,
            raw_response_hook=record,
        )
        request = batch_request(
            "Microsoft.CognitiveServices/accounts",
            accounts[0].subscription_id,
            [a.id for a in accounts],
            tokens.metric_names,
            window.start,
            window.end,
            window.timegrain,
            tokens.aggregations,
            100,
            order_by(tokens.aggregations),
            flt,
        )
        await send_batch(client, request, raw_response_hook=record)
    finally:
        await client.close()
        await credential.close()
    (sdk_url, sdk_body), (our_url, our_body) = seen[0], seen[-1]
    assert our_url == sdk_url
    assert our_body == sdk_body == {"resourceids": [a.id for a in accounts]}


async def test_connections_are_reused_with_a_custom_ca_bundle(sim: Simulator) -> None:
    """With `azure.ca_bundle` (a path), azure-core would build a TLS context per request and aiohttp
    would then open a new connection for every call; one shared context keeps the pool working."""
    accounts = sim_accounts(sim)
    work = queries(accounts, [group("requests"), group("tokens"), group("realtime")], recent_window())
    async with stack(sim, concurrency=2) as s:
        await s.fetcher.fetch(work[0], time.monotonic() + 60)  # token and first connections
        sim.reset_calls()
        for query in work[1:]:
            result = await s.fetcher.fetch(query, time.monotonic() + 60)
            assert not result.failed
    calls = sum(sim.calls.values())
    assert calls >= 10
    # One pool per region client, at most `concurrency` connections each; never one per call.
    regions = {q.region for q in work}
    assert sim.connections <= 2 * len(regions) < calls


# ------------------------------------------------------------------------------------ series per query


@pytest.mark.parametrize("status", [429, 400])
async def test_too_many_series_splits_the_batch_and_loses_no_account(status: int) -> None:
    """getBatch refuses a query that may request more than its series limit (accounts × metrics × top;
    500,000 in Azure, 3,000 here: one account of the 3-metric group at top 1000 fits, two do not). The
    poller splits the batch into calls of fewer accounts until each fits, and every account arrives."""
    with simulator(seed=4, subscriptions=1, regions=("eastus",), accounts_per_region=8,
                   batch_series_limit=3_000, series_limit_status=status) as sim:
        accounts = sim_accounts(sim)
        qs = queries(accounts, [group("tokens")], recent_window(), top=1000)
        async with stack(sim, api="batch") as s:
            results = await run_all(s.fetcher, qs)
        assert not failed(results)
        assert_intact(sim, results)
        assert sim.calls[("getBatch", status)] > 0
        assert sim.calls[("getBatch", 200)] == len(accounts)  # split down to one account per call


async def test_too_many_series_for_one_account_lowers_top_to_fit() -> None:
    with simulator(seed=4, subscriptions=1, regions=("eastus",), accounts_per_region=2,
                   batch_series_limit=600) as sim:  # 3 metrics: top 200 fits, top 1000 does not
        accounts = sim_accounts(sim)
        qs = queries(accounts, [group("tokens")], recent_window(), top=1000)
        async with stack(sim, api="batch") as s:
            results = await run_all(s.fetcher, qs)
        assert not failed(results)
        assert_intact(sim, results)
        assert sim.calls[("getBatch", 200)] == len(accounts)


# ---------------------------------------------------------------------------------------- zero filling


async def test_zero_filled_minutes_keep_totals_and_drop_statistics_of_nothing() -> None:
    """`fillGapWithZero`: Azure answers 0 for an empty minute. A total of 0 is stored (nothing happened);
    an average/min/max of 0 ms latency is not (no reading); a 0 % availability is kept (it can be real)."""
    zero = frozenset({"AzureOpenAIRequests", "AzureOpenAITimeToResponse", "AzureOpenAIAvailabilityRate"})
    with simulator(seed=6, subscriptions=1, regions=("eastus",), accounts_per_region=3, zero_fill=zero) as sim:
        window = recent_window()
        minutes = [window.start + timedelta(minutes=m) for m in range(10)]
        groups = [group("requests"), group("time_to_response"), group("availability")]
        qs = queries(sim_accounts(sim), groups, window)
        async with stack(sim, api="batch") as s:
            results = await run_all(s.fetcher, qs)
        filled = 0
        for result in results:
            metric = result.query.group.metric_names[0]
            keys = [AGGREGATION_KEY[a] for a in result.query.group.aggregations]
            for account in result.query.accounts:
                dimensions = result.query.group.dimensions
                truth = sim.expected(account.id, metric, window.start, window.end, dimensions=dimensions)
                want = {dims: {t: {k: v[k] for k in keys} for t, v in points.items()} for dims, points in truth.items()}
                if metric != "AzureOpenAITimeToResponse":  # empty minutes of a series: 0, and kept
                    for points in want.values():
                        for minute in minutes:
                            if minute not in points:
                                points[minute] = dict.fromkeys(keys, 0.0)
                                filled += 1
                got = observed(result, account, metric)
                assert {d: set(p) for d, p in got.items()} == {d: set(p) for d, p in want.items()}, metric
                for dims, points in want.items():
                    for minute, values in points.items():
                        assert got[dims][minute] == pytest.approx(values), f"{account.name}/{metric}/{minute}"
        assert filled > 0  # the estate has empty minutes inside the window
