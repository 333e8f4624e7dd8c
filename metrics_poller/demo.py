"""`metrics-poller demo`: one real cycle against the built-in Azure simulator, NDJSON under ./out/.

Everything runs through the production path: real azure-identity credential and Azure SDKs over HTTPS
to the simulator (reached through the same endpoint, authority and CA-bundle settings a sovereign-cloud
user sets), the real planner, shaper and NDJSON sink.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metrics_poller import config
from metrics_poller.cycle import CycleReport

if TYPE_CHECKING:
    from metrics_poller.simulator import SimSpec, Simulator


def run_demo(out_dir: str = "out", accounts_per_region: int = 4, seed: int = 42) -> int:
    from metrics_poller.simulator import Simulator

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    output = out / f"demo-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.ndjson"
    with (
        Simulator(demo_spec(accounts_per_region, seed)) as sim,
        tempfile.TemporaryDirectory(prefix="metrics-poller-demo-") as state_dir,
    ):
        cfg = config.parse(demo_settings(sim, output, Path(state_dir)), environ={})
        print(
            f"simulator: {sim.url} ({len(sim.accounts)} Cognitive Services accounts "
            f"in {len(sim.subscription_ids)} subscriptions)"
        )
        report = asyncio.run(_one_cycle(cfg))
        calls: Counter[str] = Counter()
        for (route, _status), n in sim.calls.items():
            calls[route] += n
    _print_summary(report, calls, output)
    return report.exit_code


def demo_spec(accounts_per_region: int = 4, seed: int = 42) -> SimSpec:
    from metrics_poller.simulator import SimSpec

    return SimSpec(seed=seed, subscriptions=2, accounts_per_region=accounts_per_region, other_accounts_per_region=1)


def demo_settings(sim: Simulator, output: Path, state_dir: Path) -> dict[str, Any]:
    """The demo's configuration: the simulator's estate, NDJSON output, a throw-away cursor file."""
    return {
        "azure": sim.azure_config(),
        "output": "ndjson",
        "ndjson": {"path": str(output)},
        "state": {"backend": "file", "path": str(state_dir / "cursors.json")},
        "http": {"listen": None},
        "logging": {"level": "WARNING"},
        # One cycle: every account's deployments in it, not the usual one-twelfth share.
        "inventory": {"interval": 300},
    }


async def _one_cycle(cfg: config.Config) -> CycleReport:
    from metrics_poller.runtime import create_poller

    poller = await create_poller(cfg)
    try:
        return await poller.run_cycle(collect_totals=True)
    finally:
        await poller.close()


def _print_summary(report: CycleReport, calls: Counter[str], output: Path) -> None:
    print(f"accounts polled: {report.accounts} (kinds OpenAI and AIServices; other kinds filtered out)")
    print("azure calls: " + ", ".join(f"{route} {n}" for route, n in sorted(calls.items())))
    stored = sum(report.documents.values())
    print(f"documents: {stored} written to {output}")
    inventory = sum(report.inventory_documents.values())
    print(
        f"inventory: {inventory} documents (deployments and quotas of {report.inventory_accounts} accounts, "
        "data stream metrics-azure.ai_deployment) in the same file"
    )
    if report.totals:
        print("totals per metric (sum of .total over the window):")
        for name, total in sorted(report.totals.items()):
            print(f"  {name:<36} {total:>16,.2f}" if total % 1 else f"  {name:<36} {total:>16,.0f}")
    if not report.ok:
        for failure in report.failures[:10]:
            print(f"  failed {failure.scope} {failure.target}: {failure.reason}")
    print(report.summary())
