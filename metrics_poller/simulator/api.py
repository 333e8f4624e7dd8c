"""The simulated Azure APIs as pure request → answer functions (no sockets, no clocks of their own).

`Backend` holds the world and answers ARM discovery, metric definitions, ARM metrics, getBatch and
Resource Graph calls; the HTTP shell in `server.py` adds authentication, faults, latency and counting.
"""

from __future__ import annotations

import base64
import math
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

import orjson

from metrics_poller.catalog import MetricSpec
from metrics_poller.simulator import data, inventory
from metrics_poller.simulator.data import Agg, MetricLayout, Publication
from metrics_poller.simulator.query import (
    ApiError,
    MetricQuery,
    bad_request,
    batch_times,
    catalogue_of,
    check_namespace,
    check_range,
    metric_of,
    parse_aggregations,
    parse_filter,
    parse_interval,
    parse_metrics,
    parse_orderby,
    parse_timespan,
    parse_top,
    primary_aggregation,
    resolve_dimensions,
    timestamp,
    unknown_metric_message,
    with_buckets,
)
from metrics_poller.simulator.spec import SimAccount, SimSpec
from metrics_poller.simulator.world import (
    ACCOUNT_TYPE,
    PROJECT_TYPE,
    REGION_DISPLAY,
    Resource,
    World,
    build_world,
)

MAX_BATCH_IDS = 50
_PROJECTION_CACHE = 500_000
_GRAINS_AVAILABLE = ("PT1M", "PT5M", "PT15M", "PT30M", "PT1H", "PT6H", "PT12H", "P1D")


Failing = tuple[str, str]  # (metric name or "*", the per-metric errorCode it fails with)

# Per-metric errors inside a 200, with the backend's messages (azure-monitor.md §3; the codes are the
# metrics backend's TimeSeriesErrorCode values, Microsoft.Cloud.Metrics.Client).
METRIC_ERROR_MESSAGES = {
    "InvalidSamplingType": "Sampling type is not found. Metric: {metric}, resource: {rid}.",
    "InvalidSeries": "Time series is not found. Metric: {metric}, resource: {rid}.",
    "Throttled": "The request was throttled. Metric: {metric}, resource: {rid}.",
    "TimeOut": "The query timed out. Metric: {metric}, resource: {rid}.",
    "InternalError": "Detected Internal Error. Metric: {metric}, resource: {rid}.",
}


@dataclass(slots=True)
class Reply:
    status: int
    body: Any  # encoded with orjson unless already bytes
    headers: dict[str, str] = field(default_factory=dict)


def not_found(resource_id: str) -> ApiError:
    parts = resource_id.strip("/").split("/")
    group = parts[3] if len(parts) > 3 else ""
    tail = "/".join(parts[5:]) if len(parts) > 5 else resource_id
    return ApiError(
        404,
        "ResourceNotFound",
        f"The Resource '{tail}' under resource group '{group}' was not found. "
        "For more details please go to https://aka.ms/ARMResourceNotFoundFix",
        backend=False,
    )


def too_many_series(limit: int, status: int) -> ApiError:
    """getBatch refuses a query that may request more than `limit` (500,000) series, counted as
    resources × metrics × `top` (what "request" in its message suggests, and how 50 accounts and a
    raised `top` reach it, issue 13). The message and exception type are from
    open-telemetry/opentelemetry-collector-contrib #40078; the status is not documented
    (azure-monitor.md §4, "uncertain"), so it is a setting: 429 (a "throttled" exception) or 400."""
    return ApiError(
        status,
        "TooManyRequests" if status == 429 else "BadRequest",
        "Exception:Microsoft.Online.QueryService.Contracts.QueryThrottledException: "
        f"Cannot request more than {limit} time series per query.",
        exception_type="Microsoft.Online.QueryService.Contracts.QueryThrottledException",
    )


def echo_time(value: datetime) -> str:
    """Azure echoes batch times with milliseconds only when they are not whole seconds."""
    value = value.astimezone(UTC)
    if value.microsecond:
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


