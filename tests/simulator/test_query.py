"""Pure parsing and bucketing rules."""

from __future__ import annotations

import pytest

from metrics_poller.simulator.data import plan_buckets
from metrics_poller.simulator.query import ApiError, parse_filter


def test_filter_grammar() -> None:
    assert parse_filter("ModelDeploymentName eq '*' and StatusCode eq '*'") == [
        ("ModelDeploymentName", None),
        ("StatusCode", None),
    ]
    assert parse_filter("A eq 'a1' and B eq 'b1' or B eq 'B2' and C eq '*'") == [
        ("A", frozenset({"a1"})),
        ("B", frozenset({"b1", "b2"})),
        ("C", None),
    ]
    assert parse_filter("ApiName eq 'it''s'") == [("ApiName", frozenset({"it's"}))]
    assert parse_filter("") == []
    for bad in ("A eq '*' or B eq 'x'", "A ne 'x'", "A eq x"):
        with pytest.raises(ApiError):
            parse_filter(bad)


def test_buckets_are_aligned_labelled_by_start_and_clipped() -> None:
    start, end = 1_700_000_000, 1_700_000_000 + 3600  # 22:13:20 to 23:13:20 UTC
    buckets = plan_buckets(start, end, 900)
    assert [b.label % 900 for b in buckets] == [0] * 5
    assert buckets[0].first == start // 60 and buckets[-1].stop == -(-end // 60)
    assert plan_buckets(start, end, None)[0].label == start - start % 60
