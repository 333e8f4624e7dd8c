"""Service mode as a subprocess: health listener, SIGTERM during a cycle, cursors only for stored data."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

from runtime_support import poller_config, read_ndjson, write_config

from metrics_poller.catalog import GROUPS_BY_NAME
from metrics_poller.simulator import FaultRule, Simulator
from metrics_poller.state import decode_cursor
from metrics_poller.testing.ground_truth import compare, expected_documents


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(config_path: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METRICS_POLLER")}
    return subprocess.Popen(
        [sys.executable, "-m", "metrics_poller", "run", "--config", str(config_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def wait_for(predicate: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_health_then_sigterm_mid_cycle_exits_0_leaving_cursors_only_for_stored_windows(
    sim: Simulator, tmp_path: Path
) -> None:
    port = free_port()
    data = poller_config(sim, tmp_path, http={"listen": f"127.0.0.1:{port}"})
    data["azure"]["metric_groups"] = ["requests", "tokens", "realtime"]
    data["azure"]["concurrency"] = 2
    first = sim.accounts[0]
    # The first calls are quick; the rest are slow, so SIGTERM lands mid-cycle.
    sim.faults.add(FaultRule(route="getBatch", kind="slow", delay=1.5, match="Realtime"))
    process = start(write_config(data, tmp_path / "poller.yaml"))
    try:
        wait_for(lambda: get(f"http://127.0.0.1:{port}/healthz")[0] == 200 if _listening(port) else False)
        assert get(f"http://127.0.0.1:{port}/readyz")[0] == 503  # no cycle finished yet
        status, metrics = get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and "metrics_poller_azure_calls" in metrics
        wait_for(lambda: sim.call_count("getBatch") >= 2)
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        assert time.monotonic() - sent < 40
    finally:
        sim.faults.clear()
        if process.poll() is None:
            process.kill()
    assert "Traceback" not in err

    cursors_file = tmp_path / "cursors.json"
    stored = read_ndjson(tmp_path / "out.ndjson")
    if not cursors_file.exists():
        return
    cursors = json.loads(cursors_file.read_text())["cursors"]
    assert first.id  # the simulator has accounts
    for key, value in cursors.items():
        account_key, dataset, group = key.rsplit("|", 2)
        assert dataset == "azure.open_ai"
        end = decode_cursor(value)
        account_id = next(a.id for a in sim.accounts if a.id.lower() == account_key)
        expected = expected_documents(
            sim, [(account_id, account_key)], [GROUPS_BY_NAME[group]], end - timedelta(minutes=5), end
        )
        mine = [d for d in stored if d["azure"]["resource"]["id"].lower() == account_key]
        result = compare(expected, mine)
        assert not result.missing, f"{key}: cursor advanced past unstored data: {result.summary()}"


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_sigterm_while_idle_exits_0_quickly(sim: Simulator, tmp_path: Path) -> None:
    port = free_port()
    data = poller_config(sim, tmp_path, http={"listen": f"127.0.0.1:{port}"})
    data["azure"]["metric_groups"] = ["realtime"]
    process = start(write_config(data, tmp_path / "poller.yaml"))
    try:
        wait_for(lambda: _listening(port) and get(f"http://127.0.0.1:{port}/readyz")[0] == 200)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0 and "Traceback" not in err
    assert read_ndjson(tmp_path / "out.ndjson")
    cursors = json.loads((tmp_path / "cursors.json").read_text())["cursors"]
    assert cursors and all(decode_cursor(v) <= datetime.now(UTC) for v in cursors.values())
