"""The installed command as an operator runs it, for what issue 11 saw on a first run: an Elasticsearch
outage flooded the output and kept polling Azure (item 5), and with `ndjson.path: -` the cycle summary
was printed into the document stream (item 8)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from runtime_support import command, poller_config, write_config

from metrics_poller.simulator import SimSpec, Simulator
from metrics_poller.testing.es_server import ElasticsearchServer

REGIONS = ("eastus", "westeurope", "swedencentral")


@pytest.fixture(scope="module")
def estate() -> Iterator[Simulator]:
    """180 Azure OpenAI accounts (2 subscriptions x 3 regions x 30)."""
    with Simulator(SimSpec(seed=11, subscriptions=2, regions=REGIONS, accounts_per_region=30)) as simulator:
        yield simulator


def test_an_elasticsearch_outage_is_a_few_lines_and_stops_polling_azure(estate: Simulator, tmp_path: Path) -> None:
    accounts = sum(1 for a in estate.accounts if a.kind in ("OpenAI", "AIServices"))
    assert accounts == 180
    with ElasticsearchServer() as es:
        data = poller_config(estate, tmp_path, output="elasticsearch", azure={"concurrency": 2})
        data.pop("ndjson")
        data["elasticsearch"] = {"hosts": [es.url], "retry_attempts": 2, "request_timeout": 5}
        path = write_config(data, tmp_path / "poller.yaml")
        # Up for the preflight and the templates, then every bulk request loses its connection
        # (what a stopped cluster looks like to the client, "Node ... has failed" included).
        es.inject("reset", times=1_000_000)
        estate.reset_calls()
        result = command("once", "--config", str(path), env={"METRICS_POLLER__LOGGING__FORMAT": "text"})
    assert result.returncode == 3, result.stdout + result.stderr
    lines = (result.stdout + result.stderr).splitlines()
    assert len(lines) <= 20, "\n".join(lines)
    assert "Traceback" not in result.stderr and "Node " not in result.stderr
    summary = [line for line in lines if "Elasticsearch unreachable" in line]
    assert len(summary) == 1, lines
    match = re.search(r"(\d[\d,]*) documents of (\d+) accounts not stored, (\d+) more accounts not fetched", summary[0])
    assert match, summary[0]
    assert int(match.group(2)) + int(match.group(3)) == 180
    assert "they will be fetched again" in summary[0]
    # Azure was asked for the first units in flight only, not for every planned query.
    queries = re.search(r"(\d+) queries", result.stdout)
    # 6 (subscription, region) chunks x 20 groups (13 of azure.open_ai, 7 of azure.ai_foundry)
    assert queries is not None and int(queries.group(1)) == 120
    planned = int(queries.group(1))
    assert estate.call_count("getBatch") <= planned // 10, estate.calls


def test_documents_on_stdout_are_pure_ndjson(estate: Simulator, tmp_path: Path) -> None:
    data = poller_config(estate, tmp_path, ndjson={"path": "-"}, azure={"metric_groups": ["requests"]})
    data["azure"]["resource_ids"] = [a.id for a in estate.accounts[:4]]
    data["azure"]["subscriptions"] = []
    result = command("once", "--config", str(write_config(data, tmp_path / "poller.yaml")))
    assert result.returncode == 0, result.stderr
    documents = [orjson.loads(line) for line in result.stdout.splitlines()]  # every line, not just some
    assert documents and all(d["data_stream"]["dataset"] == "azure.open_ai" for d in documents)
    assert "cycle ok" in result.stderr