class Backend:
    """The simulated estate and its APIs."""

    def __init__(self, spec: SimSpec, base_url: str = "https://127.0.0.1"):
        self.spec = spec
        self.base_url = base_url
        self.world: World = build_world(spec)
        # Accounts and their Foundry projects: both answer the metric routes, each with its own namespace.
        self._by_id: dict[str, SimAccount] = {a.key: a for a in (*self.world.accounts, *self.world.projects)}
        self._others: dict[str, Resource] = {r.id.lower(): r for r in self.world.other_resources}
        self._deleted: set[str] = set()
        self._layouts: dict[int, dict[str, MetricLayout]] = {}
        self._projections: dict[tuple[Any, ...], list[tuple[tuple[str, ...], list[data.Series]]]] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------------ world state

    def account(self, resource_id: str) -> SimAccount | None:
        """The live account with this id (case-insensitive), None when unknown or deleted."""
        key = resource_id.rstrip("/").lower()
        return None if key in self._deleted else self._by_id.get(key)

    def known_account(self, resource_id: str) -> SimAccount:
        """Any account of the world, deleted or not (ground truth outlives deletion); KeyError if unknown."""
        return self._by_id[resource_id.rstrip("/").lower()]

    def delete(self, resource_id: str) -> None:
        key = resource_id.rstrip("/").lower()
        if key not in self._by_id:
            raise KeyError(resource_id)
        with self._lock:
            self._deleted.add(key)

    def layout(self, account: SimAccount) -> dict[str, MetricLayout]:
        layouts = self._layouts.get(account.index)
        if layouts is None:
            # Built once per account; a racing duplicate build is identical, so no lock is needed.
            layouts = data.build_layout(self.spec.seed, account)
            self._layouts[account.index] = layouts
        return layouts

    def prepare(self) -> None:
        """Build every account's and project's series now rather than on its first query."""
        for account in (*self.world.accounts, *self.world.projects):
            self.layout(account)

    def live_accounts(self) -> list[SimAccount]:
        return [a for a in self.world.accounts if a.key not in self._deleted]

    def live_projects(self) -> list[SimAccount]:
        """Projects whose account and selves are live (deleting an account deletes its projects)."""
        return [
            p
            for p in self.world.projects
            if p.key not in self._deleted and p.key[: p.key.rfind("/projects/")] not in self._deleted
        ]

    # ----------------------------------------------------------------------------------- ARM resources

    def list_resources(self, path: str, subscription: str, group: str | None, params: Mapping[str, str]) -> Reply:
        sub = self._subscription(subscription)
        if group is not None and group.lower() not in {g.lower() for g in self.world.resource_groups[sub]}:
            raise ApiError(404, "ResourceGroupNotFound", f"Resource group '{group}' could not be found.", backend=False)
        items = [i for i in self._resource_items(sub, group) if _matches_filter(i, params.get("$filter"))]
        offset = _skip_offset(params.get("$skiptoken"))
        page = items[offset : offset + self.spec.page_size]
        body: dict[str, Any] = {"value": page}
        if offset + self.spec.page_size < len(items):
            body["nextLink"] = self._next_link(path, params, offset + self.spec.page_size)
        return Reply(200, body)

    def _subscription(self, subscription: str) -> str:
        for sub in self.world.subscription_ids:
            if sub.lower() == subscription.lower():
                return sub
        raise ApiError(
            404,
            "SubscriptionNotFound",
            f"The subscription '{subscription}' could not be found.",
            backend=False,
        )

    def _resource_items(self, subscription: str, group: str | None) -> list[dict[str, Any]]:
        def wanted(sub: str, rg: str) -> bool:
            return sub == subscription and (group is None or rg.lower() == group.lower())

        # ARM lists nested projects beside accounts when asked for their type (foundry.md §1.3).
        live = (*self.live_accounts(), *self.live_projects())
        items = [account_item(a) for a in live if wanted(a.subscription_id, a.resource_group)]
        items += [other_item(r) for r in self.world.other_resources if wanted(r.subscription_id, r.resource_group)]
        return items

    def _next_link(self, path: str, params: Mapping[str, str], offset: int) -> str:
        query = {k: v for k, v in params.items() if k != "$skiptoken"}
        query["$skiptoken"] = base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()
        return f"{self.base_url}{quote(path)}?{urlencode(query, quote_via=quote)}"

    def get_resource(self, resource_id: str) -> Reply:
        account = self.account(resource_id)
        if account is not None and account.type == PROJECT_TYPE:
            return Reply(200, {**account_item(account), "properties": {"provisioningState": "Succeeded"}})
        if account is not None:
            item = account_item(account)
            item["properties"] = {
                "endpoint": _endpoint(account),
                "provisioningState": "Succeeded",
                "customSubDomainName": account.name,
                "publicNetworkAccess": "Enabled",
            }
            return Reply(200, item)
        other = self._others.get(resource_id.rstrip("/").lower())
        if other is not None:
            return Reply(200, {**other_item(other), "properties": {"provisioningState": "Succeeded"}})
        raise not_found(resource_id)

    # ------------------------------------------------------------------------------------- definitions

    def metric_definitions(self, resource_id: str, params: Mapping[str, str]) -> Reply:
        account = self.account(resource_id)
        if account is None:
            raise not_found(resource_id)
        check_namespace(params.get("metricnamespace"), required=False, resource_type=account.type)
        offered = [m for m in catalogue_of(account.type) if self.spec.metric_defined(m.name, account.kind)]
        return Reply(200, {"value": [self._definition(account, m) for m in offered]})

    def _definition(self, account: SimAccount, metric: MetricSpec) -> dict[str, Any]:
        hidden = self.spec.hidden_dimensions(metric.name)
        return {
            "id": f"{account.id}/providers/microsoft.insights/metricdefinitions/{metric.name}",
            "resourceId": account.id,
            "namespace": account.type,
            "category": data.CATEGORIES.get(metric.name, "Azure OpenAI"),
            "name": {"value": metric.name, "localizedValue": data.DISPLAY_NAMES[metric.name]},
            "displayDescription": data.DISPLAY_NAMES[metric.name] + ".",
            "isDimensionRequired": False,
            "unit": metric.unit,
            "primaryAggregationType": primary_aggregation(metric),
            "supportedAggregationTypes": ["None", *metric.aggregations],
            "metricAvailabilities": [{"timeGrain": g, "retention": "P93D"} for g in _GRAINS_AVAILABLE],
            "dimensions": [{"value": d, "localizedValue": d} for d in metric.dimensions if d.lower() not in hidden],
        }

    def metric_namespaces(self, resource_id: str) -> Reply:
        account = self.account(resource_id)
        if account is None:
            raise not_found(resource_id)
        namespace = account.type
        item = {
            "id": f"{account.id}/providers/microsoft.insights/metricNamespaces/{namespace.replace('/', '-')}",
            "name": namespace.replace("/", "-"),
            "type": "Microsoft.Insights/metricNamespaces",
            "classification": "Platform",
            "properties": {"metricNamespaceName": namespace},
        }
        return Reply(200, {"value": [item]})

    # -------------------------------------------------------------------------------------- ARM metrics

    def arm_metrics(
        self, resource_id: str, params: Mapping[str, str], now: datetime, failing: Failing | None = None
    ) -> Reply:
        account = self.account(resource_id)
        if account is None:
            raise not_found(resource_id)
        start, end = parse_timespan(params.get("timespan"), now)
        check_range(start, end, now)
        check_namespace(params.get("metricnamespace"), required=False, resource_type=account.type)
        names = params.get("metricnames") or catalogue_of(account.type)[0].name
        query = self._query(
            params, names, start, end, auto_adjust=params.get("autoadjusttimegrain") == "true", rtype=account.type
        )
        self._check_offered(account, query)
        if (params.get("resulttype") or "").lower() == "metadata":
            query = _with_metadata_only(query)
        publication = Publication.at(now.timestamp(), self.spec.publication_delay)
        metrics = [self.metric_payload(account, account.id, m, query, publication, failing) for m in query.metrics]
        body = {
            "cost": sum(len(s.get("data", ())) for m in metrics for s in m["timeseries"]),
            "timespan": f"{timestamp(int(start.timestamp()))}/{timestamp(int(end.timestamp()))}",
            "interval": query.interval,
            "value": metrics,
            "namespace": account.type.lower(),
            "resourceregion": account.location,
        }
        return Reply(200, body)

    def _query(
        self,
        params: Mapping[str, str],
        names: str,
        start: datetime,
        end: datetime,
        *,
        auto_adjust: bool = False,
        rtype: str = ACCOUNT_TYPE,
    ) -> MetricQuery:
        metrics = parse_metrics(names, self.spec, rtype)
        grain, interval = parse_interval(params.get("interval"), end - start, auto_adjust)
        aggregations = parse_aggregations(params.get("aggregation"), metrics)
        clauses = parse_filter(params.get("$filter", params.get("filter")))
        split, filters = resolve_dimensions(metrics, clauses, params.get("rollupby"), self.spec)
        order_by, descending = parse_orderby(params.get("orderby"))
        query = MetricQuery(
            metrics=metrics,
            aggregations=aggregations,
            start=start.timestamp(),
            end=end.timestamp(),
            grain=grain,
            interval=interval,
            split=split,
            filters=filters,
            has_filter=bool(clauses),
            top=parse_top(params.get("top")),
            order_by=order_by,
            descending=descending,
        )
        return with_buckets(query)

    # ----------------------------------------------------------------------------------------- getBatch

    def get_batch(
        self,
        region: str,
        subscription: str,
        params: Mapping[str, str],
        body: bytes,
        now: datetime,
        failing: Failing | None = None,
    ) -> Reply:
        start, end = batch_times(dict(params), now)
        rtype = check_namespace(params.get("metricnamespace"), required=True)
        if not params.get("metricnames"):
            raise bad_request("Parameter 'metricnames' is required.")
        ids = _batch_ids(body)
        accounts = self._batch_accounts(region, subscription, ids, rtype)
        check_range(start, end, now)
        query = self._query(params, params["metricnames"], start, end, rtype=rtype)
        publication = Publication.at(now.timestamp(), self.spec.publication_delay)
        for account in accounts:
            if account is not None:
                self._check_offered(account, query)
        # The series a query may request: `top` per metric per resource when split by a filter, else one.
        requested = len(ids) * len(query.metrics) * (query.top if query.has_filter else 1)
        if requested > self.spec.batch_series_limit:
            raise too_many_series(self.spec.batch_series_limit, self.spec.series_limit_status)
        values = [
            self._batch_item(account, rid, query, start, end, publication, failing)
            for rid, account in zip(ids, accounts, strict=True)
            if account is not None
        ]
        return Reply(200, {"values": values})

    def _check_offered(self, account: SimAccount, query: MetricQuery) -> None:
        """A metric the account's kind does not offer is refused like an unknown one (400)."""
        for metric in query.metrics:
            if not self.spec.metric_defined(metric.name, account.kind):
                raise bad_request(unknown_metric_message(metric.name, self.spec, account.type))

    def _batch_accounts(
        self, region: str, subscription: str, ids: list[str], rtype: str = ACCOUNT_TYPE
    ) -> list[SimAccount | None]:
        """The resources of a batch; every one must be of the namespace's type, subscription and region
        (azure-monitor.md §5: "all in the same subscription, region and resource type")."""
        prefix = f"/subscriptions/{subscription.lower()}/"
        out: list[SimAccount | None] = []
        for rid in ids:
            if not rid.lower().startswith(prefix):
                raise bad_request(
                    f"Resource id '{rid}' does not belong to subscription '{subscription}'. "
                    "All resource ids in a batch must share one subscription."
                )
            other = self._others.get(rid.lower())
            if other is not None:
                raise bad_request(
                    f"Resource id '{rid}' is of type {other.type}; all resource ids in a batch must "
                    f"be of type {rtype}."
                )
            account = self.account(rid)
            if account is not None and account.type.lower() != rtype.lower():
                raise bad_request(
                    f"Resource id '{rid}' is of type {account.type}; all resource ids in a batch must "
                    f"be of type {rtype}."
                )
            if account is not None and account.location.lower() != region.lower():
                raise bad_request(
                    f"Resource id '{rid}' is in region '{account.location}', not in the requested "
                    f"region '{region}'. All resource ids in a batch must share one region."
                )
            if account is None and self.spec.batch_missing_resource == "error":
                raise bad_request(f"The resource '{rid}' could not be found.")
            out.append(account)
        return out

    def _batch_item(
        self,
        account: SimAccount,
        rid: str,
        query: MetricQuery,
        start: datetime,
        end: datetime,
        publication: Publication,
        failing: Failing | None,
    ) -> dict[str, Any]:
        return {
            "starttime": echo_time(start),
            "endtime": echo_time(end),
            "interval": query.interval,
            "value": [self.metric_payload(account, rid, m, query, publication, failing) for m in query.metrics],
            "namespace": account.type.lower(),
            "resourceregion": account.location,
            "resourceid": rid,
        }

    # ------------------------------------------------------------------------------ metric payloads

    def metric_payload(
        self,
        account: SimAccount,
        rid: str,
        metric: MetricSpec,
        query: MetricQuery,
        publication: Publication,
        failing: Failing | None = None,
    ) -> dict[str, Any]:
        """One element of a response's `value[]`: the metric with its series, ordered and truncated."""
        head = {
            "id": f"{rid}/providers/Microsoft.Insights/metrics/{metric.name}",
            "type": "Microsoft.Insights/metrics",
            "name": {"value": metric.name, "localizedValue": data.DISPLAY_NAMES[metric.name]},
            "displayDescription": data.DISPLAY_NAMES[metric.name] + ".",
            "unit": metric.unit,
        }
        if failing is not None and _names_metric(failing[0], metric):
            code = failing[1]
            message = METRIC_ERROR_MESSAGES.get(code, "Error {metric}, resource: {rid}.")
            message = message.format(metric=metric.name, rid=rid)
            return {**head, "timeseries": [], "errorCode": code, "errorMessage": message}
        series = self.series(account, metric, query, publication)
        return {**head, "timeseries": series, "errorCode": "Success"}

    def series(
        self, account: SimAccount, metric: MetricSpec, query: MetricQuery, publication: Publication
    ) -> list[dict[str, Any]]:
        buckets = query.buckets
        groups = [
            (key, data.aggregate(members, buckets, publication))
            for key, members in self._projection(account, metric.name, query.split, query.filters)
        ]
        aggregations = query.aggregations_for(metric)
        if query.split:
            groups = [(k, aggs) for k, aggs in groups if any(a is not None for a in aggs)]
            groups = _ordered(groups, query.order_by or aggregations[0], query.descending)
            if query.has_filter:
                groups = groups[: query.top]
        elif not groups:
            groups = [((), [None] * len(buckets))]
        names = [d.lower() for d in query.split]
        zero = metric.name in self.spec.zero_fill
        only = query.metadata_only
        return [_series_item(names, key, query.labels, aggs, aggregations, only, zero) for key, aggs in groups]

    def _projection(
        self, account: SimAccount, metric: str, split: tuple[str, ...], filters: dict[str, frozenset[str]]
    ) -> list[tuple[tuple[str, ...], list[data.Series]]]:
        """`data.project`, memoised: a poller asks the same split of the same account every cycle."""
        key = (account.index, metric, split, tuple(sorted(filters.items())))
        groups = self._projections.get(key)
        if groups is None:
            if len(self._projections) > _PROJECTION_CACHE:
                self._projections.clear()
            groups = self._projections[key] = data.project(self.layout(account)[metric], split, filters)
        return groups

    # -------------------------------------------------------------------------------------- ground truth

    def expected(
        self,
        account: SimAccount,
        metric: str,
        start: datetime,
        end: datetime,
        grain: int | None,
        dimensions: Sequence[str] | None,
    ) -> dict[frozenset[tuple[str, str]], dict[datetime, dict[str, float]]]:
        spec = metric_of(account.type, metric)
        if spec is None:
            raise KeyError(f"{metric} is not a metric of {account.type}")
        if not self.spec.metric_defined(metric, account.kind):
            return {}
        hidden = self.spec.hidden_dimensions(metric)
        canonical = {d.lower(): d for d in spec.dimensions}
        if dimensions is None:
            split = tuple(d for d in spec.dimensions if d.lower() not in hidden)
        else:
            split = tuple(canonical[d.lower()] for d in dimensions)
        buckets = data.plan_buckets(math.floor(start.timestamp()), math.ceil(end.timestamp()), grain)
        keys = [a.lower() for a in spec.aggregations]
        out: dict[frozenset[tuple[str, str]], dict[datetime, dict[str, float]]] = {}
        for key, members in data.project(self.layout(account)[metric], split, {}):
            points = {
                datetime.fromtimestamp(b.label, UTC): {k: data.AGGREGATION_VALUE[k](agg) for k in keys}
                for b, agg in zip(buckets, data.aggregate(members, buckets, data.FINAL), strict=True)
                if agg is not None
            }
            if points:
                out[frozenset(zip(split, key, strict=True))] = points
        return out

    # ------------------------------------------------------------------ control plane (inventory)

    def deployment_truths(self, account: SimAccount) -> list[inventory.DeploymentTruth]:
        requests = self.layout(account)["AzureOpenAIRequests"]
        status = requests.dimensions.index("StatusCode")
        deployment = requests.dimensions.index("ModelDeploymentName")
        throttled = {s.combo[deployment] for s in requests.series if s.combo[status] == "429"}
        # Every deployment, OpenAI or not: a Foundry account lists its non-OpenAI models' deployments
        # too, the ones only the azure.ai_foundry ("Models") metrics measure.
        return [inventory.truth(self.spec.seed, account, d, d.name in throttled) for d in account.deployments]

    def list_deployments(self, path: str, resource_id: str, params: Mapping[str, str]) -> Reply:
        """Deployments_List, paged by `deployment_page_size` with a `$skiptoken` nextLink."""
        _check_api_version(params)
        account = self.account(resource_id)
        if account is None:
            raise not_found(resource_id)
        items = [inventory.deployment_item(t) for t in self.deployment_truths(account)]
        return self._paged(path, params, items, self.spec.deployment_page_size)

    def quota_truths(self, subscription: str, region: str) -> list[inventory.QuotaTruth]:
        deployed = [
            t
            for a in self.live_accounts()
            if a.subscription_id.lower() == subscription.lower() and a.location.lower() == region.lower()
            for t in self.deployment_truths(a)
        ]
        return inventory.quotas(self.spec.seed, subscription, region, deployed)

    def list_usages(self, path: str, subscription: str, region: str, params: Mapping[str, str]) -> Reply:
        """Usages_List: the subscription's quota in one region (EX-LU shape, OpenAI keys as in §3.3)."""
        _check_api_version(params)
        sub = self._subscription(subscription)
        _check_location(region)
        count = sum(1 for a in self.live_accounts() if a.subscription_id == sub and a.location == region.lower())
        items = inventory.usage_items(self.quota_truths(sub, region), count)
        return self._paged(path, params, items, self.spec.page_size)

    def list_models(
        self, path: str, subscription: str, region: str, params: Mapping[str, str], now: datetime
    ) -> Reply:
        """Models_List: the regional model catalogue with lifecycle dates relative to `now`'s day."""
        _check_api_version(params)
        self._subscription(subscription)
        _check_location(region)
        return self._paged(path, params, inventory.catalogue(region, now), self.spec.page_size)

    def _paged(self, path: str, params: Mapping[str, str], items: Sequence[Any], size: int) -> Reply:
        offset = _skip_offset(params.get("$skiptoken"))
        body: dict[str, Any] = {"value": list(items[offset : offset + size])}
        if offset + size < len(items):
            body["nextLink"] = self._next_link(path, params, offset + size)
        return Reply(200, body)

    # ---------------------------------------------------------------------------------- Resource Graph

    def resource_graph(self, body: bytes) -> Reply:
        try:
            request = orjson.loads(body or b"{}")
        except orjson.JSONDecodeError:
            raise ApiError(400, "BadRequest", "The request body is not valid JSON.", backend=False) from None
        if not isinstance(request, dict) or not isinstance(request.get("query"), str):
            raise ApiError(400, "BadRequest", "The request must name a query.", backend=False)
        subscriptions = {s.lower() for s in request.get("subscriptions") or self.world.subscription_ids}
        options = request.get("options") or {}
        top = int(options.get("$top") or 100)
        offset = _skip_offset(options.get("$skipToken"))
        rows = _graph_rows(self.live_accounts(), self.live_projects(), subscriptions, request["query"])
        page = rows[offset : offset + top]
        reply: dict[str, Any] = {
            "totalRecords": len(rows),
            "count": len(page),
            "resultTruncated": "false",
            "data": page,
            "facets": [],
        }
        if offset + top < len(rows):
            reply["$skipToken"] = base64.urlsafe_b64encode(f"offset:{offset + top}".encode()).decode()
        return Reply(200, reply)


