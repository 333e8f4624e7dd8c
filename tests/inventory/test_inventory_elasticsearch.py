"""The inventory stream in Elasticsearch: `setup` installs its templates, a cycle writes every field mapped."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from runtime_support import NOW, parse, poller_config, write_config

from metrics_poller import inventory_templates
from metrics_poller.runtime import create_poller
from metrics_poller.simulator import SimSpec, Simulator
from metrics_poller.testing.es_server import ElasticsearchServer

STREAM = "metrics-azure.ai_deployment-default"


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(SimSpec(seed=3, subscriptions=1, regions=("eastus",), accounts_per_region=3)) as s:
        yield s


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METRICS_POLLER")}
    return subprocess.run(
        [sys.executable, "-m", "metrics_poller", *args], capture_output=True, text=True, timeout=120, env=env
    )


async def test_setup_installs_the_inventory_templates_and_a_cycle_maps_every_field(
    sim: Simulator, tmp_path: Path
) -> None:
    with ElasticsearchServer() as es:
        data = poller_config(sim, tmp_path, output="elasticsearch", inventory={"enabled": True, "interval": 300})
        data["elasticsearch"] = {"hosts": [es.url]}
        result = cli("setup", "--config", str(write_config(data, tmp_path / "poller.yaml")))
        assert result.returncode == 0, result.stderr
        assert f"index template {inventory_templates.INDEX_TEMPLATE}: created" in result.stdout
        again = cli("setup", "--config", str(tmp_path / "poller.yaml"))
        assert f"index template {inventory_templates.INDEX_TEMPLATE}: unchanged" in again.stdout

        sim.clock = lambda: NOW + timedelta(minutes=10)
        try:
            poller = await create_poller(parse(data))
            try:
                report = await poller.run_cycle(NOW)
                rerun = await poller.run_cycle(NOW + timedelta(seconds=30))  # same run time: 409s
            finally:
                await poller.close()
        finally:
            sim.clock = None
        assert report.ok and report.inventory_documents["created"] > 0, report.failures
        assert rerun.inventory_documents["duplicate"] == report.inventory_documents["created"]
        stream = es.data_stream(STREAM)
        assert stream is not None and stream.template == inventory_templates.INDEX_TEMPLATE
        types = es.field_types(STREAM)
        assert not [p for p, (_, origin) in types.items() if origin == "dynamic"], types
        assert types["azure.deployment.utilization.tokens_pct"][0] == "float"
        assert types["azure.deployment.model.version"][0] == "keyword"  # "2024-11-20" is not a date


def test_an_interval_that_is_not_a_multiple_of_the_period_is_one_line_and_exit_2(
    sim: Simulator, tmp_path: Path
) -> None:
    sim.reset_calls()
    data = poller_config(sim, tmp_path, inventory={"enabled": True, "interval": 1000})
    result = cli("once", "--config", str(write_config(data, tmp_path / "poller.yaml")))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("config: inventory.interval: 1000 must be a multiple of period 300")
    assert sim.call_count("token") == 0  # rejected before any Azure call
