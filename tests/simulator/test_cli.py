"""`metrics-poller simulate`: documented options, fault parsing, and a real start/serve/stop."""

from __future__ import annotations

import argparse
import os
import signal
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from metrics_poller.simulator import FaultRule
from metrics_poller.simulator import cli as simulator_cli


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="metrics-poller simulate")
    simulator_cli.add_arguments(parser)
    return parser


def test_help_documents_every_option() -> None:
    text = _parser().format_help()
    for option in (
        "--seed",
        "--subscriptions",
        "--regions",
        "--accounts-per-region",
        "--other-accounts-per-region",
        "--latency",
        "--publication-delay",
        "--port",
        "--fault",
        "--retry-after",
        "--write-config",
    ):
        assert option in text
    assert "ROUTE:KIND[:TIMES[:PROBABILITY]]" in text and "getBatch:429:3" in text


def test_fault_arguments_parse_into_rules() -> None:
    args = _parser().parse_args(["--fault", "getBatch:429:3", "--fault", "*:500::0.1", "--regions", "eastus,uksouth"])
    assert args.fault == [
        FaultRule(route="getBatch", kind="429", times=3),
        FaultRule(route="*", kind="500", times=None, probability=0.1),
    ]
    assert args.regions == ("eastus", "uksouth")
    for bad in ("getBatch", "nowhere:429", "getBatch:418", "getBatch:429:x"):
        with pytest.raises(SystemExit):
            _parser().parse_args(["--fault", bad])


def test_run_serves_until_sigterm(tmp_path: Path) -> None:
    config = tmp_path / "poller.yaml"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "metrics_poller",
            "simulate",
            "--port",
            "0",
            "--subscriptions",
            "1",
            "--regions",
            "eastus",
            "--accounts-per-region",
            "2",
            "--fault",
            "getBatch:429:1",
            "--write-config",
            str(config),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    try:
        assert process.stdout is not None
        lines = {}
        for line in process.stdout:
            key, _, value = line.strip().partition(": ")
            lines[key] = value
            if line.startswith("serving"):
                break
        assert lines["url"].startswith("https://127.0.0.1:")
        assert lines["accounts"].startswith("3 ")
        context = ssl.create_default_context(cafile=lines["ca_bundle"])
        tenant = lines["tenant_id"]
        with urllib.request.urlopen(
            f"{lines['url']}/{tenant}/v2.0/.well-known/openid-configuration", context=context
        ) as r:
            assert r.status == 200
        written = yaml.safe_load(config.read_text())
        assert written["output"] == "ndjson"
        assert written["azure"]["endpoints"]["metrics"] == lines["url"] + "/metrics/{region}"
        assert written["azure"]["credential"]["tenant_id"] == tenant
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