# ---------------------------------------------------------------------------------------------- helpers


def account_item(account: SimAccount) -> dict[str, Any]:
    if account.type == PROJECT_TYPE:
        # A project has no kind or SKU; ARM names a nested resource `parent/child` (Projects_Get).
        item: dict[str, Any] = {
            "id": account.id,
            "name": f"{account.id.split('/')[8]}/{account.name}",
            "type": PROJECT_TYPE,
            "location": account.location,
        }
    else:
        item = {
            "id": account.id,
            "name": account.name,
            "type": ACCOUNT_TYPE,
            "kind": account.kind,
            "location": account.location,
            "sku": {"name": "S0"},
        }
    if account.tags:  # ARM leaves `tags` out entirely for untagged resources
        item["tags"] = dict(account.tags)
    return item


def other_item(resource: Resource) -> dict[str, Any]:
    return {
        "id": resource.id,
        "name": resource.name,
        "type": resource.type,
        "kind": "StorageV2",
        "location": resource.location,
        "sku": {"name": "Standard_LRS"},
    }


def _endpoint(account: SimAccount) -> str:
    if account.kind == "OpenAI":
        return f"https://{account.name}.openai.azure.com/"
    return f"https://{account.name}.cognitiveservices.azure.com/"


_ARM_FILTER = re.compile(r"(\w+)\s+(eq|ne)\s+'([^']*)'", re.IGNORECASE)
_ARM_FIELDS = {"resourcetype": "type", "name": "name", "location": "location"}


