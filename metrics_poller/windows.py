"""Time-window and cursor arithmetic (pure functions; all datetimes UTC-aware).

A bucket is labelled by its start and is complete once `now - latency` has passed its end. A window is
`[start, end)` aligned to the grain with `end = floor(now - latency, grain)`; `start` is the cursor (the
end of the last fully stored window). Consecutive windows therefore never overlap and never leave a gap.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def floor_time(moment: datetime, step: timedelta) -> datetime:
    """Latest multiple of `step` (counted from the Unix epoch) at or before `moment`."""
    step_us = _micros(step)
    since = _micros(moment - EPOCH)
    return EPOCH + timedelta(microseconds=since - since % step_us)


def ceil_time(moment: datetime, step: timedelta) -> datetime:
    floored = floor_time(moment, step)
    return floored if floored == moment else floored + step


def _micros(delta: timedelta) -> int:
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


@dataclass(frozen=True, slots=True)
class Span:
    """The range a cycle should fetch for one cursor, and any range it had to give up on."""

    start: datetime
    end: datetime
    skipped: tuple[datetime, datetime] | None = None

    @property
    def empty(self) -> bool:
        return self.start >= self.end


def window_end(now: datetime, latency: timedelta, grain: timedelta) -> datetime:
    """End of the newest complete bucket: `floor(now - latency, grain)`."""
    return floor_time(now - latency, grain)


def plan_span(
    cursor: datetime | None,
    now: datetime,
    *,
    grain: timedelta,
    latency: timedelta,
    lookback: timedelta,
    max_backfill: timedelta,
) -> Span:
    """From the cursor to the newest complete bucket, clamped to `max_backfill` (the rest is reported)."""
    end = window_end(now, latency, grain)
    oldest = floor_time(end - max_backfill, grain)
    start = floor_time(end - lookback, grain) if cursor is None else floor_time(cursor, grain)
    if start < oldest:
        return Span(oldest, end, skipped=(start, oldest))
    return Span(start, max(start, end))


def split_span(start: datetime, end: datetime, step: timedelta, grain: timedelta) -> list[tuple[datetime, datetime]]:
    """Cut `[start, end)` into the fewest consecutive sub-windows of at most `step` (grain-aligned).

    A span no longer than `step` stays whole: one Azure call per group, wherever its boundaries fall.
    """
    if start >= end:
        return []
    step = max(floor_time(EPOCH + step, grain) - EPOCH, grain)
    pieces = []
    cursor = start
    while cursor < end:
        piece_end = min(cursor + step, end)
        pieces.append((cursor, piece_end))
        cursor = piece_end
    return pieces


def next_fire(now: datetime, period: timedelta) -> datetime:
    """Next wall-clock multiple of `period` strictly after `now` (cycles align to these)."""
    return floor_time(now, period) + period
