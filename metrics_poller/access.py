"""What `validate` asks Azure beyond discovery: one real metrics call per (subscription, region) the
poller will poll (one more for its Foundry projects when the agent stream is selected), through the
route `azure.api` selects, so the most common set-up mistake (Monitoring Reader granted on the accounts,
not the subscription: getBatch answers 401) is found before a run.

The statuses follow azure-monitor.md §4: getBatch answers 401 to an identity without subscription-level
Monitoring Reader (Microsoft's migrate-to-batch-api doc) and 403 when the `Microsoft.Insights` resource
provider is not registered on the subscription.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from metrics_poller.azure_http import CallError
from metrics_poller.catalog import GROUPS_BY_NAME, MetricGroup
from metrics_poller.config import Config
from metrics_poller.datasets import AI_FOUNDRY_AGENT
from metrics_poller.model import PROJECT_TYPE, Account, Query, Window
from metrics_poller.planning import BATCH_LIMIT
from metrics_poller.windows import window_end

# The metric every Azure OpenAI account offers, one aggregation, no dimension split: the cheapest
# call that still goes through the same API, scope and role check as a cycle's.
_REQUESTS = GROUPS_BY_NAME["requests"]
PROBE_GROUP = MetricGroup("requests", _REQUESTS.metrics[:1], ("Total",), ())
# Foundry projects (the agent stream) have their own namespace: probed with one agent metric.
_RUNS = next(m for m in AI_FOUNDRY_AGENT.metrics if m.name == "AgentRuns")
PROJECT_PROBE_GROUP = MetricGroup("agent_runs", (_RUNS,), ("Total",), ())


class Prober(Protocol):
    async def probe(self, query: Query, deadline: float) -> CallError | None: ...


@dataclass(frozen=True, slots=True)
class Verdict:
    line: str
    ok: bool


def probe_queries(accounts: Sequence[Account], cfg: Config, now: datetime) -> list[Query]:
    """One query per (subscription, region, resource type): up to a batch of its accounts (or Foundry
    projects), the newest complete bucket."""
    grain = timedelta(seconds=cfg.grain_seconds)
    end = window_end(now, timedelta(seconds=cfg.latency), grain)
    regions: dict[tuple[str, str, str], list[Account]] = {}
    for account in sorted(accounts, key=lambda a: a.key):
        key = (account.subscription_id.lower(), account.location.lower(), account.type)
        regions.setdefault(key, []).append(account)
    return [
        Query(
            members[0].subscription_id,
            region,
            tuple(members[:BATCH_LIMIT]),
            PROJECT_PROBE_GROUP if kind == PROJECT_TYPE else PROBE_GROUP,
            Window(end - grain, end, grain),
            cfg.azure.top,
            namespace=kind,
        )
        for (_, region, kind), members in sorted(regions.items())
    ]


def verdict(query: Query, api: str, error: CallError | None, principal: str | None) -> Verdict:
    """One line about one (subscription, region): ok, or what is wrong and how to fix it."""
    route = "per-resource metrics" if api == "arm" else "getBatch"
    projects = query.namespace == PROJECT_TYPE
    where = f"azure metrics {query.subscription_id}/{query.region}{' (Foundry projects)' if projects else ''}"
    if error is None:
        asked = f"{len(query.accounts)} {'projects' if projects else 'accounts'} asked"
        return Verdict(f"{where}: ok ({route}, {asked})", True)
    subscription = f"/subscriptions/{query.subscription_id}"
    if api != "arm" and error.status == 401:
        fallback = " (azure.api: auto falls back to one ARM call per account and group)" if api == "auto" else ""
        return Verdict(
            f"{where}: FAILED: getBatch answered 401: the identity lacks Monitoring Reader on the "
            f"subscription (a role on the accounts is not enough for getBatch); grant it there: az role "
            f'assignment create --assignee {principal or "<principal id>"} --role "Monitoring Reader" '
            f"--scope {subscription}{fallback}",
            False,
        )
    if api != "arm" and error.status == 403:
        return Verdict(
            f"{where}: FAILED: getBatch answered 403: the resource provider Microsoft.Insights is not "
            f"registered on subscription {query.subscription_id}; register it: az provider register "
            f"--namespace Microsoft.Insights --subscription {query.subscription_id}",
            False,
        )
    if error.status == 403:
        return Verdict(
            f"{where}: FAILED: HTTP 403: the identity lacks Monitoring Reader on {query.accounts[0].id} "
            "(or on its resource group or subscription)",
            False,
        )
    return Verdict(f"{where}: FAILED: {error.reason}", False)


async def check_metrics(prober: Prober, accounts: Sequence[Account], cfg: Config, now: datetime) -> list[Verdict]:
    """Run one probe per (subscription, region) concurrently; one verdict each, in a stable order."""
    queries = probe_queries(accounts, cfg, now)
    deadline = time.monotonic() + cfg.azure.request_timeout * cfg.azure.retry.attempts
    errors = await asyncio.gather(*(prober.probe(q, deadline) for q in queries))
    principal = cfg.azure.credential.client_id
    return [verdict(q, cfg.azure.api, e, principal) for q, e in zip(queries, errors, strict=True)]