def _matches_filter(item: Mapping[str, Any], text: str | None) -> bool:
    """ARM `$filter` on resources: `eq`/`ne` on resourceType, name, location, resourceGroup joined with
    `and`; anything else (tags, substringof) is accepted and ignored."""
    for name, op, value in _ARM_FILTER.findall(text or ""):
        field_name = name.lower()
        if field_name == "resourcegroup":
            actual = item["id"].split("/")[4]
        elif field_name in _ARM_FIELDS:
            actual = item[_ARM_FIELDS[field_name]]
        else:
            continue
        if (actual.lower() == value.lower()) != (op.lower() == "eq"):
            return False
    return True


def _check_api_version(params: Mapping[str, str]) -> None:
    """ARM refuses a request without `api-version`, or with one the provider has not registered."""
    version = params.get("api-version")
    if not version:
        raise ApiError(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
            backend=False,
        )
    if version not in inventory.API_VERSIONS:
        raise ApiError(
            400,
            "NoRegisteredProviderFound",
            f"No registered resource provider found for API version '{version}' and type 'accounts'. "
            f"The supported api-versions are '{', '.join(sorted(inventory.API_VERSIONS))}'.",
            backend=False,
        )


def _check_location(region: str) -> None:
    if region.lower() not in REGION_DISPLAY:
        raise ApiError(
            400,
            "LocationNotAvailableForResourceType",
            f"The provided location '{region}' is not available for resource type "
            "'Microsoft.CognitiveServices/locations'.",
            backend=False,
        )


