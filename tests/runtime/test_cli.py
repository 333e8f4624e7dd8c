"""The command as users run it (a subprocess): exit codes, one-line errors, no tracebacks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from runtime_support import poller_config, read_ndjson, write_config

from metrics_poller.simulator import FaultRule, Simulator

COMMAND = [sys.executable, "-m", "metrics_poller"]


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("METRICS_POLLER")}
    environ.update(env or {})
    return subprocess.run([*COMMAND, *args], capture_output=True, text=True, timeout=timeout, env=environ)


def test_once_exits_0_when_everything_is_stored(sim: Simulator, tmp_path: Path) -> None:
    data = poller_config(sim, tmp_path)
    data["azure"]["metric_groups"] = ["requests", "tokens"]
    result = run("once", "--config", str(write_config(data, tmp_path / "poller.yaml")))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "cycle ok" in result.stdout
    assert read_ndjson(tmp_path / "out.ndjson")
    assert "Traceback" not in result.stderr


def test_once_exits_1_and_lists_the_failed_account(sim: Simulator, tmp_path: Path) -> None:
    victim = next(a for a in sim.accounts if a.kind == "AIServices")
    data = poller_config(sim, tmp_path)
    data["azure"]["metric_groups"] = ["requests"]
    sim.faults.add(FaultRule(route="getBatch", kind="400", match=victim.name))
    try:
        result = run("once", "--config", str(write_config(data, tmp_path / "poller.yaml")))
    finally:
        sim.faults.clear()
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"failed account {victim.id}" in result.stdout
    docs = read_ndjson(tmp_path / "out.ndjson")
    assert docs and victim.id not in {d["azure"]["resource"]["id"] for d in docs}


def test_bad_configuration_exits_2_with_one_line_per_problem(tmp_path: Path) -> None:
    path = tmp_path / "poller.yaml"
    path.write_text("period: 301\nazure:\n  concurrency: lots\n  surprise: true\n")
    result = run("once", "--config", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert sorted(line.split(":")[1].strip() for line in lines) == ["azure.concurrency", "azure.surprise", "period"]
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_environment_override_error_exits_2(tmp_path: Path) -> None:
    env = {"METRICS_POLLER__AZURE__TOP": "-5", "METRICS_POLLER_CONFIG": str(tmp_path / "x.yaml")}
    result = run("validate", env=env)
    assert result.returncode == 2
    assert "azure.top" in result.stderr or "cannot read" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_azure_exits_3(sim: Simulator, tmp_path: Path) -> None:
    data = poller_config(sim, tmp_path)
    data["azure"]["endpoints"]["resource_manager"] = "https://127.0.0.1:9"  # nothing listens there
    data["azure"]["request_timeout"] = 2
    result = run("once", "--config", str(write_config(data, tmp_path / "poller.yaml")))
    assert result.returncode == 3, result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_wrong_client_secret_exits_3_without_leaking_it(sim: Simulator, tmp_path: Path) -> None:
    data = poller_config(sim, tmp_path)
    data["azure"]["credential"]["client_secret"] = "WRONG-secret-0123456789"
    result = run("once", "--config", str(write_config(data, tmp_path / "poller.yaml")))
    assert result.returncode == 3, result.stdout + result.stderr
    assert "WRONG-secret-0123456789" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_elasticsearch_exits_3(sim: Simulator, tmp_path: Path) -> None:
    data = poller_config(sim, tmp_path, output="elasticsearch")
    data["elasticsearch"] = {"hosts": ["http://127.0.0.1:9"], "retry_attempts": 1, "request_timeout": 2}
    data["azure"]["metric_groups"] = ["requests"]
    result = run("once", "--config", str(write_config(data, tmp_path / "poller.yaml")))
    assert result.returncode == 3, result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_simulate_help_documents_seed_scale_latency_and_faults() -> None:
    result = run("simulate", "--help")
    assert result.returncode == 0
    for option in ("--seed", "--subscriptions", "--accounts-per-region", "--latency", "--fault", "--regions"):
        assert option in result.stdout


def test_every_subcommand_has_help() -> None:
    for command in ("run", "once", "setup", "discover", "validate", "backfill", "simulate", "demo"):
        assert run(command, "--help").returncode == 0, command


def test_no_azure_targets_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "poller.yaml"
    path.write_text("period: 300\n")
    for command in ("once", "discover"):
        result = run(command, "--config", str(path))
        assert result.returncode == 2, result.stdout + result.stderr
        assert result.stderr.startswith("config: azure.subscriptions: no Azure targets")
