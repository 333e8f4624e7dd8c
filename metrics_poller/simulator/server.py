"""The HTTPS shell: an aiohttp server on loopback, in its own thread, in front of `Backend`.

It owns what is not pure: TLS (a private CA from trustme), Entra ID tokens, fault injection, added
latency, the ARM read token bucket and the call counters.
"""

from __future__ import annotations

import asyncio
import math
import shutil
import socket
import ssl
import struct
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

import orjson
import trustme
from aiohttp import web

from metrics_poller.simulator.api import Backend, Failing, Reply
from metrics_poller.simulator.faults import MALFORMED, MALFORMED_DEFAULT, Faults, additional_info, error_reply
from metrics_poller.simulator.inventory import DeploymentTruth, QuotaTruth
from metrics_poller.simulator.query import ApiError, parse_interval
from metrics_poller.simulator.spec import FaultRule, SimAccount, SimSpec

Clock = Callable[[], datetime]

# Token audiences each cloud's ARM and metrics endpoints accept (azure-monitor.md §11; the sovereign
# clouds' pages on learn.microsoft.com: management.usgovcloudapi.net / .chinacloudapi.cn, and
# metrics.monitor.azure.us / .azure.cn).
AUDIENCES: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "public": (
        frozenset({"https://management.azure.com", "https://management.core.windows.net"}),
        frozenset({"https://metrics.monitor.azure.com"}),
    ),
    "usgovernment": (
        frozenset({"https://management.usgovcloudapi.net", "https://management.core.usgovcloudapi.net"}),
        frozenset({"https://metrics.monitor.azure.us"}),
    ),
    "china": (
        frozenset({"https://management.chinacloudapi.cn", "https://management.core.chinacloudapi.cn"}),
        frozenset({"https://metrics.monitor.azure.cn"}),
    ),
}
INSIGHTS_ROUTES = frozenset({"getBatch", "metrics", "metricDefinitions", "metricNamespaces"})
ARM_ROUTES = frozenset(
    {
        "resources",
        "resource",
        "metricDefinitions",
        "metricNamespaces",
        "metrics",
        "resourceGraph",
        "deployments",
        "usages",
        "models",
    }
)
# Microsoft.CognitiveServices/locations/{location}/usages and …/models (Usages_List, Models_List).
LOCATION_ROUTES = {"usages": "usages", "models": "models"}
ARM_READ_BUCKET = 250.0
ARM_READ_REFILL = 25.0


@dataclass(frozen=True, slots=True)
class Route:
    """A classified request: route name plus the path parts its handler needs (original casing)."""

    name: str
    subscription: str | None = None
    group: str | None = None
    resource_id: str | None = None
    region: str | None = None
    tenant: str | None = None


def classify(method: str, path: str) -> Route:
    """Map a request path (matched case-insensitively, as Azure does) to a route."""
    parts = [p for p in path.split("/") if p]
    low = [p.lower() for p in parts]
    n = len(low)
    if n == 4 and low[1:] == ["v2.0", ".well-known", "openid-configuration"]:
        return Route("openid", tenant=parts[0])
    if n == 4 and low[1:] == ["oauth2", "v2.0", "token"]:
        return Route("token", tenant=parts[0])
    if n == 5 and low[0] == "metrics" and low[2] == "subscriptions" and low[4] == "metrics:getbatch":
        return Route("getBatch", subscription=parts[3], region=parts[1])
    if low == ["providers", "microsoft.resourcegraph", "resources"]:
        return Route("resourceGraph")
    if n < 3 or low[0] != "subscriptions":
        return Route("unknown")
    if n == 3 and low[2] == "resources":
        return Route("resources", subscription=parts[1])
    if n == 5 and low[2] == "resourcegroups" and low[4] == "resources":
        return Route("resources", subscription=parts[1], group=parts[3])
    if n == 7 and low[2:5] == ["providers", "microsoft.cognitiveservices", "locations"] and low[6] in LOCATION_ROUTES:
        return Route(LOCATION_ROUTES[low[6]], subscription=parts[1], region=parts[5])
    if n >= 8 and low[2] == "resourcegroups" and low[4] == "providers":
        # An account's id has 8 parts; a Foundry project's (…/accounts/{a}/projects/{p}) 10.
        size = 10 if n >= 10 and low[8] == "projects" else 8
        resource_id = "/" + "/".join(parts[:size])
        if n == size:
            return Route("resource", subscription=parts[1], resource_id=resource_id)
        if n == 9 and size == 8 and low[8] == "deployments":
            return Route("deployments", subscription=parts[1], resource_id=resource_id)
        if n == size + 3 and low[size] == "providers" and low[size + 1] == "microsoft.insights":
            name = {
                "metricdefinitions": "metricDefinitions",
                "metrics": "metrics",
                "metricnamespaces": "metricNamespaces",
            }.get(low[size + 2], "unknown")
            return Route(name, subscription=parts[1], resource_id=resource_id)
    return Route("unknown")


