"""How the poller handles what a real Elasticsearch does, driven through the `metrics-poller` command
against the Azure simulator and the Elasticsearch test server (docs/elasticsearch-conformance.md)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from runtime_support import poller_config, write_config

from metrics_poller.simulator import Simulator
from metrics_poller.testing.es_server import ElasticsearchServer

ADMIN_KEY = "admin-key-for-the-tests"
WRITER = {
    "writer": {
        "cluster": ["monitor"],
        "indices": [
            {
                "names": ["metrics-azure.open_ai-*", "metrics-azure.ai_deployment-*"],
                "privileges": ["create_doc", "auto_configure"],
            }
        ],
    }
}
AZURE_ROUTES = ("token", "resources", "resourceGraph", "getBatch", "metrics", "metricDefinitions")
# Several commands per test, each a fresh process: a busy machine needs more than the default 120 s.
pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def es() -> Iterator[ElasticsearchServer]:
    with ElasticsearchServer(api_key=ADMIN_KEY) as server:
        yield server


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("METRICS_POLLER")}
    command = [sys.executable, "-m", "metrics_poller", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=environment)


def es_config(sim: Simulator, es: ElasticsearchServer, tmp_path: Path, key: str = ADMIN_KEY, **es_options: Any) -> Path:
    data = poller_config(sim, tmp_path, output="elasticsearch")
    data["azure"]["metric_groups"] = ["realtime"]
    data["elasticsearch"] = {
        "hosts": [es.url],
        "api_key": key,
        "retry_attempts": 2,
        "dead_letter_path": str(tmp_path / "dead.ndjson"),
        **es_options,
    }
    return write_config(data, tmp_path / "poller.yaml")


def azure_calls(sim: Simulator) -> int:
    return sum(sim.call_count(route) for route in AZURE_ROUTES)


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def stored(es: ElasticsearchServer) -> int:
    return len(es.documents("metrics-azure.open_ai-default"))


def failure_store_for_every_document(es: ElasticsearchServer) -> None:
    """An operator's @custom component: failure store on, and a mapping every document breaks."""
    custom = {
        "template": {
            "data_stream_options": {"failure_store": {"enabled": True}},
            "mappings": {"properties": {"cloud": {"properties": {"region": {"type": "long"}}}}},
        }
    }
    with es.store.lock:
        es.store.put_component_template("metrics-poller-azure.open_ai@custom", custom)


# ------------------------------------------------------------------------------------------ pipelines


def test_a_missing_pipeline_stops_once_before_any_azure_call(
    sim: Simulator, es: ElasticsearchServer, tmp_path: Path
) -> None:
    path = es_config(sim, es, tmp_path, pipeline="enrich-azure")
    assert cli("setup", "--config", str(path)).returncode == 0
    sim.reset_calls()
    result = cli("once", "--config", str(path))
    assert result.returncode == 2, result.stdout + result.stderr
    assert error_lines(result) == [
        "error: elasticsearch.pipeline: ingest pipeline 'enrich-azure' does not exist in Elasticsearch; "
        "create it or remove the setting"
    ]
    assert azure_calls(sim) == 0

    validated = cli("validate", "--config", str(path))
    assert validated.returncode == 2
    assert [line for line in validated.stdout.splitlines() if "FAILED" in line] == [
        "elasticsearch: FAILED: elasticsearch.pipeline: ingest pipeline 'enrich-azure' does not exist in "
        "Elasticsearch; create it or remove the setting"
    ]

    with es.store.lock:
        es.store.pipelines["enrich-azure"] = {"processors": []}
    assert cli("once", "--config", str(path)).returncode == 0
    assert stored(es) > 0


# ------------------------------------------------------------------------------ one error for everything


