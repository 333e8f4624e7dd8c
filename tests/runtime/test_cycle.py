"""One cycle end to end, in process: simulator over HTTPS → real SDKs → shaping → NDJSON → cursors."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from runtime_support import NOW, one_cycle, parse, poller_config, read_ndjson

from metrics_poller.catalog import FOUNDRY_GROUPS, GROUPS, select_groups
from metrics_poller.cycle import Poller
from metrics_poller.runtime import create_poller
from metrics_poller.simulator import FaultRule, SimSpec, Simulator
from metrics_poller.state import FileCursorStore
from metrics_poller.testing.ground_truth import compare, expected_documents, stamp
from metrics_poller.windows import window_end

GRAIN = timedelta(minutes=1)
LATENCY = timedelta(seconds=240)


@pytest.fixture(autouse=True)
def fixed_clock(sim: Simulator) -> Iterator[None]:
    """These tests run cycles at NOW; the simulator's "now" (retention, publication) follows."""
    sim.clock = lambda: NOW + timedelta(minutes=10)
    yield
    sim.clock = None


def openai_accounts(sim: Simulator) -> list[tuple[str, str]]:
    return [(a.id, a.id.lower()) for a in sim.accounts if a.kind in ("OpenAI", "AIServices")]


async def run_at(poller: Poller, now: object) -> object:
    return await poller.run_cycle(now)  # type: ignore[arg-type]


async def test_two_consecutive_cycles_store_exactly_the_ground_truth(sim: Simulator, tmp_path: Path) -> None:
    cfg = parse(poller_config(sim, tmp_path))
    out = tmp_path / "out.ndjson"
    poller = await create_poller(cfg)
    try:
        first = await poller.run_cycle(NOW)
        second = await poller.run_cycle(NOW + timedelta(minutes=5))
    finally:
        await poller.close()
    assert first.ok and second.ok, (first.failures, second.failures)
    assert first.accounts == len(openai_accounts(sim))  # other Cognitive Services kinds filtered out

    end = window_end(NOW + timedelta(minutes=5), LATENCY, GRAIN)
    start = window_end(NOW, LATENCY, GRAIN) - timedelta(seconds=cfg.period)
    expected = expected_documents(sim, openai_accounts(sim), GROUPS, start, end)
    result = compare(expected, read_ndjson(out))
    assert result.perfect, result.summary()
    assert result.expected > 100

    cursors = await FileCursorStore(cfg.state.path).load()
    assert set(cursors.values()) == {end}
    assert len(cursors) == len(openai_accounts(sim)) * (len(GROUPS) + len(FOUNDRY_GROUPS))  # both default datasets


async def test_a_cycle_with_nothing_new_does_nothing(sim: Simulator, tmp_path: Path) -> None:
    cfg = parse(poller_config(sim, tmp_path, azure={"metric_groups": ["requests"]}))
    poller = await create_poller(cfg)
    try:
        await poller.run_cycle(NOW)
        sim.reset_calls()
        again = await poller.run_cycle(NOW + timedelta(seconds=20))  # same complete buckets
    finally:
        await poller.close()
    assert again.ok and again.queries == 0 and sim.call_count("getBatch") == 0


async def test_one_failing_account_keeps_its_cursor_and_others_advance(sim: Simulator, tmp_path: Path) -> None:
    victim = next(a for a in sim.accounts if a.kind == "OpenAI")
    cfg = parse(poller_config(sim, tmp_path, azure={"metric_groups": ["tokens"]}))
    sim.faults.add(FaultRule(route="getBatch", kind="400", match=victim.name))
    sim.faults.add(FaultRule(route="metrics", kind="400", match=victim.name))
    poller = await create_poller(cfg)
    try:
        report = await poller.run_cycle(NOW)
    finally:
        sim.faults.clear()
        await poller.close()
    assert not report.ok and report.exit_code == 1
    assert victim.id.lower() in report.failed_accounts
    assert len(report.failed_accounts) == 1

    cursors = await FileCursorStore(cfg.state.path).load()
    assert (victim.id.lower(), "azure.open_ai", "tokens") not in cursors
    others = [a for a in openai_accounts(sim) if a[1] != victim.id.lower()]
    assert all((key, "azure.open_ai", "tokens") in cursors for _, key in others)

    end = window_end(NOW, LATENCY, GRAIN)
    expected = expected_documents(sim, others, select_groups(["tokens"]), end - timedelta(minutes=5), end)
    result = compare(expected, read_ndjson(tmp_path / "out.ndjson"))
    assert result.perfect, result.summary()


async def test_units_catching_up_take_at_most_a_quarter_of_the_slots(sim: Simulator, tmp_path: Path) -> None:
    """A cycle keeps `azure.concurrency` units in flight; after a pause, units catching up (hour-long
    windows, which bound the memory: BENCHMARKS.md B4) hold at most a quarter of them."""
    data = poller_config(sim, tmp_path, azure={"metric_groups": ["requests"], "concurrency": 8})
    cfg = parse({**data, "datasets": ["azure.open_ai"]})  # 6 units: one group, 3 accounts per (subscription, region)
    sim.faults.add(FaultRule(route="getBatch", kind="slow", delay=0.2))
    poller = await create_poller(cfg)
    try:
        sim.reset_calls()
        first = await poller.run_cycle(NOW - timedelta(hours=3))
        cycle_peak = sim.peak_in_flight("getBatch")
        sim.reset_calls()
        catch_up = await poller.run_cycle(NOW)
        catch_up_peak = sim.peak_in_flight("getBatch")
    finally:
        sim.faults.clear()
        await poller.close()
    assert first.ok and catch_up.ok
    assert (first.units, first.queries) == (6, 6) and (catch_up.units, catch_up.queries) == (6, 18)  # 3 h in 1 h steps
    assert (cycle_peak, catch_up_peak) == (6, 2)  # all 6 units at once; 8 // 4 catching up


