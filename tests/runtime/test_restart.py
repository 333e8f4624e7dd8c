"""Nothing lost, nothing doubled: crashes, sink outages and backfill against the Elasticsearch test server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from runtime_support import NOW, parse, poller_config, write_config

from metrics_poller.catalog import GROUPS, select_groups
from metrics_poller.runtime import create_poller
from metrics_poller.simulator import FaultRule, Simulator
from metrics_poller.state import FileCursorStore
from metrics_poller.testing.es_server import ElasticsearchServer
from metrics_poller.testing.ground_truth import compare, expected_documents, stamp
from metrics_poller.windows import window_end

STREAM = "metrics-azure.open_ai-default"
GRAIN, LATENCY = timedelta(minutes=1), timedelta(seconds=240)


@pytest.fixture
def es() -> Iterator[ElasticsearchServer]:
    with ElasticsearchServer() as server:
        yield server


def es_config(sim: Simulator, es: ElasticsearchServer, tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    data = poller_config(sim, tmp_path, output="elasticsearch", **overrides)
    data["elasticsearch"] = {"hosts": [es.url], "retry_attempts": 2, "request_timeout": 10}
    return data


def accounts_of(sim: Simulator) -> list[tuple[str, str]]:
    return [(a.id, a.id.lower()) for a in sim.accounts if a.kind in ("OpenAI", "AIServices")]


def cli(*args: str, wait: bool = True) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METRICS_POLLER")}
    command = [sys.executable, "-m", "metrics_poller", *args]
    if wait:
        return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_crash_mid_cycle_then_restart_stores_exactly_the_ground_truth(
    sim: Simulator, es: ElasticsearchServer, tmp_path: Path
) -> None:
    data = es_config(sim, es, tmp_path)
    data["azure"]["concurrency"] = 2
    config_path = write_config(data, tmp_path / "poller.yaml")
    assert cli("setup", "--config", str(config_path)).returncode == 0

    # Slow down a few groups so the kill lands after some documents are stored but before the end.
    sim.faults.add(FaultRule(route="getBatch", kind="slow", delay=2.0, match="RAI"))
    crashed = cli("once", "--config", str(config_path), wait=False)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not es.documents(STREAM):
            time.sleep(0.05)
        assert es.documents(STREAM), "the first run stored nothing before the kill"
        crashed.send_signal(signal.SIGKILL)
        crashed.wait(timeout=10)
    finally:
        sim.faults.clear()
        if crashed.poll() is None:
            crashed.kill()
    assert not (tmp_path / "cursors.json").exists()  # the crash happened before any cursor was saved

    restarted = cli("once", "--config", str(config_path))
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr

    cursors = FileCursorStore(tmp_path / "cursors.json")
    import asyncio

    positions = asyncio.run(cursors.load())
    (end,) = set(positions.values())
    start = end - timedelta(seconds=300)
    expected = expected_documents(sim, accounts_of(sim), GROUPS, start, end)
    stored = es.documents(STREAM)
    result = compare(expected, stored, only_within=(stamp(start), stamp(end)))
    assert result.perfect, result.summary()
    assert not compare({}, stored).duplicated  # nothing doubled anywhere, inside the window or not


async def test_sink_outage_leaves_cursors_and_the_next_cycle_fills_the_gap(
    sim: Simulator, es: ElasticsearchServer, tmp_path: Path
) -> None:
    sim.clock = lambda: NOW + timedelta(minutes=30)
    groups = select_groups(["requests", "tokens", "ptu_tokens_total", "ptu_tokens_stats"])
    data = es_config(sim, es, tmp_path)
    data["azure"]["metric_groups"] = [g.name for g in groups]
    cfg = parse(data)
    from metrics_poller.sinks.elasticsearch import build_client, setup

    client = build_client(cfg.elasticsearch)
    await setup(client, cfg.elasticsearch)
    await client.close()

    poller = await create_poller(cfg)
    try:
        first = await poller.run_cycle(NOW)
        assert first.ok, first.failures
        after_first = await FileCursorStore(cfg.state.path).load()

        es.inject("bulk_503", times=1000)
        outage = await poller.run_cycle(NOW + timedelta(minutes=5))
        assert outage.unreachable == "elasticsearch" and outage.exit_code == 3
        during = await FileCursorStore(cfg.state.path).load()
        moved = {key: (after_first[key], during[key]) for key in during if during[key] != after_first.get(key)}
        assert moved, "expected some windows with nothing to write (e.g. PTU metrics without PTU deployments)"
        for (account_key, _, group), (old, new) in moved.items():
            account_id = next(a for a, k in accounts_of(sim) if k == account_key)
            # A cursor may move during the outage only over a window that had nothing to store.
            assert not expected_documents(sim, [(account_id, account_key)], select_groups([group]), old, new)
        assert any(during[key] == after_first[key] for key in after_first)  # the rest stayed put

        es.clear_faults()
        recovered = await poller.run_cycle(NOW + timedelta(minutes=10))
        assert recovered.ok, recovered.failures
    finally:
        sim.clock = None
        await poller.close()

    start = window_end(NOW, LATENCY, GRAIN) - timedelta(minutes=5)
    end = window_end(NOW + timedelta(minutes=10), LATENCY, GRAIN)
    assert set((await FileCursorStore(cfg.state.path).load()).values()) == {end}
    result = compare(expected_documents(sim, accounts_of(sim), groups, start, end), es.documents(STREAM))
    assert result.perfect, result.summary()


async def test_partial_item_failures_end_with_everything_stored(
    sim: Simulator, es: ElasticsearchServer, tmp_path: Path
) -> None:
    sim.clock = lambda: NOW + timedelta(minutes=30)
    groups = select_groups(["tokens"])
    data = es_config(sim, es, tmp_path)
    data["azure"]["metric_groups"] = ["tokens"]
    data["elasticsearch"]["retry_attempts"] = 5
    cfg = parse(data)
    es.inject("item_429", times=40)
    es.inject("bulk_429", times=2)
    poller = await create_poller(cfg)
    try:
        report = await poller.run_cycle(NOW)
    finally:
        sim.clock = None
        await poller.close()
    assert report.ok, report.failures
    end = window_end(NOW, LATENCY, GRAIN)
    expected = expected_documents(sim, accounts_of(sim), groups, end - timedelta(minutes=5), end)
    result = compare(expected, es.documents(STREAM))
    assert result.perfect, result.summary()


def test_backfill_stores_a_past_range_and_leaves_cursors_alone(
    sim: Simulator, es: ElasticsearchServer, tmp_path: Path
) -> None:
    data = es_config(sim, es, tmp_path)
    data["azure"]["metric_groups"] = ["tokens", "realtime"]
    data["backfill_step"] = 600  # several sub-windows
    config_path = write_config(data, tmp_path / "poller.yaml")
    until = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=10)
    since = until - timedelta(minutes=30)
    result = cli("backfill", "--config", str(config_path), "--since", since.isoformat(), "--until", until.isoformat())
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (tmp_path / "cursors.json").exists()
    expected = expected_documents(sim, accounts_of(sim), select_groups(["tokens", "realtime"]), since, until)
    comparison = compare(expected, es.documents(STREAM))
    assert comparison.perfect, comparison.summary()


def test_setup_twice_changes_nothing_the_second_time(sim: Simulator, es: ElasticsearchServer, tmp_path: Path) -> None:
    config_path = write_config(es_config(sim, es, tmp_path), tmp_path / "poller.yaml")
    first = cli("setup", "--config", str(config_path))
    puts_after_first = sum(n for key, n in es.requests.items() if key.startswith("PUT"))
    second = cli("setup", "--config", str(config_path))
    puts_after_second = sum(n for key, n in es.requests.items() if key.startswith("PUT"))
    assert first.returncode == 0 and second.returncode == 0
    assert "unchanged" in second.stdout
    assert puts_after_second == puts_after_first
