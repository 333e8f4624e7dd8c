"""Service mode: aligned cycles under APScheduler, the health/metrics listener, signals, systemd notify."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from metrics_poller import telemetry
from metrics_poller.cycle import CycleReport, Poller
from metrics_poller.model import Failure
from metrics_poller.preflight import PreflightError, Problem
from metrics_poller.sinks import RefusedByConfiguration
from metrics_poller.windows import ceil_time, next_fire

log = logging.getLogger(__name__)

STOP_GRACE = 20.0  # seconds a running cycle gets to finish after SIGTERM before it is cancelled


# ------------------------------------------------------------------------------------------ health


def health_app(health: telemetry.Health) -> web.Application:
    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(telemetry.REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        ok = health.live()
        return web.json_response({"status": "ok" if ok else "stalled"}, status=200 if ok else 503)

    async def readyz(_: web.Request) -> web.Response:
        ok = health.ready()
        return web.json_response({"status": "ready" if ok else "not ready"}, status=200 if ok else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def start_listener(listen: str, health: telemetry.Health) -> web.AppRunner:
    host, _, port = listen.rpartition(":")
    runner = web.AppRunner(health_app(health), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host.strip("[]") or "0.0.0.0", int(port))
    try:
        await site.start()
    except OSError as exc:  # taken since the preflight looked: still one line, not a traceback
        await runner.cleanup()
        raise PreflightError([Problem("http.listen", f"cannot listen on {listen}: {exc.strerror or exc}")]) from None
    log.info("metrics and health on http://%s/metrics, /healthz, /readyz", listen)
    return runner


# ------------------------------------------------------------------------------------------ systemd


def sd_notify(message: str) -> bool:
    """Send a datagram to systemd's notify socket, if there is one."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
        return True
    except OSError:
        return False


def watchdog_interval() -> float | None:
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec or not usec.isdigit():
        return None
    return max(1.0, int(usec) / 1_000_000 / 2)


# ------------------------------------------------------------------------------------------ service


class AlignedTrigger(BaseTrigger):  # type: ignore[misc]  # APScheduler 3 ships no type hints
    """APScheduler trigger firing at every wall-clock multiple of `period` (counted from the Unix
    epoch, so 300 s means :00, :05, :10 … of every hour, on every host)."""

    def __init__(self, period: timedelta) -> None:
        self.period = period

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime:
        if previous_fire_time is None:
            return ceil_time(now, self.period)
        return next_fire(previous_fire_time, self.period)

    def __str__(self) -> str:
        return f"every wall-clock multiple of {self.period.total_seconds():.0f}s"


class Service:
    """Runs a cycle at every wall-clock multiple of `period`; never two at once."""

    def __init__(self, poller: Poller, *, health_clock: Callable[[], float] = time.time) -> None:
        self.poller = poller
        self.cfg = poller.cfg
        self.health = telemetry.Health(period=float(self.cfg.period), clock=health_clock)
        telemetry.DATA_LAG.set_function(self.health.data_lag)
        self.stopping = asyncio.Event()
        self.current: asyncio.Task[CycleReport] | None = None
        self.last_report: CycleReport | None = None
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self.exit_code = 0

    async def fire(self) -> None:
        """Scheduler job: start a cycle in a task this service owns, so that stopping the scheduler
        never cancels a cycle half-way; a cycle still running when the next one is due is not doubled."""
        if self.stopping.is_set():
            return
        self.health.record_tick()
        if self.current is not None and not self.current.done():
            log.warning("previous cycle still running; skipping this one (no overlapping cycles)")
            return
        self.health.record_cycle_start()
        self.current = asyncio.create_task(self.cycle())

    async def cycle(self) -> CycleReport:
        try:
            # Reads of the inventory still running when the metrics are done are joined by the next cycle.
            report = await self.poller.run_cycle(wait_for_inventory=False)
        except RefusedByConfiguration as exc:
            # Every later cycle would be refused the same way: stop, and let the exit code say why.
            self.health.record_cycle(ok=False)
            log.error("%s", exc)
            self.exit_code = 2
            self.stopping.set()
            return CycleReport(started=datetime.now(UTC), failures=[Failure("elasticsearch", "*", str(exc))])
        except BaseException:
            self.health.record_cycle(ok=False)
            raise
        self.last_report = report
        self.health.record_cycle(
            report.ok or (report.unreachable is None and report.cursors_advanced > 0), report.newest_bucket
        )
        (log.info if report.ok else log.warning)(report.summary())
        for line in report.cause_lines():
            log.warning("%s", line)
        sd_notify("WATCHDOG=1")
        return report

    def schedule(self, scheduler: AsyncIOScheduler, now: datetime | None = None) -> None:
        scheduler.add_job(
            self.fire,
            AlignedTrigger(timedelta(seconds=self.cfg.period)),
            id="cycle",
            max_instances=1,  # no overlapping cycles
            coalesce=True,  # after a stall, run once, not once per missed period
            misfire_grace_time=max(1, self.cfg.period // 2),
            next_run_time=now or datetime.now(UTC),  # first cycle right away, then on the multiples
        )

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        runner: web.AppRunner | None = None
        watchdog: asyncio.Task[None] | None = None
        scheduler = self.scheduler
        try:
            if self.cfg.http.listen:
                runner = await start_listener(self.cfg.http.listen, self.health)
            self.schedule(scheduler)
            scheduler.start()
            sd_notify("READY=1")
            watchdog = asyncio.create_task(self._watchdog())
            await self.stopping.wait()
            log.info("stopping")
            sd_notify("STOPPING=1")
            scheduler.shutdown(wait=False)
            await self._finish_current()
        finally:
            if watchdog is not None:
                watchdog.cancel()
            if runner is not None:
                await runner.cleanup()
            await self.poller.close()
        return self.exit_code

    async def _finish_current(self) -> None:
        task = self.current
        if task is None or task.done():
            return
        deadline = time.monotonic() + STOP_GRACE
        while not task.done() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if not task.done():
            log.warning(
                "cycle still running after %.0fs; cancelling it (stored windows keep their cursors)", STOP_GRACE
            )
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _watchdog(self) -> None:
        interval = watchdog_interval()
        if interval is None:
            return
        while True:
            if self.health.live():  # a stalled scheduler stops the pings, and systemd restarts the service
                sd_notify("WATCHDOG=1")
            await asyncio.sleep(interval)
