"""Helpers for runtime tests: a simulator fixture and configuration builders."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from metrics_poller import config
from metrics_poller.cycle import CycleReport
from metrics_poller.simulator import SimSpec, Simulator

# A fixed "now" keeps windows deterministic; the simulator's clock follows it.
NOW = datetime(2026, 3, 2, 12, 7, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    spec = SimSpec(seed=7, subscriptions=2, regions=("eastus", "westeurope", "swedencentral"), accounts_per_region=3)
    with Simulator(spec) as simulator:
        yield simulator


def poller_config(sim: Simulator, tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "azure": sim.azure_config(retry={"attempts": 3, "backoff_initial": 0.05, "backoff_max": 0.2}),
        "output": "ndjson",
        "ndjson": {"path": str(tmp_path / "out.ndjson")},
        "state": {"backend": "file", "path": str(tmp_path / "cursors.json")},
        "http": {"listen": None},
        # These tests check the metrics; the inventory (whose share depends on the time) has its own.
        "inventory": {"enabled": False},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


def parse(data: dict[str, Any]) -> config.Config:
    return config.parse(data, environ={})


def write_config(data: dict[str, Any], path: Path) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def read_ndjson(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


# The console script pip installed next to this interpreter: the command exactly as users run it.
INSTALLED = Path(sys.executable).with_name("metrics-poller")


def command(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the installed `metrics-poller` with none of this environment's METRICS_POLLER* variables."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("METRICS_POLLER")}
    environ.update(env or {})
    return subprocess.run([str(INSTALLED), *args], capture_output=True, text=True, timeout=timeout, env=environ)


def main(*args: str) -> tuple[int, str, str]:
    """`metrics-poller ARGS` in this process (no interpreter start-up): exit code, stdout, stderr."""
    from metrics_poller import cli

    out, err = io.StringIO(), io.StringIO()
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("METRICS_POLLER")}
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(list(args))
    finally:
        os.environ.update(saved)
    return code, out.getvalue(), err.getvalue()


# The command users run: the console script installed next to this interpreter (`make install`).
POLLER = str(Path(sys.executable).with_name("metrics-poller"))


def clean_environ(**extra: str) -> dict[str, str]:
    """This process's environment without any METRICS_POLLER* variable of the user running the tests."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("METRICS_POLLER")}
    environ.update(extra)
    return environ


def run_poller(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    """Run the installed `metrics-poller` as a user would, in a scrubbed environment."""
    return subprocess.run(
        [POLLER, *args], capture_output=True, text=True, timeout=timeout, env=clean_environ(**(env or {})), cwd=cwd
    )


async def one_cycle(cfg: config.Config, now: datetime = NOW, **kwargs: Any) -> CycleReport:
    """One cycle of a fresh poller (discovery and definitions included), closed afterwards."""
    from metrics_poller.runtime import create_poller

    poller = await create_poller(cfg, **kwargs)
    try:
        return await poller.run_cycle(now)
    finally:
        await poller.close()