def test_a_batch_refused_whole_for_one_reason_stops_with_that_reason(
    sim: Simulator, es: ElasticsearchServer, tmp_path: Path
) -> None:
    """A writer-only key and no templates: every item is refused alike (require_data_stream), so the
    poller says why once and stops, instead of dead-lettering the whole estate."""
    writer = es.create_api_key("writer", WRITER)
    path = es_config(sim, es, tmp_path, key=writer)
    result = cli("once", "--config", str(path))
    assert result.returncode == 2, result.stdout + result.stderr
    errors = [line for line in error_lines(result) if line.startswith("error:")]
    assert len(errors) == 1
    assert "requires a data stream" in errors[0] and "metrics-poller setup" in errors[0]
    assert len(result.stderr.splitlines()) <= 5
    assert not (tmp_path / "dead.ndjson").exists()
    assert "metrics-azure.open_ai-default" not in es.store.indices  # never a plain index
    bulks = [r for r in es.recent if r.path.endswith("_bulk")]
    assert bulks and all(r.query.get("require_data_stream") == "true" for r in bulks)


def test_a_writer_only_key_passes_validate_and_writes_after_setup(
    sim: Simulator, es: ElasticsearchServer, tmp_path: Path
) -> None:
    assert cli("setup", "--config", str(es_config(sim, es, tmp_path))).returncode == 0
    path = es_config(sim, es, tmp_path, key=es.create_api_key("writer", WRITER))
    validated = cli("validate", "--config", str(path))
    assert validated.returncode == 0, validated.stdout + validated.stderr
    assert "elasticsearch: privileges ok for writing metrics-azure.open_ai-default" in validated.stdout
    assert "manage_index_templates" in validated.stdout and "setup" in validated.stdout  # said, not failed

    refused = cli("setup", "--config", str(path))
    assert refused.returncode == 3 and "manage_index_templates" in refused.stderr

    result = cli("once", "--config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert stored(es) > 0


def test_validate_names_a_missing_write_privilege(sim: Simulator, es: ElasticsearchServer, tmp_path: Path) -> None:
    reader = es.create_api_key(
        "r", {"r": {"cluster": ["monitor"], "indices": [{"names": ["*"], "privileges": ["read"]}]}}
    )
    result = cli("validate", "--config", str(es_config(sim, es, tmp_path, key=reader)))
    assert result.returncode == 3
    failed = [line for line in result.stdout.splitlines() if "FAILED" in line]
    assert len(failed) == 1 and "create_doc on metrics-azure.open_ai-default" in failed[0]


# ------------------------------------------------------------------------------------------ versions


@pytest.mark.parametrize("command", ["setup", "validate"])
def test_setup_and_validate_refuse_clusters_older_than_8_13(sim: Simulator, tmp_path: Path, command: str) -> None:
    with ElasticsearchServer(version="8.12.2") as old:
        result = cli(command, "--config", str(es_config(sim, old, tmp_path, key="")))
        assert old.store.index_templates == {}
    text = result.stdout + result.stderr
    assert result.returncode == 2, text
    assert "Elasticsearch 8.12.2 is not supported: metrics-poller needs 8.13 or later" in text
    assert sum("8.12.2" in line for line in text.splitlines()) == 1


# ------------------------------------------------------------------------------------------ failure store


def test_documents_in_the_failure_store_are_counted_apart(
    sim: Simulator, es: ElasticsearchServer, tmp_path: Path
) -> None:
    path = es_config(sim, es, tmp_path)
    assert cli("setup", "--config", str(path)).returncode == 0
    failure_store_for_every_document(es)
    result = cli("once", "--config", str(path))
    assert result.returncode == 1, result.stdout + result.stderr
    failed = len(es.failure_documents("metrics-azure.open_ai-default"))
    assert failed > 0 and stored(es) == 0
    summary = next(line for line in result.stdout.splitlines() if line.startswith("cycle "))
    assert f"failure_store {failed}" in summary and "created" not in summary
    assert not (tmp_path / "dead.ndjson").exists()  # Elasticsearch kept them: nothing to dead-letter


# --------------------------------------------------------------------------------------------- limits


def test_a_413_splits_the_batch_until_it_fits(sim: Simulator, tmp_path: Path) -> None:
    with ElasticsearchServer(max_content_length=24 * 1024) as small:
        path = es_config(sim, small, tmp_path, key="")
        assert cli("setup", "--config", str(path)).returncode == 0
        result = cli("once", "--config", str(path))
        assert result.returncode == 0, result.stdout + result.stderr
        created = int(
            next(line for line in result.stdout.splitlines() if line.startswith("cycle "))
            .split("created ")[1]
            .split(",")[0]
        )
        assert created > 0 and stored(small) == created
        assert small.requests["PUT _bulk"] > 2


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"look_back": "8d"}, "elasticsearch.look_back"),
        ({"look_back": "30s"}, "elasticsearch.look_back"),
        ({"batch_bytes": 100 * 1024 * 1024}, "elasticsearch.batch_bytes"),
    ],
)
def test_out_of_range_elasticsearch_settings_are_one_line(
    sim: Simulator, es: ElasticsearchServer, tmp_path: Path, options: dict[str, Any], named: str
) -> None:
    sim.reset_calls()
    result = cli("once", "--config", str(es_config(sim, es, tmp_path, **options)))
    assert result.returncode == 2
    lines = error_lines(result)
    assert len(lines) == 1 and named in lines[0], lines
    assert azure_calls(sim) == 0


