"""The command line as the README and `--help` show it, run as the installed `metrics-poller`.

Issue 11, "What was seen" 1–3: `--config` before the subcommand, `backfill --since -7d` with a space,
and Elastic-style durations (`period: 300s`) in the configuration file.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from runtime_support import poller_config, read_ndjson, run_poller, write_config

from metrics_poller.cli import join_relative_times, parse_time
from metrics_poller.simulator import Simulator


def small_config(sim: Simulator, tmp_path: Path, **overrides: Any) -> Path:
    data = poller_config(sim, tmp_path, **overrides)
    data["azure"]["metric_groups"] = ["requests"]
    return write_config(data, tmp_path / "poller.yaml")


def fresh(tmp_path: Path) -> None:
    for name in ("out.ndjson", "cursors.json"):
        (tmp_path / name).unlink(missing_ok=True)


@pytest.mark.parametrize(
    "words",
    [
        ["--config", "{config}", "once"],  # the README's and config/crontab.example's cron line
        ["once", "--config={config}"],
    ],
)
def test_config_before_or_after_the_subcommand(sim: Simulator, tmp_path: Path, words: list[str]) -> None:
    path = small_config(sim, tmp_path)
    result = run_poller(*(w.format(config=path) for w in words))
    assert result.returncode == 0, result.stdout + result.stderr
    assert read_ndjson(tmp_path / "out.ndjson"), "no documents written"


def test_config_after_the_subcommand_wins(sim: Simulator, tmp_path: Path) -> None:
    path = small_config(sim, tmp_path)
    result = run_poller("--config", str(tmp_path / "absent.yaml"), "once", "--config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("since", "until", "hours_ago"),
    [
        (["--since=-90m"], ["--until", "-30m"], (1.5, 0.5)),
        (["--since", "-1w"], ["--until=-167h"], (168, 167)),
    ],
)
def test_backfill_relative_times_with_or_without_equals(
    sim: Simulator, tmp_path: Path, since: list[str], until: list[str], hours_ago: tuple[float, float]
) -> None:
    path = small_config(sim, tmp_path)
    started = datetime.now(UTC)
    result = run_poller("--config", str(path), "backfill", *since, *until)
    assert result.returncode == 0, result.stdout + result.stderr
    stamps = [datetime.fromisoformat(d["@timestamp"]) for d in read_ndjson(tmp_path / "out.ndjson")]
    assert stamps, "backfill wrote nothing"
    oldest, newest = (started - timedelta(hours=h) for h in hours_ago)
    assert oldest - timedelta(minutes=2) <= min(stamps) and max(stamps) <= newest + timedelta(minutes=1)


def test_a_bad_relative_time_is_one_line(sim: Simulator, tmp_path: Path) -> None:
    result = run_poller("backfill", "--since", "-7x", "--config", str(small_config(sim, tmp_path)))
    assert result.returncode == 2
    assert result.stderr.startswith("error: not a relative time: '-7x'") and "-7d" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_elastic_style_durations_in_the_configuration(sim: Simulator, tmp_path: Path) -> None:
    path = small_config(
        sim,
        tmp_path,
        period="300s",
        latency="4m",
        initial_lookback="PT10M",
        max_backfill="1d",
        backfill_step="1h",
        cycle_deadline="4m30s",
    )
    result = run_poller("once", "--config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    stamps = {d["@timestamp"] for d in read_ndjson(tmp_path / "out.ndjson")}
    assert len(stamps) >= 5, "initial_lookback PT10M fetches ten one-minute buckets"


def test_a_period_that_is_not_a_multiple_of_300_seconds_is_refused(sim: Simulator, tmp_path: Path) -> None:
    result = run_poller("once", "--config", str(small_config(sim, tmp_path, period="301s")))
    assert result.returncode == 2 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("config: period: expected a positive multiple of 300 seconds")


def test_relative_times_parse_with_the_duration_parser() -> None:
    now = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    assert parse_time("-90m", now) == now - timedelta(minutes=90)
    assert parse_time("-1w", now) == parse_time("-7d", now) == now - timedelta(days=7)
    assert parse_time("-P1DT12H", now) == now - timedelta(hours=36)
    assert parse_time("2026-01-01T00:00Z", now) == datetime(2026, 1, 1, tzinfo=UTC)
    assert join_relative_times(["backfill", "--since", "-7d", "--until", "-1h", "--config", "-x"]) == [
        "backfill",
        "--since=-7d",
        "--until=-1h",
        "--config",
        "-x",
    ]
