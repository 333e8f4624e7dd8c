"""One cycle end to end: discover → plan → fetch → shape → write → commit cursors.

Work is streamed unit by unit (≤ 50 resources × one family of one dataset's request groups), so memory stays bounded
by the number of units in flight, not by the number of accounts. A cursor moves only over windows
whose every document Elasticsearch acknowledged (created or already present).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from metrics_poller import __version__, datasets, telemetry
from metrics_poller.catalog import MetricGroup, select_groups
from metrics_poller.config import Config
from metrics_poller.datasets import Dataset
from metrics_poller.discovery import DiscoveryError
from metrics_poller.inventory_cycle import Inventory, Readings
from metrics_poller.model import ACCOUNT_TYPE, PROJECT_TYPE, Account, Document, Failure, MetricDefinition, Outcome
from metrics_poller.planning import CursorKey, DefinitionsKey, Gap, Settings, WorkUnit, definitions_key, plan, shard_of
from metrics_poller.shaping import DocumentContext, shape
from metrics_poller.sinks import Sink
from metrics_poller.state import CursorStore

log = logging.getLogger(__name__)

DEFINITION_ATTEMPTS = 3  # accounts tried per (subscription, region) before the region is reported
MAX_CAUSE_LINES = 20
NOT_STORED = "retryable documents not stored"
NOT_FETCHED = "not fetched: Elasticsearch is unreachable"
SINK_DOWN_REASONS = (NOT_STORED, NOT_FETCHED)


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
    projects: int = 0  # Foundry projects polled for the agent dataset
    units: int = 0
    queries: int = 0
    azure_calls: int = 0
    documents: Counter[str] = field(default_factory=Counter)
    stored_by_dataset: Counter[str] = field(default_factory=Counter)  # created or already present
    failures: list[Failure] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    totals: Counter[str] = field(default_factory=Counter)
    newest_bucket: datetime | None = None
    cursors_advanced: int = 0
    failed_accounts: set[str] = field(default_factory=set)
    unreachable: str | None = None
    # Elasticsearch outage: documents it did not store, their accounts, accounts not fetched because of it.
    unstored_documents: int = 0
    unstored_accounts: set[str] = field(default_factory=set)
    not_fetched: set[str] = field(default_factory=set)
    sink_problem: str | None = None
    inventory_accounts: int = 0  # accounts whose deployments were joined and written this cycle
    inventory_documents: Counter[str] = field(default_factory=Counter)
    inventory_pending: bool = False  # reads still running when the metrics were done; joined later

    @property
    def ok(self) -> bool:
        return self.unreachable is None and not self.failures

    @property
    def exit_code(self) -> int:
        """0 everything stored, 1 partial, 3 Azure or Elasticsearch unreachable as a whole."""
        if self.unreachable:
            return 3
        return 0 if self.ok else 1

    @property
    def sink_down(self) -> bool:
        """Elasticsearch stored nothing of a whole write: it is gone or refusing every write."""
        return self.sink_problem is not None

    def cause_lines(self, limit: int = MAX_CAUSE_LINES) -> list[str]:
        """The problems of this cycle, one line per distinct cause with a count, at most `limit` lines
        whatever the estate size (an outage is not one line per account)."""
        lines: list[str] = []
        if self.unstored_accounts or self.not_fetched:
            extra = f", {len(self.not_fetched):,} more accounts not fetched" if self.not_fetched else ""
            what = f"Elasticsearch unreachable ({self.sink_problem})" if self.sink_down else "Elasticsearch busy"
            lines.append(
                f"{what}: {self.unstored_documents:,} documents of {len(self.unstored_accounts):,} accounts not "
                f"stored{extra}; they will be fetched again"
            )
        for (start, end), keys in sorted(_by_range(self.gaps).items()):
            sample = f" ({keys[0]})" if len(keys) == 1 else ""
            lines.append(
                f"skipped {start:%Y-%m-%dT%H:%MZ}..{end:%Y-%m-%dT%H:%MZ} (older than max_backfill) for "
                f"{len(keys):,} accounts{sample}"
            )
        causes: dict[tuple[str, str], dict[str, Failure]] = {}
        for failure in self.failures:
            if failure.scope == "elasticsearch" or failure.reason.endswith(SINK_DOWN_REASONS):
                continue  # the summary and the line above say it
            causes.setdefault((failure.scope, _cause(failure)), {}).setdefault(failure.target, failure)
        ranked = sorted(causes.items(), key=lambda item: (-len(item[1]), item[0]))
        for (scope, cause), targets in ranked:
            first = next(iter(targets.values()))
            if len(targets) == 1:
                lines.append(f"failed {scope} {first.target}: {first.reason}")
            else:
                lines.append(f"{cause}: {len(targets):,} {scope}s failed (e.g. {first.target})")
        if len(lines) > limit:
            lines[limit - 1 :] = [f"... and {len(lines) - limit + 1} more causes"]
        return lines

    def summary(self) -> str:
        docs = ", ".join(f"{k} {v}" for k, v in sorted(self.documents.items())) or "none"
        status = "ok" if self.ok else ("unreachable: " + self.unreachable if self.unreachable else "partial")
        inventory = sum(self.inventory_documents.values())
        projects = f" and {self.projects} projects" if self.projects else ""
        return (
            f"cycle {status}: {self.accounts} accounts{projects}, {self.queries} queries, "
            f"{self.azure_calls} Azure calls, "
            f"documents {docs}, {len(self.failures)} failures, {self.duration:.1f}s"
        ) + (f"; inventory of {self.inventory_accounts} accounts, {inventory} documents" if inventory else "") + (
            "; inventory reads go on in the background" if self.inventory_pending else ""
        )


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
        self._inventory_time: datetime | None = None  # the cycle time the running reads belong to
        self.shard_index = shard_index
        self.clock = clock
        self.monotonic = monotonic
        self.datasets: list[tuple[Dataset, tuple[MetricGroup, ...]]] = [
            (dataset, groups)
            for dataset in datasets.select(cfg.datasets)
            if (groups := select_groups(cfg.azure.metric_groups, dataset.groups))
        ]
        self.cursors: dict[CursorKey, datetime] | None = None
        self.extra_closers: list[Callable[[], Awaitable[object]]] = []
        self.context = DocumentContext(
            namespace=cfg.elasticsearch.namespace,
            period_ms=cfg.period * 1000,
            agent={"name": socket.gethostname(), "type": "metrics-poller", "version": __version__},
        )

    async def close(self) -> None:
        reads, self._inventory_reads = self._inventory_reads, None
        if reads is not None:  # stopping: the accounts are read again in their next slot
            reads.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reads
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
        wait_for_inventory: bool = True,
    ) -> CycleReport:
        """Run one cycle. `override_cursors`/`settings` serve `backfill`, which never moves cursors.

        The inventory's reads run beside the metrics. With `wait_for_inventory` (a single run) the cycle
        joins them before it returns; without (the service) it returns once the metrics are stored and
        committed, and reads still running are joined by the next cycle: they never delay the metrics."""
        now = now or self.clock()
        started = self.monotonic()
        deadline = deadline if deadline is not None else started + self.cfg.deadline_seconds
        report = CycleReport(started=now)
        completed = False
        try:
            await self._cycle(report, now, deadline, override_cursors, settings, collect_totals, progress)
            completed = report.unreachable is None
        except Unreachable as exc:
            report.unreachable = exc.side
            report.failures.append(Failure(exc.side, "*", str(exc)))
        finally:
            if self._inventory_reads is not None and not completed:
                # The cycle ended before the inventory was joined: its accounts come again in their slot.
                self._inventory_reads.cancel()
                self._inventory_reads = None
        if completed and self._inventory_reads is not None and (wait_for_inventory or self._inventory_reads.done()):
            await self.join_inventory(report)
        report.inventory_pending = self._inventory_reads is not None
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
        report.projects = sum(1 for a in accounts if a.type == PROJECT_TYPE)
        report.accounts = len(accounts) - report.projects
        telemetry.ACCOUNTS.set(report.accounts)
        if not accounts:
            return

        if override_cursors is None:
            if self.cursors is None:
                self.cursors = await self.store.load()
            cursors: Mapping[CursorKey, datetime] = self.cursors
        else:
            cursors = override_cursors

        definitions = await self._definitions(accounts, report)
        if self.inventory is not None and override_cursors is None:
            # Control-plane reads run beside the metrics on their own connection slots. They read
            # accounts' deployments and quotas; Foundry projects have neither. They start once the metric
            # definitions are read: both spend the subscription's ARM read bucket, and reads reserved
            # first are served first (a first cycle at 10,000 accounts waited 2 s for its definitions).
            own = [a for a in accounts if a.type == ACCOUNT_TYPE]
            if self._inventory_reads is not None and self._inventory_reads.done():
                await self.join_inventory(report)  # an earlier cycle's reads, finished since
            if self._inventory_reads is None:
                self._inventory_time = now
                self._inventory_reads = asyncio.create_task(self.inventory.read(own, now, deadline))
            else:  # still reading an earlier share: this one waits for the next cycle, never piles up
                log.warning("inventory: an earlier cycle's reads are still running; this cycle's share is read next")
                self.inventory.defer(own, now)
        units: list[WorkUnit] = []
        for dataset, groups in self.datasets:
            resources = [a for a in accounts if a.type.lower() == dataset.resource_type.lower()]
            work = plan(dataset, resources, groups, definitions, cursors, now, settings or settings_from(self.cfg))
            units.extend(work.units)
            report.queries += work.query_count
            report.gaps.extend(work.gaps)
        report.units = len(units)
        for (start, end), keys in _by_range(report.gaps).items():
            log.warning(
                "skipping %s to %s for %d accounts: older than max_backfill",
                start.isoformat(),
                end.isoformat(),
                len(keys),
            )

        changes: dict[CursorKey, datetime] = {}
        # `Account.key` lower-cases the id on every read, so each unit of an account (one per family)
        # would put its own copy of the ~150-character key into `changes` and from there into the
        # cursor maps, which live as long as the process: one shared string per account instead.
        shared_keys: dict[str, str] = {}
        # Round trips bound a cycle's pace, so it keeps `azure.concurrency` units in flight. Memory is the
        # units' buckets in flight: a unit catching up holds an hour-long window, twelve times a cycle's,
        # and a catch-up is bound by CPU, not round trips: those take at most a quarter of the slots
        # (BENCHMARKS.md B4: catch-up memory and time).
        limit = asyncio.Semaphore(max(2, self.cfg.azure.concurrency))
        catching_up = asyncio.Semaphore(max(1, self.cfg.azure.concurrency // 4))
        period = timedelta(seconds=self.cfg.period)
        done = 0

        async def run(unit: WorkUnit) -> None:
            nonlocal done
            long = unit.windows[-1].end - unit.windows[0].start > period
            async with catching_up if long else contextlib.nullcontext(), limit:
                advanced = await self._run_unit(unit, deadline, report, collect_totals)
            for key, end in advanced.items():
                account_key = shared_keys.setdefault(key, key)
                for group in unit.groups:
                    changes[(account_key, unit.dataset.name, group.name)] = end
            done += 1
            if progress is not None:
                progress(done, len(units))

        try:
            await asyncio.gather(*(run(u) for u in units))
        finally:
            # Also on cancellation (SIGTERM): every change recorded so far was acknowledged by the sink.
            if override_cursors is None and changes:
                await self.store.save(changes)
                assert self.cursors is not None
                self.cursors.update(changes)
            report.cursors_advanced = len(changes)
        stored = report.documents[Outcome.CREATED.value] + report.documents[Outcome.DUPLICATE.value]
        if report.documents[Outcome.RETRYABLE.value] and not stored:
            raise Unreachable("elasticsearch", "Elasticsearch stored none of this cycle's documents")
        if report.failed_accounts and len(report.failed_accounts) == len(accounts) and not stored:
            raise Unreachable("azure", f"no resource could be read from Azure ({len(accounts)} tried)")

    async def join_inventory(self, report: CycleReport) -> None:
        """Wait for the running inventory reads (if any), join them with the usage seen so far and write
        them, stamped with the time of the cycle that started them; the outcome goes into `report`."""
        reads, self._inventory_reads = self._inventory_reads, None
        if reads is None or self.inventory is None or self._inventory_time is None:
            return
        try:
            outcome = await self.inventory.write(await reads, self._inventory_time)
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
            if report.sink_down:  # Azure keeps the data: fetching what cannot be stored only costs calls
                report.not_fetched.update(a.key for a in unit.accounts if a.key not in blocked)
                report.not_fetched -= report.unstored_accounts
                self._fail_accounts(report, unit, unit.accounts, NOT_FETCHED, blocked)
                break
            results = await asyncio.gather(*(self.fetcher.fetch(q, deadline) for q in unit.queries(window)))  # type: ignore[attr-defined]
            failed: dict[str, str] = {}
            series = []
            for result in results:
                report.azure_calls += result.calls
                failed.update(result.failed)
                series.extend(result.series)
            series = [s for s in series if s.account.key not in failed]
            documents = shape(series, self.context, unit.dataset)
            outcomes = await self._write(documents, report)
            unstored = self._account_outcomes(unit.dataset, documents, outcomes, report, collect_totals)
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

    async def _write(self, documents: Sequence[Document], report: CycleReport) -> list[Outcome]:
        """Write to the sink, unless it already stored nothing of a whole write this cycle."""
        if not documents:
            return []
        if report.sink_down:
            return [Outcome.RETRYABLE] * len(documents)
        outcomes = await self.sink.write(documents)
        if all(o is Outcome.RETRYABLE for o in outcomes):
            report.sink_problem = self.sink.last_problem or "no write acknowledged"
        return outcomes

    def _account_outcomes(
        self,
        dataset: Dataset,
        documents: Sequence[Document],
        outcomes: Sequence[Outcome],
        report: CycleReport,
        collect_totals: bool,
    ) -> dict[str, str]:
        unstored: dict[str, str] = {}
        counted = Counter(outcome.value for outcome in outcomes)
        report.documents.update(counted)
        for value, n in counted.items():  # one labelled counter update per outcome, not per document
            telemetry.DOCUMENTS.labels(outcome=value).inc(n)
        stored = counted[Outcome.CREATED.value] + counted[Outcome.DUPLICATE.value]
        if stored == len(outcomes) and not collect_totals:  # the usual write: nothing to settle per document
            report.stored_by_dataset[dataset.name] += stored
            return unstored
        for document, outcome in zip(documents, outcomes, strict=True):
            if outcome is Outcome.RETRYABLE:
                report.unstored_documents += 1
                report.unstored_accounts.add(document.account_key)
                report.not_fetched.discard(document.account_key)
            if not outcome.stored:
                unstored.setdefault(document.account_key, f"{outcome.value} documents not stored")
                continue
            report.stored_by_dataset[dataset.name] += 1
            if collect_totals:
                _add_totals(report.totals, dataset, document.source)
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


def _by_range(gaps: Sequence[Gap]) -> dict[tuple[datetime, datetime], list[str]]:
    """Accounts per skipped range (an outage gives every account the same one)."""
    out: dict[tuple[datetime, datetime], list[str]] = {}
    for gap in gaps:
        keys = out.setdefault((gap.start, gap.end), [])
        if gap.account_key not in keys[-1:]:
            keys.append(gap.account_key)
    return out


def _cause(failure: Failure) -> str:
    """What a failure shares with others of the same cause: an account's reason without its groups."""
    if failure.scope == "account":
        return failure.reason.split(": ", 1)[-1]
    return failure.reason


def _group_names(unit: WorkUnit) -> str:
    names = ",".join(dict.fromkeys(g.name for g in unit.groups))
    return f"{unit.dataset.name} {names}"


def _add_totals(totals: Counter[str], dataset: Dataset, source: Mapping[str, object]) -> None:
    """Sum each `.total` into `totals` under `<metric object>.<field>` (e.g. `open_ai.requests`)."""
    metrics: object = source
    for part in ("azure", *dataset.metric_object):
        metrics = metrics.get(part) if isinstance(metrics, dict) else None
    if not isinstance(metrics, dict):
        return
    prefix = ".".join(dataset.metric_object)
    for name, aggregates in metrics.items():
        if isinstance(aggregates, dict) and isinstance(aggregates.get("total"), (int, float)):
            totals[f"{prefix}.{name}"] += aggregates["total"]


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]
