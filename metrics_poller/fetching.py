"""Run metric queries against Azure Monitor: getBatch first, per-resource ARM metrics as fallback.

The only module that knows azure-monitor-querymetrics and azure-mgmt-monitor. SDK retries are off; the
`Retrier` here retries with capped Retry-After and full-jitter backoff, and never sleeps past the
caller's deadline. Both APIs return the same per-resource JSON, read from the raw body (the
querymetrics result model drops `resourceid` and per-metric `errorCode`) by `azure_json`.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    DecodeError,
    HttpResponseError,
    IncompleteReadError,
    ResourceNotFoundError,
)
from azure.core.rest import HttpRequest
from azure.mgmt.monitor.aio import MonitorManagementClient
from azure.monitor.querymetrics.aio import MetricsClient

from metrics_poller import config, telemetry
from metrics_poller.azure_json import (
    AzureDataError,
    ResourceMetrics,
    decode_batch,
    decode_resource,
    parse_resource_metrics,
    resource_id_of,
)
from metrics_poller.catalog import AGGREGATION_KEY, canonical_dimension
from metrics_poller.credentials import client_kwargs, describe_error, secret_values
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

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504, 529})
THROTTLE_STATUS = frozenset({429, 529})
ARM_READS_HEADER = "x-ms-ratelimit-remaining-subscription-reads"
# A garbled body may be a broken transfer, so one more try is worth it; a second garbled body means
# the service keeps answering that way and further tries only burn the deadline.
MALFORMED_RETRIES = 1
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
# getBatch refuses a query whose result would hold more than 500,000 series ("Cannot request more than
# 500000 time series per query", azure-monitor.md §4 and §6; its status is undocumented, so the text
# decides). Asking again returns the same: the batch is split instead.
SERIES_CAP = "TooManySeries"
_SERIES_CAP_TEXT = re.compile(r"more than (\d+) time series per query", re.IGNORECASE)
_AGGREGATION_BY_LOWER = {name.lower(): name for name in AGGREGATION_KEY}
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+")


# --------------------------------------------------------------------------------------------- errors


class CallError(Exception):
    """An Azure call that did not succeed, after any retries. `reason` is one line without secrets."""

    def __init__(
        self,
        reason: str,
        *,
        status: int | None = None,
        code: str | None = None,
        credential: bool = False,
        retryable: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.code = code
        self.credential = credential  # the token could not be obtained: no request reached the service
        self.retryable = retryable


class DefinitionsError(Exception):
    """Metric definitions of one (subscription, region) could not be read; the message is one line."""


class _Malformed(ValueError):
    """A 200 whose body is not the JSON document the route promises."""


# --------------------------------------------------------------------------------------- pure helpers


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds the service asked us to wait (`retry-after-ms`, `x-ms-retry-after-ms`, `Retry-After`
    as seconds or an HTTP date); None when it did not say. `headers` keys are lower-case."""
    for name in ("retry-after-ms", "x-ms-retry-after-ms"):
        value = headers.get(name)
        if value is not None:
            try:
                return max(0.0, float(value) / 1000.0)
            except ValueError:
                pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def backoff_delay(retry_number: int, initial: float, maximum: float, rnd: float) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(maximum, initial · 2^n))."""
    return rnd * min(maximum, initial * (2.0**retry_number))


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """One line, bearer tokens and known secret values masked, at most 300 characters."""
    line = " ".join(text.split())
    line = _BEARER.sub(r"\1***", line)
    for secret in secrets:
        if secret:
            line = line.replace(secret, "***")
    return line if len(line) <= 300 else line[:297] + "..."


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
            raise _Malformed("metricDefinitions response has no 'value' list")
        for item in body["value"]:
            if not isinstance(item, dict):
                raise _Malformed("metricDefinitions entry is not an object")
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


# ------------------------------------------------------------------------------------------- retrying


class Capture:
    """raw_request_hook / raw_response_hook pair recording what the last HTTP exchange returned."""

    __slots__ = ("body", "headers", "pages", "status")

    def __init__(self) -> None:
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.body: bytes | None = None
        self.pages: list[bytes] = []  # every 200 body, for paged routes

    def request(self, _pipeline_request: Any) -> None:
        # Reset per request so a failure on page 2 is not mistaken for page 1's success.
        self.status, self.headers, self.body = None, {}, None

    def response(self, pipeline_response: Any) -> None:
        http = pipeline_response.http_response
        self.status = int(http.status_code)
        self.headers = {str(k).lower(): str(v) for k, v in http.headers.items()}
        try:
            self.body = http.body()
        except ValueError:  # streamed, not read yet: `send_batch` reports it once read
            self.body = None
        if self.status == 200 and self.body is not None:
            self.pages.append(self.body)

    def hooks(self) -> dict[str, Any]:
        return {"raw_request_hook": self.request, "raw_response_hook": self.response}


@dataclass
class Counter:
    """HTTP attempts made on behalf of one unit of work."""

    calls: int = 0


_ARM_READS: dict[str, int] = {}


def note_arm_reads(subscription_id: str, headers: Mapping[str, str]) -> None:
    """Export the lowest remaining ARM read budget seen across subscriptions."""
    value = headers.get(ARM_READS_HEADER)
    if value is None:
        return
    try:
        _ARM_READS[subscription_id.lower()] = int(value)
    except ValueError:
        return
    telemetry.ARM_REMAINING_READS.set(min(_ARM_READS.values()))


# ARM read pacing per cloud, (burst, reads per second): the public cloud's regional token bucket (250
# reads refilled at 25/s per subscription and principal, 2024+); the sovereign clouds document the older
# 12,000 reads per hour per principal and subscription (azure-monitor.md §6), paced as a bucket that
# cannot pass 12,000 in any hour (250 + 3600 × rate = 12,000).
ARM_READ_PACING: dict[str, tuple[float, float]] = {
    "public": (250.0, 25.0),
    "usgovernment": (250.0, (12_000 - 250) / 3600),
    "china": (250.0, (12_000 - 250) / 3600),
}


@dataclass
class TokenBucket:
    """Paces reads: `take` reserves one token and says how long to wait before using it."""

    capacity: float
    rate: float
    tokens: float
    stamp: float

    def take(self, now: float) -> float:
        # A clock that went backwards (another monotonic source) refills nothing rather than draining.
        self.tokens = min(self.capacity, self.tokens + max(0.0, now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


_ARM_BUCKETS: dict[str, TokenBucket] = {}


def arm_bucket(
    subscription_id: str, now: float, pacing: tuple[float, float] = ARM_READ_PACING["public"]
) -> TokenBucket:
    """One bucket per subscription for the whole process (discovery and fetching share ARM's quota),
    paced as `pacing` (burst, reads per second) of its cloud."""
    key = subscription_id.lower()
    if key not in _ARM_BUCKETS:
        burst, rate = pacing
        _ARM_BUCKETS[key] = TokenBucket(burst, rate, burst, now)
    return _ARM_BUCKETS[key]


class Holds:
    """When each throttle scope may be called again, as the service said with `Retry-After`.

    ARM refuses a request sent before its `Retry-After` has elapsed and answers it with a new 429
    (azure-monitor.md §4, a 309 s wait seen on metricDefinitions), so every call of a scope waits for
    the hold, whichever caller it comes from; a wait that does not fit is left for a later cycle."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}
        self._told: set[str] = set()  # scopes whose current hold was already reported

    def remaining(self, scope: str, now: float) -> float:
        return max(0.0, self._until.get(scope, 0.0) - now)

    def hold(self, scope: str, until: float, now: float) -> None:
        current = self._until.get(scope, 0.0)
        if current <= now:
            self._told.discard(scope)  # a new hold, to be reported afresh
        if until > current:
            self._until[scope] = until

    def first_report(self, scope: str) -> bool:
        """True once per hold: the deferral it causes is logged once, not once per call."""
        if scope in self._told:
            return False
        self._told.add(scope)
        return True


class Retrier:
    """Runs one Azure call with bounded concurrency, our own retries, and a hard deadline.

    `Retry-After` is always honoured, never shortened: a wait longer than `retry_after_cap` or past
    the deadline is not waited out; the call fails at once and its work is left for the next cycle,
    whose calls of that scope wait until the hold has passed."""

    def __init__(
        self,
        cfg: config.Azure,
        limit: asyncio.Semaphore,
        clock: Callable[[], float] = time.monotonic,
        *,
        rng: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        holds: Holds | None = None,
    ) -> None:
        self._retry = cfg.retry
        self._pacing = ARM_READ_PACING[cfg.cloud]
        self._holds = holds if holds is not None else Holds()
        self._timeout = cfg.request_timeout
        self._limit = limit
        self._clock = clock
        self._rng = rng
        self._sleep = sleep
        self._secrets = secret_values(cfg)

    async def run(
        self,
        route: str,
        call: Callable[[Capture], Awaitable[Any]],
        parse: Callable[[Any, Capture], T],
        deadline: float,
        counter: Counter | None = None,
        *,
        subscription_id: str | None = None,
        scope: str | None = None,
    ) -> T:
        """`call` makes one SDK request with `capture.hooks()`; `parse(value, capture)` turns its
        result (None when the SDK choked on a 200 body) into T or raises `_Malformed`. `scope` names
        what a `Retry-After` holds back (default: ARM reads of `subscription_id`)."""
        retries = 0
        malformed = 0
        last: CallError | None = None
        if scope is None and subscription_id is not None:
            scope = f"ARM reads of subscription {subscription_id.lower()}"
        while True:
            if scope is not None:
                held = self._holds.remaining(scope, self._clock())
                if held > 0:
                    self._check_wait(route, scope, held, deadline, last)
                    await self._sleep(held)
            if subscription_id is not None:
                pause = arm_bucket(subscription_id, self._clock(), self._pacing).take(self._clock())
                if self._clock() + pause >= deadline:
                    raise self._gave_up(last, "ARM read pacing would pass the deadline")
                if pause > 0:
                    await self._sleep(pause)
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise self._gave_up(last, "the deadline passed before the call could be made")
            try:
                async with asyncio.timeout(remaining):
                    await self._limit.acquire()
            except TimeoutError:
                raise self._gave_up(
                    last, "the deadline passed while waiting for a free connection slot"
                ) from None
            capture = Capture()
            try:
                if counter is not None:
                    counter.calls += 1
                value, error = await self._attempt(call, capture, deadline)
            finally:
                self._limit.release()
            status = capture.status
            telemetry.AZURE_CALLS.labels(route=route, status=str(status or 0)).inc()
            if status in THROTTLE_STATUS:
                telemetry.AZURE_THROTTLED.labels(route=route, status=str(status)).inc()
            if subscription_id is not None:
                note_arm_reads(subscription_id, capture.headers)

            if error is None or (status == 200 and _sdk_digest_error(error)):
                try:
                    return parse(value, capture)
                except (_Malformed, ValueError) as exc:
                    malformed += 1
                    last = CallError(
                        scrub(f"malformed response: {exc}", self._secrets),
                        status=200,
                        retryable=malformed <= MALFORMED_RETRIES,
                    )
            else:
                last = self._classify(error, capture)

            waited = retry_after_seconds(capture.headers) if capture.status != 200 else None
            if waited and scope is not None:
                self._holds.hold(scope, self._clock() + waited, self._clock())
            if not last.retryable or retries + 1 >= self._retry.attempts:
                raise last
            if waited is not None:
                self._check_wait(route, scope, waited, deadline, last)
                delay = waited
            else:
                delay = backoff_delay(
                    retries, self._retry.backoff_initial, self._retry.backoff_max, self._rng()
                )
            if self._clock() + delay >= deadline:
                raise self._gave_up(last, f"a retry in {delay:.1f}s would pass the deadline")
            retries += 1
            telemetry.AZURE_RETRIES.labels(route=route).inc()
            log.debug("%s: %s; retry %d in %.1fs", route, last.reason, retries, delay)
            await self._sleep(delay)

    async def _attempt(
        self, call: Callable[[Capture], Awaitable[Any]], capture: Capture, deadline: float
    ) -> tuple[Any, BaseException | None]:
        budget = min(self._timeout, deadline - self._clock())
        if budget <= 0:
            return None, TimeoutError("the deadline passed")
        try:
            async with asyncio.timeout(budget):
                return await call(capture), None
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            # Ours (the request timeout, or what was left before the deadline); the SDK's own
            # socket timeouts arrive as azure-core errors instead.
            return None, TimeoutError(f"no answer within {budget:.1f}s")
        except Exception as exc:
            return None, exc

    def _classify(self, error: BaseException, capture: Capture) -> CallError:
        if _certificate_rejected(error):
            # Asking again cannot make an untrusted certificate trusted: say so at once.
            return CallError(
                "TLS certificate verification failed (check azure.ca_bundle or the endpoint)", retryable=False
            )
        if isinstance(error, TimeoutError):
            return CallError(str(error) or "timed out", retryable=True)
        if isinstance(error, ClientAuthenticationError) and capture.status is None:
            # No HTTP exchange with the service happened: the credential itself failed. Entra ID
            # throttling or outages are worth another try; a rejected secret is not.
            message = scrub(describe_error(str(error.message or error)), self._secrets)
            return CallError(
                f"authentication failed: {message}",
                credential=True,
                retryable=error.status_code in RETRYABLE_STATUS,
            )
        if isinstance(error, HttpResponseError) and not isinstance(error, IncompleteReadError):
            status = capture.status or error.status_code
            code = getattr(error.error, "code", None) if error.error is not None else None
            message = _error_message(error, capture)
            label = f"HTTP {status}" + (f" {code}" if code else "")
            too_many = bool(_SERIES_CAP_TEXT.search(message))
            return CallError(
                scrub(f"{label}: {message}" if message else label, self._secrets),
                status=status,
                code=SERIES_CAP if too_many else code,
                retryable=status in RETRYABLE_STATUS and not too_many,
            )
        if capture.status is not None and capture.status >= 400:
            # The SDK choked on an error body it did not expect (e.g. 529's plain text): the status decides.
            status = capture.status
            message = _error_message(None, capture)
            label = f"HTTP {status}"
            return CallError(
                scrub(f"{label}: {message}" if message else label, self._secrets),
                status=status,
                retryable=status in RETRYABLE_STATUS,
            )
        if isinstance(error, AzureError):
            reason = describe_error(str(error.message))
            return CallError(
                scrub(f"connection error ({type(error).__name__}): {reason}", self._secrets),
                retryable=True,
            )
        return CallError(scrub(f"unexpected {type(error).__name__}: {error}", self._secrets))

    def _check_wait(
        self, route: str, scope: str | None, wait: float, deadline: float, last: CallError | None
    ) -> None:
        """Raise a deferred `CallError` when the server's wait is longer than this cycle may wait."""
        cap = self._retry.retry_after_cap
        if wait > cap:
            why = f"longer than azure.retry.retry_after_cap ({cap:g}s)"
        elif self._clock() + wait >= deadline:
            why = "past the cycle deadline"
        else:
            return
        what = f"Azure asked to wait {wait:.0f}s (Retry-After) before the next {route} call, {why}"
        if scope is None or self._holds.first_report(scope):
            log.warning("%s (%s): its work is left for the next cycle, nothing is lost", what, scope or route)
        raise self._gave_up(last, f"{what}; left for the next cycle")

    @staticmethod
    def _gave_up(last: CallError | None, why: str) -> CallError:
        if last is None:
            return CallError(f"gave up: {why}")
        return CallError(
            f"{last.reason}; gave up: {why}",
            status=last.status,
            code=last.code,
            credential=last.credential,
            retryable=last.retryable,
        )


def _certificate_rejected(error: BaseException) -> bool:
    """True when an exception (or one it was raised from) is a failed certificate verification."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(current):
            return True
        current = current.__cause__ or current.__context__ or getattr(current, "inner_exception", None)
    return False


def _sdk_digest_error(error: BaseException) -> bool:
    """The service answered 200 but the SDK could not turn the body into its model; our own
    parser reads the raw body instead (and rejects it if it is really malformed)."""
    if isinstance(error, IncompleteReadError):
        return False
    return isinstance(error, DecodeError) or not isinstance(error, AzureError | TimeoutError)


def _error_message(error: HttpResponseError | None, capture: Capture) -> str:
    inner = getattr(error.error, "message", None) if error is not None and error.error is not None else None
    if inner:
        return str(inner)
    if not capture.body:
        return ""
    try:
        body = json.loads(capture.body)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the decoder's stack
        # Not JSON (a gateway's plain-text page): its first line is the best description there is.
        return capture.body.decode("utf-8", "replace").strip().splitlines()[0] if capture.body.strip() else ""
    if isinstance(body, dict):
        nested = body.get("error")
        source = nested if isinstance(nested, dict) else body
        message = source.get("message")
        return str(message) if message else ""
    return ""


def _decoded(decode: Callable[[bytes], T], capture: Capture) -> T:
    if capture.body is None:
        raise _Malformed("empty body")
    try:
        return decode(capture.body)
    except AzureDataError as exc:
        raise _Malformed(str(exc)) from None
    except (ValueError, RecursionError) as exc:  # RecursionError: hostile nesting depth
        raise _Malformed(f"not JSON ({exc.__class__.__name__})") from None


def _batch_values(_value: Any, capture: Capture) -> list[Any]:
    return _decoded(decode_batch, capture)


def _arm_response(_value: Any, capture: Capture) -> Any:
    body = _decoded(decode_resource, capture)
    if not isinstance(body, dict | ResourceMetrics):
        raise _Malformed("metrics response is not a JSON object")
    return body


def _definition_pages(_value: Any, capture: Capture) -> dict[str, MetricDefinition]:
    pages = []
    for raw in capture.pages:
        try:
            pages.append(json.loads(raw))
        except (ValueError, RecursionError) as exc:
            raise _Malformed(f"not JSON ({exc.__class__.__name__})") from None
    if not pages:
        raise _Malformed("no metricDefinitions page was returned")
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
    ) -> None:
        self._cfg = cfg
        self._credential = credential
        self._clock = clock
        self._limit = asyncio.Semaphore(cfg.concurrency)
        self._retrier = Retrier(cfg, self._limit, clock)
        self._metrics_clients: dict[str, MetricsClient] = {}
        self._monitor_clients: dict[str, MonitorManagementClient] = {}
        # Subscriptions whose getBatch answered 401 (auto mode) → when to try getBatch again.
        self._arm_only: dict[str, float] = {}
        self._unregistered: set[str] = set()  # subscriptions whose 403 advice was logged
        self._definitions: dict[DefinitionsKey, _Definitions] = {}
        self._inflight: dict[DefinitionsKey, asyncio.Future[dict[str, MetricDefinition]]] = {}
        # Metrics left out per account after a permanent per-metric error, until definitions are re-read.
        self._dropped: dict[DefinitionsKey, dict[str, set[str]]] = {}

    # ------------------------------------------------------------------------------------- clients

    def _metrics_client(self, region: str) -> MetricsClient:
        key = region.lower()
        client = self._metrics_clients.get(key)
        if client is None:
            client = MetricsClient(
                self._cfg.endpoints.metrics.format(region=key),
                self._credential,
                audience=self._cfg.endpoints.metrics_audience,
                **client_kwargs(self._cfg),
            )
            self._metrics_clients[key] = client
        return client

    def _monitor_client(self, subscription_id: str) -> MonitorManagementClient:
        key = subscription_id.lower()
        client = self._monitor_clients.get(key)
        if client is None:
            client = MonitorManagementClient(
                self._credential,
                subscription_id,
                base_url=self._cfg.endpoints.resource_manager,
                credential_scopes=[self._cfg.endpoints.resource_manager_audience + "/.default"],
                **client_kwargs(self._cfg),
            )
            self._monitor_clients[key] = client
        return client

    async def close(self) -> None:
        """Close every SDK client (the credential belongs to the caller)."""
        clients: list[Any] = [*self._metrics_clients.values(), *self._monitor_clients.values()]
        self._metrics_clients.clear()
        self._monitor_clients.clear()
        for client in clients:
            await client.close()

    async def probe(self, query: Query, deadline: float) -> CallError | None:
        """One call for `query` through the route `azure.api` selects (ARM: its first account only),
        never falling back: None when Azure answered, else its error. For `validate`, which must show
        the 401 or 403 that `auto` would work around."""
        group = query.group
        flt = batch_filter(group.dimensions)
        top = query.top if flt else None
        try:
            if self._cfg.api == "arm":
                account = query.accounts[0]
                monitor = self._monitor_client(account.subscription_id)

                async def arm(capture: Capture) -> None:
                    await monitor.metrics.list(
                        account.id.lstrip("/"),
                        timespan=arm_timespan(query.window.start, query.window.end),
                        interval=query.window.timegrain,
                        metricnames=",".join(group.metric_names),
                        aggregation=",".join(group.aggregations),
                        top=top,
                        filter=flt,
                        metricnamespace=query.namespace,
                        **capture.hooks(),
                    )

                await self._retrier.run("metrics", arm, _arm_response, deadline, subscription_id=query.subscription_id)
            else:
                metrics = self._metrics_client(query.region)
                request = batch_request(
                    query.namespace,
                    query.subscription_id,
                    [a.id for a in query.accounts],
                    group.metric_names,
                    query.window.start,
                    query.window.end,
                    query.window.timegrain,
                    group.aggregations,
                    top,
                    order_by(group.aggregations),
                    flt,
                )

                async def batch(capture: Capture) -> None:
                    await send_batch(metrics, request, **capture.hooks())

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
        client = self._monitor_client(account.subscription_id)
        budget = deadline if deadline is not None else self._clock() + self._default_budget()

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

    def _default_budget(self) -> float:
        retry = self._cfg.retry
        return self._cfg.request_timeout * retry.attempts + min(retry.backoff_max, retry.retry_after_cap) * (
            retry.attempts - 1
        )

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
        group = query.group
        client = self._metrics_client(query.region)
        flt = batch_filter(group.dimensions)
        ids = [a.id for a in accounts]
        names = self._wanted(group.metric_names, accounts)
        if not names:  # every metric was left out for every account: nothing to ask
            for member in accounts:
                run.series[member.key] = []
            return

        request = batch_request(
            query.namespace,
            query.subscription_id,
            ids,
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
            limit = _SERIES_CAP_TEXT.search(err.reason)
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
        group = query.group
        client = self._monitor_client(account.subscription_id)
        flt = batch_filter(group.dimensions)
        names = self._wanted(group.metric_names, (account,))
        if not names:
            run.series[account.key] = []
            return

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
            run.fail(account, scrub(f"a metric failed inside a 200 ({'; '.join(passing)}); fetched again next cycle"))
            return
        run.series[account.key] = list(parsed.series)
        if group.dimensions:  # without a filter there is one series per metric and `top` is moot
            for metric, count in parsed.series_counts.items():
                if count >= top:
                    run.truncated.add((account.key, metric))
