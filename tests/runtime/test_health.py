"""Liveness, readiness and data lag of `run`, through the service and its real HTTP listener.

The health clock is injected so that ten minutes of outage take no time; the cycles themselves run for
real against the simulator and the Elasticsearch test server.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from runtime_support import parse, poller_config

from metrics_poller.runtime import create_poller
from metrics_poller.service import Service, start_listener
from metrics_poller.simulator import FaultRule, Simulator
from metrics_poller.testing.es_server import ElasticsearchServer

REPO = Path(__file__).resolve().parents[2]
PERIOD = 300


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Probe:
    """What a kubelet and Prometheus see, over HTTP."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session, self.base = session, base

    async def status(self, path: str) -> int:
        async with self.session.get(self.base + path) as reply:
            return reply.status

    async def metric(self, name: str) -> float:
        async with self.session.get(self.base + "/metrics") as reply:
            text = await reply.text()
        match = re.search(rf"^{name} (\S+)$", text, re.M)
        assert match, f"{name} not exposed"
        return float(match.group(1))


@asynccontextmanager
async def running_service(sim: Simulator, tmp_path: Path, es: ElasticsearchServer) -> AsyncIterator[Any]:
    data = poller_config(sim, tmp_path, output="elasticsearch")
    data.pop("ndjson")
    data["azure"]["metric_groups"] = ["requests"]
    data["elasticsearch"] = {"hosts": [es.url], "retry_attempts": 2, "request_timeout": 5}
    poller = await create_poller(parse(data))  # the templates go in while Elasticsearch answers
    clock = Clock()
    service = Service(poller, health_clock=clock)
    port = free_port()
    runner = await start_listener(f"127.0.0.1:{port}", service.health)
    try:
        async with aiohttp.ClientSession() as session:
            yield service, clock, Probe(session, f"http://127.0.0.1:{port}")
    finally:
        await runner.cleanup()
        await poller.close()


async def scheduled_cycle(service: Service) -> None:
    """What the scheduler does every period."""
    await service.fire()
    assert service.current is not None
    await service.current


def documented_alert(name: str) -> tuple[str, float]:
    """The README's Prometheus rule `name`: (metric, threshold) of its `metric > threshold` expression."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    for block in re.findall(r"```yaml\n(.*?)```", text, re.S):
        if f"alert: {name}" not in block:
            continue
        for group in yaml.safe_load(block)["groups"]:
            for rule in group["rules"]:
                if rule.get("alert") == name:
                    match = re.fullmatch(r"\s*([a-z_:]+)\s*>\s*(\d+)\s*", rule["expr"])
                    assert match, f"{name}: expected `metric > seconds`, got {rule['expr']!r}"
                    return match.group(1), float(match.group(2))
    raise AssertionError(f"README documents no Prometheus alert {name}")


@pytest.mark.parametrize("outage", ["elasticsearch", "azure"])
async def test_an_outage_keeps_the_pod_alive_while_readiness_and_data_lag_report_it(
    sim: Simulator, tmp_path: Path, outage: str
) -> None:
    metric, threshold = documented_alert("MetricsPollerDataStale")
    assert metric == "metrics_poller_data_lag_seconds"
    with ElasticsearchServer() as es:
        async with running_service(sim, tmp_path, es) as (service, clock, probe):
            started = clock.now
            # The outage begins before anything was ever stored.
            if outage == "elasticsearch":
                es.inject("bulk_503", times=100_000)
            else:
                sim.faults.add(FaultRule(route="getBatch", kind="503", times=100_000, retry_after=0))
            try:
                assert await probe.status("/healthz") == 200
                assert await probe.status("/readyz") == 503
                alert_seen = None
                # 20 minutes of outage, one scheduled cycle every period.
                for tick in range(5):
                    clock.now = started + tick * PERIOD
                    await scheduled_cycle(service)
                    assert service.last_report is not None and not service.last_report.ok
                    clock.now += PERIOD - 1  # just before the next cycle is due
                    assert await probe.status("/healthz") == 200, "an outside outage must not restart the pod"
                    assert await probe.status("/readyz") == 503
                    lag = await probe.metric(metric)
                    assert lag == pytest.approx(clock.now - started, abs=1), "lag counts from start-up"
                    if alert_seen is None and lag > threshold:
                        alert_seen = clock.now - started
                assert alert_seen is not None and alert_seen <= threshold + PERIOD, "the documented alert never fired"
            finally:
                es.clear_faults()
                sim.faults.clear()
            # The outage ends: the next cycle stores data, the pod turns ready and the lag drops to the data's age.
            clock.now += 1
            await scheduled_cycle(service)
            report = service.last_report
            assert report is not None and report.newest_bucket is not None, report and report.summary()
            assert await probe.status("/readyz") == 200
            assert await probe.metric(metric) == pytest.approx(clock.now - report.newest_bucket.timestamp(), abs=1)
            # Stored data within two periods keeps it ready; none for longer does not.
            clock.now += 2 * PERIOD + 1
            assert await probe.status("/readyz") == 503


async def test_liveness_fails_when_the_scheduler_stops_firing_or_a_cycle_hangs(sim: Simulator, tmp_path: Path) -> None:
    with ElasticsearchServer() as es:
        async with running_service(sim, tmp_path, es) as (service, clock, probe):
            started = clock.now
            clock.now = started + 2 * PERIOD  # no scheduled fire yet, but within the allowance
            assert await probe.status("/healthz") == 200
            clock.now = started + 2 * PERIOD + 1
            assert await probe.status("/healthz") == 503, "a scheduler that never fired is not alive"
            # A cycle that has been running for more than two periods is hung (cycles stop at their
            # deadline): here a real cycle held up by a slow Azure answer while the health clock runs on.
            sim.faults.add(FaultRule(route="getBatch", kind="slow", delay=2.0, times=1))
            try:
                await service.fire()
                running = service.current
                assert running is not None
                assert await probe.status("/healthz") == 200, "the scheduler fired again"
                clock.now += PERIOD
                await service.fire()  # skipped while the cycle runs: the scheduler itself is alive
                assert service.current is running
                assert await probe.status("/healthz") == 200
                clock.now += PERIOD + 1
                assert await probe.status("/healthz") == 503, "a cycle running for over two periods is hung"
                report = await running
            finally:
                sim.faults.clear()
            assert report.ok, report.summary()
            assert await probe.status("/healthz") == 200
