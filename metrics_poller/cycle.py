"""One cycle end to end: discover → plan → fetch → shape → write → commit cursors.

Work is streamed unit by unit (≤ 50 accounts × one family of request groups), so memory stays bounded
by the number of units in flight, not by the number of accounts. A cursor moves only over windows
whose every document Elasticsearch acknowledged (created or already present).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from metrics_poller import __version__, telemetry
from metrics_poller.catalog import select_groups
from metrics_poller.config import Config
from metrics_poller.discovery import DiscoveryError
from metrics_poller.inventory_cycle import Inventory, Readings
from metrics_poller.model import Account, Document, Failure, MetricDefinition, Outcome
from metrics_poller.planning import CursorKey, DefinitionsKey, Gap, Settings, WorkUnit, definitions_key, plan, shard_of
from metrics_poller.shaping import DocumentContext, shape
from metrics_poller.sinks import Sink
from metrics_poller.state import CursorStore

log = logging.getLogger(__name__)

DEFINITION_ATTEMPTS = 3  # accounts tried per (subscription, region) before the region is reported


class Unreachable(Exception):
    """Azure or Elasticsearch could not be reached at all; `side` says which."""

    def __init__(self, side: str, message: str) -> None:
        super().__init__(message)
        self.side = side


@dataclass
class CycleReport:
    started: datetime
    duration: float = 0.0
    accounts: int = 0
    units: int = 0
    queries: int = 0
    azure_calls: int = 0
    documents: Counter[str] = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    totals: Counter[str] = field(default_factory=Counter)
    newest_bucket: datetime | None = None
    cursors_advanced: int = 0
    failed_accounts: set[str] = field(default_factory=set)
    unreachable: str | None = None
    inventory_accounts: int = 0  # accounts whose deployments were read this cycle
    inventory_documents: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return self.unreachable is None and not self.failures

    @property
    def exit_code(self) -> int:
        """0 everything stored, 1 partial, 3 Azure or Elasticsearch unreachable as a whole."""
        if self.unreachable:
            return 3
        return 0 if self.ok else 1

    def summary(self) -> str:
        docs = ", ".join(f"{k} {v}" for k, v in sorted(self.documents.items())) or "none"
        status = "ok" if self.ok else ("unreachable: " + self.unreachable if self.unreachable else "partial")
        inventory = sum(self.inventory_documents.values())
        return (
            f"cycle {status}: {self.accounts} accounts, {self.queries} queries, {self.azure_calls} Azure calls, "
            f"documents {docs}, {len(self.failures)} failures, {self.duration:.1f}s"
        ) + (f"; inventory of {self.inventory_accounts} accounts, {inventory} documents" if inventory else "")


def utcnow() -> datetime:
    return datetime.now(UTC)


def settings_from(cfg: Config) -> Settings:
    return Settings(
        grain=timedelta(seconds=cfg.grain_seconds),
        latency=timedelta(seconds=cfg.latency),
        lookback=timedelta(seconds=cfg.lookback_seconds),
        max_backfill=timedelta(seconds=cfg.max_backfill),
        step=timedelta(seconds=cfg.backfill_step),
        top=cfg.azure.top,
    )


def owned(accounts: Sequence[Account], index: int | None, count: int) -> list[Account]:
    """The accounts of this shard (all of them when not sharded)."""
    if index is None or count <= 1:
        return list(accounts)
    return [a for a in accounts if shard_of(a, count) == index]


class Poller:
    """Long-lived pipeline state shared by successive cycles (clients, caches, cursors)."""

    def __init__(
        self,
        cfg: Config,
        *,
        discoverer: object,
        fetcher: object,
        sink: Sink,
        store: CursorStore,
        inventory: Inventory | None = None,
        shard_index: int | None = None,
        clock: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = cfg
        self.discoverer = discoverer
        self.fetcher = fetcher
        self.sink = sink
        self.store = store
        self.inventory = inventory
        self._inventory_reads: asyncio.Task[Readings] | None = None
        self.shard_index = shard_index
        self.clock = clock
        self.monotonic = monotonic
        self.groups = select_groups(cfg.azure.metric_groups)
        self.cursors: dict[CursorKey, datetime] | None = None
        self.extra_closers: list[Callable[[], Awaitable[object]]] = []
        self.context = DocumentContext(
            namespace=cfg.elasticsearch.namespace,
            period_ms=cfg.period * 1000,
            agent={"name": socket.gethostname(), "type": "metrics-poller", "version": __version__},
        )

    async def close(self) -> None:
        for part in (self.fetcher, self.discoverer, self.sink, self.inventory):
            closer = getattr(part, "close", None)
            if closer is not None:
                await closer()
        for extra in self.extra_closers:
            await extra()

    # ------------------------------------------------------------------------------------------ cycle

    async def run_cycle(
        self,
        now: datetime | None = None,
        *,
        deadline: float | None = None,
        override_cursors: Mapping[CursorKey, datetime] | None = None,
        settings: Settings | None = None,
        collect_totals: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> CycleReport:
        """Run one cycle. `override_cursors`/`settings` serve `backfill`, which never moves cursors."""
        now = now or self.clock()
        started = self.monotonic()
        deadline = deadline if deadline is not None else started + self.cfg.deadline_seconds
        report = CycleReport(started=now)
        try:
            await self._cycle(report, now, deadline, override_cursors, settings, collect_totals, progress)
        except Unreachable as exc:
            report.unreachable = exc.side
            report.failures.append(Failure(exc.side, "*", str(exc)))
        finally:
            if self._inventory_reads is not None:  # the cycle ended before the inventory was joined
                self._inventory_reads.cancel()
                self._inventory_reads = None
        report.duration = self.monotonic() - started
        telemetry.CYCLE_DURATION.observe(report.duration)
        telemetry.CYCLES.labels(result="ok" if report.ok else ("failed" if report.unreachable else "partial")).inc()
        for failure in report.failures:
            telemetry.FAILURES.labels(scope=failure.scope).inc()
        return report

    async def _cycle(
        self,
        report: CycleReport,
        now: datetime,
        deadline: float,
        override_cursors: Mapping[CursorKey, datetime] | None,
        settings: Settings | None,
        collect_totals: bool,
        progress: Callable[[int, int], None] | None,
    ) -> None:
        try:
            discovered = await self.discoverer.accounts()  # type: ignore[attr-defined]
        except DiscoveryError as exc:
            raise Unreachable("azure", _one_line(exc)) from None
        report.failures.extend(discovered.failures)
        accounts = owned(discovered.accounts, self.shard_index, self.cfg.shard.count)
        report.accounts = len(accounts)
        telemetry.ACCOUNTS.set(len(accounts))
        if not accounts:
            return

        if self.inventory is not None and override_cursors is None:
            # Control-plane reads run beside the metrics on their own connection slots.
            self._inventory_reads = asyncio.create_task(self.inventory.read(accounts, now, deadline))
        if override_cursors is None:
            if self.cursors is None:
                self.cursors = await self.store.load()
            cursors: Mapping[CursorKey, datetime] = self.cursors
        else:
            cursors = override_cursors

        definitions = await self._definitions(accounts, report)
        work = plan(accounts, self.groups, definitions, cursors, now, settings or settings_from(self.cfg))
        report.units = len(work.units)
        report.queries = work.query_count
        report.gaps.extend(work.gaps)
        for gap in work.gaps:
            log.warning(
                "skipping %s to %s for %s (%s): older than max_backfill",
                gap.start.isoformat(),
                gap.end.isoformat(),
                gap.account_key,
                ",".join(gap.groups),
            )

        changes: dict[CursorKey, datetime] = {}
        # `Account.key` lower-cases the id on every read, so each unit of an account (one per family)
        # would put its own copy of the ~150-character key into `changes` and from there into the
        # cursor maps, which live as long as the process: one shared string per account instead.
        shared_keys: dict[str, str] = {}
        limit = asyncio.Semaphore(max(2, self.cfg.azure.concurrency))
        done = 0

        async def run(unit: WorkUnit) -> None:
            nonlocal done
            async with limit:
                advanced = await self._run_unit(unit, deadline, report, collect_totals)
            for key, end in advanced.items():
                account_key = shared_keys.setdefault(key, key)
                for group in unit.groups:
                    changes[(account_key, group.name)] = end
            done += 1
            if progress is not None:
                progress(done, len(work.units))

        try:
            await asyncio.gather(*(run(u) for u in work.units))
        finally:
            # Also on cancellation (SIGTERM): every change recorded so far was acknowledged by the sink.
            if override_cursors is None and changes:
                await self.store.save(changes)
                assert self.cursors is not None
                self.cursors.update(changes)
            report.cursors_advanced = len(changes)
        await self._join_inventory(report, now)
        stored = report.documents[Outcome.CREATED.value] + report.documents[Outcome.DUPLICATE.value]
        if report.documents[Outcome.RETRYABLE.value] and not stored:
            raise Unreachable("elasticsearch", "Elasticsearch stored none of this cycle's documents")
        if report.failed_accounts and len(report.failed_accounts) == len(accounts) and not stored:
            raise Unreachable("azure", f"no account could be read from Azure ({len(accounts)} tried)")

    async def _join_inventory(self, report: CycleReport, now: datetime) -> None:
        reads, self._inventory_reads = self._inventory_reads, None
        if reads is None or self.inventory is None:
            return
        try:
            outcome = await self.inventory.write(await reads, now)
        except Exception as exc:  # the metrics are stored and committed already; report, never raise
            log.exception("inventory failed")
            report.failures.append(Failure("inventory", "*", _one_line(exc)))
            return
        report.inventory_accounts = outcome.accounts
        report.inventory_documents.update(outcome.documents)
        report.failures.extend(outcome.failures)

    async def _definitions(
        self, accounts: Sequence[Account], report: CycleReport
    ) -> dict[DefinitionsKey, Mapping[str, MetricDefinition] | None]:
        """Metric definitions per (subscription, region, kind), read from one of its accounts (cached by
        the fetcher)."""
        scopes: dict[DefinitionsKey, list[Account]] = {}
        for account in accounts:
            scopes.setdefault(definitions_key(account), []).append(account)

        async def read(key: DefinitionsKey, members: list[Account]) -> tuple[DefinitionsKey, object]:
            reason = "no account to read definitions from"
            for account in members[:DEFINITION_ATTEMPTS]:
                try:
                    return key, await self.fetcher.definitions(account)  # type: ignore[attr-defined]
                except Exception as exc:
                    reason = _one_line(exc)
            return key, Failure("region", "/".join(key), f"metric definitions unavailable: {reason}")

        results = await asyncio.gather(*(read(k, m) for k, m in scopes.items()))
        out: dict[DefinitionsKey, Mapping[str, MetricDefinition] | None] = {}
        for key, value in results:
            if isinstance(value, Failure):
                report.failures.append(value)
                report.failed_accounts.update(a.key for a in scopes[key])
            else:
                out[key] = value  # type: ignore[assignment]
        return out

    async def _run_unit(
        self, unit: WorkUnit, deadline: float, report: CycleReport, collect_totals: bool
    ) -> dict[str, datetime]:
        """Fetch, shape and write each window of a unit in order; return each account's new cursor
        (the end of its last contiguous fully stored window)."""
        advanced: dict[str, datetime] = {}
        blocked: set[str] = set()
        for window in unit.windows:
            if self.monotonic() >= deadline:
                reason = "cycle deadline reached before this window was fetched"
                self._fail_accounts(report, unit, unit.accounts, reason, blocked)
                break
            results = await asyncio.gather(*(self.fetcher.fetch(q, deadline) for q in unit.queries(window)))  # type: ignore[attr-defined]
            failed: dict[str, str] = {}
            series = []
            for result in results:
                report.azure_calls += result.calls
                failed.update(result.failed)
                series.extend(result.series)
            series = [s for s in series if s.account.key not in failed]
            documents = shape(series, self.context)
            outcomes = await self.sink.write(documents) if documents else []
            unstored = self._account_outcomes(documents, outcomes, report, collect_totals)
            stored_accounts: set[str] = set()
            for account in unit.accounts:
                if account.key in blocked:
                    continue
                why = failed.get(account.key) or unstored.get(account.key)
                if why:
                    blocked.add(account.key)
                    report.failed_accounts.add(account.key)
                    report.failures.append(Failure("account", account.id, f"{_group_names(unit)}: {why}"))
                else:
                    advanced[account.key] = window.end
                    stored_accounts.add(account.key)
            if self.inventory is not None:  # each stored window is counted once, never again on a re-fetch
                self.inventory.observe(s for s in series if s.account.key in stored_accounts)
            newer = report.newest_bucket is None or window.end > report.newest_bucket
            if newer and any(o.stored for o in outcomes):
                report.newest_bucket = window.end
        return advanced

    def _account_outcomes(
        self,
        documents: Sequence[Document],
        outcomes: Sequence[Outcome],
        report: CycleReport,
        collect_totals: bool,
    ) -> dict[str, str]:
        unstored: dict[str, str] = {}
        for document, outcome in zip(documents, outcomes, strict=True):
            report.documents[outcome.value] += 1
            telemetry.DOCUMENTS.labels(outcome=outcome.value).inc()
            if not outcome.stored:
                unstored.setdefault(document.account_key, f"{outcome.value} documents not stored")
            elif collect_totals:
                _add_totals(report.totals, document.source)
        return unstored

    @staticmethod
    def _fail_accounts(
        report: CycleReport, unit: WorkUnit, accounts: Sequence[Account], reason: str, blocked: set[str]
    ) -> None:
        for account in accounts:
            if account.key not in blocked:
                blocked.add(account.key)
                report.failed_accounts.add(account.key)
                report.failures.append(Failure("account", account.id, f"{_group_names(unit)}: {reason}"))


def _group_names(unit: WorkUnit) -> str:
    return ",".join(dict.fromkeys(g.name for g in unit.groups))


def _add_totals(totals: Counter[str], source: Mapping[str, object]) -> None:
    azure = source.get("azure")
    metrics = azure.get("open_ai") if isinstance(azure, dict) else None
    if not isinstance(metrics, dict):
        return
    for name, aggregates in metrics.items():
        if isinstance(aggregates, dict) and isinstance(aggregates.get("total"), (int, float)):
            totals[name] += aggregates["total"]


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]