def query_params(query_string: str) -> dict[str, str]:
    """Query parameters with lower-cased keys (Azure matches keys without case), first value wins."""
    parsed = parse_qs(query_string, keep_blank_values=True)
    return {k.lower(): v[0] for k, v in parsed.items()}


class _ArmBuckets:
    """ARM's per-subscription read token bucket (250 reads, refilled at 25 per second)."""

    def __init__(self) -> None:
        self._state: dict[str, tuple[float, float]] = {}

    def take(self, subscription: str) -> float:
        """Consume one read; returns the reads left, negative when the bucket was empty."""
        now = time.monotonic()
        tokens, last = self._state.get(subscription.lower(), (ARM_READ_BUCKET, now))
        tokens = min(ARM_READ_BUCKET, tokens + (now - last) * ARM_READ_REFILL)
        if tokens >= 1.0:
            tokens -= 1.0
            self._state[subscription.lower()] = (tokens, now)
            return tokens
        self._state[subscription.lower()] = (tokens, now)
        return tokens - 1.0


def hold_scope(route: Route) -> str | None:
    """What one 429 holds back: ARM reads per subscription (its throttles are per subscription and
    principal), getBatch per (subscription, region) (one regional endpoint per call)."""
    if route.subscription is None:
        return None
    if route.name == "getBatch":
        return f"getBatch:{route.subscription.lower()}:{(route.region or '').lower()}"
    if route.name in ARM_ROUTES:
        return f"arm:{route.subscription.lower()}"
    return None


