"""`python -m tests.benchmarks` (make bench): run B1–B4, write .bench/results.json and BENCHMARKS.md.

Every measurement is a fresh `python -m tests.benchmarks.worker` process (its own CPU time and peak
RSS); figures are medians over `--runs` runs. `--only B2,B3` runs some, `--quick` uses small estates.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from metrics_poller import datasets
from tests.benchmarks.report import render

ROOT = Path(__file__).resolve().parents[2]
REGIONS = 4
SUBSCRIPTIONS = 3
# Request groups of the default datasets (azure.open_ai and azure.ai_foundry): one call each per batch.
GROUPS = sum(len(d.groups) for d in datasets.select(None))


def worker(params: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.worker", json.dumps(params)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"worker {params} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_wall"] = time.perf_counter() - started
    if result.get("ok") is False:
        raise RuntimeError(f"worker {params} reported failures: {result.get('failures')}")
    return result


def repeat(params: dict[str, Any], runs: int, label: str) -> dict[str, Any]:
    results = []
    for n in range(runs):
        print(f"  {label}: run {n + 1}/{runs}", flush=True)
        results.append(worker(params))
    numeric = {k for k, v in results[0].items() if isinstance(v, int | float) and not isinstance(v, bool)}
    median = {k: statistics.median(r[k] for r in results) for k in numeric}
    return {"params": params, "median": median, "runs": results}


def batch_floor(accounts_per_pair: int, pairs: int, windows: int = 1) -> int:
    """Σ over (subscription, region) of ceil(accounts / 50) × metric groups × windows."""
    return pairs * math.ceil(accounts_per_pair / 50) * GROUPS * windows


def agent_floor(per_region: int) -> int:
    """The floor of the opt-in agent dataset: Σ over (subscription, region) of ceil(projects / 50) × its
    groups, counting the simulated estate's Foundry projects (0–2 per AIServices account)."""
    from metrics_poller.simulator.world import build_world
    from tests.benchmarks.worker import sim_spec

    world = build_world(sim_spec({"subscriptions": SUBSCRIPTIONS, "accounts_per_region": per_region}))
    per_pair = Counter((p.subscription_id, p.location) for p in world.projects)
    return sum(math.ceil(n / 50) for n in per_pair.values()) * len(datasets.AI_FOUNDRY_AGENT.groups)


def b1(args: argparse.Namespace) -> dict[str, Any]:
    per_region = args.b1_accounts_per_region
    # Metric calls only: per-resource mode spends the ARM read bucket that the inventory shares, which
    # would then leave its share for the next cycle and fail this one.
    base = {
        "kind": "cycle",
        "subscriptions": SUBSCRIPTIONS,
        "accounts_per_region": per_region,
        "latency": 0.0,
        "inventory": False,
    }
    batch = repeat({**base, "api": "batch"}, args.runs, "B1 getBatch")
    arm = repeat({**base, "api": "arm", "concurrency": 64}, 1, "B1 per-resource (count is deterministic)")
    every = repeat({**base, "api": "batch", "datasets": list(datasets.BY_NAME)}, 1, "B1 getBatch, every dataset")
    floor = batch_floor(per_region, SUBSCRIPTIONS * REGIONS)
    batch_calls = batch["median"]["azure_calls"]
    arm_calls = arm["median"]["azure_calls"]
    return {
        "every_dataset": {
            "run": every,
            "floor": floor + agent_floor(per_region),
            "calls": every["median"]["azure_calls"],
            "projects": every["median"].get("projects", 0),
        },
        "accounts": batch["median"]["accounts"],
        "pairs": SUBSCRIPTIONS * REGIONS,
        "groups": GROUPS,
        "floor": floor,
        "batch": batch,
        "arm": arm,
        "batch_calls": batch_calls,
        "arm_calls": arm_calls,
        "over_floor": batch_calls / floor - 1,
        "ratio": arm_calls / batch_calls,
    }


def b2(args: argparse.Namespace) -> dict[str, Any]:
    out = {}
    for per_region in args.b2_accounts_per_region:
        params = {
            "kind": "cycle",
            "subscriptions": SUBSCRIPTIONS,
            "accounts_per_region": per_region,
            "latency": args.latency,
            "sink": args.sink,
        }
        out[str(per_region)] = repeat(params, args.runs, f"B2 {per_region * SUBSCRIPTIONS * REGIONS} accounts")
    return out


