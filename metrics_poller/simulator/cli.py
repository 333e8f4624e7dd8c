"""`metrics-poller simulate`: serve the Azure simulator until interrupted."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from metrics_poller.simulator.server import Simulator
from metrics_poller.simulator.spec import FAULT_KINDS, ROUTES, FaultRule, SimSpec

FAULT_HELP = (
    "inject a fault, ROUTE:KIND[:TIMES[:PROBABILITY]] (repeatable), e.g. getBatch:429:3 or *:500::0.1; "
    f"ROUTE is * or one of {', '.join(ROUTES)}; KIND one of {', '.join(FAULT_KINDS)}"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `simulate` options."""
    parser.description = (
        "Serve a simulated Azure (Entra ID tokens, ARM discovery, metric definitions, ARM metrics and "
        "metrics:getBatch) over HTTPS on loopback, with its own CA. Runs until SIGINT or SIGTERM."
    )
    parser.add_argument("--seed", type=int, default=42, help="seed of the simulated estate and its data (42)")
    parser.add_argument("--subscriptions", type=int, default=2, help="number of subscriptions (2)")
    parser.add_argument(
        "--regions",
        type=_regions,
        default=("eastus", "westeurope", "swedencentral"),
        help="comma-separated regions (eastus,westeurope,swedencentral)",
    )
    parser.add_argument(
        "--accounts-per-region",
        type=int,
        default=3,
        help="OpenAI/AIServices accounts per subscription and region (3)",
    )
    parser.add_argument(
        "--other-accounts-per-region",
        type=int,
        default=1,
        help="other Cognitive Services accounts (Speech, Face, ...) per subscription and region (1)",
    )
    parser.add_argument("--resource-groups", type=int, default=2, help="resource groups per subscription (2)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every response (0)")
    parser.add_argument(
        "--publication-delay",
        type=float,
        default=0.0,
        help="seconds before a minute's data appears; the newest data within twice this is partial (0)",
    )
    parser.add_argument("--page-size", type=int, default=100, help="ARM resource list page size (100)")
    parser.add_argument(
        "--batch-missing-resource",
        choices=("omit", "error"),
        default="omit",
        help="getBatch with an unknown id: omit it from values[] or fail the call with 400 (omit)",
    )
    parser.add_argument("--arm-rate-limit", action="store_true", help="throttle ARM reads (250, refill 25/s)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on; 0 picks a free one (0)")
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        type=_fault,
        metavar="ROUTE:KIND[:TIMES[:PROBABILITY]]",
        help=FAULT_HELP,
    )
    parser.add_argument(
        "--retry-after",
        type=int,
        default=1,
        help="Retry-After seconds sent with injected 429 and 503 answers (1)",
    )
    parser.add_argument(
        "--write-config",
        metavar="PATH",
        help="write a poller configuration (azure: section pointing here, output: ndjson) to PATH",
    )


def _regions(text: str) -> tuple[str, ...]:
    regions = tuple(r.strip().lower() for r in text.split(",") if r.strip())
    if not regions:
        raise argparse.ArgumentTypeError("expected at least one region, e.g. eastus,westeurope")
    return regions


def parse_fault(text: str, retry_after: int | None = 1) -> FaultRule:
    """`ROUTE:KIND[:TIMES[:PROBABILITY]]` → FaultRule (empty TIMES = unlimited)."""
    parts = text.split(":")
    if not 2 <= len(parts) <= 4:
        raise ValueError(f"expected ROUTE:KIND[:TIMES[:PROBABILITY]], got {text!r}")
    times = int(parts[2]) if len(parts) > 2 and parts[2] else None
    probability = float(parts[3]) if len(parts) > 3 and parts[3] else 1.0
    return FaultRule(route=parts[0], kind=parts[1], times=times, probability=probability, retry_after=retry_after)


def _fault(text: str) -> FaultRule:
    try:
        return parse_fault(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def spec_from_args(args: argparse.Namespace) -> SimSpec:
    return SimSpec(
        seed=args.seed,
        subscriptions=args.subscriptions,
        regions=tuple(args.regions),
        accounts_per_region=args.accounts_per_region,
        other_accounts_per_region=args.other_accounts_per_region,
        resource_groups_per_subscription=args.resource_groups,
        publication_delay=args.publication_delay,
        latency=args.latency,
        page_size=args.page_size,
        batch_missing_resource=args.batch_missing_resource,
        arm_rate_limit=args.arm_rate_limit,
    )


def poller_config(sim: Simulator) -> dict[str, Any]:
    return {"output": "ndjson", "azure": sim.azure_config()}


def run(args: argparse.Namespace) -> int:
    """Start the simulator, print how to reach it, serve until SIGINT/SIGTERM."""
    try:
        spec = spec_from_args(args)
    except ValueError as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with Simulator(spec, host=args.host, port=args.port) as sim:
            for rule in args.fault:
                sim.faults.add(replace(rule, retry_after=args.retry_after))
            if args.write_config:
                Path(args.write_config).write_text(yaml.safe_dump(poller_config(sim), sort_keys=False))
            _announce(sim, args.write_config)
            while not stop.wait(0.5):
                pass
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0


def _announce(sim: Simulator, config_path: str | None) -> None:
    kinds = sum(1 for a in sim.accounts if a.kind in ("OpenAI", "AIServices"))
    lines = [
        f"url: {sim.url}",
        f"ca_bundle: {sim.ca_path}",
        f"tenant_id: {sim.tenant_id}",
        f"client_id: {sim.client_id}",
        f"subscriptions: {', '.join(sim.subscription_ids)}",
        f"accounts: {len(sim.accounts)} ({kinds} OpenAI/AIServices)",
    ]
    if config_path:
        lines.append(f"config: {config_path}")
    lines.append("serving; stop with Ctrl-C")
    print("\n".join(lines), flush=True)