class Simulator:
    """Azure Entra ID, ARM, Azure Monitor metrics and getBatch, served over HTTPS on loopback."""

    def __init__(
        self,
        spec: SimSpec | None = None,
        clock: Clock | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        self.spec = spec or SimSpec()
        self.clock = clock
        self.faults = Faults(self.spec.seed)
        self._host = host
        self._port = port
        self._backend = Backend(self.spec)
        self._tokens: dict[str, str] = {}
        self._calls: Counter[tuple[str, int]] = Counter()
        self._calls_lock = threading.Lock()
        self._in_flight = 0  # requests being answered (counted by `_count` when they end)
        self._route_in_flight: Counter[str] = Counter()
        self._peak_in_flight: Counter[str] = Counter()  # per route, since the last `reset_calls`
        self._peers: set[tuple[object, ...]] = set()
        self._arm = _ArmBuckets()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._tmp: Path | None = None
        self._url = ""

    # ------------------------------------------------------------------------------------ lifecycle

    def start(self) -> Simulator:
        if self._thread is not None:
            return self
        self._tmp = Path(tempfile.mkdtemp(prefix="azure-sim-"))
        ca = trustme.CA(organization_name="metrics-poller simulator")
        ca.cert_pem.write_to_path(str(self._tmp / "ca.pem"))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost", "::1").configure_cert(context)
        started = threading.Event()
        failure: list[BaseException] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._serve, args=(context, started, failure), name="azure-simulator", daemon=True
        )
        self._thread.start()
        started.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    def _serve(self, context: ssl.SSLContext, started: threading.Event, failure: list[BaseException]) -> None:
        assert self._loop is not None
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._open(context))
        except BaseException as exc:  # reported to start() in the caller's thread
            failure.append(exc)
            started.set()
            loop.close()
            return
        started.set()
        loop.run_forever()
        if self._runner is not None:
            loop.run_until_complete(self._runner.cleanup())
        loop.close()

    async def _open(self, context: ssl.SSLContext) -> None:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # Held "timeout" requests must not keep stop() waiting for long.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port, ssl_context=context, backlog=1024)
        await site.start()
        server = site._server
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self._url = f"https://{self._host}:{port}"
        self._backend.base_url = self._url

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._thread = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --------------------------------------------------------------------------------- public facts

    @property
    def url(self) -> str:
        return self._url

    @property
    def ca_path(self) -> str:
        if self._tmp is None:
            raise RuntimeError("the simulator is not running")
        return str(self._tmp / "ca.pem")

    @property
    def tenant_id(self) -> str:
        return self._backend.world.tenant_id

    @property
    def client_id(self) -> str:
        return self._backend.world.client_id

    @property
    def client_secret(self) -> str:
        return self._backend.world.client_secret

    @property
    def subscription_ids(self) -> list[str]:
        return list(self._backend.world.subscription_ids)

    @property
    def accounts(self) -> list[SimAccount]:
        return list(self._backend.world.accounts)

    def azure_config(self, **overrides: Any) -> dict[str, Any]:
        """The poller's `azure:` configuration section pointing at this simulator."""
        config: dict[str, Any] = {
            "subscriptions": [{"id": s} for s in self.subscription_ids],
            "endpoints": {
                "resource_manager": self.url,
                "metrics": self.url + "/metrics/{region}",
                "authority": self.url,
            },
            "ca_bundle": self.ca_path,
            "credential": {
                "type": "client_secret",
                "tenant_id": self.tenant_id,
                "client_id": self.client_id,
                "client_secret": self.client_secret,
            },
        }
        if self.spec.cloud != "public":  # its audiences: the explicit endpoints above still override
            config["cloud"] = self.spec.cloud
        config.update(overrides)
        return config

    def now(self) -> datetime:
        return self.clock() if self.clock is not None else datetime.now(UTC)

    def prepare(self) -> None:
        """Do the per-account set-up up front (a benchmark measures only per-request work)."""
        self._backend.prepare()

    def delete_account(self, account_id: str) -> None:
        self._backend.delete(account_id)

    @property
    def calls(self) -> Counter[tuple[str, int]]:
        with self._calls_lock:
            return Counter(self._calls)

    def call_count(self, route: str) -> int:
        with self._calls_lock:
            return sum(n for (r, _), n in self._calls.items() if r == route)

    def reset_calls(self) -> None:
        with self._calls_lock:
            self._calls.clear()
            self._peers.clear()
            self._peak_in_flight = Counter(self._route_in_flight)

    def peak_in_flight(self, route: str) -> int:
        """The most requests of `route` being answered at once since the last `reset_calls`."""
        with self._calls_lock:
            return self._peak_in_flight[route]

    @property
    def connections(self) -> int:
        """Distinct client connections (address, port) seen since the last `reset_calls`."""
        with self._calls_lock:
            return len(self._peers)

    @property
    def projects(self) -> list[SimAccount]:
        """The Foundry projects (with agents) of the estate's AIServices accounts."""
        return list(self._backend.world.projects)

    def expected(
        self,
        account_id: str,
        metric: str,
        start: datetime,
        end: datetime,
        grain: str | timedelta = "PT1M",
        dimensions: Sequence[str] | None = None,
    ) -> dict[frozenset[tuple[str, str]], dict[datetime, dict[str, float]]]:
        """Ground truth: the final values the API serves for this request (see the package docs)."""
        account = self._backend.known_account(account_id)
        text = grain if isinstance(grain, str) else _duration_text(grain)
        seconds, _ = parse_interval(text, end - start)
        return self._backend.expected(account, metric, start, end, seconds, dimensions)

    def deployment_truths(self, account_id: str) -> list[DeploymentTruth]:
        """Ground truth of an account's deployments: type, capacity, true limits, quota key."""
        return self._backend.deployment_truths(self._backend.known_account(account_id))

    def quota_truths(self, subscription: str, region: str) -> list[QuotaTruth]:
        """Ground truth of one (subscription, region)'s OpenAI quota rows."""
        return self._backend.quota_truths(subscription, region)

    # ------------------------------------------------------------------------------------- handling

    def _count(self, route: str, status: int) -> None:
        with self._calls_lock:
            self._calls[(route, status)] += 1
            self._in_flight -= 1
            self._route_in_flight[route] -= 1

    async def _hold(self, seconds: float) -> None:
        """Sleep `seconds`, less if the faults are cleared meanwhile: a test's end releases what it held."""
        generation = self.faults.generation
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0 and self.faults.generation == generation:
            await asyncio.sleep(min(left, 0.05))

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until no request is being answered (a held one is counted only when it is let go), so
        that a test's counts never include an earlier test's request."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._calls_lock:
                if self._in_flight <= 0:
                    return
            time.sleep(0.01)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        route = classify(request.method, request.path)
        peer = request.transport.get_extra_info("peername") if request.transport is not None else None
        if peer is not None:
            with self._calls_lock:
                self._peers.add(tuple(peer[:2]))
        body = await request.read()
        status = 0
        with self._calls_lock:
            self._in_flight += 1
            self._route_in_flight[route.name] += 1
            self._peak_in_flight[route.name] = max(self._peak_in_flight[route.name], self._route_in_flight[route.name])
        try:
            if self.spec.latency:
                await asyncio.sleep(self.spec.latency)
            scope = hold_scope(route)
            held = self.faults.holds.remaining(scope) if scope is not None else 0.0
            if scope is not None and held > 0:
                self.faults.holds.refuse()
                reply = self._too_early(route, math.ceil(held))
                status = reply.status
                return _response(reply)
            text = f"{unquote(request.path)}?{unquote(request.query_string)}\n".lower()
            text += body.decode("utf-8", "replace").lower()
            rule = self.faults.pick(route.name, text)
            if rule is not None and rule.kind in ("timeout", "reset"):
                await self._drop(request, rule)
                raise _Dropped
            if rule is not None and rule.kind == "slow":
                await self._hold(rule.delay)
            reply = self._fault_reply(rule, route, request) or self._answer(route, request, body, rule)
            status = reply.status
            wait = reply.headers.get("Retry-After") if status == 429 else None
            if scope is not None and wait is not None and wait.isdigit() and int(wait) > 0:
                self.faults.holds.hold(scope, int(wait))
            return _response(reply)
        except _Dropped:
            raise web.HTTPException() from None  # never sent: the connection is already gone
        finally:
            self._count(route.name, status)

    def _too_early(self, route: Route, wait: int) -> Reply:
        error = ApiError(
            429,
            "SubscriptionRequestsThrottled",
            f"Number of requests for subscription '{route.subscription}' exceeded the limit. "
            f"Please try again after '{wait}' seconds.",
            backend=False,
            retry_after=wait,
        )
        return _error_reply(error, route.name)

    async def _drop(self, request: web.Request, rule: FaultRule) -> None:
        transport = request.transport
        if rule.kind == "timeout":
            await self._hold(rule.delay)
        elif transport is not None:
            raw = transport.get_extra_info("socket")
            if raw is not None:
                # Linger 0 turns the close into a TCP reset, as a crashed gateway would produce.
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        if transport is not None:
            transport.abort()

    def _fault_reply(self, rule: FaultRule | None, route: Route, request: web.Request) -> Reply | None:
        if rule is None or rule.kind in ("slow", "metric_error"):
            return None
        if rule.kind == "hostile":
            return Reply(200, rule.body, {"Content-Type": "application/json"})
        if rule.kind == "malformed":
            return Reply(200, MALFORMED.get(route.name, MALFORMED_DEFAULT), {"Content-Type": "application/json"})
        return error_reply(rule, route.name, request.path, route.subscription, self.client_id)

    def _answer(self, route: Route, request: web.Request, body: bytes, rule: FaultRule | None) -> Reply:
        metric_error = rule is not None and rule.kind == "metric_error"
        failing = ((rule.match or "*"), rule.error_code) if rule is not None and metric_error else None
        try:
            if route.name in ("openid", "token"):
                return self._identity(route, request, body)
            self._authenticate(route, request)
            self._check_registration(route)
            headers = self._throttle(route)
            reply = self._dispatch(route, request, body, failing)
            reply.headers.update(headers)
            return reply
        except ApiError as error:
            return _error_reply(error, route.name)

    def _identity(self, route: Route, request: web.Request, body: bytes) -> Reply:
        from metrics_poller.simulator import identity

        assert route.tenant is not None
        if route.name == "openid":
            return identity.openid_configuration(self.url, route.tenant, self.tenant_id)
        reply, token, audience = identity.issue_token(
            route.tenant, body, self.tenant_id, self.client_id, self.client_secret
        )
        if token is not None and audience is not None:
            self._tokens[token] = audience
        return reply

    def _authenticate(self, route: Route, request: web.Request) -> None:
        header = request.headers.get("Authorization", "")
        if not header.lower().startswith("bearer "):
            raise _auth_error("AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.")
        audience = self._tokens.get(header[7:].strip())
        if audience is None:
            raise _auth_error("InvalidAuthenticationToken", "The access token is invalid.")
        arm, metrics = AUDIENCES[self.spec.cloud]
        wanted = metrics if route.name == "getBatch" else arm
        if route.name != "unknown" and audience not in wanted:
            raise _auth_error(
                "InvalidAuthenticationTokenAudience",
                f"The access token has been obtained for wrong audience or resource '{audience}'. "
                "It should exactly "
                f"match with one of the allowed audiences '{', '.join(sorted(wanted))}'.",
            )

    def _check_registration(self, route: Route) -> None:
        """Microsoft.Insights not registered on the subscription: getBatch answers 403 and ARM 409
        MissingSubscriptionRegistration (azure-monitor.md §4; the 403 body is undocumented, so it
        carries ARM's code and message)."""
        if route.subscription is None or route.name not in INSIGHTS_ROUTES:
            return
        unregistered = {self.subscription_ids[i].lower() for i in self.spec.insights_unregistered}
        if route.subscription.lower() in unregistered:
            raise ApiError(
                403 if route.name == "getBatch" else 409,
                "MissingSubscriptionRegistration",
                "The subscription is not registered to use namespace 'Microsoft.Insights'. "
                "See https://aka.ms/rps-not-found for how to register subscriptions.",
                backend=False,
            )

    def _throttle(self, route: Route) -> dict[str, str]:
        if route.name not in ARM_ROUTES or route.subscription is None:
            return {}
        if not self.spec.arm_rate_limit:
            return {"x-ms-ratelimit-remaining-subscription-reads": "249"}
        left = self._arm.take(route.subscription)
        if left < 0:
            wait = max(1, math.ceil(-left / ARM_READ_REFILL))
            raise ApiError(
                429,
                "SubscriptionRequestsThrottled",
                f"Number of read requests for subscription '{route.subscription}' exceeded the limit of "
                f"'{int(ARM_READ_BUCKET)}'. Please try again after '{wait}' seconds.",
                backend=False,
                retry_after=wait,
            )
        return {"x-ms-ratelimit-remaining-subscription-reads": str(int(left))}

    def _dispatch(self, route: Route, request: web.Request, body: bytes, failing: Failing | None) -> Reply:
        backend = self._backend
        params = query_params(request.query_string)
        expected_method = "POST" if route.name in ("getBatch", "resourceGraph") else "GET"
        if route.name == "unknown" or request.method != expected_method:
            raise ApiError(404, "InvalidResourceType", f"No route for {request.method} {request.path}.", backend=False)
        if route.name == "resources":
            assert route.subscription is not None
            return backend.list_resources(request.path, route.subscription, route.group, params)
        if route.name == "resourceGraph":
            return backend.resource_graph(body)
        if route.name in ("deployments", "usages", "models"):
            return self._control_plane(route, request.path, params)
        if route.name == "getBatch":
            assert route.region is not None and route.subscription is not None
            return backend.get_batch(route.region, route.subscription, params, body, self.now(), failing)
        assert route.resource_id is not None
        if route.name == "resource":
            return backend.get_resource(route.resource_id)
        if route.name == "metricDefinitions":
            return backend.metric_definitions(route.resource_id, params)
        if route.name == "metricNamespaces":
            return backend.metric_namespaces(route.resource_id)
        return backend.arm_metrics(route.resource_id, params, self.now(), failing)


    def _control_plane(self, route: Route, path: str, params: dict[str, str]) -> Reply:
        backend = self._backend
        if route.name == "deployments":
            assert route.resource_id is not None
            return backend.list_deployments(path, route.resource_id, params)
        assert route.subscription is not None and route.region is not None
        if route.name == "usages":
            return backend.list_usages(path, route.subscription, route.region, params)
        return backend.list_models(path, route.subscription, route.region, params, self.now())


