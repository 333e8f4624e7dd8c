"""`make bench`'s harness, run end to end on tiny estates (`--quick`), so it cannot rot unnoticed.

Only that it runs and counts right is checked here: speed is what `make bench` itself reports.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path


def test_quick_run_measures_all_four_and_writes_the_report(repo: Path, tmp_path: Path) -> None:
    results, report = tmp_path / "results.json", tmp_path / "BENCHMARKS.md"
    done = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks", "--quick", "--results", str(results), "--report", str(report)],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    measured = json.loads(results.read_text())
    assert measured["B1"]["batch_calls"] == measured["B1"]["floor"] > 0
    assert measured["B1"]["arm_calls"] > measured["B1"]["batch_calls"]
    every = measured["B1"]["every_dataset"]  # the agent stream of Foundry projects adds its own floor
    assert every["projects"] > 0 and every["calls"] == every["floor"] > measured["B1"]["floor"]
    b2_runs = [run for entry in measured["B2"].values() if isinstance(entry, dict) for run in entry["runs"]]
    for run in b2_runs + measured["B4"]["runs"]:
        assert run["ok"] and not run["failures"] and run["documents"] > 0, run
    assert measured["B4"]["median"]["azure_calls"] == measured["B4"]["floor"]
    b3 = measured["B3"]["median"]
    assert b3["documents"] > 0 and b3["bulk_bytes"] > b3["documents"]
    assert set(measured["B3"]["runs"][0]["stage_us_per_document"]) == {"decode", "parse", "shape", "bulk"}
    text = report.read_text()
    for heading in ("## B1 API cost", "## B2 Cycle", "## B3 Throughput", "## B4 Catch-up", "## Machine"):
        assert heading in text


def test_a_sharded_cycle_covers_every_account_once(repo: Path) -> None:
    """The `shards` measurement: `shard.count` poller processes against one simulator poll every account
    exactly once between them and store every document of a single process's cycle."""
    now = datetime.now(UTC).isoformat()  # one window for both measurements
    estate = {"subscriptions": 1, "regions": ["eastus", "westeurope"], "accounts_per_region": 6, "latency": 0}
    estate["now"] = now

    def measure(params: dict[str, object]) -> dict[str, object]:
        done = subprocess.run(
            [sys.executable, "-m", "tests.benchmarks.worker", json.dumps({**estate, **params})],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
        assert result["ok"], result["failures"]
        return result

    single = measure({"kind": "cycle", "inventory": False})
    sharded = measure({"kind": "shards", "shards": 2, "inventory": False})
    assert sharded["accounts"] == single["accounts"] == 12
    assert sharded["documents"] == single["documents"]
    assert len(sharded["shard_wall"]) == 2  # type: ignore[arg-type]
