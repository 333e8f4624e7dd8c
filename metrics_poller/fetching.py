"""Run metric queries against Azure Monitor: getBatch first, per-resource ARM metrics as fallback.

The only module that knows azure-monitor-querymetrics and azure-mgmt-monitor. Every call goes through
the shared Azure HTTP layer (`azure_http`: retries, Retry-After holds, ARM read pacing, deadline, error
classification). Both APIs return the same per-resource JSON, read from the raw body (the querymetrics
result model drops `resourceid` and per-metric `errorCode`) by `azure_json`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
from azure.core.rest import HttpRequest
from azure.mgmt.monitor.aio import MonitorManagementClient
from azure.monitor.querymetrics.aio import MetricsClient

from metrics_poller import config, telemetry
from metrics_poller.azure_http import (
    SERIES_CAP,
    SERIES_CAP_TEXT,
    CallError,
    Capture,
    Clients,
    Counter,
    Malformed,
    Pacing,
    Retrier,
    arm_kwargs,
    call_budget,
    json_pages,
    scrub,
)
from metrics_poller.azure_json import (
    AzureDataError,
    ResourceMetrics,
    decode_batch,
    decode_resource,
    parse_resource_metrics,
    resource_id_of,
)
from metrics_poller.catalog import AGGREGATION_KEY, canonical_dimension
from metrics_poller.credentials import client_kwargs
from metrics_poller.model import (
    Account,
    MetricDefinition,
    Query,
    Series,
    iso_duration,
    parse_iso_duration,
)
from metrics_poller.planning import DefinitionsKey, definitions_key
from metrics_poller.shaping import collector_paused

log = logging.getLogger(__name__)

T = TypeVar("T")

# A failed definitions read is not retried by every caller in the next seconds (metricDefinitions is
# throttled at 400 reads per 5 min): remember the failure this long.
DEFINITIONS_NEGATIVE_TTL = 60.0
# A subscription whose getBatch answered 401 is read per resource for this long, then getBatch is tried
# again: the role may have been granted since, and one transient 401 must not switch it for good.
BATCH_REPROBE = 3600.0
BATCH_ROLE_ADVICE = "getBatch needs Monitoring Reader on the subscription"
INSIGHTS_ADVICE = (
    "getBatch answers 403 when the Microsoft.Insights resource provider is not registered on the "
    "subscription: az provider register --namespace Microsoft.Insights --subscription {subscription}"
)
# Per-metric `errorCode`s inside a 200 that describe a permanent condition of that metric on that
# resource: the metrics backend's series codes (Microsoft.Cloud.Metrics.Client `TimeSeriesErrorCode`:
# Success, InvalidSeries, InvalidSamplingType, RequestEntityTooLarge, Throttled, TimeOut, BadRequest,
# InternalError) of which only these two say "this metric, or this aggregation of it, does not exist
# here" (azure-monitor.md §3: InvalidSamplingType, "Sampling type is not found"). Asking again returns
# the same, so the metric is left out for that account until its definitions are next read. Every other
# code (throttled, timed out, internal, unknown) may pass: the family's window is fetched again.
PERMANENT_METRIC_ERRORS = frozenset({"invalidsamplingtype", "invalidseries"})
_AGGREGATION_BY_LOWER = {name.lower(): name for name in AGGREGATION_KEY}


class DefinitionsError(Exception):
    """Metric definitions of one (subscription, region) could not be read; the message is one line."""


# --------------------------------------------------------------------------------------- pure helpers


def batch_filter(dimensions: Sequence[str]) -> str | None:
    """Split by every value of every dimension; no filter (one un-split series) without dimensions."""
    return " and ".join(f"{d} eq '*'" for d in dimensions) or None


def order_by(aggregations: Sequence[str]) -> str | None:
    """Keep the largest series when `top` truncates: order by the first requested aggregation."""
    if not aggregations:
        return None
    return f"{AGGREGATION_KEY.get(aggregations[0], aggregations[0].lower())} desc"


def arm_timespan(start: datetime, end: datetime) -> str:
    """ARM's `timespan` parameter: `start/end` in UTC, second precision."""
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    return f"{start.astimezone(UTC).strftime(fmt)}/{end.astimezone(UTC).strftime(fmt)}"


