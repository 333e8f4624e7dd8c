"""Fault injection: which request a rule hits, and the answer Azure would give for each failure kind."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from metrics_poller.simulator.api import Reply
from metrics_poller.simulator.spec import FaultRule

ERROR_KINDS = {"400", "401", "403", "404", "429", "500", "503", "529"}
# Routes answered by Entra ID rather than ARM: their errors use the OAuth shape.
IDENTITY_ROUTES = {"openid", "token"}


class Holds:
    """The `Retry-After` each throttle scope is under. ARM refuses a request sent before the wait it
    asked for has elapsed with a new 429 (azure-monitor.md §4; the 309 s metricDefinitions throttle of
    elastic/integrations #8575), and so does the simulator: a client that retries early is caught."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()
        self.early = 0  # requests refused because they came before the Retry-After elapsed

    def remaining(self, scope: str) -> float:
        with self._lock:
            return self._until.get(scope, 0.0) - time.monotonic()

    def hold(self, scope: str, seconds: float) -> None:
        with self._lock:
            until = time.monotonic() + seconds
            if until > self._until.get(scope, 0.0):
                self._until[scope] = until

    def refuse(self) -> None:
        with self._lock:
            self.early += 1

    def clear(self) -> None:
        with self._lock:
            self._until.clear()
            self.early = 0


@dataclass(slots=True)
class _Armed:
    rule: FaultRule
    remaining: int | None  # None = unlimited


class Faults:
    """Ordered fault rules; the first rule that matches a call (and passes its dice roll) fires."""

    def __init__(self, seed: int):
        self._rules: list[_Armed] = []
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._fired: Counter[str] = Counter()
        self.holds = Holds()
        self.generation = 0  # moves on each `clear`, which ends the delays of the requests held

    def add(self, rule: FaultRule) -> None:
        with self._lock:
            self._rules.append(_Armed(rule, rule.times))

    def clear(self) -> None:
        """Disarm every rule, lift every `Retry-After` hold and release every request a `slow` or
        `timeout` rule is still holding (a test's faults end with it)."""
        with self._lock:
            self._rules.clear()
            self.generation += 1
        self.holds.clear()

    @property
    def fired(self) -> Counter[str]:
        """How many times each fault kind has fired (not reset by `clear`)."""
        with self._lock:
            return Counter(self._fired)

    @property
    def rules(self) -> list[FaultRule]:
        with self._lock:
            return [entry.rule for entry in self._rules]

    def pick(self, route: str, text: str) -> FaultRule | None:
        """The rule that fires for a call of `route` whose lower-cased path, query and body are `text`."""
        with self._lock:
            for entry in self._rules:
                rule, remaining = entry.rule, entry.remaining
                if rule.route not in ("*", route) or remaining == 0:
                    continue
                if rule.match is not None and rule.match.lower() not in text:
                    continue
                if rule.probability < 1.0 and self._rng.random() >= rule.probability:
                    continue
                if remaining is not None:
                    entry.remaining = remaining - 1
                self._fired[rule.kind] += 1
                return rule
        return None


_MESSAGES: dict[str, tuple[str, str]] = {
    "400": ("BadRequest", "The request is invalid (injected fault)."),
    "401": ("InvalidAuthenticationToken", "The access token is invalid."),
    "403": ("AuthorizationFailed", ""),
    "404": ("ResourceNotFound", ""),
    "429": ("SubscriptionRequestsThrottled", ""),
    "500": ("InternalServerError", "Detected Internal Error."),
    "503": ("ServiceUnavailable", "The service is temporarily unavailable. Please try again later."),
}


def error_reply(rule: FaultRule, route: str, path: str, subscription: str | None, client_id: str) -> Reply:
    """The answer for an HTTP-status fault, shaped as Azure shapes that failure on that route."""
    status = int(rule.kind)
    if rule.kind == "529":
        # Undocumented by Azure: a bare text body, as a gateway in front of the backend would send.
        return Reply(
            529,
            b"Too many requests to the metrics backend. Please retry later.",
            {"Content-Type": "text/plain"},
        )
    if route in IDENTITY_ROUTES:
        return Reply(status, _identity_body(rule.kind), _retry_headers(rule))
    code, message = _MESSAGES[rule.kind]
    message = message or _message(rule.kind, path, subscription, client_id, rule.retry_after)
    headers = _retry_headers(rule)
    if route == "getBatch":
        headers["x-ms-error-code"] = code
        body: dict[str, Any] = {"error": {"additionalInfo": additional_info(), "code": code, "message": message}}
    elif route == "metrics" and rule.kind in ("400", "500", "503"):
        body = {"code": code, "message": message}  # the metrics backend's errors are relayed flat
    else:
        body = {"error": {"code": code, "message": message}}
    return Reply(status, body, headers)


def additional_info(
    exception_type: str = "Microsoft.Online.Metrics.MetricsMP.Utilities.RPRequestFormatException",
) -> list[dict[str, str]]:
    return [
        {"type": "string", "info": f"TraceId={uuid.uuid4().hex}"},
        {"type": "string", "info": f"ExceptionType={exception_type}"},
    ]


def _retry_headers(rule: FaultRule) -> dict[str, str]:
    if rule.kind in ("429", "503") and rule.retry_after is not None:
        return {"Retry-After": str(rule.retry_after)}
    return {}


def _message(kind: str, path: str, subscription: str | None, client_id: str, retry_after: int | None) -> str:
    if kind == "403":
        return (
            f"The client '{client_id}' with object id '{client_id}' does not have authorization to "
            f"perform action 'microsoft.insights/metrics/read' over scope '{path}' or the scope is invalid. "
            "If access was recently "
            "granted, please refresh your credentials."
        )
    if kind == "404":
        return (
            f"The Resource '{path}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"
        )
    return (
        f"Number of requests for subscription '{subscription or ''}' and operation "
        f"'{path.upper()}' exceeded the backend storage limit. "
        f"Please try again after '{retry_after or 0}' seconds."
    )


def _identity_body(kind: str) -> dict[str, Any]:
    codes = {
        "400": ("invalid_request", "AADSTS900144: The request body must contain the following parameter."),
        "401": ("invalid_client", "AADSTS7000215: Invalid client secret provided."),
        "403": ("unauthorized_client", "AADSTS700016: Application not authorised in this tenant."),
        "404": ("invalid_tenant", "AADSTS90002: Tenant not found."),
        "429": ("temporarily_unavailable", "AADSTS50196: The server is throttling requests."),
        "500": ("server_error", "AADSTS90014: Internal server error."),
        "503": ("temporarily_unavailable", "AADSTS90033: A transient error has occurred."),
    }
    error, description = codes[kind]
    return {
        "error": error,
        "error_description": description,
        "error_codes": [int(description[6:].split(":")[0])],
    }


MALFORMED: dict[str, bytes] = {
    "openid": b'{"token_endpoint": "https://',
    "token": b'{"token_type": "Bearer", "expires_in": 35',
    "getBatch": b'{"values": [{"starttime": "2026-01-01T00:00:00Z", "value": [{"id',
}
MALFORMED_DEFAULT = b'{"value": [{"id": "/subscriptions/'
