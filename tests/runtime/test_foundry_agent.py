"""The azure.ai_foundry.agent dataset (preview, opt-in) end to end: simulator over HTTPS → real SDKs →
project discovery → getBatch with the projects' namespace → shaping → NDJSON, compared with the
simulator's ground truth; and with the default datasets no project is listed or queried.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from runtime_support import NOW, command, parse, poller_config, read_ndjson, write_config

from metrics_poller.cycle import CycleReport
from metrics_poller.datasets import AI_FOUNDRY_AGENT
from metrics_poller.model import PROJECT_TYPE
from metrics_poller.runtime import create_poller
from metrics_poller.simulator import FaultRule, SimSpec, Simulator
from metrics_poller.testing.ground_truth import compare, expected_documents
from metrics_poller.windows import window_end

GRAIN = timedelta(minutes=1)
LATENCY = timedelta(seconds=240)
ALL = ["azure.open_ai", "azure.ai_foundry", "azure.ai_foundry.agent"]


@pytest.fixture(scope="module")
def agent_sim() -> Iterator[Simulator]:
    spec = SimSpec(seed=42, subscriptions=1, regions=("eastus", "westeurope", "swedencentral"), accounts_per_region=3)
    with Simulator(spec) as simulator:
        simulator.clock = lambda: NOW + timedelta(minutes=10)
        yield simulator


def run_cycle(sim: Simulator, tmp_path: Path, **overrides: Any) -> tuple[CycleReport, list[dict[str, Any]]]:
    cfg = parse(poller_config(sim, tmp_path, **overrides))

    async def cycle() -> CycleReport:
        poller = await create_poller(cfg)
        try:
            return await poller.run_cycle(NOW)
        finally:
            await poller.close()

    sim.reset_calls()
    report = asyncio.run(cycle())
    return report, read_ndjson(tmp_path / "out.ndjson")


def agent_documents(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in documents if d["data_stream"]["dataset"] == AI_FOUNDRY_AGENT.name]


@pytest.mark.parametrize("discovery", ["arm", "resource_graph"])
def test_agent_metrics_of_every_project_equal_the_ground_truth(
    agent_sim: Simulator, tmp_path: Path, discovery: str
) -> None:
    projects = agent_sim.projects
    assert len(projects) >= 2 and sum(len(p.agents) for p in projects) >= 3
    report, documents = run_cycle(agent_sim, tmp_path, datasets=ALL, azure={"discovery": discovery})
    assert report.ok, report.failures
    assert set(report.stored_by_dataset) == set(ALL)
    assert report.projects == len(projects)
    assert report.accounts == sum(a.kind in ("OpenAI", "AIServices") for a in agent_sim.accounts)
    assert f" and {len(projects)} projects," in report.summary()

    end = window_end(NOW, LATENCY, GRAIN)
    start = end - timedelta(minutes=5)
    polled = [(p.id, p.key) for p in projects]
    expected = expected_documents(agent_sim, polled, AI_FOUNDRY_AGENT.groups, start, end, dataset=AI_FOUNDRY_AGENT)
    result = compare(expected, documents, dataset=AI_FOUNDRY_AGENT)
    assert result.perfect, result.summary()
    assert result.expected > 100
    # Every catalogued metric the simulator has data for, and every aggregation it offers, was stored.
    stored_fields = {
        f"{metric}.{suffix}"
        for document in agent_documents(documents)
        for metric, aggregates in document["azure"]["ai_foundry"]["agent"].items()
        for suffix in aggregates
    }
    expected_fields = {name for values in expected.values() for name in values}
    assert stored_fields == expected_fields
    assert {"agent_runs.count", "agent_input_tokens.total", "toolbox_tools_visible.min"} <= stored_fields

    # One getBatch per (subscription, region) and family, in the projects' own namespace.
    regions = {(p.subscription_id, p.location) for p in projects}
    families = len({frozenset(g.dimensions) for g in AI_FOUNDRY_AGENT.groups})
    assert agent_sim.call_count("getBatch") >= len(regions) * families


def test_agent_documents_carry_the_project_as_their_resource(agent_sim: Simulator, tmp_path: Path) -> None:
    _, documents = run_cycle(agent_sim, tmp_path, datasets=ALL)
    agent = agent_documents(documents)
    by_id = {p.key: p for p in agent_sim.projects}
    assert {d["azure"]["resource"]["id"].lower() for d in agent} == set(by_id)
    for document in agent:
        azure = document["azure"]
        project = by_id[azure["resource"]["id"].lower()]
        assert azure["resource"]["type"] == PROJECT_TYPE == azure["namespace"]
        assert azure["resource"]["name"] == project.name
        assert azure["resource"]["group"] == project.resource_group
        assert azure["subscription_id"] == project.subscription_id
        assert azure["timegrain"] == "PT1M"
        assert document["cloud"] == {"provider": "azure", "region": project.location}
        assert document["event"]["dataset"] == "azure.ai_foundry.agent"
        stream = {"dataset": "azure.ai_foundry.agent", "namespace": "default", "type": "metrics"}
        assert document["data_stream"] == stream
        assert set(azure) >= {"ai_foundry", "dimensions"} and set(azure["ai_foundry"]) == {"agent"}
        assert azure["dimensions"]["fingerprint"]
        if project.tags:
            assert azure["resource"]["tags"] == dict(sorted(project.tags.items()))
    assert len({d["azure"]["dimensions"]["fingerprint"] for d in agent}) > 10


def test_default_datasets_list_and_query_no_project(agent_sim: Simulator, tmp_path: Path) -> None:
    # Any request naming a project (an ARM list by the projects' type, a Resource Graph query for them,
    # metric definitions or a getBatch of project ids) would be refused and show up as a failure.
    before = agent_sim.faults.fired["403"]
    agent_sim.faults.add(FaultRule(route="*", kind="403", match="projects"))
    try:
        report, documents = run_cycle(agent_sim, tmp_path)
    finally:
        agent_sim.faults.clear()
    assert report.ok, report.failures
    assert agent_sim.faults.fired["403"] == before
    assert AI_FOUNDRY_AGENT.name not in report.stored_by_dataset and not agent_documents(documents)
    # Discovery made one ARM list per subscription, as before projects existed.
    assert agent_sim.call_count("resources") == len(agent_sim.subscription_ids)
    polled = [a for a in agent_sim.accounts if a.kind in ("OpenAI", "AIServices")]
    assert report.accounts == len(polled)


@pytest.mark.parametrize("datasets", [None, ALL])
def test_discover_lists_projects_only_with_the_agent_stream(
    agent_sim: Simulator, tmp_path: Path, datasets: list[str] | None
) -> None:
    data = poller_config(agent_sim, tmp_path, **({"datasets": datasets} if datasets else {}))
    path = write_config(data, tmp_path / "poller.yaml")
    accounts = sum(a.kind in ("OpenAI", "AIServices") for a in agent_sim.accounts)
    projects = len(agent_sim.projects) if datasets else 0

    listed = command("discover", "--json", "--config", str(path))
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert sum(row["type"] == PROJECT_TYPE for row in rows) == projects
    assert len(rows) == accounts + projects
    if datasets:
        assert {row["id"].lower() for row in rows if row["type"] == PROJECT_TYPE} == {p.key for p in agent_sim.projects}

    table = command("discover", "--config", str(path))
    assert table.returncode == 0, table.stderr
    also = f" and {projects} projects" if projects else ""
    assert table.stdout.splitlines()[-1] == f"{accounts} accounts{also}"


def test_validate_probes_the_projects_in_their_own_namespace(agent_sim: Simulator, tmp_path: Path) -> None:
    """One more real metrics call per (subscription, region) for the projects, with an agent metric."""
    data = poller_config(agent_sim, tmp_path, datasets=ALL)
    path = write_config(data, tmp_path / "poller.yaml")
    projects = agent_sim.projects
    pairs = {(p.subscription_id, p.location) for p in projects}
    before = agent_sim.call_count("getBatch")
    result = command("validate", "--config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert f"and {len(projects)} projects)" in next(line for line in lines if line.startswith("azure discovery: ok"))
    probed = [line for line in lines if "(Foundry projects): ok (getBatch" in line]
    assert len(probed) == len(pairs)
    assert sum(int(line.rsplit("(getBatch, ", 1)[1].split()[0]) for line in probed) == len(projects)
    # The accounts' probes as before, and one per (subscription, region) of projects: a project id sent
    # with the accounts' namespace would be refused (400), which validate would report as FAILED.
    accounts = {(a.subscription_id, a.location) for a in agent_sim.accounts if a.kind in ("OpenAI", "AIServices")}
    assert agent_sim.call_count("getBatch") - before == len(accounts) + len(pairs)