def parse_definitions(bodies: Iterable[Any]) -> dict[str, MetricDefinition]:
    """metricDefinitions JSON pages → definitions by metric name (canonical dimension names,
    aggregations without `None`, time grains as ISO-8601 strings)."""
    out: dict[str, MetricDefinition] = {}
    for body in bodies:
        if not isinstance(body, dict) or not isinstance(body.get("value"), list):
            raise Malformed("metricDefinitions response has no 'value' list")
        for item in body["value"]:
            if not isinstance(item, dict):
                raise Malformed("metricDefinitions entry is not an object")
            name_field = item.get("name")
            name = name_field.get("value") if isinstance(name_field, dict) else None
            if not isinstance(name, str) or not name:
                continue
            dimensions = tuple(
                canonical_dimension(d["value"])
                for d in item.get("dimensions") or ()
                if isinstance(d, dict) and isinstance(d.get("value"), str)
            )
            aggregations: list[str] = []
            for raw in item.get("supportedAggregationTypes") or ():
                if isinstance(raw, str) and raw.lower() != "none":
                    canonical = _AGGREGATION_BY_LOWER.get(raw.lower(), raw)
                    if canonical not in aggregations:
                        aggregations.append(canonical)
            grains: list[str] = []
            for availability in item.get("metricAvailabilities") or ():
                grain = availability.get("timeGrain") if isinstance(availability, dict) else None
                if not isinstance(grain, str):
                    continue
                try:
                    text = iso_duration(parse_iso_duration(grain))
                except ValueError:
                    continue
                if text not in grains:
                    grains.append(text)
            out[name] = MetricDefinition(name, dimensions, tuple(aggregations), tuple(grains))
    return out


def batch_scope(query: Query) -> str:
    """What a getBatch `Retry-After` holds back: the calls of one (subscription, region)."""
    return f"getBatch of subscription {query.subscription_id.lower()} in {query.region.lower()}"


def account_reason(err: CallError) -> str:
    """The one-line reason recorded against an account for a call that failed."""
    if err.status == 404:
        return f"not found (deleted?): {err.reason}"
    if err.status == 403:
        return f"forbidden: {err.reason} (grant Monitoring Reader on the account)"
    if err.status == 409 and (err.code or "").lower() == "missingsubscriptionregistration":
        return f"{err.reason} (register it: az provider register --namespace Microsoft.Insights)"
    return err.reason


def _decoded(decode: Callable[[bytes], T], capture: Capture) -> T:
    if capture.body is None:
        raise Malformed("empty body")
    try:
        return decode(capture.body)
    except AzureDataError as exc:
        raise Malformed(str(exc)) from None
    except (ValueError, RecursionError) as exc:  # RecursionError: hostile nesting depth
        raise Malformed(f"not JSON ({exc.__class__.__name__})") from None


def _batch_values(_value: Any, capture: Capture) -> list[Any]:
    return _decoded(decode_batch, capture)


def _arm_response(_value: Any, capture: Capture) -> Any:
    body = _decoded(decode_resource, capture)
    if not isinstance(body, dict | ResourceMetrics):
        raise Malformed("metrics response is not a JSON object")
    return body


def _definition_pages(_value: Any, capture: Capture) -> dict[str, MetricDefinition]:
    pages = json_pages(capture)
    if not pages:
        raise Malformed("no metricDefinitions page was returned")
    return parse_definitions(pages)


