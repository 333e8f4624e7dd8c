"""Self-monitoring: Prometheus metrics, health state and logging set-up.

Metric labels carry only routes, statuses, outcomes and group names: never ids, URLs or secrets.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

AZURE_CALLS = Counter(
    "metrics_poller_azure_calls",
    "Azure API calls by route and HTTP status (0 = no response)",
    ["route", "status"],
    registry=REGISTRY,
)
AZURE_THROTTLED = Counter(
    "metrics_poller_azure_throttled",
    "Azure throttling responses (429 and 529) by route and status",
    ["route", "status"],
    registry=REGISTRY,
)
AZURE_RETRIES = Counter("metrics_poller_azure_retries", "Azure calls retried", ["route"], registry=REGISTRY)
AZURE_TRUNCATIONS = Counter(
    "metrics_poller_azure_truncations",
    "Responses with as many series as `top` (re-queried with a larger top)",
    ["group"],
    registry=REGISTRY,
)
ARM_REMAINING_READS = Gauge(
    "metrics_poller_arm_remaining_reads",
    "Last x-ms-ratelimit-remaining-subscription-reads seen (lowest across subscriptions)",
    registry=REGISTRY,
)
DOCUMENTS = Counter("metrics_poller_documents", "Documents by sink outcome", ["outcome"], registry=REGISTRY)
CYCLE_DURATION = Histogram(
    "metrics_poller_cycle_duration_seconds",
    "Wall time of one cycle",
    buckets=(1, 5, 10, 30, 60, 120, 180, 240, 300, 600, 900),
    registry=REGISTRY,
)
CYCLES = Counter("metrics_poller_cycles", "Cycles by result (ok, partial, failed)", ["result"], registry=REGISTRY)
LAST_SUCCESS = Gauge(
    "metrics_poller_last_success_timestamp_seconds", "End time of the last fully successful cycle", registry=REGISTRY
)
DATA_LAG = Gauge(
    "metrics_poller_data_lag_seconds",
    "now minus the end of the newest stored bucket (minus the start-up time until one is stored)",
    registry=REGISTRY,
)
ACCOUNTS = Gauge("metrics_poller_accounts", "Accounts owned by this instance", registry=REGISTRY)
FAILURES = Counter("metrics_poller_failures", "Failed units of work by scope", ["scope"], registry=REGISTRY)


@dataclass
class Health:
    """Liveness follows the process, readiness and data lag follow the data.

    Live while the scheduler keeps firing every period and no cycle runs past two periods (cycles stop at
    their deadline, at most one period): restarting the process fixes neither an Azure nor an
    Elasticsearch outage, so a cycle that fails does not make the process unhealthy. Ready while a cycle
    stored data within the last two periods. The data lag is measured from start-up until the first
    stored bucket, so it grows through an outage that began before anything was stored.
    """

    period: float
    clock: Callable[[], float] = time.time
    started: float = 0.0
    last_tick: float | None = None
    cycle_started: float | None = None
    running: bool = False
    last_success: float | None = None
    newest_bucket: float | None = None

    def __post_init__(self) -> None:
        self.started = self.started or self.clock()

    def record_tick(self) -> None:
        """The scheduler fired (whether or not a cycle could start)."""
        self.last_tick = self.clock()

    def record_cycle_start(self) -> None:
        self.cycle_started = self.clock()
        self.running = True

    def record_cycle(self, ok: bool, newest_bucket: datetime | None = None) -> None:
        self.running = False
        if newest_bucket is not None:
            self.newest_bucket = max(self.newest_bucket or 0.0, newest_bucket.timestamp())
        if ok:
            self.last_success = self.clock()
            LAST_SUCCESS.set(self.last_success)

    def live(self) -> bool:
        now = self.clock()
        ticking = now - (self.last_tick if self.last_tick is not None else self.started) <= 2 * self.period
        hung = self.running and self.cycle_started is not None and now - self.cycle_started > 2 * self.period
        return ticking and not hung

    def ready(self) -> bool:
        return self.last_success is not None and self.clock() - self.last_success <= 2 * self.period

    def data_lag(self) -> float:
        reference = self.newest_bucket if self.newest_bucket is not None else self.started
        return max(0.0, self.clock() - reference)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        return f"{stamp} {record.levelname:<7} {record.getMessage()}"


def setup_logging(level: str = "INFO", fmt: str = "auto") -> None:
    """ECS JSON off a TTY (for journald, containers), short readable lines on a TTY."""
    import ecs_logging

    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(ecs_logging.StdlibFormatter() if use_json else _TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # The Azure SDKs log every request (with URLs) at INFO; keep them quiet.
    for noisy in ("azure", "msal", "elastic_transport", "elasticsearch", "apscheduler", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # elastic_transport warns "Node … has failed" on every failed request; the sink and the cycle
    # summary already count those, so an outage is not one line per retry.
    logging.getLogger("elastic_transport").setLevel(logging.ERROR)
    # azure-identity logs every failed token request at WARNING with Entra ID's whole JSON answer; the
    # poller reports the failure itself, once, as one line (DEBUG shows both).
    logging.getLogger("azure.identity").setLevel(logging.DEBUG if level == "DEBUG" else logging.ERROR)
