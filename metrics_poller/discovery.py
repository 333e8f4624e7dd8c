"""Configured targets (subscriptions, resource groups, resource ids) → `Account` records.

Foundry projects (`Microsoft.CognitiveServices/accounts/projects`) of the selected accounts are listed
too when a selected dataset reads them, through the same ARM list or Resource Graph query, each as an
`Account` record of that type (its parent's subscription, group and kind).

The only module that knows azure-mgmt-resource and azure-mgmt-resourcegraph. A target that is gone
(404) or hidden (403) becomes a `Failure`; only when nothing at all can be read (bad credential, no
network) does `accounts()` raise, so the CLI can exit with a clear one-line message.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from azure.core.credentials_async import AsyncTokenCredential
from azure.mgmt.resource.resources.aio import ResourceManagementClient
from azure.mgmt.resourcegraph.aio import ResourceGraphClient
from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

from metrics_poller import config
from metrics_poller.azure_http import CallError, Capture, Clients, Pacing, Retrier, arm_kwargs, call_budget
from metrics_poller.model import ACCOUNT_TYPE, PROJECT_TYPE, Account, Failure

log = logging.getLogger(__name__)

RESOURCE_FILTER = f"resourceType eq '{ACCOUNT_TYPE}'"
# Projects are nested resources of an account; ARM's resource list is asked for them by type, as the
# default branch of Elastic's agent_metrics template has Metricbeat do (foundry.md §1.3).
PROJECT_FILTER = f"resourceType eq '{PROJECT_TYPE}'"
# get_by_id needs the resource provider's api-version (Microsoft.CognitiveServices), not ARM's.
ACCOUNT_API_VERSION = "2025-06-01"
GRAPH_PAGE = 1000


class DiscoveryError(Exception):
    """No target could be read at all; the message is one line and names no secret."""


class AzureAuthError(DiscoveryError):
    """The credential was rejected (or no credential source was available)."""


class AzureUnreachable(DiscoveryError):
    """Azure Resource Manager could not be reached or kept failing."""


@dataclass(frozen=True, slots=True)
class DiscoveryResult:
    accounts: list[Account]
    failures: list[Failure] = field(default_factory=list)


# ------------------------------------------------------------------------------------------ pure core


def id_segment(resource_id: str, name: str) -> str | None:
    """The path segment after `name` (case-insensitive) in an ARM id, e.g. the resource group."""
    parts = resource_id.strip("/").split("/")
    for index, part in enumerate(parts[:-1]):
        if part.lower() == name.lower():
            return parts[index + 1]
    return None


def account_from_resource(resource: Mapping[str, Any]) -> Account | None:
    """An ARM or Resource Graph resource → `Account`; None when it is not a Cognitive Services account."""
    resource_id = resource.get("id")
    kind = resource.get("kind")
    if not isinstance(resource_id, str) or not isinstance(kind, str):
        return None
    rtype = resource.get("type")
    if isinstance(rtype, str) and rtype.lower() != ACCOUNT_TYPE.lower():
        return None
    subscription = id_segment(resource_id, "subscriptions")
    group = id_segment(resource_id, "resourceGroups")
    if not subscription or not group:
        return None
    name = resource.get("name")
    location = resource.get("location")
    tags = resource.get("tags")
    return Account(
        id=resource_id,
        name=name if isinstance(name, str) and name else resource_id.rsplit("/", 1)[-1],
        subscription_id=subscription,
        resource_group=group,
        # getBatch hosts are `{region}.metrics…`: Azure's region names are lower-case without spaces.
        location=location.lower().replace(" ", "") if isinstance(location, str) else "",
        kind=kind,
        tags={str(k): str(v) for k, v in tags.items()} if isinstance(tags, Mapping) else {},
    )


def project_from_resource(resource: Mapping[str, Any], parents: Mapping[str, Account]) -> Account | None:
    """An ARM or Resource Graph project → `Account` of type PROJECT_TYPE; None unless its parent account
    (the id before `/projects/`) is one of `parents` (keyed by lower-cased id)."""
    resource_id = resource.get("id")
    rtype = resource.get("type")
    if not isinstance(resource_id, str) or not isinstance(rtype, str) or rtype.lower() != PROJECT_TYPE.lower():
        return None
    cut = resource_id.lower().rfind("/projects/")
    parent = parents.get(resource_id[:cut].lower()) if cut > 0 else None
    if parent is None:
        return None
    location = resource.get("location")
    tags = resource.get("tags")
    return Account(
        id=resource_id,
        # ARM may name a nested resource `account/project`; the project's own name is the id's last part.
        name=resource_id.rstrip("/").rsplit("/", 1)[-1],
        subscription_id=parent.subscription_id,
        resource_group=parent.resource_group,
        location=location.lower().replace(" ", "") if isinstance(location, str) and location else parent.location,
        kind=parent.kind,
        type=PROJECT_TYPE,
        tags={str(k): str(v) for k, v in tags.items()} if isinstance(tags, Mapping) else {},
    )


def select_projects(resources: Iterable[Mapping[str, Any]], parents: Sequence[Account]) -> list[Account]:
    """Projects of the selected accounts, de-duplicated by case-insensitive id, in first-seen order."""
    by_key = {a.key: a for a in parents}
    seen: dict[str, Account] = {}
    for resource in resources:
        project = project_from_resource(resource, by_key)
        if project is not None and project.key not in seen:
            seen[project.key] = project
    return list(seen.values())


def select_accounts(resources: Iterable[Mapping[str, Any]], kinds: Sequence[str]) -> list[Account]:
    """Accounts of the wanted kinds (exact match: `OpenAI` is not `openai-something`), de-duplicated
    by case-insensitive id, in first-seen order."""
    wanted = set(kinds)
    seen: dict[str, Account] = {}
    for resource in resources:
        account = account_from_resource(resource)
        if account is not None and account.kind in wanted and account.key not in seen:
            seen[account.key] = account
    return list(seen.values())


def target_reason(err: CallError) -> str:
    """One line for a discovery target that could not be read."""
    if err.status == 404:
        return f"not found (deleted?): {err.reason}"
    if err.status == 403:
        return f"forbidden: {err.reason} (the identity needs Reader or Monitoring Reader on this scope)"
    return err.reason


def graph_projects_query() -> str:
    """Resource Graph KQL for Foundry projects (filtered to the selected accounts' children client-side)."""
    return (
        f"resources | where type =~ '{PROJECT_TYPE}' "
        "| project id, name, type, location, resourceGroup, subscriptionId, tags"
    )


def graph_query(kinds: Sequence[str]) -> str:
    """Resource Graph KQL for the accounts of `kinds` (ARG compares `type` lower-cased; the exact `kind`
    match is repeated client-side)."""
    listed = ", ".join("'" + k.replace("'", "''") + "'" for k in kinds)
    return (
        f"resources | where type =~ '{ACCOUNT_TYPE}' and kind in~ ({listed}) "
        "| project id, name, type, kind, location, resourceGroup, subscriptionId, tags"
    )


def in_scope(account: Account, subscriptions: Sequence[config.Subscription]) -> bool:
    """Whether a Resource Graph hit lies inside the configured subscriptions / resource groups."""
    for sub in subscriptions:
        if sub.id.lower() == account.subscription_id.lower():
            groups = {g.lower() for g in sub.resource_groups}
            return not groups or account.resource_group.lower() in groups
    return False


# ------------------------------------------------------------------------------------------ I/O shell


@dataclass(frozen=True, slots=True)
class _Target:
    """One unit of discovery work; `key` identifies it across refreshes."""

    key: str
    subscription_id: str
    resource_group: str | None = None
    resource_id: str | None = None
    resource_filter: str = RESOURCE_FILTER


@dataclass(slots=True)
class _Outcome:
    target: _Target
    resources: list[dict[str, Any]] | None = None
    error: CallError | None = None


class Discoverer:
    """Resolves the configured targets to accounts, cached for `azure.refresh_interval` seconds."""

    def __init__(
        self,
        cfg: config.Azure,
        credential: AsyncTokenCredential,
        clock: Callable[[], float] = time.monotonic,
        *,
        pacing: Pacing | None = None,
        resource_types: Collection[str] = (ACCOUNT_TYPE,),
    ) -> None:
        """`resource_types`: what the selected datasets read; projects are listed only when named."""
        self._cfg = cfg
        self._projects = PROJECT_TYPE.lower() in {t.lower() for t in resource_types}
        self._credential = credential
        self._clock = clock
        self._retrier = Retrier(cfg, asyncio.Semaphore(cfg.concurrency), clock, pacing=pacing)
        self._clients = Clients(
            lambda subscription: ResourceManagementClient(credential, subscription, **arm_kwargs(cfg))
        )
        self._graph: ResourceGraphClient | None = None
        self._cached: DiscoveryResult | None = None
        self._expires = 0.0
        self._by_target: dict[str, list[dict[str, Any]]] = {}  # last good answer per target
        self._lock = asyncio.Lock()

    async def accounts(self, force: bool = False) -> DiscoveryResult:
        """Accounts of all targets (cached); raises `DiscoveryError` when nothing could be read and
        there is no earlier result to fall back on."""
        async with self._lock:  # concurrent callers share one refresh
            if not force and self._cached is not None and self._clock() < self._expires:
                return self._cached
            try:
                result = await self._discover()
            except DiscoveryError as exc:
                if self._cached is None:
                    raise
                # Keep polling what we knew; the next call tries again (the cache is not renewed).
                log.warning(
                    "discovery failed, keeping the %d accounts found earlier: %s",
                    len(self._cached.accounts),
                    exc,
                )
                return DiscoveryResult(
                    list(self._cached.accounts), [Failure("discovery", "*", f"refresh failed: {exc}")]
                )
            self._cached = result
            self._expires = self._clock() + self._cfg.refresh_interval
            projects = sum(1 for a in result.accounts if a.type == PROJECT_TYPE)
            log.info(
                "discovered %d accounts, %d projects (%d targets failed)",
                len(result.accounts) - projects,
                projects,
                len(result.failures),
            )
            return result

    async def close(self) -> None:
        """Close the SDK clients (the credential belongs to the caller)."""
        await self._clients.close()
        if self._graph is not None:
            graph, self._graph = self._graph, None
            await graph.close()

    # ------------------------------------------------------------------------------------- targets

    def _targets(self) -> list[_Target]:
        targets: list[_Target] = []
        if self._cfg.discovery == "resource_graph" and self._cfg.subscriptions:
            targets.append(_Target("graph", self._cfg.subscriptions[0].id))
        else:
            for sub in self._cfg.subscriptions:
                if sub.resource_groups:
                    targets.extend(
                        _Target(f"{sub.id}/{rg}".lower(), sub.id, resource_group=rg)
                        for rg in sub.resource_groups
                    )
                else:
                    targets.append(_Target(sub.id.lower(), sub.id))
        for resource_id in self._cfg.resource_ids:
            subscription = id_segment(resource_id, "subscriptions") or ""
            targets.append(_Target(resource_id.lower(), subscription, resource_id=resource_id))
        return targets

    def _describe(self, target: _Target) -> str:
        if target.resource_id:
            return target.resource_id
        if target.key.startswith("graph"):
            return "resource graph"
        if target.resource_filter != RESOURCE_FILTER:
            where = f"/subscriptions/{target.subscription_id}"
            where += f"/resourceGroups/{target.resource_group}" if target.resource_group else ""
            return f"projects of {where}"
        if target.resource_group:
            return f"/subscriptions/{target.subscription_id}/resourceGroups/{target.resource_group}"
        return f"/subscriptions/{target.subscription_id}"

    async def _discover(self) -> DiscoveryResult:
        targets = self._targets()
        if not targets:
            return DiscoveryResult([], [])
        deadline = self._clock() + call_budget(self._cfg)
        outcomes = await asyncio.gather(*(self._read(t, deadline) for t in targets))
        resources, failures = self._collect(outcomes, fatal_when_all=True)

        accounts = select_accounts(resources, self._cfg.kinds)
        if self._cfg.discovery == "resource_graph":
            explicit = {rid.lower() for rid in self._cfg.resource_ids}
            accounts = [a for a in accounts if a.key in explicit or in_scope(a, self._cfg.subscriptions)]
        if self._projects and accounts:
            targets = self._project_targets(accounts)
            outcomes = await asyncio.gather(*(self._read(t, deadline) for t in targets))
            children, child_failures = self._collect(outcomes, fatal_when_all=False)
            accounts += select_projects(children, accounts)
            failures += child_failures
        return DiscoveryResult(accounts, failures)

    def _project_targets(self, accounts: Sequence[Account]) -> list[_Target]:
        """Where the selected accounts' projects are listed: one Resource Graph query, or the configured
        subscription, else each resource group holding a selected account (a project lives in its
        account's group)."""
        if self._cfg.discovery == "resource_graph" and self._cfg.subscriptions:
            return [_Target("graph:projects", self._cfg.subscriptions[0].id)]
        whole = {s.id.lower() for s in self._cfg.subscriptions if not s.resource_groups}
        targets: dict[str, _Target] = {}
        for account in accounts:
            sub = account.subscription_id
            if sub.lower() in whole:
                targets.setdefault(f"projects:{sub}".lower(), _Target(f"projects:{sub}".lower(), sub, None))
            else:
                key = f"projects:{sub}/{account.resource_group}".lower()
                targets.setdefault(key, _Target(key, sub, account.resource_group))
        return [replace(t, resource_filter=PROJECT_FILTER) for t in targets.values()]

    def _collect(
        self, outcomes: Sequence[_Outcome], *, fatal_when_all: bool
    ) -> tuple[list[dict[str, Any]], list[Failure]]:
        """The resources read, with each failed target's last good answer, and one failure per target;
        raises when every target failed for want of Azure itself (`fatal_when_all`)."""
        failures: list[Failure] = []
        resources: list[dict[str, Any]] = []
        fatal: list[CallError] = []
        warnings: list[tuple[str, str]] = []
        for outcome in outcomes:
            key = outcome.target.key
            if outcome.resources is not None:
                self._by_target[key] = outcome.resources
                resources.extend(outcome.resources)
                continue
            assert outcome.error is not None
            err = outcome.error
            where = self._describe(outcome.target)
            failures.append(Failure("discovery", where, target_reason(err)))
            if err.status in (403, 404):
                self._by_target.pop(key, None)  # gone or hidden: stop polling it
                continue
            if err.credential or err.status == 401 or err.status is None or err.retryable:
                fatal.append(err)
            # A transient failure: keep what this target held last time rather than drop its accounts.
            resources.extend(self._by_target.get(key, ()))
            warnings.append((where, err.reason))

        if fatal_when_all and len(fatal) == len(outcomes):  # one error for all, not one line per target
            auth = next((e for e in fatal if (e.credential and not e.retryable) or e.status == 401), None)
            if auth is not None:
                raise AzureAuthError(f"Azure rejected the credential: {auth.reason}")
            raise AzureUnreachable(f"Azure Resource Manager could not be read: {fatal[0].reason}")
        for where, reason in warnings:
            log.warning("discovery of %s failed: %s", where, reason)
        return resources, failures

    # ------------------------------------------------------------------------------------ requests

    async def _read(self, target: _Target, deadline: float) -> _Outcome:
        try:
            if target.key == "graph":
                return _Outcome(target, await self._read_graph(deadline, graph_query(self._cfg.kinds)))
            if target.key == "graph:projects":
                return _Outcome(target, await self._read_graph(deadline, graph_projects_query()))
            if target.resource_id is not None:
                return _Outcome(target, await self._read_one(target, deadline))
            return _Outcome(target, await self._read_list(target, deadline))
        except CallError as err:
            return _Outcome(target, error=err)

    async def _read_list(self, target: _Target, deadline: float) -> list[dict[str, Any]]:
        client = self._clients.get(target.subscription_id)

        async def call(capture: Capture) -> list[dict[str, Any]]:
            if target.resource_group:
                pager = client.resources.list_by_resource_group(
                    target.resource_group, filter=target.resource_filter, **capture.hooks()
                )
            else:
                pager = client.resources.list(filter=target.resource_filter, **capture.hooks())
            return [resource.as_dict() async for resource in pager]

        return await self._retrier.run(
            "resources", call, _listed, deadline, subscription_id=target.subscription_id
        )

    async def _read_one(self, target: _Target, deadline: float) -> list[dict[str, Any]]:
        assert target.resource_id is not None
        client = self._clients.get(target.subscription_id)
        resource_id = target.resource_id

        async def call(capture: Capture) -> list[dict[str, Any]]:
            resource = await client.resources.get_by_id(
                resource_id, api_version=ACCOUNT_API_VERSION, **capture.hooks()
            )
            return [resource.as_dict()]

        resources = await self._retrier.run(
            "resource", call, _listed, deadline, subscription_id=target.subscription_id
        )
        if not select_accounts(resources, self._cfg.kinds):
            log.info(
                "%s is not a Cognitive Services account of kind %s; skipped",
                resource_id,
                "/".join(self._cfg.kinds),
            )
        return resources

    async def _read_graph(self, deadline: float, query: str) -> list[dict[str, Any]]:
        if self._graph is None:
            self._graph = ResourceGraphClient(self._credential, **arm_kwargs(self._cfg))
        graph = self._graph
        subscriptions = [s.id for s in self._cfg.subscriptions]
        rows: list[dict[str, Any]] = []
        skip_token: str | None = None
        while True:
            page, skip_token = await self._retrier.run(
                "resourceGraph",
                self._graph_call(graph, subscriptions, query, skip_token),
                _graph_page,
                deadline,
            )
            rows.extend(page)
            if not skip_token:
                return rows

    @staticmethod
    def _graph_call(
        graph: ResourceGraphClient, subscriptions: list[str], query: str, skip_token: str | None
    ) -> Callable[[Capture], Awaitable[None]]:
        async def call(capture: Capture) -> None:
            options = QueryRequestOptions(top=GRAPH_PAGE, skip_token=skip_token, result_format="objectArray")
            request = QueryRequest(subscriptions=subscriptions, query=query, options=options)
            await graph.resources(request, **capture.hooks())

        return call


def _listed(value: Any, _capture: Capture) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise ValueError("the resource list could not be read")
    return value


def _graph_page(_value: Any, capture: Capture) -> tuple[list[dict[str, Any]], str | None]:
    """One Resource Graph page from the raw body: rows (`objectArray`) and the next `$skipToken`."""
    try:
        body = json.loads(capture.body or b"")
    except ValueError:
        raise ValueError("Resource Graph answered with a body that is not JSON") from None
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise ValueError("Resource Graph answer has no 'data' list")
    token = body.get("$skipToken")
    rows = [row for row in data if isinstance(row, dict)]
    return rows, token if isinstance(token, str) and token else None
