"""Window and cursor arithmetic: consecutive windows never overlap and never leave a gap."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from metrics_poller.windows import ceil_time, floor_time, next_fire, plan_span, split_span, window_end

GRAINS = [timedelta(minutes=m) for m in (1, 5, 15, 30, 60)]
BASE = datetime(2026, 1, 1, tzinfo=UTC)

grains = st.sampled_from(GRAINS)
moments = st.integers(min_value=0, max_value=60 * 86400 * 1000).map(lambda ms: BASE + timedelta(milliseconds=ms))
latencies = st.integers(min_value=0, max_value=3600).map(lambda s: timedelta(seconds=s))


def test_floor_and_ceil_examples() -> None:
    moment = datetime(2026, 1, 1, 10, 7, 31, tzinfo=UTC)
    assert floor_time(moment, timedelta(minutes=5)) == datetime(2026, 1, 1, 10, 5, tzinfo=UTC)
    assert ceil_time(moment, timedelta(minutes=5)) == datetime(2026, 1, 1, 10, 10, tzinfo=UTC)
    assert floor_time(datetime(2026, 1, 1, 10, 5, tzinfo=UTC), timedelta(minutes=5)) == datetime(
        2026, 1, 1, 10, 5, tzinfo=UTC
    )


def test_window_end_excludes_incomplete_buckets() -> None:
    now = datetime(2026, 1, 1, 10, 7, 31, tzinfo=UTC)
    # 10:07:31 - 4 min = 10:03:31: the 10:02 bucket ends 10:03 (complete), the 10:03 bucket is not.
    assert window_end(now, timedelta(minutes=4), timedelta(minutes=1)) == datetime(2026, 1, 1, 10, 3, tzinfo=UTC)


def test_first_run_looks_back_one_period() -> None:
    now = datetime(2026, 1, 1, 10, 7, 31, tzinfo=UTC)
    span = plan_span(
        None,
        now,
        grain=timedelta(minutes=1),
        latency=timedelta(minutes=4),
        lookback=timedelta(minutes=5),
        max_backfill=timedelta(hours=24),
    )
    assert (span.start, span.end, span.skipped) == (
        datetime(2026, 1, 1, 9, 58, tzinfo=UTC),
        datetime(2026, 1, 1, 10, 3, tzinfo=UTC),
        None,
    )


def test_cursor_older_than_max_backfill_is_clamped_and_reported() -> None:
    now = datetime(2026, 1, 10, tzinfo=UTC)
    cursor = datetime(2026, 1, 1, tzinfo=UTC)
    span = plan_span(
        cursor,
        now,
        grain=timedelta(minutes=1),
        latency=timedelta(0),
        lookback=timedelta(minutes=5),
        max_backfill=timedelta(hours=24),
    )
    assert span.start == datetime(2026, 1, 9, tzinfo=UTC)
    assert span.skipped == (cursor, datetime(2026, 1, 9, tzinfo=UTC))


@settings(max_examples=300, deadline=None)
@given(
    grain=grains,
    latency=latencies,
    start=moments,
    steps=st.lists(st.integers(min_value=0, max_value=6 * 3600), min_size=1, max_size=30),
    lookback_grains=st.integers(min_value=1, max_value=60),
)
def test_consecutive_windows_tile_time(
    grain: timedelta, latency: timedelta, start: datetime, steps: list[int], lookback_grains: int
) -> None:
    """Cycles at arbitrary times (including downtime) cover time contiguously with no overlap."""
    max_backfill = timedelta(days=93)
    cursor: datetime | None = None
    now = start
    covered: list[tuple[datetime, datetime]] = []
    for step in steps:
        now = now + timedelta(seconds=step)
        span = plan_span(
            cursor, now, grain=grain, latency=latency, lookback=grain * lookback_grains, max_backfill=max_backfill
        )
        assert span.skipped is None
        assert span.end <= now - latency
        assert floor_time(span.start, grain) == span.start and floor_time(span.end, grain) == span.end
        if span.empty:
            continue
        covered.append((span.start, span.end))
        cursor = span.end
    for (_, previous_end), (next_start, _) in itertools.pairwise(covered):
        assert next_start == previous_end  # no gap, no overlap


@settings(max_examples=300, deadline=None)
@given(
    grain=grains,
    start=moments,
    length=st.integers(min_value=0, max_value=3 * 86400),
    step_hours=st.integers(min_value=1, max_value=24),
)
def test_split_span_tiles_exactly(grain: timedelta, start: datetime, length: int, step_hours: int) -> None:
    begin = floor_time(start, grain)
    end = floor_time(begin + timedelta(seconds=length), grain)
    step = timedelta(hours=step_hours)
    pieces = split_span(begin, end, step, grain)
    if begin >= end:
        assert pieces == []
        return
    assert pieces[0][0] == begin and pieces[-1][1] == end
    for (a_start, a_end), (b_start, _) in itertools.pairwise(pieces):
        assert a_end == b_start and a_start < a_end
    for piece_start, piece_end in pieces:
        assert piece_end - piece_start <= step
        assert floor_time(piece_start, grain) == piece_start


@given(start=moments, downtime=st.integers(min_value=0, max_value=200 * 86400))
def test_downtime_beyond_max_backfill_reports_exactly_the_lost_range(start: datetime, downtime: int) -> None:
    grain, latency = timedelta(minutes=1), timedelta(minutes=4)
    max_backfill = timedelta(hours=24)
    cursor = window_end(start, latency, grain)
    now = start + timedelta(seconds=downtime)
    span = plan_span(cursor, now, grain=grain, latency=latency, lookback=grain, max_backfill=max_backfill)
    if span.skipped is None:
        assert span.start == cursor
    else:
        assert span.skipped[0] == cursor and span.skipped[1] == span.start
        assert span.end - span.start <= max_backfill + grain


@given(now=moments, minutes=st.sampled_from([5, 10, 15, 60]))
def test_next_fire_is_aligned_and_in_the_future(now: datetime, minutes: int) -> None:
    period = timedelta(minutes=minutes)
    fire = next_fire(now, period)
    assert now < fire <= now + period
    assert floor_time(fire, period) == fire


def test_a_short_window_across_an_hour_boundary_stays_whole() -> None:
    start, end = datetime(2026, 1, 1, 9, 58, tzinfo=UTC), datetime(2026, 1, 1, 10, 3, tzinfo=UTC)
    assert split_span(start, end, timedelta(hours=1), timedelta(minutes=1)) == [(start, end)]
    assert len(split_span(start, start + timedelta(hours=25), timedelta(hours=1), timedelta(minutes=1))) == 25