def b3(args: argparse.Namespace) -> dict[str, Any]:
    per_region = args.b3_accounts_per_region
    params = {"kind": "pipeline", "subscriptions": SUBSCRIPTIONS, "accounts_per_region": per_region, "repeats": 1}
    return repeat(params, args.runs, "B3 pipeline")


def b4(args: argparse.Namespace) -> dict[str, Any]:
    per_region = args.b4_accounts_per_region
    params = {
        "kind": "cycle",
        "subscriptions": SUBSCRIPTIONS,
        "accounts_per_region": per_region,
        "latency": args.latency,
        "outage_hours": args.b4_hours,
        "max_backfill": 86400,
    }
    label = f"B4 {args.b4_hours} h catch-up, {per_region * SUBSCRIPTIONS * REGIONS} accounts"
    result = repeat(params, args.b4_runs, label)
    result["floor"] = batch_floor(per_region, SUBSCRIPTIONS * REGIONS, windows=args.b4_hours)
    result["floor_1000"] = batch_floor(84, SUBSCRIPTIONS * REGIONS, windows=24)
    return result


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) // 1024
    except OSError:
        pass
    return {
        "uname": " ".join(platform.uname()),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_mb": memory,
        "python": sys.version.split()[0],
        # Other work on the machine competes for the two cores: the load average says how much.
        "loadavg_at_start": os.getloadavg()[0],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks", description=__doc__)
    parser.add_argument("--only", default="B1,B2,B3,B4", help="comma-separated scenarios (B1,B2,B3,B4)")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure; the median is reported (3)")
    parser.add_argument("--latency", type=float, default=0.1, help="simulated seconds per Azure call, B2/B4 (0.1)")
    parser.add_argument("--sink", choices=("ndjson", "es"), default="ndjson", help="B2 output (NDJSON on /dev/null)")
    parser.add_argument("--b1-accounts-per-region", type=int, default=84, help="per (subscription, region) (84)")
    parser.add_argument(
        "--b2-accounts-per-region", type=lambda t: [int(x) for x in t.split(",")], default=[84, 834]
    )
    parser.add_argument("--b3-accounts-per-region", type=int, default=84, help="(84 = 1,008 accounts)")
    parser.add_argument("--b4-accounts-per-region", type=int, default=84, help="(84 = 1,008 accounts)")
    parser.add_argument("--b4-runs", type=int, default=3, help="runs of B4 (3)")
    parser.add_argument("--b4-hours", type=int, default=24, help="hours of outage B4 catches up (24)")
    parser.add_argument("--quick", action="store_true", help="tiny estates, no latency, one run (a smoke test)")
    parser.add_argument("--results", default=str(ROOT / ".bench" / "results.json"))
    parser.add_argument("--report", default=str(ROOT / "BENCHMARKS.md"), help="'' to skip")
    parser.add_argument("--render-only", action="store_true", help="re-render the report from --results")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.b1_accounts_per_region, args.b2_accounts_per_region = 1, 5, [5]
        # Three hours of catch-up: the 24 one-hour windows of a full B4 would be most of the run.
        args.b3_accounts_per_region, args.b4_accounts_per_region, args.b4_runs, args.b4_hours = 5, 1, 1, 3
        args.latency = 0.0
    results_path = Path(args.results)
    if args.render_only:
        results = json.loads(results_path.read_text())
    else:
        wanted = {s.strip().upper() for s in args.only.split(",") if s.strip()}
        results = json.loads(results_path.read_text()) if results_path.exists() else {}
        results["machine"] = machine()
        results.setdefault("commands", {})
        command = "python -m tests.benchmarks " + " ".join(argv if argv is not None else sys.argv[1:])
        for name, fn in (("B1", b1), ("B2", b2), ("B3", b3), ("B4", b4)):
            if name in wanted:
                print(f"{name} ...", flush=True)
                started = time.perf_counter()
                results[name] = fn(args)
                results[name]["seconds"] = time.perf_counter() - started
                results["commands"][name] = command.strip()
                results_path.parent.mkdir(parents=True, exist_ok=True)
                results_path.write_text(json.dumps(results, indent=1, sort_keys=True))
    if args.report:
        Path(args.report).write_text(render(results))
        print(f"wrote {args.report}")
    print(f"results in {results_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