# getBatch through the client's public `send_request`. `MetricsClient.query_resources` would turn the
# body into result models (and those into `MetricsQueryResult`s) that the poller never reads: it parses
# the raw body with `azure_json`, and that conversion was about half of the poller's CPU (BENCHMARKS.md,
# B2 profile). The request is the one the SDK emits (azure-monitor.md §3.3): same pipeline (credential,
# hooks, user agent, TLS), path, query (metric names joined by raw commas) and body.
BATCH_API_VERSION = "2024-02-01"
_ERRORS_BY_STATUS: dict[int, type[HttpResponseError]] = {
    401: ClientAuthenticationError,
    404: ResourceNotFoundError,
}


def batch_request(
    namespace: str,
    subscription_id: str,
    resource_ids: Sequence[str],
    metric_names: Sequence[str],
    window_start: datetime,
    window_end: datetime,
    interval: str,
    aggregations: Sequence[str],
    top: int | None,
    order: str | None,
    dimension_filter: str | None,
) -> HttpRequest:
    """The `metrics:getBatch` POST for one query (pure)."""
    params: list[tuple[str, str]] = [
        ("api-version", BATCH_API_VERSION),
        ("starttime", _batch_time(window_start)),
        ("endtime", _batch_time(window_end)),
        ("interval", interval),
        ("metricnamespace", namespace),
    ]
    query = urlencode(params, quote_via=quote, safe="")
    # Azure splits `metricnames` on raw commas; a comma inside a name is sent as "%2" (as the SDK does).
    query += "&metricnames=" + ",".join(quote(name.replace(",", "%2"), safe="") for name in metric_names)
    optional = [("aggregation", ",".join(aggregations)), ("top", str(top) if top else ""), ("orderby", order or "")]
    optional.append(("filter", dimension_filter or ""))
    query += "".join(f"&{key}={quote(value, safe='')}" for key, value in optional if value)
    path = f"/subscriptions/{quote(subscription_id, safe='')}/metrics:getBatch?{query}"
    return HttpRequest("POST", path, json={"resourceids": list(resource_ids)})


def _batch_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(frozen=True, slots=True)
class _ReadResponse:
    """What a `raw_response_hook` reads, handed over once a streamed body was read."""

    http_request: Any
    http_response: Any


async def send_batch(client: MetricsClient, request: HttpRequest, **kwargs: Any) -> None:
    """Send one getBatch request; the body is left to the hooks, a non-200 raises like the SDK."""
    response = await client.send_request(request, stream=True, **kwargs)
    await response.read()
    hook = kwargs.get("raw_response_hook")
    if hook is not None:
        hook(_ReadResponse(response.request, response))
    if response.status_code != 200:
        error_type = _ERRORS_BY_STATUS.get(response.status_code, HttpResponseError)
        raise error_type(response=response)


# ------------------------------------------------------------------------------------------- fetching


@dataclass
class QueryResult:
    """What one `Query` produced. Accounts in `failed` (account key → one-line reason) have no
    series here: their data for this group and window is incomplete and must be fetched again."""

    query: Query
    series: list[Series] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    truncated: int = 0
    calls: int = 0


