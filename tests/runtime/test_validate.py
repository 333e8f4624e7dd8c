"""`metrics-poller validate` makes one real metrics call per (subscription, region), through the route
`azure.api` selects, and tells 401 (no subscription-level Monitoring Reader) and 403 (Microsoft.Insights
not registered) apart from success.

What was seen (issue 11, item 6): validate said ok when the identity could discover the accounts but
not call getBatch (Monitoring Reader granted on the accounts instead of the subscription): its one Azure
call was discovery. The simulator answers getBatch with 401 or 403 for one subscription through a fault
rule matching its id (the bodies: simulator/faults.py; the statuses: azure-monitor.md §4).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from runtime_support import command, main, poller_config, write_config

from metrics_poller.simulator import FaultRule, Simulator

REGIONS = 3


def _validate(sim: Simulator, tmp_path: Path, **azure: object) -> tuple[int, list[str]]:
    data = poller_config(sim, tmp_path)
    data["azure"].update(azure)
    sim.reset_calls()
    code, out, err = main("validate", "--config", str(write_config(data, tmp_path / "poller.yaml")))
    assert "Traceback" not in err
    return code, [line for line in out.splitlines() if line.startswith("azure metrics ")]


def test_one_getbatch_call_per_subscription_and_region(sim: Simulator, tmp_path: Path) -> None:
    code, lines = _validate(sim, tmp_path)
    assert code == 0, lines
    assert len(lines) == len(sim.subscription_ids) * REGIONS
    assert all(line.endswith("ok (getBatch, 3 accounts asked)") for line in lines), lines
    assert sim.call_count("getBatch") == len(lines)
    assert sim.call_count("metrics") == 0


def test_per_resource_mode_probes_the_arm_route(sim: Simulator, tmp_path: Path) -> None:
    code, lines = _validate(sim, tmp_path, api="arm")
    assert code == 0, lines
    assert all("ok (per-resource metrics" in line for line in lines), lines
    assert sim.call_count("metrics") == len(lines) and sim.call_count("getBatch") == 0


@pytest.mark.parametrize("api", ["auto", "batch"])
def test_401_and_403_are_told_apart_and_fail_the_command(sim: Simulator, tmp_path: Path, api: str) -> None:
    no_role, unregistered = sim.subscription_ids[:2]
    sim.faults.add(FaultRule(route="getBatch", kind="401", match=no_role))
    sim.faults.add(FaultRule(route="getBatch", kind="403", match=unregistered))
    try:
        code, lines = _validate(sim, tmp_path, api=api)
    finally:
        sim.faults.clear()
    assert code == 1, lines
    role = [line for line in lines if no_role in line.split(":")[0]]
    provider = [line for line in lines if unregistered in line.split(":")[0]]
    assert len(role) == len(provider) == REGIONS
    for line in role:
        assert "getBatch answered 401" in line and "Monitoring Reader on the subscription" in line
        assert f"--scope /subscriptions/{no_role}" in line
        assert ("falls back" in line) == (api == "auto")
    for line in provider:
        assert "getBatch answered 403" in line and "Microsoft.Insights is not registered" in line
        assert f"az provider register --namespace Microsoft.Insights --subscription {unregistered}" in line


def test_the_installed_command_reports_a_missing_subscription_role(sim: Simulator, tmp_path: Path) -> None:
    refused = sim.subscription_ids[0]
    data = poller_config(sim, tmp_path)
    sim.faults.add(FaultRule(route="getBatch", kind="401", match=refused))
    try:
        result = command("validate", "--config", str(write_config(data, tmp_path / "poller.yaml")))
    finally:
        sim.faults.clear()
    assert result.returncode == 1, result.stdout + result.stderr
    assert "azure discovery: ok" in result.stdout
    assert f"azure metrics {refused}/eastus: FAILED: getBatch answered 401" in result.stdout
