"""Shared fixtures: the real SDKs over HTTPS against the simulator, and ground-truth comparison."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from metrics_poller import config
from metrics_poller.azure_http import Pacing
from metrics_poller.catalog import AGGREGATION_KEY, GROUPS_BY_NAME, MetricGroup
from metrics_poller.credentials import build_credential
from metrics_poller.discovery import Discoverer
from metrics_poller.fetching import Fetcher, QueryResult
from metrics_poller.model import Account, Query, Window
from metrics_poller.simulator import SimSpec, Simulator

BATCH = 50
# Fast retries so fault tests stay short; the deadline logic is exercised separately.
FAST_RETRY = {"attempts": 4, "backoff_initial": 0.01, "backoff_max": 0.05, "retry_after_cap": 2.0}
KINDS = ("OpenAI", "AIServices")


@contextmanager
def simulator(**spec: Any) -> Iterator[Simulator]:
    with Simulator(SimSpec(**spec)) as sim:
        yield sim


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    """2 subscriptions × 3 regions × 3 accounts (+1 non-OpenAI account per region)."""
    with simulator(seed=42) as s:
        yield s


@pytest.fixture(autouse=True)
def _clean(request: pytest.FixtureRequest) -> Iterator[None]:
    """Faults and call counts never leak between tests sharing a module-scoped simulator."""
    yield
    if "sim" in request.fixturenames:
        s: Simulator = request.getfixturevalue("sim")
        s.faults.clear()  # also lets go of requests a slow or timeout fault still holds
        s.settle()
        s.reset_calls()


def azure_cfg(sim: Simulator, **overrides: Any) -> config.Azure:
    overrides.setdefault("retry", FAST_RETRY)
    return config.parse({"azure": sim.azure_config(**overrides)}, environ={}).azure


@dataclass
class Stack:
    cfg: config.Azure
    discoverer: Discoverer
    fetcher: Fetcher
    pacing: Pacing


@asynccontextmanager
async def stack(sim: Simulator, **overrides: Any) -> AsyncIterator[Stack]:
    cfg = azure_cfg(sim, **overrides)
    credential = build_credential(cfg)
    pacing = Pacing()  # shared, as the runtime shares it
    discoverer = Discoverer(cfg, credential, pacing=pacing)
    fetcher = Fetcher(cfg, credential, pacing=pacing)
    try:
        yield Stack(cfg, discoverer, fetcher, pacing)
    finally:
        await fetcher.close()
        await discoverer.close()
        await credential.close()


def sim_accounts(sim: Simulator, kinds: Iterable[str] = KINDS) -> list[Account]:
    """The simulator's OpenAI-capable accounts as `Account` records (independent of discovery)."""
    wanted = set(kinds)
    return [
        Account(a.id, a.name, a.subscription_id, a.resource_group, a.location, a.kind, tags=dict(a.tags))
        for a in sim.accounts
        if a.kind in wanted
    ]


def recent_window(minutes: int = 10, grain_minutes: int = 1) -> Window:
    """A closed window ending on a 5-minute boundary at least 10 minutes ago."""
    now = time.time()
    end = datetime.fromtimestamp(math.floor(now / 300) * 300 - 600, UTC)
    return Window(end - timedelta(minutes=minutes), end, timedelta(minutes=grain_minutes))


def queries(accounts: Sequence[Account], groups: Sequence[MetricGroup], window: Window, top: int = 1000) -> list[Query]:
    """Accounts chunked per (subscription, region) into ≤ 50, one query per chunk and group."""
    by_scope: dict[tuple[str, str], list[Account]] = {}
    for account in accounts:
        by_scope.setdefault((account.subscription_id, account.location), []).append(account)
    out = []
    for (subscription, region), members in sorted(by_scope.items()):
        for i in range(0, len(members), BATCH):
            chunk = tuple(members[i : i + BATCH])
            out.extend(Query(subscription, region, chunk, g, window, top) for g in groups)
    return out


def group(name: str) -> MetricGroup:
    return GROUPS_BY_NAME[name]


def observed(result: QueryResult, account: Account, metric: str) -> dict[frozenset[tuple[str, str]], Any]:
    out: dict[frozenset[tuple[str, str]], Any] = {}
    for series in result.series:
        if series.account.key == account.key and series.metric == metric:
            key = frozenset(series.dimensions.items())
            assert key not in out, f"duplicate series {key} for {account.name}/{metric}"
            asked = series.aggregations
            read = ((p.time, {k: v for k, v in p.values.items() if k in asked}) for p in series.points)
            out[key] = {stamp: values for stamp, values in read if values}
    return out


def assert_intact(sim: Simulator, results: Iterable[QueryResult], skip: Iterable[str] = ()) -> int:
    """Every account of every result not in `skip` arrived, and equals the simulator's ground truth
    for every metric of its group. Returns the number of (account, metric) pairs checked."""
    skipped = {s.lower() for s in skip}
    checked = 0
    for result in results:
        query = result.query
        keys = [AGGREGATION_KEY[a] for a in query.group.aggregations]
        for account in query.accounts:
            if account.key in skipped:
                continue
            assert account.key not in result.failed, f"{account.name}: {result.failed.get(account.key)}"
            for metric in query.group.metric_names:
                truth = sim.expected(
                    account.id,
                    metric,
                    query.window.start,
                    query.window.end,
                    grain=query.window.timegrain,
                    dimensions=query.group.dimensions,
                )
                want = {
                    dims: {t: {k: v[k] for k in keys if k in v} for t, v in points.items()}
                    for dims, points in truth.items()
                }
                got = observed(result, account, metric)
                assert got.keys() == want.keys(), f"{account.name}/{metric}: series differ"
                for dims, points in want.items():
                    assert got[dims].keys() == points.keys(), f"{account.name}/{metric}/{dims}: buckets differ"
                    for stamp, values in points.items():
                        assert got[dims][stamp] == pytest.approx(values), f"{account.name}/{metric}/{stamp}"
                checked += 1
    assert checked, "nothing was compared"
    return checked