async def test_sharded_pollers_split_the_accounts_without_overlap(sim: Simulator, tmp_path: Path) -> None:
    seen: list[int] = []
    for index in range(3):
        data = poller_config(sim, tmp_path / str(index), shard={"index": index, "count": 3})
        data["azure"]["metric_groups"] = ["requests"]
        poller = await create_poller(parse(data))
        try:
            report = await poller.run_cycle(NOW)
        finally:
            await poller.close()
        assert report.ok
        seen.append(report.accounts)
        docs = read_ndjson(tmp_path / str(index) / "out.ndjson")
        assert {d["azure"]["resource"]["id"] for d in docs} <= {a for a, _ in openai_accounts(sim)}
    assert sum(seen) == len(openai_accounts(sim))


async def test_timestamps_are_bucket_starts_inside_the_window(sim: Simulator, tmp_path: Path) -> None:
    cfg = parse(poller_config(sim, tmp_path, azure={"metric_groups": ["requests"]}))
    poller = await create_poller(cfg)
    try:
        await poller.run_cycle(NOW)
    finally:
        await poller.close()
    end = window_end(NOW, LATENCY, GRAIN)
    stamps = {d["@timestamp"] for d in read_ndjson(tmp_path / "out.ndjson")}
    assert stamps and stamps <= {stamp(end - timedelta(minutes=m)) for m in range(1, 6)}


async def test_cancelling_a_cycle_keeps_cursors_only_for_stored_units(sim: Simulator, tmp_path: Path) -> None:
    """What SIGTERM does after its grace period: acknowledged units keep their cursors, nothing more."""
    import asyncio

    cfg = parse(poller_config(sim, tmp_path, azure={"metric_groups": ["requests", "realtime"], "concurrency": 8}))
    sim.faults.add(FaultRule(route="getBatch", kind="slow", delay=30, match="Realtime"))
    poller = await create_poller(cfg)
    progress = [0, -1]  # units finished, units in the cycle
    earlier = sim.faults.fired["slow"]  # the module's simulator counts other tests' slow calls too

    def finished(done: int, total: int) -> None:
        progress[:] = [done, total]

    try:
        task = asyncio.create_task(poller.run_cycle(NOW, progress=finished))
        # Cancel once every unit has either finished or is held by the slow fault (which counts a call
        # when it arrives): no timer, so a loaded machine cannot cancel before the quick units are done.
        async with asyncio.timeout(25):
            while progress[0] + sim.faults.fired["slow"] - earlier != progress[1]:
                await asyncio.sleep(0.02)
        assert sim.faults.fired["slow"] > earlier and not task.done()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        sim.faults.clear()
        await poller.close()
    cursors = await FileCursorStore(cfg.state.path).load()
    groups = {group for _, _, group in cursors}
    assert "realtime" not in groups  # never acknowledged
    assert groups == {"requests"}  # the quick units were acknowledged and kept
    end = window_end(NOW, LATENCY, GRAIN)
    stored = read_ndjson(tmp_path / "out.ndjson")
    for account_key, _, group in cursors:
        account_id = next(a.id for a in sim.accounts if a.id.lower() == account_key)
        expected = expected_documents(
            sim, [(account_id, account_key)], select_groups([group]), end - timedelta(minutes=5), end
        )
        mine = [d for d in stored if d["azure"]["resource"]["id"].lower() == account_key]
        assert not compare(expected, mine).missing


@pytest.mark.parametrize("lacking", ["AIServices", "OpenAI"])
async def test_definitions_are_read_per_account_kind(tmp_path: Path, lacking: str) -> None:
    """Accounts of one kind without a metric the other kind has (in the same subscription and region):
    definitions are read per (subscription, region, kind), so neither kind's data is lost or refused."""
    spec = SimSpec(seed=11, subscriptions=1, regions=("eastus",), accounts_per_region=4,
                   kind_undefined_metrics={lacking: frozenset({"GeneratedTokens"})})
    with Simulator(spec, clock=lambda: NOW + timedelta(minutes=10)) as kinds_sim:
        cfg = parse(poller_config(kinds_sim, tmp_path, azure={"metric_groups": ["tokens"]}))
        report = await one_cycle(cfg)
        assert report.ok, report.failures
        accounts = openai_accounts(kinds_sim)
        assert {a.kind for a in kinds_sim.accounts if a.kind in ("OpenAI", "AIServices")} == {"OpenAI", "AIServices"}
        assert kinds_sim.call_count("metricDefinitions") == 2  # one per kind
        end = window_end(NOW, LATENCY, GRAIN)
        expected = expected_documents(kinds_sim, accounts, select_groups(["tokens"]), end - timedelta(minutes=5), end)
        result = compare(expected, read_ndjson(tmp_path / "out.ndjson"))
        assert result.perfect, result.summary()
        stored = read_ndjson(tmp_path / "out.ndjson")
        assert any("generated_tokens" in d["azure"]["open_ai"] for d in stored)