class _Dropped(Exception):
    """The connection was deliberately dropped; nothing is to be sent."""


def _auth_error(code: str, message: str) -> ApiError:
    return ApiError(401, code, message, backend=False)


def _error_reply(error: ApiError, route: str) -> Reply:
    headers: dict[str, str] = {}
    if error.retry_after is not None:
        headers["Retry-After"] = str(error.retry_after)
    if error.status == 401:
        headers["WWW-Authenticate"] = f'Bearer error="invalid_token", error_description="{error.message}"'
    if route == "getBatch":
        headers["x-ms-error-code"] = error.code
        info = additional_info(error.exception_type)
        return Reply(
            error.status,
            {"error": {"additionalInfo": info, "code": error.code, "message": error.message}},
            headers,
        )
    if route == "metrics" and error.backend:
        return Reply(error.status, {"code": error.code, "message": error.message}, headers)
    return Reply(error.status, {"error": {"code": error.code, "message": error.message}}, headers)


def _response(reply: Reply) -> web.Response:
    headers: Mapping[str, str] = reply.headers
    if isinstance(reply.body, bytes):
        content_type = headers.get("Content-Type", "application/json")
        rest = {k: v for k, v in headers.items() if k != "Content-Type"}
        return web.Response(status=reply.status, body=reply.body, headers={**rest, "Content-Type": content_type})
    payload = orjson.dumps(reply.body)
    return web.Response(status=reply.status, body=payload, headers={**headers, "Content-Type": "application/json"})


def _duration_text(grain: timedelta) -> str:
    from metrics_poller.model import iso_duration

    return iso_duration(grain)
