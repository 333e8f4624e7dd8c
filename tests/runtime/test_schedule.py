"""`run` starts cycles on wall-clock multiples of `period`, checked through the real APScheduler that
`Service.run` drives, with the wall clock moved by time-machine instead of waited for.

What was seen (issue 11, item 7): the first cycle at 02:12:46, the next at 02:17:48, because the job
was an interval from its first run; the aligned helper existed but nothing used it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import time_machine
from apscheduler.events import EVENT_JOB_SUBMITTED, JobSubmissionEvent
from runtime_support import parse, poller_config

from metrics_poller.runtime import create_poller
from metrics_poller.service import Service
from metrics_poller.simulator import Simulator

START = datetime(2026, 3, 2, 2, 12, 46, 300_000, tzinfo=UTC)


async def _until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(600):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def test_cycles_fire_on_wall_clock_multiples_of_the_period(sim: Simulator, tmp_path: Path) -> None:
    cfg = parse(poller_config(sim, tmp_path, azure={"metric_groups": ["requests"]}))
    with time_machine.travel(START, tick=False) as clock:
        service = Service(await create_poller(cfg))
        fired: list[datetime] = []

        def submitted(event: JobSubmissionEvent) -> None:
            fired.extend(event.scheduled_run_times)

        service.scheduler.add_listener(submitted, EVENT_JOB_SUBMITTED)
        running = asyncio.create_task(service.run())
        cycles = 0

        async def next_cycle(at: datetime) -> datetime:
            """Move the wall clock to `at`, let the scheduler look, and wait for the cycle it starts."""
            nonlocal cycles
            await _until(lambda: service.scheduler.running, "the scheduler to start")
            if at != START:
                clock.move_to(at)
                service.scheduler.wakeup()
            await _until(lambda: len(fired) > cycles, f"a cycle after {at:%H:%M:%S}")
            cycles = len(fired)
            assert service.current is not None
            await service.current
            job = service.scheduler.get_job("cycle")
            assert job is not None
            return job.next_run_time  # type: ignore[no-any-return]

        try:
            # The first cycle runs at start-up, then every cycle is on a multiple of 300 s.
            assert await next_cycle(START) == datetime(2026, 3, 2, 2, 15, tzinfo=UTC)
            assert await next_cycle(datetime(2026, 3, 2, 2, 15, 0, 400_000, tzinfo=UTC)) == datetime(
                2026, 3, 2, 2, 20, tzinfo=UTC
            )
            # A stall of three periods: one cycle (coalesced), still on the grid afterwards.
            assert await next_cycle(datetime(2026, 3, 2, 2, 31, 10, tzinfo=UTC)) == datetime(
                2026, 3, 2, 2, 35, tzinfo=UTC
            )
            assert fired[0] == START
            assert fired[1:] == [datetime(2026, 3, 2, 2, 15, tzinfo=UTC), datetime(2026, 3, 2, 2, 30, tzinfo=UTC)]
            assert service.last_report is not None and service.last_report.ok
            assert service.last_report.started == datetime(2026, 3, 2, 2, 31, 10, tzinfo=UTC)
        finally:
            service.stopping.set()
            assert await running == 0
    assert all(t.second == 0 and t.minute % 5 == 0 for t in fired[1:])