def _skip_offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
        return max(0, int(text.removeprefix("offset:")))
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "InvalidSkipToken", "The skip token is not valid.", backend=False) from None


def _batch_ids(body: bytes) -> list[str]:
    try:
        request = orjson.loads(body or b"")
    except orjson.JSONDecodeError:
        raise bad_request("The request body is not valid JSON.") from None
    ids = request.get("resourceids") if isinstance(request, dict) else None
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise bad_request("The request body must carry a non-empty 'resourceids' list.")
    unique = list(dict.fromkeys(ids))
    if len({i.lower() for i in unique}) > MAX_BATCH_IDS:
        raise bad_request(
            f"The number of resource ids in the request ({len(unique)}) exceeds the maximum of {MAX_BATCH_IDS}."
        )
    return unique


def _with_metadata_only(query: MetricQuery) -> MetricQuery:
    return replace(query, metadata_only=True)


def _names_metric(failing: str, metric: MetricSpec) -> bool:
    return failing == "*" or failing.lower() == metric.name.lower()


def _ordered(
    groups: list[tuple[tuple[str, ...], list[Agg | None]]], order_by: str, descending: bool
) -> list[tuple[tuple[str, ...], list[Agg | None]]]:
    def rank(group: tuple[tuple[str, ...], list[Agg | None]]) -> tuple[float, tuple[str, ...]]:
        score = data.score(group[1], order_by)
        return (-score if descending else score, group[0])

    return sorted(groups, key=rank)


