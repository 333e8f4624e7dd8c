"""One benchmark run in a fresh process: `python -m tests.benchmarks.worker '<json>'` prints one JSON line.

Kinds: `cycle` (B1, B2, B4: the poller against the simulator in a child process), `shards` (B2 split
over `shards` poller processes, one per shard as `shard.count` deploys them, against one simulator) and
`pipeline` (B3: Azure response bytes → documents → bulk body, in this process only, timed by CPU).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from metrics_poller import config
from metrics_poller.simulator import SimSpec

REGIONS = ("eastus", "westeurope", "swedencentral", "northeurope")


def sim_spec(params: dict[str, Any]) -> SimSpec:
    return SimSpec(
        seed=int(params.get("seed", 7)),
        subscriptions=int(params["subscriptions"]),
        regions=tuple(params.get("regions", REGIONS)),
        accounts_per_region=int(params["accounts_per_region"]),
        latency=float(params.get("latency", 0.0)),
    )


def _own_usage() -> dict[str, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"cpu": usage.ru_utime + usage.ru_stime, "max_rss_mb": usage.ru_maxrss / 1024}


def poller_config(params: dict[str, Any], azure: dict[str, Any], es_url: str | None, state: Path) -> config.Config:
    azure = {
        **azure,
        "api": params.get("api", "batch"),
        # No fault is injected: a retry would only hide a bug, so fail fast.
        "retry": {"attempts": 2, "backoff_initial": 0.1, "backoff_max": 1.0},
    }
    data: dict[str, Any] = {
        "azure": azure,
        "state": {"backend": "file", "path": str(state)},
        "http": {"listen": None},
        "max_backfill": int(params.get("max_backfill", 86400)),
        "period": int(params.get("period", 300)),
    }
    if "inventory" in params:  # on by default, as in a deployed poller
        data["inventory"] = {"enabled": bool(params["inventory"])}
    if "datasets" in params:
        data["datasets"] = list(params["datasets"])
    if "concurrency" in params:  # else the product's default
        azure["concurrency"] = int(params["concurrency"])
    if "shard" in params:
        data["shard"] = {"index": int(params["shard"]), "count": int(params["shards"])}
    if es_url is not None:
        data["output"] = "elasticsearch"
        data["elasticsearch"] = {"hosts": [es_url]}
    else:
        data["output"] = "ndjson"
        data["ndjson"] = {"path": os.devnull}
    return config.parse(data, environ={})


async def _cycle(params: dict[str, Any]) -> dict[str, Any]:
    from metrics_poller.runtime import create_poller
    from tests.benchmarks.services import Services

    spec = sim_spec(params)
    outage = float(params.get("outage_hours", 0))
    with Services(spec, elasticsearch=params.get("sink") == "es") as svc, tempfile.TemporaryDirectory() as tmp:
        cfg = poller_config(params, svc.azure, svc.es_url, Path(tmp) / "cursors.json")
        now = datetime.fromisoformat(params["now"]) if "now" in params else datetime.now(UTC)
        poller = await create_poller(cfg)
        try:
            if outage:
                # The last cycle before the outage sets every cursor; only the catch-up is measured.
                before = await poller.run_cycle(now - timedelta(hours=outage))
                if not before.ok:
                    raise RuntimeError(f"pre-outage cycle failed: {before.failures[:3]}")
                svc.reset()
            elif params.get("warm"):
                # Discovery and definitions cached, as in every cycle of a running service but the first.
                await poller.run_cycle(now - timedelta(minutes=5))
                svc.reset()
            sim_cpu0 = svc.rusage()["cpu"]
            cpu0, wall0 = time.process_time(), time.perf_counter()
            # An explicit deadline: the period's own would cut a long backfill (B4) short. As in the
            # service, the cycle ends once its metrics are stored; inventory reads still running then
            # are joined afterwards, and how much longer they took is reported apart.
            report = await poller.run_cycle(now, deadline=time.monotonic() + 3600, wait_for_inventory=False)
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            pending = report.inventory_pending
            await poller.join_inventory(report)
            inventory_after = time.perf_counter() - wall0 - wall
            cpu_after = time.process_time() - cpu0 - cpu
            sim_cpu = svc.rusage()["cpu"] - sim_cpu0
        finally:
            await poller.close()
        calls = svc.calls()
        stored = svc.es_count() if svc.es_url else None
    by_route: dict[str, int] = {}
    for (route, _status), n in calls.items():
        by_route[route] = by_route.get(route, 0) + n
    return {
        "ok": report.ok,
        "failures": [f"{f.scope} {f.target}: {f.reason}" for f in report.failures[:5]],
        "accounts": report.accounts,
        "projects": report.projects,
        "units": report.units,
        "queries": report.queries,
        "azure_calls": report.azure_calls,
        "calls_by_route": by_route,
        "calls_by_status": {f"{r} {s}": n for (r, s), n in sorted(calls.items())},
        "documents": sum(report.documents.values()),
        "documents_by_outcome": dict(report.documents),
        "documents_by_dataset": dict(report.stored_by_dataset),
        "inventory_documents": sum(report.inventory_documents.values()),
        "inventory_pending": pending,
        "inventory_after": inventory_after,  # seconds from the cycle's end until the inventory was written
        "cpu_after": cpu_after,
        "es_stored": stored,
        "wall": wall,
        "cpu": cpu,
        "sim_cpu": sim_cpu,
        "max_rss_mb": _own_usage()["max_rss_mb"],
    }


async def _shard(params: dict[str, Any]) -> dict[str, Any]:
    """One shard's poller against the parent's simulator: `ready` once built, then one cycle on `go`."""
    from metrics_poller.runtime import create_poller

    with tempfile.TemporaryDirectory() as tmp:
        cfg = poller_config(params, params["azure"], None, Path(tmp) / "cursors.json")
        poller = await create_poller(cfg)
        try:
            print("ready", flush=True)
            await asyncio.to_thread(sys.stdin.readline)
            cpu0, wall0 = time.process_time(), time.perf_counter()
            now = datetime.fromisoformat(params["now"])
            report = await poller.run_cycle(now, deadline=time.monotonic() + 3600, wait_for_inventory=False)
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            await poller.join_inventory(report)
        finally:
            await poller.close()
    return {
        "ok": report.ok,
        "failures": [f"{f.scope} {f.target}: {f.reason}" for f in report.failures[:5]],
        "accounts": report.accounts,
        "azure_calls": report.azure_calls,
        "documents": sum(report.documents.values()),
        "wall": wall,
        "cpu": cpu,
        "max_rss_mb": _own_usage()["max_rss_mb"],
    }


def _sharded(params: dict[str, Any]) -> dict[str, Any]:
    """B2 over `shards` processes: the wall is from the common start to the last shard's end."""
    from tests.benchmarks.services import Services

    count = int(params["shards"])
    now = params.get("now") or datetime.now(UTC).isoformat()
    with Services(sim_spec(params)) as svc:
        children = [
            subprocess.Popen(
                [sys.executable, "-m", "tests.benchmarks.worker",
                 json.dumps({**params, "kind": "shard", "shard": i, "azure": svc.azure, "now": now})],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            )
            for i in range(count)
        ]
        for child in children:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        sim_cpu0 = svc.rusage()["cpu"]
        wall0 = time.perf_counter()
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        outputs = [child.communicate()[0] for child in children]
        wall = time.perf_counter() - wall0
        sim_cpu = svc.rusage()["cpu"] - sim_cpu0
        calls = svc.calls()
    shards = [orjson.loads(out.strip().splitlines()[-1]) for out in outputs]
    return {
        "ok": all(s["ok"] for s in shards),
        "failures": [f for s in shards for f in s["failures"]][:5],
        "shards": count,
        "accounts": sum(s["accounts"] for s in shards),
        "azure_calls": sum(s["azure_calls"] for s in shards),
        "calls_by_route": {route: n for (route, _status), n in calls.items()},
        "documents": sum(s["documents"] for s in shards),
        "wall": wall,
        "cpu": sum(s["cpu"] for s in shards),
        "sim_cpu": sim_cpu,
        "max_rss_mb": sum(s["max_rss_mb"] for s in shards),  # both run at once: their sum is the host's peak
        "shard_rss_mb": [s["max_rss_mb"] for s in shards],
        "shard_wall": [s["wall"] for s in shards],
    }


def run(params: dict[str, Any]) -> dict[str, Any]:
    kind = params["kind"]
    if kind == "cycle":
        return asyncio.run(_cycle(params))
    if kind == "shards":
        return _sharded(params)
    if kind == "shard":
        return asyncio.run(_shard(params))
    if kind == "pipeline":
        from tests.benchmarks.pipeline import measure

        return measure(params)
    raise ValueError(f"unknown kind {kind!r}")


def main() -> None:
    params = json.loads(sys.argv[1])
    gc.collect()
    result = run(params)
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    main()
