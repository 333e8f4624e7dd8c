"""The inventory's share of one cycle: which accounts and regions to read, read them, join, write.

Each account has a stable slot in `inventory.interval / period` slots, and a cycle reads the accounts
of the current slot (plus any whose last inventory failed), so the ARM reads of 10,000 accounts are
spread over the interval instead of landing on one cycle; stateless, so `once` under cron spreads the
same way. Quota rows of a (subscription, region) are read in that region's slot. Reads start with the
metrics and run on their own connection slots; the join waits for the cycle's metrics, whose stored
series were folded into per-deployment peaks as they went by (`observe`): no extra metric call.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from metrics_poller import config
from metrics_poller.headroom import Catalogue, Deployment, Drawer, Quota, UsagePeaks, join, quota_records
from metrics_poller.inventory import InventoryReadError
from metrics_poller.inventory_shaping import InventoryContext, deployment_document, quota_document
from metrics_poller.model import Account, Document, Failure, Series
from metrics_poller.sinks import Sink

log = logging.getLogger(__name__)

Region = tuple[str, str]  # (subscription id, region), lower-cased


class Reader(Protocol):
    async def deployments(self, account: Account, deadline: float) -> list[Deployment]: ...
    async def usages(self, subscription_id: str, region: str, deadline: float) -> list[Quota]: ...
    async def catalogue(self, subscription_id: str, region: str, deadline: float) -> Catalogue: ...
    async def close(self) -> None: ...


# ------------------------------------------------------------------------------------------ pure core


def slot_count(interval: int, period: int) -> int:
    return max(1, interval // period)


def slot_of(key: str, slots: int) -> int:
    """A stable slot for an account key or a region key (blake2b: the same in every process)."""
    digest = hashlib.blake2b(key.lower().encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % slots


def current_slot(now: datetime, period: int, slots: int) -> int:
    return int(now.timestamp()) // period % slots


def run_time(now: datetime, period: int) -> datetime:
    """The inventory run's `@timestamp`: the cycle's time floored to the period."""
    seconds = int(now.timestamp())
    return datetime.fromtimestamp(seconds - seconds % period, UTC)


def region_of(account: Account) -> Region:
    return (account.subscription_id.lower(), account.location.lower())


def due(
    accounts: Sequence[Account], slot: int, slots: int, again: set[str]
) -> tuple[list[Account], list[Region]]:
    """The accounts and quota regions this cycle reads."""
    share = [a for a in accounts if a.key in again or slot_of(a.key, slots) == slot]
    regions = sorted({region_of(a) for a in accounts if slot_of("/".join(region_of(a)), slots) == slot})
    return share, regions


# ------------------------------------------------------------------------------------------ I/O shell


@dataclass(slots=True)
class Readings:
    deployments: dict[str, tuple[Account, list[Deployment]]] = field(default_factory=dict)
    catalogues: dict[Region, Catalogue] = field(default_factory=dict)
    quotas: dict[Region, tuple[str, str, list[Quota]]] = field(default_factory=dict)  # sub, region, rows
    failures: list[Failure] = field(default_factory=list)
    failed: set[str] = field(default_factory=set)  # account keys whose deployments could not be read


@dataclass(slots=True)
class InventoryOutcome:
    accounts: int = 0
    documents: Counter[str] = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)


class Inventory:
    """Inventory state across cycles: peaks since each account's last document, failed accounts to read
    again, and the deployments known per quota key (for the quota documents)."""

    def __init__(
        self, settings: config.Inventory, period: int, reader: Reader, sink: Sink, context: InventoryContext
    ) -> None:
        self._settings = settings
        self._period = period
        self._slots = slot_count(settings.interval, period)
        self._reader = reader
        self._sink = sink
        self._context = context
        self.peaks = UsagePeaks()
        self._again: set[str] = set()
        self._drawers: dict[str, tuple[Region, dict[str, list[Drawer]]]] = {}  # by account key
        self._warned: set[str] = set()

    def observe(self, series: Iterable[Series]) -> None:
        """Fold stored metric series into the per-deployment peaks."""
        self.peaks.observe(series)

    async def close(self) -> None:
        # The sink belongs to the caller (it shares the metrics sink's file or client).
        await self._reader.close()

    def defer(self, accounts: Sequence[Account], now: datetime) -> None:
        """This cycle's share is not read now: read its accounts in the next cycle instead (their quota
        regions wait for their next slot)."""
        share, _regions = due(accounts, current_slot(now, self._period, self._slots), self._slots, set())
        self._again.update(a.key for a in share)

    async def read(self, accounts: Sequence[Account], now: datetime, deadline: float) -> Readings:
        """Read this cycle's share; failures are recorded, never raised."""
        slot = current_slot(now, self._period, self._slots)
        share, quota_regions = due(accounts, slot, self._slots, self._again)
        live = {a.key for a in accounts}
        for key in [k for k in self._drawers if k not in live]:
            del self._drawers[key]  # an account no longer discovered draws on nothing we know of
        self.peaks.retain(live)
        readings = Readings()
        catalogue_regions = sorted({region_of(a): a for a in share}.items())
        await asyncio.gather(
            *(self._deployments(a, deadline, readings) for a in share),
            *(self._catalogue(a, deadline, readings) for _, a in catalogue_regions),
            *(self._usages(a, deadline, readings) for a in _one_per_region(accounts, quota_regions)),
        )
        return readings

    async def _deployments(self, account: Account, deadline: float, readings: Readings) -> None:
        try:
            readings.deployments[account.key] = (account, await self._reader.deployments(account, deadline))
        except (InventoryReadError, ValueError) as exc:
            readings.failed.add(account.key)
            readings.failures.append(Failure("inventory", account.id, str(exc)))

    async def _catalogue(self, account: Account, deadline: float, readings: Readings) -> None:
        try:
            readings.catalogues[region_of(account)] = await self._reader.catalogue(
                account.subscription_id, account.location, deadline
            )
        except (InventoryReadError, ValueError) as exc:
            # Lifecycle fields stay absent; the deployments are still reported (reference §5).
            self._warn_once(f"catalogue {region_of(account)}", f"model lifecycle unavailable: {exc}")

    async def _usages(self, account: Account, deadline: float, readings: Readings) -> None:
        try:
            rows = await self._reader.usages(account.subscription_id, account.location, deadline)
        except (InventoryReadError, ValueError) as exc:
            self._warn_once(f"usages {region_of(account)}", f"quota unavailable: {exc}")
            return
        readings.quotas[region_of(account)] = (account.subscription_id, account.location, rows)

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("inventory: %s", message)

    async def write(self, readings: Readings, now: datetime) -> InventoryOutcome:
        """Join the readings with the peaks, write the documents, and settle each account."""
        timestamp = run_time(now, self._period)
        outcome = InventoryOutcome(failures=list(readings.failures))
        self._again |= readings.failed
        documents: list[Document] = []
        for key, (account, deployments) in readings.deployments.items():
            catalogue = readings.catalogues.get(region_of(account), {})
            records = join(account, deployments, catalogue, self.peaks.peek(key), timestamp)
            documents.extend(deployment_document(r, self._context, timestamp) for r in records)
            drawers: dict[str, list[Drawer]] = {}
            for record in records:
                if record.quota_name is not None:
                    drawer = Drawer(record.deployment.id, record.deployment.capacity, record.quota_guessed)
                    drawers.setdefault(record.quota_name, []).append(drawer)
            self._drawers[key] = (region_of(account), drawers)
        for region, (subscription, location, rows) in readings.quotas.items():
            known: dict[str, list[Drawer]] = {}
            for where, drawers in self._drawers.values():
                if where == region:
                    for name, members in drawers.items():
                        known.setdefault(name, []).extend(members)
            quotas = quota_records(subscription, location, rows, known)
            documents.extend(quota_document(q, self._context, timestamp) for q in quotas)
        outcomes = await self._sink.write(documents) if documents else []
        unstored: set[str] = set()
        for document, result in zip(documents, outcomes, strict=True):
            outcome.documents[result.value] += 1
            if not result.stored:
                unstored.add(document.account_key)
        for key, (account, _deployments) in readings.deployments.items():
            if key in unstored:
                self._again.add(key)
                outcome.failures.append(Failure("inventory", account.id, "inventory documents not stored"))
            else:
                self._again.discard(key)
                self.peaks.take(key)  # the next document covers the next window
        outcome.accounts = len(readings.deployments)
        return outcome


def _one_per_region(accounts: Sequence[Account], regions: Sequence[Region]) -> list[Account]:
    wanted = set(regions)
    chosen: dict[Region, Account] = {}
    for account in accounts:
        region = region_of(account)
        if region in wanted and region not in chosen:
            chosen[region] = account
    return list(chosen.values())