def _series_item(
    names: list[str],
    key: tuple[str, ...],
    labels: Sequence[str],
    aggs: list[Agg | None],
    aggregations: tuple[str, ...],
    metadata_only: bool,
    zero_fill: bool = False,
) -> dict[str, Any]:
    item: dict[str, Any] = {"metadatavalues": [_metadata_value(n, v) for n, v in zip(names, key, strict=True)]}
    if metadata_only:
        return item
    value_of = [(name, data.AGGREGATION_VALUE[name]) for name in aggregations]
    # An empty minute is a bare bucket, or, for a metric its provider declares `fillGapWithZero`, a 0
    # for every aggregation (azure-monitor.md §7.2: "each resource provider decides between 0 and null").
    empty = {name: 0.0 for name in aggregations} if zero_fill else {}
    item["data"] = [
        {"timeStamp": label, **empty} if agg is None else {"timeStamp": label, **{n: f(agg) for n, f in value_of}}
        for label, agg in zip(labels, aggs, strict=True)
    ]
    return item


_METADATA: dict[tuple[str, str], dict[str, Any]] = {}


def _metadata_value(name: str, value: str) -> dict[str, Any]:
    """A `metadatavalues[]` entry; shared between responses because building them dominated the profile
    (they are only ever serialised, never mutated)."""
    entry = _METADATA.get((name, value))
    if entry is None:
        entry = _METADATA[(name, value)] = {"name": {"value": name, "localizedValue": name}, "value": value}
    return entry


