"""The `metrics-poller` command: argument parsing and dispatch to the subcommands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from metrics_poller import __version__

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="metrics-poller",
        description="Poll Azure Monitor metrics of Azure OpenAI accounts into Elasticsearch.",
    )
    parser.add_argument("--version", action="version", version=f"metrics-poller {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    from metrics_poller.simulator import cli as simulator_cli

    simulate = commands.add_parser("simulate", help="serve the built-in Azure simulator")
    simulator_cli.add_arguments(simulate)
    simulate.set_defaults(handler=simulator_cli.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
