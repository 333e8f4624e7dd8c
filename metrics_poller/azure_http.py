"""The one Azure HTTP layer: every call the poller makes to Azure goes through here.

Discovery, metric definitions, metrics and the inventory share it: retries with full-jitter backoff
that never retry before the server's `Retry-After` (holds per throttle scope), ARM read pacing per
(cloud, subscription) as a token bucket, the SDK client keywords of the chosen cloud (endpoint, token
audience, transport), the raw request/response hooks (`Capture`), and the classification of every
failure into a one-line, secret-free `CallError`. SDK retries are off; a reader of a new ARM route is
an SDK call wrapped in `Retrier.run` plus a parser of the raw pages.
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
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import orjson
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    DecodeError,
    HttpResponseError,
    IncompleteReadError,
)
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import AsyncHTTPPolicy
from azure.core.rest import AsyncHttpResponse, HttpRequest

from metrics_poller import config, telemetry
from metrics_poller.credentials import client_kwargs, describe_error, secret_values

log = logging.getLogger(__name__)

T = TypeVar("T")

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504, 529})
THROTTLE_STATUS = frozenset({429, 529})
ARM_READS_HEADER = "x-ms-ratelimit-remaining-subscription-reads"
# A garbled body may be a broken transfer, so one more try is worth it; a second garbled body means
# the service keeps answering that way and further tries only burn the deadline.
MALFORMED_RETRIES = 1
# getBatch refuses a query whose result would hold more than 500,000 series ("Cannot request more than
# 500000 time series per query", azure-monitor.md §4 and §6; its status is undocumented, so the text
# decides). Asking again returns the same, so such an error is classified as not retryable.
SERIES_CAP = "TooManySeries"
SERIES_CAP_TEXT = re.compile(r"more than (\d+) time series per query", re.IGNORECASE)
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


class Malformed(ValueError):
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


def scrub(text: str, secrets: Iterable[str] = (), *, limit: int = 300) -> str:
    """One line, bearer tokens and known secret values masked, at most `limit` characters."""
    line = " ".join(text.split())
    line = _BEARER.sub(r"\1***", line)
    for secret in secrets:
        if secret:
            line = line.replace(secret, "***")
    return line if len(line) <= limit else line[: limit - 3] + "..."


def call_budget(cfg: config.Azure) -> float:
    """How long one call may take with all its retries, for callers without a cycle deadline."""
    retry = cfg.retry
    return cfg.request_timeout * retry.attempts + min(retry.backoff_max, retry.retry_after_cap) * (retry.attempts - 1)


def arm_kwargs(cfg: config.Azure) -> dict[str, Any]:
    """Keyword arguments of an ARM management client (call it once per client): the cloud's Resource
    Manager endpoint and token audience, the shared transport settings, and the pacing of pages."""
    return {
        "base_url": cfg.endpoints.resource_manager,
        "credential_scopes": [cfg.endpoints.resource_manager_audience + "/.default"],
        "per_call_policies": [_PagePacingPolicy()],
        **client_kwargs(cfg),
    }


_PAGE_PACING = "metrics_poller_page_pacing"


class _PagePacingPolicy(AsyncHTTPPolicy[HttpRequest, AsyncHttpResponse]):
    """Waits for the read budget before every request of a paged ARM call: the SDK pager sends each
    page with the operation's keyword arguments, so `Capture.hooks()` hands the wait to every page."""

    async def send(self, request: PipelineRequest[HttpRequest]) -> PipelineResponse[HttpRequest, AsyncHttpResponse]:
        wait = request.context.options.pop(_PAGE_PACING, None)
        if wait is not None:
            await wait()
        return await self.next.send(request)


def json_pages(capture: Capture) -> list[Any]:
    """Every 200 page of a paged route, decoded; raises `Malformed` when one is not JSON."""
    pages = []
    for raw in capture.pages:
        try:
            pages.append(orjson.loads(raw))
        except (ValueError, RecursionError) as exc:  # orjson.JSONDecodeError is a ValueError
            raise Malformed(f"not JSON ({exc.__class__.__name__})") from None
    return pages


# -------------------------------------------------------------------------------------------- clients


class _Closable(Protocol):
    async def close(self) -> None: ...


C = TypeVar("C", bound=_Closable)


