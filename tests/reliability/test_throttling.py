"""Throttling budget: under a sustained 429 storm (Retry-After above the cap) the poller honours every
Retry-After (no call of a held scope until it has passed), never runs past its cycle deadline (so
cycles never overlap), moves no cursor, and catches up with no gap afterwards."""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from reliability_support import base_config, openai_accounts, parse, with_elasticsearch

from metrics_poller import telemetry
from metrics_poller.catalog import select_groups
from metrics_poller.runtime import create_poller
from metrics_poller.simulator import FaultRule, SimSpec, Simulator
from metrics_poller.state import FileCursorStore
from metrics_poller.testing.es_server import ElasticsearchServer
from metrics_poller.testing.ground_truth import compare, expected_documents
from metrics_poller.windows import window_end

START = datetime(2026, 3, 2, 12, 0, 30, tzinfo=UTC)
GROUPS = ["requests", "tokens"]
BUDGET = 1.5  # seconds each cycle may run (cycle_deadline, scaled down)


def throttled_total() -> float:
    return sum(
        sample.value
        for metric in telemetry.AZURE_THROTTLED.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    )


async def test_a_429_storm_is_ridden_out_within_the_deadline_and_leaves_no_gap(
    es: ElasticsearchServer, tmp_path: Path
) -> None:
    spec = SimSpec(seed=9, subscriptions=1, regions=("eastus", "westeurope"), accounts_per_region=4)
    with Simulator(spec) as sim:
        now = START
        sim.clock = lambda: now + timedelta(seconds=20)
        data = with_elasticsearch(base_config(sim, tmp_path, metric_groups=GROUPS), es)
        data["azure"]["retry"] = {"attempts": 20, "backoff_initial": 0.05, "backoff_max": 0.2, "retry_after_cap": 0.3}
        cfg = parse(data)
        poller = await create_poller(cfg)
        durations: list[tuple[float, float, float]] = []  # (started, duration, ended)
        try:
            first = await poller.run_cycle(now, deadline=time.monotonic() + 30)
            assert first.ok, first.failures
            before = await FileCursorStore(cfg.state.path).load()
            throttled_before = throttled_total()

            # The storm: every getBatch answers 429 with a Retry-After of 3 s (above the 0.3 s cap) for four
            # cycles; the cycles run back to back, so all but the first fall inside the hold.
            sim.faults.add(FaultRule(route="getBatch", kind="429", retry_after=3))
            storm = time.monotonic()
            for number in range(1, 5):
                now = START + timedelta(minutes=5 * number)
                sim.reset_calls()
                began = time.monotonic()
                report = await poller.run_cycle(now, deadline=began + BUDGET)
                ended = time.monotonic()
                durations.append((began, ended - began, ended))
                assert not report.ok and report.exit_code in (1, 3)
                assert ended - began < BUDGET + 0.5, f"cycle ran {ended - began:.2f}s past a {BUDGET}s deadline"
                # One try per query, then nothing until the Retry-After has passed.
                calls = sim.call_count("getBatch")
                assert calls <= report.queries if number == 1 else calls == 0
                accounts = [f for f in report.failures if f.scope == "account"]
                assert accounts and all("left for the next cycle" in f.reason for f in accounts)
            during = await FileCursorStore(cfg.state.path).load()
            assert during == before  # nothing stored, so no cursor moved
            assert throttled_total() > throttled_before  # and the 429s were counted

            # The storm ends: once the last Retry-After has passed, one cycle catches up on all 20 minutes.
            sim.faults.clear()
            await asyncio.sleep(max(0.0, storm + 3.1 - time.monotonic()))
            now = START + timedelta(minutes=25)
            after = await poller.run_cycle(now, deadline=time.monotonic() + 30)
            assert after.ok, after.failures
        finally:
            sim.faults.clear()
            await poller.close()

        # Sequential cycles, each ended before the next began: no overlap.
        for (_, _, ended), (began, _, _) in itertools.pairwise(durations):
            assert ended <= began
        grain = timedelta(minutes=1)
        start = window_end(START, timedelta(seconds=240), grain) - timedelta(minutes=5)
        end = window_end(now, timedelta(seconds=240), grain)
        assert set((await FileCursorStore(cfg.state.path).load()).values()) == {end}
        expected = expected_documents(sim, openai_accounts(sim), select_groups(GROUPS), start, end)
        result = compare(expected, es.documents("metrics-azure.open_ai-default"))
        assert result.perfect, result.summary()
        assert result.expected > 0
