"""Accounts × catalogue × cursors → units of work (pure).

A unit is ≤ 50 resources of one dataset and (subscription, region) that share one window, and one
*family* of the dataset's request groups: groups whose (pruned) dimension sets are identical. A
family's documents share keys (`_id` = account, grain, timestamp, fingerprint), and a stored
document can never be amended, so a family is fetched, written and committed as one: either all of
its metrics reach a document's first write, or none do and the window is fetched again.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from metrics_poller.catalog import MetricGroup
from metrics_poller.datasets import Dataset
from metrics_poller.model import Account, MetricDefinition, Query, Window
from metrics_poller.windows import Span, plan_span, split_span

BATCH_LIMIT = 50  # getBatch accepts at most 50 resource ids per call
NAMES_LIMIT = 20  # and at most 20 metric names

CursorKey = tuple[str, str, str]  # (account key, dataset name, group name)
DefinitionsKey = tuple[str, str, str, str]  # (subscription, region, resource type, kind), lower-case


def definitions_key(account: Account) -> DefinitionsKey:
    """Metric definitions are read once per (subscription, region, resource type, kind): Azure does not
    promise that `OpenAI` and `AIServices` accounts (or accounts and their projects) offer the same metrics."""
    return (account.subscription_id.lower(), account.location.lower(), account.type.lower(), account.kind.lower())


@dataclass(frozen=True, slots=True)
class Settings:
    grain: timedelta
    latency: timedelta
    lookback: timedelta
    max_backfill: timedelta
    step: timedelta
    top: int


@dataclass(frozen=True, slots=True)
class WorkUnit:
    dataset: Dataset
    subscription_id: str
    region: str
    accounts: tuple[Account, ...]
    groups: tuple[MetricGroup, ...]
    windows: tuple[Window, ...]  # consecutive, oldest first
    top: int

    def queries(self, window: Window) -> list[Query]:
        return [
            Query(self.subscription_id, self.region, self.accounts, group, window, self.top, self.dataset.namespace)
            for group in self.groups
        ]


@dataclass(frozen=True, slots=True)
class Gap:
    """A range older than `max_backfill` that will never be fetched for these cursors."""

    account_key: str
    dataset: str
    groups: tuple[str, ...]
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class Plan:
    units: tuple[WorkUnit, ...]
    gaps: tuple[Gap, ...]

    @property
    def query_count(self) -> int:
        return sum(len(u.groups) * len(u.windows) for u in self.units)


def prune_group(group: MetricGroup, definitions: Mapping[str, MetricDefinition] | None) -> MetricGroup | None:
    """Drop what this account type does not offer; None when nothing of the group is left."""
    if definitions is None:
        return group
    lowered = {name.lower(): d for name, d in definitions.items()}
    kept = [m for m in group.metrics if m.name.lower() in lowered]
    if not kept:
        return None
    offered_dims = set.intersection(*({d.lower() for d in lowered[m.name.lower()].dimensions} for m in kept))
    offered_aggs = set.intersection(*({a.lower() for a in lowered[m.name.lower()].aggregations} for m in kept))
    aggregations = tuple(a for a in group.aggregations if a.lower() in offered_aggs)
    if not aggregations:
        return None
    dimensions = tuple(d for d in group.dimensions if d.lower() in offered_dims)
    return MetricGroup(group.name, tuple(kept), aggregations, dimensions)


def families(groups: Iterable[MetricGroup]) -> list[tuple[MetricGroup, ...]]:
    """Groups with identical dimension sets, in catalogue order."""
    by_dims: dict[frozenset[str], list[MetricGroup]] = {}
    for group in groups:
        by_dims.setdefault(frozenset(group.dimensions), []).append(group)
    return [tuple(members) for members in by_dims.values()]


def shard_of(account: Account, count: int) -> int:
    """Stable shard number of an account (same on every host and Python version)."""
    digest = hashlib.sha1(account.key.encode(), usedforsecurity=False).digest()
    return int.from_bytes(digest[:8], "big") % count


def family_cursor(
    account_key: str, dataset: str, family: Sequence[MetricGroup], cursors: Mapping[CursorKey, datetime]
) -> datetime | None:
    """The oldest cursor of the family's members; members without one join the family where it is."""
    keys = [(account_key, dataset, g.name) for g in family]
    known = [cursors[key] for key in keys if key in cursors]
    return min(known) if known else None


def plan(
    dataset: Dataset,
    accounts: Sequence[Account],
    groups: Sequence[MetricGroup],
    definitions: Mapping[DefinitionsKey, Mapping[str, MetricDefinition] | None],
    cursors: Mapping[CursorKey, datetime],
    now: datetime,
    settings: Settings,
) -> Plan:
    """Every unit of work of one dataset for one cycle. Accounts whose definitions scope has no entry in
    `definitions` are left out (their definitions could not be read; the caller reports it)."""
    # Keyed by the pruned family itself: accounts of two kinds may share group names, not metrics.
    buckets: dict[tuple[str, str, tuple[MetricGroup, ...], datetime, datetime], list[Account]] = defaultdict(list)
    gaps: list[Gap] = []
    # Thousands of accounts share a few definitions scopes and, cycle after cycle, the same cursor:
    # prune and span once per distinct input, not once per account.
    families_of: dict[DefinitionsKey, list[tuple[MetricGroup, ...]]] = {}
    spans: dict[datetime | None, Span] = {}
    for account in sorted(accounts, key=lambda a: a.key):
        scope = definitions_key(account)
        if scope not in definitions:
            continue
        account_families = families_of.get(scope)
        if account_families is None:
            pruned = [p for g in groups if (p := prune_group(g, definitions[scope])) is not None]
            account_families = families_of[scope] = families(pruned)
        for family in account_families:
            names = tuple(g.name for g in family)
            cursor = family_cursor(account.key, dataset.name, family, cursors)
            span = spans.get(cursor)
            if span is None:
                span = spans[cursor] = plan_span(
                    cursor,
                    now,
                    grain=settings.grain,
                    latency=settings.latency,
                    lookback=settings.lookback,
                    max_backfill=settings.max_backfill,
                )
            if span.skipped:
                gaps.append(Gap(account.key, dataset.name, names, *span.skipped))
            if span.empty:
                continue
            buckets[(account.subscription_id, account.location.lower(), family, span.start, span.end)].append(account)

    units = []
    for (subscription, region, family, start, end), members in buckets.items():
        windows = tuple(Window(s, e, settings.grain) for s, e in split_span(start, end, settings.step, settings.grain))
        for chunk in _chunks(members, BATCH_LIMIT):
            units.append(
                WorkUnit(dataset, subscription, region, tuple(chunk), _split_names(family), windows, settings.top)
            )
    return Plan(tuple(units), tuple(gaps))


def _chunks(items: Sequence[Account], size: int) -> list[Sequence[Account]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _split_names(family: tuple[MetricGroup, ...]) -> tuple[MetricGroup, ...]:
    """Keep every query within Azure's 20-names limit (no catalogue group comes close today)."""
    out: list[MetricGroup] = []
    for group in family:
        for i in range(0, len(group.metrics), NAMES_LIMIT):
            metrics = group.metrics[i : i + NAMES_LIMIT]
            out.append(MetricGroup(group.name, metrics, group.aggregations, group.dimensions))
    return tuple(out)