class Clients(Generic[C]):
    """SDK clients by key (a subscription or a region, compared without case), made on first use."""

    def __init__(self, make: Callable[[str], C]) -> None:
        self._make = make
        self._clients: dict[str, C] = {}

    def get(self, key: str) -> C:
        client = self._clients.get(key.lower())
        if client is None:
            client = self._clients[key.lower()] = self._make(key)
        return client

    async def close(self) -> None:
        """Close every client made so far (the credential belongs to the caller)."""
        clients = list(self._clients.values())
        self._clients.clear()
        for client in clients:
            await client.close()


# ------------------------------------------------------------------------------------------- retrying


class Capture:
    """raw_request_hook / raw_response_hook pair recording what the last HTTP exchange returned."""

    __slots__ = ("body", "headers", "next_page", "pages", "status")

    def __init__(self) -> None:
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.body: bytes | None = None
        self.pages: list[bytes] = []  # every 200 body, for paged routes
        # Awaited before each further request of a paged route (ARM counts every page as a read).
        self.next_page: Callable[[], Awaitable[None]] | None = None

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
        hooks: dict[str, Any] = {"raw_request_hook": self.request, "raw_response_hook": self.response}
        if self.next_page is not None:
            hooks[_PAGE_PACING] = self.next_page
        return hooks


@dataclass
class Counter:
    """HTTP attempts made on behalf of one unit of work."""

    calls: int = 0


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


class Pacing:
    """What Azure said about pacing, shared by every reader of one process: one ARM read bucket per
    (cloud, subscription) and the `Retry-After` holds per scope.

    ARM counts reads per subscription and principal whatever route they take (deployments-and-quota.md
    §5), and a request sent before a `Retry-After` has passed is refused wherever it comes from, so
    discovery, metric definitions, per-resource metrics and the inventory draw on one `Pacing`: the
    runtime makes one and hands it to each reader."""

    def __init__(self) -> None:
        self.holds = Holds()
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self._remaining: dict[str, int] = {}  # ARM's own count of reads left, per subscription

    def bucket(self, cloud: str, subscription_id: str, now: float) -> TokenBucket:
        """The read bucket of `subscription_id` in `cloud`, paced as that cloud's `ARM_READ_PACING`."""
        key = (cloud, subscription_id.lower())
        bucket = self._buckets.get(key)
        if bucket is None:
            burst, rate = ARM_READ_PACING[cloud]
            bucket = self._buckets[key] = TokenBucket(burst, rate, burst, now)
        return bucket

    def note_reads(self, subscription_id: str, headers: Mapping[str, str]) -> None:
        """Export the lowest remaining ARM read budget ARM reported across subscriptions."""
        value = headers.get(ARM_READS_HEADER)
        if value is None:
            return
        try:
            self._remaining[subscription_id.lower()] = int(value)
        except ValueError:
            return
        telemetry.ARM_REMAINING_READS.set(min(self._remaining.values()))


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
        pacing: Pacing | None = None,
    ) -> None:
        self._retry = cfg.retry
        self._cloud = cfg.cloud
        self._pacing = pacing if pacing is not None else Pacing()
        self._holds = self._pacing.holds
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
        result (None when the SDK choked on a 200 body) into T or raises `Malformed`. `scope` names
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
                pause = self._pacing.bucket(self._cloud, subscription_id, self._clock()).take(self._clock())
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
            if subscription_id is not None:
                capture.next_page = self._page_pacer(subscription_id, deadline)
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
                self._pacing.note_reads(subscription_id, capture.headers)

            if error is None or (status == 200 and _sdk_digest_error(error)):
                try:
                    return parse(value, capture)
                except (Malformed, ValueError) as exc:
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

    def _page_pacer(self, subscription_id: str, deadline: float) -> Callable[[], Awaitable[None]]:
        """The wait before each request of one ARM call: none for the first (paid for before the call),
        one read each for the pages after it."""
        sent = 0

        async def wait() -> None:
            nonlocal sent
            sent += 1
            if sent == 1:
                return
            pause = self._pacing.bucket(self._cloud, subscription_id, self._clock()).take(self._clock())
            if self._clock() + pause >= deadline:
                raise CallError("gave up: ARM read pacing of the next page would pass the deadline")
            if pause > 0:
                await self._sleep(pause)

        return wait

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
        if isinstance(error, CallError):  # raised by our own pacing of a later page
            return error
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
            too_many = bool(SERIES_CAP_TEXT.search(message))
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
    if isinstance(error, IncompleteReadError | CallError):  # CallError: our own pacing gave up on a page
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