def test_tsds_with_backfill_beyond_look_back_names_both_keys(
    sim: Simulator, es: ElasticsearchServer, tmp_path: Path
) -> None:
    path = es_config(sim, es, tmp_path, tsds=True, look_back="2h")
    data = yaml.safe_load(path.read_text())
    data["max_backfill"] = 6 * 3600
    result = cli("once", "--config", str(write_config(data, path)))
    assert result.returncode == 2
    lines = error_lines(result)
    assert len(lines) == 1 and "max_backfill" in lines[0] and "elasticsearch.look_back" in lines[0], lines


def test_run_stops_with_exit_2_when_every_write_is_refused_alike(
    sim: Simulator, es: ElasticsearchServer, tmp_path: Path
) -> None:
    """`run` does not retry every period what the cluster will refuse every time: it says why and exits."""
    path = es_config(sim, es, tmp_path, key=es.create_api_key("writer", WRITER))
    result = cli("run", "--config", str(path))
    assert result.returncode == 2, result.stdout + result.stderr
    assert sum("requires a data stream" in line for line in result.stderr.splitlines()) == 1


async def test_failure_store_documents_have_their_own_metric_label(
    sim: Simulator, es: ElasticsearchServer, tmp_path: Path
) -> None:
    from metrics_poller import config, telemetry
    from metrics_poller.runtime import create_poller

    path = es_config(sim, es, tmp_path)
    failure_store_for_every_document(es)

    def sample(outcome: str) -> float:
        value = telemetry.REGISTRY.get_sample_value("metrics_poller_documents_total", {"outcome": outcome})
        return value or 0.0

    before = {o: sample(o) for o in ("failure_store", "created", "permanent")}
    poller = await create_poller(config.load(path, environ={}))
    try:
        report = await poller.run_cycle()
    finally:
        await poller.close()
    kept = len(es.failure_documents("metrics-azure.open_ai-default"))
    assert kept > 0 and report.documents["failure_store"] == kept
    assert sample("failure_store") - before["failure_store"] == kept
    assert sample("created") == before["created"] and sample("permanent") == before["permanent"]
    assert report.failed_accounts  # not stored: those windows are fetched again, never skipped


def test_make_demo_es_runs_setup_validate_and_once(tmp_path: Path) -> None:
    """The Makefile's demo-es recipe, with its output directory under tmp_path."""
    makefile = (Path(__file__).parents[2] / "Makefile").read_text()
    recipe = makefile.split("\ndemo-es:", 1)[1].splitlines()[1].strip()
    assert recipe == "$(BIN)/python -m metrics_poller.testing.demo_es"
    command = [sys.executable, "-m", "metrics_poller.testing.demo_es", str(tmp_path / "demo-es")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    for step in ("setup", "validate", "once"):
        assert f"$ metrics-poller {step} --config" in result.stdout
    assert "cycle ok:" in result.stdout
    stored = int(result.stdout.rsplit("documents in metrics-azure.open_ai-default: ", 1)[1].split()[0])
    assert stored > 0
