"""The `metrics-poller` command: argument parsing and the subcommands.

Exit codes: 0 success; 1 partial (some accounts failed, listed); 2 configuration or usage error;
3 Azure or Elasticsearch unreachable as a whole. User errors print one line each, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from metrics_poller import __version__, config, datasets, preflight
from metrics_poller.cycle import CycleReport, Unreachable
from metrics_poller.discovery import DiscoveryError
from metrics_poller.durations import parse_seconds

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
log = logging.getLogger("metrics_poller")


class UsageError(Exception):
    """A user error outside the configuration file (bad argument, bad environment)."""


# ------------------------------------------------------------------------------------------ helpers


def load_config(args: argparse.Namespace, *, needs_targets: bool = True) -> config.Config:
    path = config.resolve_path(getattr(args, "config", None))
    cfg = config.load(path)
    if needs_targets and not (cfg.azure.subscriptions or cfg.azure.resource_ids):
        where = f" in {path}" if path else " (no configuration file found)"
        expected = "expected azure.subscriptions or azure.resource_ids"
        raise config.ConfigError([f"config: azure.subscriptions: no Azure targets{where}; {expected}"])
    return cfg


def _setup_logging(cfg: config.Config | None = None) -> None:
    from metrics_poller.telemetry import setup_logging

    setup_logging(cfg.logging.level if cfg else "INFO", cfg.logging.format if cfg else "auto")


def _warn_insecure(cfg: config.Config) -> None:
    if not cfg.azure.verify_tls:
        log.warning("TLS certificate verification for Azure is OFF (azure.verify_tls: false)")
    if cfg.output == "elasticsearch" and not cfg.elasticsearch.verify_certs:
        log.warning("TLS certificate verification for Elasticsearch is OFF (elasticsearch.verify_certs: false)")


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """ISO-8601 UTC time (`2026-01-01T00:00Z`, `2026-01-01`) or relative to now (`-90m`, `-24h`, `-7d`, `-1w`)."""
    text = text.strip()
    now = now or datetime.now(UTC)
    if text.startswith("-"):
        try:
            return now - timedelta(seconds=parse_seconds(text[1:]))
        except ValueError as exc:
            raise UsageError(f"not a relative time: {text!r}; {exc} after the minus sign, e.g. -7d") from None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"not a time: {text!r}; expected ISO-8601 such as 2026-01-01T00:00Z, or relative such as -24h or -7d"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def summary_stream(cfg: config.Config) -> TextIO:
    """Where the cycle summary goes: stderr when the documents go to stdout (`ndjson.path: -`), so
    stdout stays valid NDJSON; stdout otherwise."""
    return sys.stderr if cfg.output == "ndjson" and cfg.ndjson.path == "-" else sys.stdout


def print_report(report: CycleReport, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    print(report.summary(), file=out)
    for line in report.cause_lines():
        print(f"  {line}", file=out)


# ------------------------------------------------------------------------------------------ commands


async def _once(cfg: config.Config) -> int:
    from metrics_poller.runtime import create_poller

    poller = await create_poller(cfg)
    try:
        report = await poller.run_cycle()
    finally:
        await poller.close()
    print_report(report, summary_stream(cfg))
    return report.exit_code


def _preflight(cfg: config.Config, command: preflight.Command) -> None:
    """Every output, cursor and listen setting usable and Elasticsearch answering, before any Azure call."""
    asyncio.run(preflight.check(cfg, command))


def cmd_once(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    _setup_logging(cfg)
    _warn_insecure(cfg)
    _preflight(cfg, "once")
    return asyncio.run(_once(cfg))


def cmd_run(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    _setup_logging(cfg)
    _warn_insecure(cfg)
    _preflight(cfg, "run")

    async def main() -> int:
        from metrics_poller.runtime import create_poller
        from metrics_poller.service import Service

        poller = await create_poller(cfg)
        return await Service(poller).run()

    return asyncio.run(main())


def cmd_backfill(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    _setup_logging(cfg)
    since = parse_time(args.since)
    until = parse_time(args.until) if args.until else datetime.now(UTC)
    if since >= until:
        raise UsageError("--since must be before --until")
    if datetime.now(UTC) - since > timedelta(days=93):
        raise UsageError("--since is older than Azure's 93-day metric retention")
    _preflight(cfg, "backfill")
    return asyncio.run(_backfill(cfg, since, until))


async def _backfill(cfg: config.Config, since: datetime, until: datetime) -> int:
    from metrics_poller.cycle import settings_from
    from metrics_poller.planning import CursorKey
    from metrics_poller.runtime import create_poller

    class EveryCursor(dict[CursorKey, datetime]):
        """Every (account, group) starts at `since`: backfill never reads or moves real cursors."""

        def __missing__(self, key: CursorKey) -> datetime:
            return since

        def __contains__(self, key: object) -> bool:
            return True

    settings = settings_from(cfg)
    end = min(until, datetime.now(UTC) - settings.latency)
    span = max(end - since, settings.grain)
    settings = type(settings)(
        grain=settings.grain,
        latency=timedelta(0),
        lookback=span,
        max_backfill=span + settings.grain,
        step=settings.step,
        top=settings.top,
    )
    poller = await create_poller(cfg)
    progress = _progress_bar() if sys.stderr.isatty() else None
    try:
        report = await poller.run_cycle(
            end,
            deadline=float("inf"),
            override_cursors=EveryCursor(),
            settings=settings,
            progress=progress,
        )
    finally:
        await poller.close()
    if progress is not None:
        print(file=sys.stderr)
    print_report(report, summary_stream(cfg))
    return report.exit_code


def _progress_bar() -> Callable[[int, int], None]:
    def show(done: int, total: int) -> None:
        width = 40
        filled = int(width * done / max(total, 1))
        sys.stderr.write(f"\rbackfill [{'#' * filled}{'.' * (width - filled)}] {done}/{total} units")
        sys.stderr.flush()

    return show


def cmd_discover(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    _setup_logging(cfg)

    async def main() -> int:
        from metrics_poller.credentials import build_credential
        from metrics_poller.cycle import owned
        from metrics_poller.discovery import Discoverer
        from metrics_poller.model import PROJECT_TYPE
        from metrics_poller.runtime import shard_index

        credential = build_credential(cfg.azure)
        # The selected datasets' resources: Foundry projects too when the agent stream is on.
        resource_types = {d.resource_type for d in datasets.select(cfg.datasets)}
        discoverer = Discoverer(cfg.azure, credential, resource_types=resource_types)
        try:
            result = await discoverer.accounts()
        finally:
            await discoverer.close()
            await credential.close()
        mine = owned(result.accounts, shard_index(cfg), cfg.shard.count)
        if args.json:
            import orjson

            rows = [
                {
                    "id": a.id,
                    "name": a.name,
                    "subscription_id": a.subscription_id,
                    "resource_group": a.resource_group,
                    "location": a.location,
                    "kind": a.kind,
                    "type": a.type,
                    "tags": dict(a.tags),
                }
                for a in mine
            ]
            sys.stdout.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
        else:
            print(f"{'SUBSCRIPTION':<36}  {'LOCATION':<16} {'KIND':<11} RESOURCE GROUP/ACCOUNT")
            for a in mine:
                print(f"{a.subscription_id:<36}  {a.location:<16} {a.kind:<11} {a.resource_group}/{a.name}")
            shard_note = f" (of {len(result.accounts)}, this shard)" if len(mine) != len(result.accounts) else ""
            projects = sum(1 for a in mine if a.type == PROJECT_TYPE)
            also = f" and {projects} projects" if projects else ""
            print(f"{len(mine) - projects} accounts{also}{shard_note}")
        for failure in result.failures:
            print(f"  skipped {failure.target}: {failure.reason}", file=sys.stderr)
        return EXIT_PARTIAL if result.failures else EXIT_OK

    return asyncio.run(main())


def cmd_validate(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    _setup_logging(cfg)
    _warn_insecure(cfg)
    asyncio.run(preflight.check(cfg, "validate", preflight.LOCAL_ELASTICSEARCH_CHECKS))
    print("configuration: ok")

    async def main() -> int:
        from metrics_poller.access import check_metrics
        from metrics_poller.azure_http import Pacing, scrub
        from metrics_poller.credentials import build_credential, describe_error, secret_values
        from metrics_poller.cycle import owned
        from metrics_poller.discovery import Discoverer
        from metrics_poller.fetching import Fetcher
        from metrics_poller.model import PROJECT_TYPE
        from metrics_poller.runtime import shard_index

        worst = EXIT_OK
        credential = build_credential(cfg.azure)
        pacing = Pacing()  # discovery and the probes draw on one ARM read budget
        try:
            try:
                await credential.get_token(cfg.azure.endpoints.resource_manager_audience + "/.default")
                print("azure credentials: ok")
            except Exception as exc:
                reason = scrub(describe_error(str(exc)), secret_values(cfg.azure)) or type(exc).__name__
                print(f"azure credentials: FAILED: {reason}")
                return EXIT_UNREACHABLE
            resource_types = {d.resource_type for d in datasets.select(cfg.datasets)}
            discoverer = Discoverer(cfg.azure, credential, pacing=pacing, resource_types=resource_types)
            try:
                result = await discoverer.accounts()
                projects = sum(1 for a in result.accounts if a.type == PROJECT_TYPE)
                also = f" and {projects} projects" if projects else ""
                print(f"azure discovery: ok ({len(result.accounts) - projects} accounts{also})")
                for failure in result.failures:
                    print(f"  skipped {failure.target}: {failure.reason}")
                    worst = EXIT_PARTIAL
            except Exception as exc:
                print(f"azure discovery: FAILED: {_one_line(exc)}")
                worst = EXIT_UNREACHABLE
                result = None
            finally:
                await discoverer.close()
            if result is not None:
                fetcher = Fetcher(cfg.azure, credential, pacing=pacing)
                try:
                    mine = owned(result.accounts, shard_index(cfg), cfg.shard.count)
                    verdicts = await check_metrics(fetcher, mine, cfg, datetime.now(UTC))
                finally:
                    await fetcher.close()
                for item in verdicts:
                    print(item.line)
                if not all(item.ok for item in verdicts):
                    worst = max(worst, EXIT_PARTIAL)
        finally:
            await credential.close()
        if cfg.output == "elasticsearch" or cfg.state.backend == "elasticsearch":
            from metrics_poller.sinks.elasticsearch import build_client, check_access

            client = build_client(cfg.elasticsearch)
            try:
                for line in await check_access(client, cfg.elasticsearch, datasets.select(cfg.datasets)):
                    print(line)
            except Exception as exc:
                from metrics_poller.sinks import RefusedByConfiguration

                print(f"elasticsearch: FAILED: {_one_line(exc)}")
                worst = max(worst, EXIT_USAGE if isinstance(exc, RefusedByConfiguration) else EXIT_UNREACHABLE)
            finally:
                await client.close()
        return worst

    return asyncio.run(main())


def cmd_setup(args: argparse.Namespace) -> int:
    cfg = load_config(args, needs_targets=False)
    _setup_logging(cfg)
    _warn_insecure(cfg)
    asyncio.run(preflight.check(cfg, "setup", preflight.LOCAL_ELASTICSEARCH_CHECKS))

    async def main() -> int:
        from metrics_poller.sinks.elasticsearch import build_client, setup, setup_inventory

        client = build_client(cfg.elasticsearch)
        try:
            for line in await setup(client, cfg.elasticsearch, datasets.select(cfg.datasets)):
                print(line)
            for line in await setup_inventory(client, cfg.elasticsearch) if cfg.inventory.enabled else ():
                print(line)
        finally:
            await client.close()
        return EXIT_OK

    return asyncio.run(main())


def cmd_demo(args: argparse.Namespace) -> int:
    from metrics_poller.demo import run_demo

    return run_demo(out_dir=args.out, accounts_per_region=args.accounts_per_region, seed=args.seed)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


# ------------------------------------------------------------------------------------------ parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="metrics-poller",
        description="Poll Azure Monitor metrics of Azure OpenAI accounts into Elasticsearch.",
        epilog="Exit codes: 0 ok, 1 partial, 2 configuration/usage error, 3 Azure or Elasticsearch unreachable.",
    )
    parser.add_argument("--version", action="version", version=f"metrics-poller {__version__}")
    _add_global_options(parser, default=None)
    # The same options after the subcommand; SUPPRESS keeps a value given before it when absent after.
    common = argparse.ArgumentParser(add_help=False)
    _add_global_options(common, default=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, handler: Callable[[argparse.Namespace], int], text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=text, parents=[common])
        sub.set_defaults(handler=handler)
        return sub

    add("run", cmd_run, "run as a service: a cycle at every multiple of `period`")
    add("once", cmd_once, "run one cycle and exit (cron, systemd timer, Kubernetes CronJob)")
    add("setup", cmd_setup, "install the Elasticsearch index and component templates")
    discover = add("discover", cmd_discover, "list the Azure OpenAI accounts the configuration selects")
    discover.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add("validate", cmd_validate, "check configuration, credentials, one Azure call and Elasticsearch access")
    backfill = add("backfill", cmd_backfill, "fetch and store a past range (cursors are left unchanged)")
    backfill.add_argument(
        "--since", required=True, help="start, ISO-8601 UTC (2026-01-01T00:00Z) or relative (-90m, -24h, -7d, -1w)"
    )
    backfill.add_argument("--until", help="end, as --since (default: now minus latency)")
    demo = add("demo", cmd_demo, "run one cycle against the built-in Azure simulator, writing NDJSON to ./out/")
    demo.add_argument("--out", default="out", help="output directory (default: ./out)")
    demo.add_argument("--accounts-per-region", type=int, default=4, help="simulated accounts per region")
    demo.add_argument("--seed", type=int, default=42, help="simulator seed")

    from metrics_poller.simulator import cli as simulator_cli

    simulate = commands.add_parser(
        "simulate", help="serve the built-in Azure simulator", description="Serve the built-in Azure simulator."
    )
    simulator_cli.add_arguments(simulate)
    simulate.set_defaults(handler=simulator_cli.run)
    return parser


def _add_global_options(parser: argparse.ArgumentParser, default: Any) -> None:
    """Options accepted before or after the subcommand (`metrics-poller --config P once` = `once --config P`)."""
    parser.add_argument(
        "--config",
        metavar="PATH",
        default=default,
        help="configuration file (default: $METRICS_POLLER_CONFIG, ./config/poller.yaml, "
        "/etc/metrics-poller/poller.yaml)",
    )


RELATIVE_TIME_OPTIONS = ("--since", "--until")


def join_relative_times(argv: Sequence[str]) -> list[str]:
    """`--since -7d` → `--since=-7d`: argparse would take `-7d` for an option and say "expected one argument"."""
    joined: list[str] = []
    for word in argv:
        if joined and joined[-1] in RELATIVE_TIME_OPTIONS and re.match(r"-\d", word):
            joined[-1] = f"{joined[-1]}={word}"
        else:
            joined.append(word)
    return joined


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args: Any = parser.parse_args(join_relative_times(sys.argv[1:] if argv is None else argv))
    try:
        return int(args.handler(args))
    except config.ConfigError as exc:
        for line in exc.lines:
            print(line, file=sys.stderr)
        return EXIT_USAGE
    except preflight.PreflightError as exc:
        for line in exc.lines:
            print(line, file=sys.stderr)
        return exc.exit_code
    except UsageError as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except (Unreachable, DiscoveryError) as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from metrics_poller.sinks import RefusedByConfiguration
        from metrics_poller.sinks.elasticsearch import SinkError

        if isinstance(exc, RefusedByConfiguration):  # missing pipeline, unsupported version…: one line
            print(f"error: {_one_line(exc)}", file=sys.stderr)
            return EXIT_USAGE
        if isinstance(exc, SinkError):  # refused credentials or set-up failure: one line, not a traceback
            print(f"error: {_one_line(exc)}", file=sys.stderr)
            return EXIT_UNREACHABLE
        raise


if __name__ == "__main__":
    sys.exit(main())