@dataclass
class _Pass:
    """One pass over some accounts of a query at one `top`."""

    series: dict[str, list[Series]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    truncated: set[tuple[str, str]] = field(default_factory=set)  # (account key, metric)
    counter: Counter = field(default_factory=Counter)

    def fail(self, account: Account, reason: str) -> None:
        self.failed[account.key] = reason
        self.series.pop(account.key, None)

    def replace(self, accounts: Iterable[Account], newer: _Pass) -> None:
        """Take `newer`'s outcome for `accounts` (a re-query with a larger `top`)."""
        for account in accounts:
            key = account.key
            self.series.pop(key, None)
            self.failed.pop(key, None)
            if key in newer.series:
                self.series[key] = newer.series[key]
            if key in newer.failed:
                self.failed[key] = f"after re-query with a larger top: {newer.failed[key]}"
        self.counter.calls += newer.counter.calls


@dataclass
class _Definitions:
    expires: float
    value: dict[str, MetricDefinition] | None = None
    error: str | None = None


class Fetcher:
    """Fetches `Query` objects with bounded concurrency; owns one SDK client per region / subscription."""

    def __init__(
        self,
        cfg: config.Azure,
        credential: AsyncTokenCredential,
        clock: Callable[[], float] = time.monotonic,
        *,
        pacing: Pacing | None = None,
    ) -> None:
        self._cfg = cfg
        self._clock = clock
        self._limit = asyncio.Semaphore(cfg.concurrency)
        self._retrier = Retrier(cfg, self._limit, clock, pacing=pacing)
        self._metrics_clients = Clients(
            lambda region: MetricsClient(
                cfg.endpoints.metrics.format(region=region.lower()),
                credential,
                audience=cfg.endpoints.metrics_audience,
                **client_kwargs(cfg),
            )
        )
        self._monitor_clients = Clients(
            lambda subscription: MonitorManagementClient(credential, subscription, **arm_kwargs(cfg))
        )
        # Subscriptions whose getBatch answered 401 (auto mode) → when to try getBatch again.
        self._arm_only: dict[str, float] = {}
        self._unregistered: set[str] = set()  # subscriptions whose 403 advice was logged
        self._definitions: dict[DefinitionsKey, _Definitions] = {}
        self._inflight: dict[DefinitionsKey, asyncio.Future[dict[str, MetricDefinition]]] = {}
        # Metrics left out per account after a permanent per-metric error, until definitions are re-read.
        self._dropped: dict[DefinitionsKey, dict[str, set[str]]] = {}

    async def close(self) -> None:
        """Close every SDK client (the credential belongs to the caller)."""
        await self._metrics_clients.close()
        await self._monitor_clients.close()

    # ------------------------------------------------------------------------------------- calls

    def _batch_call(
        self, query: Query, accounts: Sequence[Account], names: Sequence[str], top: int
    ) -> Callable[[Capture], Awaitable[None]]:
        """The getBatch call of `accounts` for `query`'s group and window: `names`, at most `top` series
        per metric (`top` is moot, and not sent, without a dimension split)."""
        group = query.group
        flt = batch_filter(group.dimensions)
        client = self._metrics_clients.get(query.region)
        request = batch_request(
            query.namespace,
            query.subscription_id,
            [a.id for a in accounts],
            names,
            query.window.start,
            query.window.end,
            query.window.timegrain,
            group.aggregations,
            top if flt else None,
            order_by(group.aggregations),
            flt,
        )

        async def call(capture: Capture) -> None:
            await send_batch(client, request, **capture.hooks())

        return call

    def _arm_call(
        self, query: Query, account: Account, names: Sequence[str], top: int
    ) -> Callable[[Capture], Awaitable[None]]:
        """The per-resource ARM metrics call of `account`, otherwise as `_batch_call`."""
        group = query.group
        flt = batch_filter(group.dimensions)
        client = self._monitor_clients.get(account.subscription_id)

        async def call(capture: Capture) -> None:
            await client.metrics.list(
                account.id.lstrip("/"),
                timespan=arm_timespan(query.window.start, query.window.end),
                interval=query.window.timegrain,
                metricnames=",".join(names),
                aggregation=",".join(group.aggregations),
                top=top if flt else None,
                orderby=order_by(group.aggregations),
                filter=flt,
                metricnamespace=query.namespace,
                **capture.hooks(),
            )

        return call

    async def probe(self, query: Query, deadline: float) -> CallError | None:
        """One call for `query` through the route `azure.api` selects (ARM: its first account only),
        never falling back: None when Azure answered, else its error. For `validate`, which must show
        the 401 or 403 that `auto` would work around."""
        names = query.group.metric_names
        try:
            if self._cfg.api == "arm":
                arm = self._arm_call(query, query.accounts[0], names, query.top)
                await self._retrier.run("metrics", arm, _arm_response, deadline, subscription_id=query.subscription_id)
            else:
                batch = self._batch_call(query, query.accounts, names, query.top)
                await self._retrier.run("getBatch", batch, _batch_values, deadline)
        except CallError as err:
            return err
        return None

    # --------------------------------------------------------------------------------- definitions

    async def definitions(
        self, account: Account, *, deadline: float | None = None
    ) -> dict[str, MetricDefinition]:
        """metricDefinitions of `account`'s definitions scope (subscription, region, resource type, kind),
        read at most once per `definitions_refresh`; concurrent callers share one request. Raises
        `DefinitionsError`. The metric namespace asked for is the account's resource type."""
        key = definitions_key(account)
        cached = self._definitions.get(key)
        if cached is not None and cached.expires > self._clock():
            if cached.value is None:
                raise DefinitionsError(cached.error or "metric definitions unavailable")
            return dict(cached.value)
        future = self._inflight.get(key)
        if future is None:
            future = asyncio.ensure_future(self._read_definitions(key, account, deadline))
            self._inflight[key] = future
            future.add_done_callback(lambda done: self._forget_inflight(key, done))
        # Shielded: one cancelled caller must not cancel the read the others are waiting on.
        return dict(await asyncio.shield(future))

    def _forget_inflight(self, key: DefinitionsKey, done: asyncio.Future[Any]) -> None:
        if self._inflight.get(key) is done:
            del self._inflight[key]
        if not done.cancelled():
            done.exception()  # retrieved here so an unawaited failure is never logged as lost

    async def _read_definitions(
        self, key: DefinitionsKey, account: Account, deadline: float | None
    ) -> dict[str, MetricDefinition]:
        client = self._monitor_clients.get(account.subscription_id)
        budget = deadline if deadline is not None else self._clock() + call_budget(self._cfg)

        async def call(capture: Capture) -> None:
            pager = client.metric_definitions.list(
                account.id.lstrip("/"), metricnamespace=account.type, **capture.hooks()
            )
            async for _ in pager:
                pass  # the raw pages are parsed instead of the SDK model

        try:
            value = await self._retrier.run(
                "metricDefinitions", call, _definition_pages, budget, subscription_id=account.subscription_id
            )
        except CallError as err:
            reason = f"metric definitions of {'/'.join(key)}: {account_reason(err)}"
            self._definitions[key] = _Definitions(self._clock() + DEFINITIONS_NEGATIVE_TTL, error=reason)
            raise DefinitionsError(reason) from None
        self._definitions[key] = _Definitions(self._clock() + self._cfg.definitions_refresh, value=value)
        self._dropped.pop(key, None)  # fresh definitions: metrics left out are asked for again
        return value

    # ------------------------------------------------------------------------------------- queries

    async def fetch(self, query: Query, deadline: float) -> QueryResult:
        """Run one query; never raises for Azure failures (they land in `failed`) and never
        runs past `deadline` (a `clock()` value)."""
        top = min(query.top, self._cfg.top_cap)
        first = await self._pass(query, query.accounts, top, deadline)
        truncations = 0
        current = first
        while current.truncated:
            count = len(current.truncated)
            truncations += count
            telemetry.AZURE_TRUNCATIONS.labels(group=query.group.name).inc(count)
            if top >= self._cfg.top_cap:
                log.warning(
                    "group %s: %d metric series lists still have top=%d series (azure.top_cap); "
                    "accepting possibly truncated data",
                    query.group.name,
                    count,
                    top,
                )
                break
            bigger = min(top * 10, self._cfg.top_cap)
            log.info(
                "group %s: %d metric series lists reached top=%d; re-querying with top=%d",
                query.group.name,
                count,
                top,
                bigger,
            )
            keys = {key for key, _ in current.truncated}
            again = tuple(a for a in query.accounts if a.key in keys)
            current = await self._pass(query, again, bigger, deadline)
            first.replace(again, current)
            top = bigger

        result = QueryResult(query, truncated=truncations, calls=first.counter.calls)
        for account in query.accounts:
            key = account.key
            if key in first.failed:
                result.failed[key] = first.failed[key]
                continue
            result.series.extend(first.series.get(key, ()))
        return result

    async def _pass(self, query: Query, accounts: Sequence[Account], top: int, deadline: float) -> _Pass:
        run = _Pass()
        if not accounts:
            return run
        if self._cfg.api == "arm" or self._per_resource(query.subscription_id):
            await self._arm_all(query, accounts, top, deadline, run)
        else:
            await self._batch(query, accounts, top, deadline, run)
        return run

    async def _batch(
        self, query: Query, accounts: Sequence[Account], top: int, deadline: float, run: _Pass
    ) -> None:
        names = self._wanted(query.group.metric_names, accounts)
        if not names:  # every metric was left out for every account: nothing to ask
            for member in accounts:
                run.series[member.key] = []
            return
        call = self._batch_call(query, accounts, names, top)
        try:
            values = await self._retrier.run(
                "getBatch", call, _batch_values, deadline, run.counter, scope=batch_scope(query)
            )
        except CallError as err:
            await self._batch_failed(query, accounts, top, deadline, run, err)
            return

        by_key = {a.key: a for a in accounts}
        seen: set[str] = set()
        # One pause for the whole body (no await in here): collections between the items would carry
        # the decoded body, about to be dropped, into the old generation and rescan it there.
        with collector_paused():
            for item in values:
                resource_id = resource_id_of(item)
                account = by_key.get(resource_id.lower()) if resource_id else None
                if account is None:
                    log.debug("getBatch returned an item for a resource that was not asked for; ignored")
                    continue
                seen.add(account.key)
                self._digest(query, account, item, top, run)
        for account in accounts:
            if account.key not in seen:
                run.fail(account, "missing from the getBatch response (deleted or moved?)")

    async def _batch_failed(
        self, query: Query, accounts: Sequence[Account], top: int, deadline: float, run: _Pass, err: CallError
    ) -> None:
        subscription = query.subscription_id
        if (err.status in (400, 404) or err.code == SERIES_CAP) and len(accounts) > 1:
            # One bad id (deleted, moved) can fail the whole call, and too many series are refused
            # for the whole call: bisect so the others still arrive, in calls of fewer accounts.
            half = len(accounts) // 2
            await asyncio.gather(
                self._batch(query, accounts[:half], top, deadline, run),
                self._batch(query, accounts[half:], top, deadline, run),
            )
            return
        if err.status == 401 and not err.credential:
            if self._cfg.api == "auto":
                self._use_arm_for(subscription, err)
                await self._arm_all(query, accounts, top, deadline, run)
                return
            reason = f"{err.reason} ({BATCH_ROLE_ADVICE}; or set azure.api: auto to fall back to per-resource calls)"
        elif err.status == 403 and not err.credential:
            advice = INSIGHTS_ADVICE.format(subscription=subscription)
            if subscription.lower() not in self._unregistered:
                self._unregistered.add(subscription.lower())
                log.warning("getBatch refused for subscription %s (%s): %s", subscription, err.reason, advice)
            reason = f"{err.reason} ({advice})"
        elif err.code == SERIES_CAP:
            # One account, still too many: ask for fewer series per metric (top) so that it fits;
            # truncation is then detected and reported as usual.
            limit = SERIES_CAP_TEXT.search(err.reason)
            fitting = int(limit.group(1)) // max(1, len(query.group.metric_names)) if limit else 0
            if 1 <= fitting < top:
                await self._batch(query, accounts, fitting, deadline, run)
                return
            reason = f"{err.reason} (this one account has more series than getBatch allows: lower azure.top_cap)"
        else:
            reason = account_reason(err)
        for account in accounts:
            run.fail(account, reason)

    def _per_resource(self, subscription_id: str) -> bool:
        """True while a subscription whose getBatch answered 401 is read per resource."""
        key = subscription_id.lower()
        until = self._arm_only.get(key)
        if until is None:
            return False
        if until > self._clock():
            return True
        del self._arm_only[key]
        log.info("trying getBatch again for subscription %s", subscription_id)
        return False

    def _use_arm_for(self, subscription_id: str, err: CallError) -> None:
        key = subscription_id.lower()
        if key in self._arm_only:
            return
        self._arm_only[key] = self._clock() + BATCH_REPROBE
        log.warning(
            "getBatch refused for subscription %s (%s): %s; using per-resource ARM metrics for it "
            "and trying getBatch again in %.0f min",
            subscription_id,
            err.reason,
            BATCH_ROLE_ADVICE,
            BATCH_REPROBE / 60,
        )

    async def _arm_all(
        self, query: Query, accounts: Sequence[Account], top: int, deadline: float, run: _Pass
    ) -> None:
        await asyncio.gather(*(self._arm_one(query, a, top, deadline, run) for a in accounts))

    async def _arm_one(self, query: Query, account: Account, top: int, deadline: float, run: _Pass) -> None:
        names = self._wanted(query.group.metric_names, (account,))
        if not names:
            run.series[account.key] = []
            return
        call = self._arm_call(query, account, names, top)
        try:
            body = await self._retrier.run(
                "metrics", call, _arm_response, deadline, run.counter, subscription_id=account.subscription_id
            )
        except CallError as err:
            run.fail(account, account_reason(err))
            return
        self._digest(query, account, body, top, run)

    def _wanted(self, names: Sequence[str], accounts: Sequence[Account]) -> list[str]:
        """`names` without the metrics left out for every one of `accounts`."""
        if not self._dropped:
            return list(names)
        left_out = [self._dropped.get(definitions_key(a), {}).get(a.key, set()) for a in accounts]
        return [name for name in names if not all(name in dropped for dropped in left_out)]

    def _leave_out(self, account: Account, metric: str, message: str) -> None:
        dropped = self._dropped.setdefault(definitions_key(account), {}).setdefault(account.key, set())
        if metric in dropped:
            return
        dropped.add(metric)
        log.warning(
            "%s: metric %s is not available for this account (%s); left out until its metric definitions "
            "are next read",
            account.id,
            metric,
            scrub(message),
        )

    def _digest(self, query: Query, account: Account, item: Any, top: int, run: _Pass) -> None:
        group = query.group
        try:
            parsed = parse_resource_metrics(
                item,
                account=account,
                group=group.name,
                requested_dimensions=group.dimensions,
                requested_aggregations=group.aggregations,
                timegrain=query.window.timegrain,
            )
        except AzureDataError as exc:
            # Well-formed JSON with the wrong shape: asking again returns the same, so no retry.
            run.fail(account, scrub(f"malformed metrics data: {exc}"))
            return
        passing: list[str] = []
        for metric, message in sorted(parsed.metric_errors.items()):
            if parsed.error_codes[metric].lower() in PERMANENT_METRIC_ERRORS:
                self._leave_out(account, metric, message)
            else:
                passing.append(f"{metric}: {message}")
        if passing:
            # Like a failed call: the family's documents must not be written without this metric.
            # Azure's words are shortened, never what the poller does about them (a long resource id
            # in the message once cut "fetched again next cycle" off).
            detail = scrub("; ".join(passing), limit=220)
            run.fail(account, f"a metric failed inside a 200 ({detail}); fetched again next cycle")
            return
        run.series[account.key] = list(parsed.series)
        if group.dimensions:  # without a filter there is one series per metric and `top` is moot
            for metric, count in parsed.series_counts.items():
                if count >= top:
                    run.truncated.add((account.key, metric))
