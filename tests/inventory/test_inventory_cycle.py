"""The inventory inside real cycles: simulator over HTTPS → real SDKs → join → NDJSON, against ground truth."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from runtime_support import NOW, one_cycle, parse, poller_config, read_ndjson

from metrics_poller.cycle import CycleReport
from metrics_poller.inventory_cycle import run_time
from metrics_poller.runtime import create_poller
from metrics_poller.simulator import FaultRule, SimSpec, Simulator
from metrics_poller.testing.inventory_truth import compare_deployments, expected_deployments
from metrics_poller.windows import window_end

LATENCY = timedelta(seconds=240)
GRAIN = timedelta(minutes=1)


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    spec = SimSpec(seed=11, subscriptions=1, regions=("eastus", "swedencentral"), accounts_per_region=3)
    with Simulator(spec) as simulator:
        yield simulator


@pytest.fixture(autouse=True)
def fixed_clock(sim: Simulator) -> Iterator[None]:
    sim.clock = lambda: NOW + timedelta(minutes=10)
    yield
    sim.clock = None
    sim.faults.clear()
    sim.reset_calls()


def openai_ids(sim: Simulator) -> list[str]:
    return [a.id for a in sim.accounts if a.kind in ("OpenAI", "AIServices")]


async def test_one_cycle_writes_every_deployment_equal_to_the_ground_truth(sim: Simulator, tmp_path: Path) -> None:
    cfg = parse(poller_config(sim, tmp_path, inventory={"enabled": True, "interval": 300}))
    report = await one_cycle(cfg)
    assert report.ok, report.failures
    lines = read_ndjson(tmp_path / "out.ndjson")
    docs = [d for d in lines if d["data_stream"]["dataset"] == "azure.ai_deployment"]
    # Joined after the cycle's metrics were written: the inventory never holds them up.
    datasets = [d["data_stream"]["dataset"] for d in lines]
    assert datasets == sorted(datasets, key=lambda name: name == "azure.ai_deployment")

    end = window_end(NOW, LATENCY, GRAIN)
    expected = expected_deployments(sim, openai_ids(sim), end - timedelta(seconds=300), end, run_time(NOW, 300))
    result = compare_deployments(expected, docs)
    assert result.perfect, result.summary()
    assert result.expected >= 10
    # The estate has every lifecycle case the alerts are for, and the two limit sources.
    values = [d["azure"]["deployment"] for d in docs if d["metricset"]["name"] == "deployment"]
    days = [v["model"].get("days_to_retirement") for v in values]
    assert any(d is not None and d < 0 for d in days) and any(d is not None and 0 <= d <= 30 for d in days)
    assert {v.get("rate_limit", {}).get("source") for v in values} >= {"deployment", "catalogue"}
    assert any("rate_limit" not in v and not v["provisioned"] for v in values)  # unknown, not guessed
    # Paging: deployments are served two per page, so some accounts needed a second call.
    assert sim.call_count("deployments") > len(openai_ids(sim))
    assert report.inventory_accounts == len(openai_ids(sim))


def non_openai(sim: Simulator) -> dict[str, str]:
    """Deployment id (lower-cased) → model format of every non-OpenAI deployment of the estate."""
    return {
        t.id.lower(): t.model_format
        for a in openai_ids(sim)
        for t in sim.deployment_truths(a)
        if t.model_format != "OpenAI"
    }


@pytest.mark.parametrize("datasets", [None, ["azure.open_ai"]])
async def test_non_openai_deployments_are_reported_with_foundry_usage_and_unknown_limits(
    sim: Simulator, tmp_path: Path, datasets: list[str] | None
) -> None:
    overrides: dict[str, object] = {"inventory": {"enabled": True, "interval": 300}}
    if datasets is not None:
        overrides["datasets"] = datasets
    cfg = parse(poller_config(sim, tmp_path, **overrides))
    report = await one_cycle(cfg)
    assert report.ok, report.failures
    lines = read_ndjson(tmp_path / "out.ndjson")
    docs = [d for d in lines if d["data_stream"]["dataset"] == "azure.ai_deployment"]
    end = window_end(NOW, LATENCY, GRAIN)
    foundry = datasets is None  # the default datasets include azure.ai_foundry
    expected = expected_deployments(
        sim, openai_ids(sim), end - timedelta(seconds=300), end, run_time(NOW, 300), foundry=foundry
    )
    result = compare_deployments(expected, docs)
    assert result.perfect, result.summary()

    others = non_openai(sim)
    stored = {
        d["azure"]["deployment"]["id"].lower(): d["azure"]["deployment"]
        for d in docs
        if d["metricset"]["name"] == "deployment" and d["azure"]["deployment"]["id"].lower() in others
    }
    assert len(stored) == len(others) >= 3 and len(set(others.values())) >= 2  # several publishers
    for key, value in stored.items():
        assert value["model"]["format"] == others[key]
        assert value["sku"] == {"name": "GlobalStandard", "capacity": 1, "family": "standard"}
        # No rate limit is published for them: stored as unknown, never derived from a guess.
        assert "rate_limit" not in value and "utilization" not in value
        assert value["quota"] == {"name": "AIServices.GlobalStandard.MaaS", "guessed": False}
        assert value["model"]["lifecycle_status"]
    usage = [v.get("usage", {}).get("tokens_per_minute", {}).get("max") for v in stored.values()]
    if foundry:  # measured by the Foundry "Models" metrics only
        assert any(u is not None and u > 0 for u in usage)
        assert any(d["data_stream"]["dataset"] == "azure.ai_foundry" for d in lines)
    else:  # nothing measures them without the azure.ai_foundry dataset
        assert all(u is None for u in usage)
    # Azure lists no usages row for the serverless key: no quota document is made up for it.
    quotas = [d["azure"]["quota"]["name"] for d in docs if d["metricset"]["name"] == "quota"]
    assert quotas and "AIServices.GlobalStandard.MaaS" not in quotas


async def test_quota_documents_join_the_deployments_that_draw_on_them(sim: Simulator, tmp_path: Path) -> None:
    cfg = parse(poller_config(sim, tmp_path, inventory={"enabled": True, "interval": 300}))
    poller = await create_poller(cfg)
    try:
        await poller.run_cycle(NOW)
    finally:
        await poller.close()
    quotas = [d for d in read_ndjson(tmp_path / "out.ndjson") if d.get("metricset", {}).get("name") == "quota"]
    subscription = sim.subscription_ids[0]
    for region in ("eastus", "swedencentral"):
        truths = {q.name: q for q in sim.quota_truths(subscription, region)}
        stored = {d["azure"]["quota"]["name"]: d["azure"]["quota"] for d in quotas if d["cloud"]["region"] == region}
        assert set(truths) <= set(stored)
        drawers: dict[str, set[str]] = {}
        for account in sim.accounts:
            if account.location == region:
                for t in sim.deployment_truths(account.id):
                    drawers.setdefault(t.usage_name, set()).add(t.id)
        for name, truth in truths.items():
            row = stored[name]
            assert (row["current"], row["limit"]) == (truth.current, truth.limit)
            assert row["used_pct"] == (round(truth.current / truth.limit * 100, 2) if truth.limit else None)
            assert set(row.get("deployments", ())) == drawers.get(name, set())
            # Capacity held by deployments the poller cannot see shows as a gap, never an error.
            assert row.get("deployments_capacity", 0) <= truth.current


async def test_the_inventory_is_spread_over_the_interval_and_each_account_read_once(
    sim: Simulator, tmp_path: Path
) -> None:
    cfg = parse(poller_config(sim, tmp_path, inventory={"enabled": True, "interval": 1200}))  # four cycles
    poller = await create_poller(cfg)
    try:
        for cycle in range(4):
            await poller.run_cycle(NOW + timedelta(minutes=5 * cycle))
    finally:
        await poller.close()
    docs = [d for d in read_ndjson(tmp_path / "out.ndjson") if d["metricset"]["name"] == "deployment"]
    per_account: dict[str, set[str]] = {}
    for d in docs:
        per_account.setdefault(d["azure"]["resource"]["id"], set()).add(d["@timestamp"])
    assert sorted(per_account) == sorted(openai_ids(sim))
    assert all(len(stamps) == 1 for stamps in per_account.values())
    assert len({s for stamps in per_account.values() for s in stamps}) > 1  # not all in one cycle
    # The catalogue was read once per (subscription, region), not once per cycle.
    assert sim.call_count("models") <= 2


async def test_a_failing_deployment_list_fails_only_that_accounts_inventory(sim: Simulator, tmp_path: Path) -> None:
    broken = openai_ids(sim)[0]
    sim.faults.add(FaultRule(route="deployments", kind="403", match=broken.rsplit("/", 1)[-1]))
    cfg = parse(poller_config(sim, tmp_path, inventory={"enabled": True, "interval": 300}))
    poller = await create_poller(cfg)
    try:
        report = await poller.run_cycle(NOW)
        sim.faults.clear()
        again = await poller.run_cycle(NOW + timedelta(minutes=5))
    finally:
        await poller.close()
    failures = [f for f in report.failures if f.scope == "inventory"]
    assert [f.target for f in failures] == [broken] and "forbidden" in failures[0].reason
    assert not [f for f in report.failures if f.scope != "inventory"]  # metrics went on
    docs = read_ndjson(tmp_path / "out.ndjson")
    first = {
        d["azure"]["resource"]["id"]
        for d in docs
        if d["metricset"]["name"] == "deployment" and d["@timestamp"].startswith("2026-03-02T12:05")
    }
    assert broken not in first and len(first) == len(openai_ids(sim)) - 1
    metric_accounts = {d["azure"]["resource"]["id"] for d in docs if d["data_stream"]["dataset"] == "azure.open_ai"}
    assert broken in metric_accounts
    assert again.ok


async def test_quota_and_catalogue_refusals_leave_the_deployments_reported(sim: Simulator, tmp_path: Path) -> None:
    # A principal with only account-scoped roles gets 403 on the subscription-scoped reads (§1).
    sim.faults.add(FaultRule(route="usages", kind="403"))
    sim.faults.add(FaultRule(route="models", kind="403"))
    cfg = parse(poller_config(sim, tmp_path, inventory={"enabled": True, "interval": 300}))
    report = await one_cycle(cfg)
    assert report.ok, report.failures
    docs = read_ndjson(tmp_path / "out.ndjson")
    deployments = [d["azure"]["deployment"] for d in docs if d["metricset"]["name"] == "deployment"]
    assert deployments and not [d for d in docs if d["metricset"]["name"] == "quota"]
    assert all("lifecycle_status" not in d["model"] for d in deployments)
    # Without the catalogue, only what the deployment itself states (or the documented ratio) is used.
    assert {d.get("rate_limit", {}).get("source") for d in deployments} <= {"deployment", "estimated", None}


async def test_the_metrics_never_wait_for_the_inventory(sim: Simulator, tmp_path: Path) -> None:
    """As the service runs cycles: reads still running once the metrics are stored are left running and
    joined later, stamped with their own cycle's time; while they run, no second share is started."""
    cfg = parse(poller_config(sim, tmp_path, inventory={"enabled": True, "interval": 300}))
    sim.faults.add(FaultRule(route="deployments", kind="slow", delay=60))
    poller = await create_poller(cfg)
    try:
        first = await poller.run_cycle(NOW, wait_for_inventory=False)
        # Every deployment list is held, and none has been answered: the metrics did not wait for them.
        assert first.ok and first.inventory_pending and sim.call_count("deployments") == 0
        assert first.cursors_advanced > 0 and "inventory reads go on in the background" in first.summary()
        held = sim.faults.fired["slow"]
        assert held > 0
        second = await poller.run_cycle(NOW + timedelta(minutes=5), wait_for_inventory=False)
        assert second.ok and second.inventory_pending
        assert sim.faults.fired["slow"] == held  # the first share is still being read: no second one
        assert not [d for d in read_ndjson(tmp_path / "out.ndjson") if d["metricset"]["name"] == "deployment"]
        sim.faults.clear()  # the held lists are answered
        joined = CycleReport(started=NOW)
        await poller.join_inventory(joined)
    finally:
        await poller.close()
    assert joined.ok and joined.inventory_accounts == len(openai_ids(sim))
    docs = [d for d in read_ndjson(tmp_path / "out.ndjson") if d["data_stream"]["dataset"] == "azure.ai_deployment"]
    # Stamped with the first cycle's time; the usage covers both cycles' windows, seen before the join.
    end = window_end(NOW, LATENCY, GRAIN)
    both = (end - timedelta(minutes=5), end + timedelta(minutes=5))
    expected = expected_deployments(sim, openai_ids(sim), *both, run_time(NOW, 300))
    result = compare_deployments(expected, docs)
    assert result.perfect, result.summary()
