"""Operator-facing behaviour: shards from pod names, stateless cursors, discover/validate, logs, progress."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from runtime_support import NOW, parse, poller_config, write_config

from metrics_poller import config
from metrics_poller.runtime import create_poller, shard_index
from metrics_poller.simulator import Simulator
from metrics_poller.testing.es_server import ElasticsearchServer


@pytest.fixture
def es() -> Iterator[ElasticsearchServer]:
    with ElasticsearchServer() as server:
        yield server


def environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("METRICS_POLLER")}


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "metrics_poller", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=environment())


@pytest.mark.parametrize(
    ("hostname", "count", "expected"),
    [("poller-metrics-poller-0", 3, 0), ("poller-metrics-poller-2", 3, 2), ("anything", 1, None)],
)
def test_shard_index_comes_from_a_statefulset_pod_name(hostname: str, count: int, expected: int | None) -> None:
    cfg = config.parse({"shard": {"count": count}}, {})
    assert shard_index(cfg, hostname) == expected


@pytest.mark.parametrize("hostname", ["poller-metrics-poller-3", "no-ordinal-here"])
def test_shard_index_outside_the_count_or_missing_is_a_config_error(hostname: str) -> None:
    cfg = config.parse({"shard": {"count": 3}}, {})
    with pytest.raises(config.ConfigError) as caught:
        shard_index(cfg, hostname)
    assert caught.value.lines[0].startswith("config: shard.index:")


def test_explicit_shard_index_wins_over_the_host_name() -> None:
    cfg = config.parse({"shard": {"count": 3, "index": 1}}, {})
    assert shard_index(cfg, "pod-2") == 1


async def test_stateless_pod_keeps_its_cursors_in_elasticsearch(
    sim: Simulator, es: ElasticsearchServer, tmp_path: Path
) -> None:
    sim.clock = lambda: NOW + timedelta(minutes=30)
    data = poller_config(sim, tmp_path, output="elasticsearch", state={"backend": "elasticsearch"})
    data["elasticsearch"] = {"hosts": [es.url]}
    data["azure"]["metric_groups"] = ["requests", "realtime"]
    cfg = parse(data)
    try:
        first = await create_poller(cfg)
        try:
            assert (await first.run_cycle(NOW)).ok
        finally:
            await first.close()
        # A new pod (fresh process, no local state) resumes from the cursors stored in Elasticsearch.
        sim.reset_calls()
        second = await create_poller(cfg)
        try:
            report = await second.run_cycle(NOW + timedelta(seconds=20))  # same complete buckets
        finally:
            await second.close()
    finally:
        sim.clock = None
    assert report.ok and report.queries == 0 and sim.call_count("getBatch") == 0
    assert not (tmp_path / "cursors.json").exists()


def test_discover_lists_only_openai_accounts_as_json(sim: Simulator, tmp_path: Path) -> None:
    result = cli("discover", "--json", "--config", str(write_config(poller_config(sim, tmp_path), tmp_path / "p.yaml")))
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    wanted = {a.id for a in sim.accounts if a.kind in ("OpenAI", "AIServices")}
    assert {row["id"] for row in rows} == wanted
    assert {row["kind"] for row in rows} <= {"OpenAI", "AIServices"}


def test_validate_checks_credentials_azure_and_elasticsearch(
    sim: Simulator, es: ElasticsearchServer, tmp_path: Path
) -> None:
    data = poller_config(sim, tmp_path, output="elasticsearch")
    data["elasticsearch"] = {"hosts": [es.url]}
    cli("setup", "--config", str(write_config(data, tmp_path / "p.yaml")))
    result = cli("validate", "--config", str(tmp_path / "p.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "azure credentials: ok" in result.stdout and "azure discovery: ok" in result.stdout


def test_logs_are_ecs_json_off_a_tty(sim: Simulator, tmp_path: Path) -> None:
    data = poller_config(sim, tmp_path, logging={"level": "INFO"})
    data["azure"]["metric_groups"] = ["realtime"]
    result = cli("once", "--config", str(write_config(data, tmp_path / "p.yaml")))
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert records and all("ecs.version" in r and "log.level" in r for r in records)
    assert len([line for line in result.stdout.splitlines() if line.startswith("cycle ")]) == 1


def test_backfill_shows_a_progress_bar_on_a_tty(sim: Simulator, tmp_path: Path) -> None:
    data = poller_config(sim, tmp_path)
    data["azure"]["metric_groups"] = ["realtime"]
    config_path = write_config(data, tmp_path / "p.yaml")
    until = datetime.now(UTC) - timedelta(minutes=10)
    primary, secondary = pty.openpty()
    try:
        process = subprocess.run(
            [
                sys.executable,
                "-m",
                "metrics_poller",
                "backfill",
                "--config",
                str(config_path),
                "--since",
                (until - timedelta(minutes=20)).isoformat(),
                "--until",
                until.isoformat(),
            ],
            stdout=subprocess.PIPE,
            stderr=secondary,
            timeout=120,
            env=environment(),
        )
        os.close(secondary)
        captured = b""
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:
                break
            if not chunk:
                break
            captured += chunk
    finally:
        os.close(primary)
    assert process.returncode == 0
    assert b"backfill [" in captured and b"units" in captured
