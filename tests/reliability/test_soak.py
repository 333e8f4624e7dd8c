"""Chaos soak: a simulated day of cycles under Azure and Elasticsearch faults and process kills, then
every stored document is compared with the simulator's ground truth.

`make test` runs a short version (30 accounts, 24 cycles = 2 h); `make soak` runs the full one (200 accounts,
288 cycles = 24 h, every metric group) and writes its figures to soak-results.md.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from reliability_support import SoakPlan, SoakResult, run_soak

REPO = Path(__file__).resolve().parents[2]


def check(result: SoakResult) -> None:
    for line in result.lines():
        print(line)
    comparison = result.comparison
    assert result.kills >= 3, "fewer than three kills landed mid-cycle"
    # The outage was met (a cycle stops writing at its first unacknowledged bulk, so not one per cycle).
    assert result.es_faults["bulk_503"] >= 1
    assert sum(result.azure_faults.values()) > 0
    # Issue 13's edges were part of the mix: per-metric errors inside a 200, series-cap refusals (400).
    assert result.azure_faults["metric_error"] > 0
    assert result.azure_calls["getBatch/400"] > 0
    assert comparison.expected > 0
    assert not comparison.missing, comparison.missing[:5]
    assert not comparison.duplicated, comparison.duplicated[:5]
    assert not comparison.unexpected, comparison.unexpected[:5]
    assert not comparison.wrong, comparison.wrong[:5]
    assert comparison.stored == comparison.expected
    # Every (account, group) cursor ends where the last window ends.
    assert result.cursors_at_end == {result.end}, (result.cursors_at_end, result.end)


async def test_short_chaos_soak_stores_exactly_the_ground_truth(tmp_path: Path) -> None:
    plan = SoakPlan(
        cycles=24,
        subscriptions=1,
        regions=("eastus", "westeurope", "swedencentral"),
        accounts_per_region=10,
        groups=("requests", "tokens", "ptu_tokens_total", "ptu_tokens_stats", "rai_system"),
        kills=3,
        request_timeout=1.0,
    )
    result = await run_soak(plan, tmp_path)
    assert result.accounts == 30 and result.cycles == 24
    check(result)


@pytest.mark.soak
@pytest.mark.timeout(3600)
async def test_full_chaos_soak_24h_200_accounts(tmp_path: Path) -> None:
    plan = SoakPlan(
        cycles=288,
        subscriptions=2,
        regions=("eastus", "westeurope", "swedencentral", "japaneast"),
        accounts_per_region=25,
        kills=4,
    )
    result = await run_soak(plan, tmp_path)
    assert result.accounts == 200 and result.cycles == 288
    lines = result.lines()
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    (REPO / "soak-results.md").write_text(
        f"# Chaos soak results ({when})\n\n`make soak` (tests/reliability/test_soak.py):\n\n"
        + "".join(f"- {line}\n" for line in lines)
    )
    check(result)