_KIND_LIST = re.compile(r"kind\s+in~?\s*\(([^)]*)\)", re.IGNORECASE)
_KIND_EQ = re.compile(r"kind\s*=~?\s*'([^']*)'", re.IGNORECASE)


_TYPE_EQ = re.compile(r"type\s*=~?\s*'([^']*)'", re.IGNORECASE)


def _graph_rows(
    accounts: list[SimAccount], projects: list[SimAccount], subscriptions: set[str], query: str
) -> list[dict[str, Any]]:
    """Rows for an ARG query over Cognitive Services accounts, or their projects when `type =~` names
    that type. Only the type and `kind in~ (...)` / `kind =~ '...'` predicates are interpreted; the
    projection is the fixed set of columns the poller asks for."""
    named = _TYPE_EQ.search(query)
    if named and named.group(1).lower() == PROJECT_TYPE.lower():
        return [
            {
                "id": p.id,
                "name": p.name,  # Resource Graph gives the project's own name
                "type": PROJECT_TYPE.lower(),
                "location": p.location,
                "resourceGroup": p.resource_group.lower(),
                "subscriptionId": p.subscription_id,
                "tags": dict(p.tags),
            }
            for p in projects
            if p.subscription_id.lower() in subscriptions
        ]
    kinds: set[str] | None = None
    listed = _KIND_LIST.search(query)
    if listed:
        kinds = {k.strip().strip("'\"").lower() for k in listed.group(1).split(",")}
    elif equal := _KIND_EQ.search(query):
        kinds = {equal.group(1).lower()}
    rows = []
    for a in accounts:
        if a.subscription_id.lower() not in subscriptions or (kinds is not None and a.kind.lower() not in kinds):
            continue
        rows.append(
            {
                "id": a.id,
                "name": a.name,
                "type": ACCOUNT_TYPE.lower(),
                "kind": a.kind,
                "location": a.location,
                "resourceGroup": a.resource_group.lower(),
                "subscriptionId": a.subscription_id,
                "tags": dict(a.tags),
                "sku": "S0",
            }
        )
    return rows
