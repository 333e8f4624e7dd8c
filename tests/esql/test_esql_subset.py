"""The ES|QL subset's semantics where a rule's result depends on them, on hand-made rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from esql_subset import Enrich, EsqlError, check_types, enrich_index, evaluate, load_rows, parse

MAPPING = {"a": "long", "b": "long", "d": "double", "k": "keyword", "t": "date"}
NOW = datetime(2026, 3, 2, 12, 10, tzinfo=UTC)
DOCS = [
    {"a": 7, "b": 2, "d": 7.0, "k": "z", "t": "2026-03-02T12:00:00Z"},
    {"a": -7, "b": 2, "t": "2026-03-02T11:00:00Z"},
    {"a": [1, 2], "b": 0},
]


def run(query: str, **options: Any) -> list[dict[str, Any]]:
    commands = parse(query)
    check_types(commands, MAPPING, options.get("policies"))
    return evaluate(commands, {"x-1": load_rows(DOCS, MAPPING)}, now=NOW, **options)


def column(query: str) -> list[Any]:
    return [row["r"] for row in run(query)]


def test_integer_arithmetic_truncates_toward_zero_and_division_by_zero_is_null() -> None:
    assert column("FROM x-* | EVAL r = a / b | KEEP r") == [3, -3, None]
    assert column("FROM x-* | EVAL r = a % b | KEEP r") == [1, -1, None]
    assert column("FROM x-* | EVAL r = d / b | KEEP r") == [3.5, None, None]
    assert column("FROM x-* | EVAL r = a-1 | KEEP r") == [6, -8, None], "`a-1` is a minus 1, not a field name"


def test_nulls_and_multi_values_make_operators_null_and_aggregations_take_each_value() -> None:
    assert column('FROM x-* | EVAL r = CONCAT(k, "-", k) | KEEP r') == ["z-z", None, None]
    assert column('FROM x-* | EVAL r = COALESCE(k, "none") | KEEP r') == ["z", "none", "none"]
    assert column("FROM x-* | WHERE NOT a > 0 | EVAL r = a | KEEP r") == [-7]
    assert run("FROM x-* | STATS r = COUNT(*), s = SUM(a), n = COUNT(k) BY k | SORT k DESC") == [
        {"r": 2, "s": -4, "n": 0, "k": None},
        {"r": 1, "s": 7, "n": 1, "k": "z"},
    ]


def test_dates_compare_with_now_minus_a_time_span() -> None:
    assert column("FROM x-* | WHERE t >= NOW() - 20 minutes | EVAL r = a | KEEP r") == [7]
    assert column("FROM x-* | WHERE t >= NOW() - 2 hours | SORT t ASC | EVAL r = a | KEEP r") == [-7, 7]


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("FROM x-* | WHERE zz > 1", r"Unknown column \[zz\]"),
        ("FROM x-* | STATS r = COUNT(*) | KEEP a", r"Unknown column \[a\]"),
        ("FROM x-* | WHERE t > 5", "cannot compare"),
        ("FROM x-* | EVAL r = t - 2", "arithmetic on date"),
        ("FROM x-* | EVAL r = CONCAT(a, k)", "CONCAT needs strings"),
        ("FROM x-* | STATS r = a", "neither an aggregation"),
        ("FROM x-* | ENRICH p ON k", r"unresolved enrich policy \[p\]"),
        ("FROM x-* | EVAL r = LENGTH(k)", "unsupported function"),
        ("FROM x-* | WHERE t > NOW() - 1.5 hours", "whole number"),
        ("FROM x-* | EVAL r = MV_MIN(a, b)", "takes 1..1 arguments"),
    ],
)
def test_what_is_outside_the_mapping_or_the_subset_is_an_error(query: str, error: str) -> None:
    with pytest.raises(EsqlError, match=error):
        run(query)


def test_enrich_adds_the_policy_fields_and_several_matches_are_a_multi_value() -> None:
    limits = {"limit": "long", "key": "keyword"}
    policy = Enrich("limits-*", "key", ("limit",), limits)
    indices = {
        "x-1": load_rows(DOCS, MAPPING),
        "limits-1": load_rows([{"key": "z", "limit": 10}, {"key": "y", "limit": 1}, {"key": "y", "limit": 2}], limits),
    }
    query = 'FROM x-* | EVAL k = COALESCE(k, "y") | ENRICH p ON k WITH cap = limit | EVAL r = cap * 2 | KEEP k, cap, r'
    commands = parse(query)
    assert check_types(commands, MAPPING, {"p": policy})["cap"] == "long"
    assert evaluate(commands, indices, policies={"p": policy}) == [
        {"k": "z", "cap": 10, "r": 20},
        {"k": "y", "cap": (1, 2), "r": None},
        {"k": "y", "cap": (1, 2), "r": None},
    ]
    with pytest.raises(EsqlError, match="not one of policy"):
        check_types(parse("FROM x-* | ENRICH p ON k WITH cap = key"), MAPPING, {"p": policy})
    with pytest.raises(EsqlError, match="ENRICH ON a long column"):
        check_types(parse("FROM x-* | ENRICH p ON a"), MAPPING, {"p": policy})


def test_a_multi_value_through_arithmetic_is_null_and_mv_min_reduces_it() -> None:
    assert column("FROM x-* | EVAL r = a * 2 | KEEP r") == [14, -14, None], "[1, 2] * 2 is null"
    assert column("FROM x-* | WHERE a >= 1 | EVAL r = a | KEEP r") == [7], "[1, 2] >= 1 is null, not true"
    assert column("FROM x-* | EVAL r = MV_MIN(a) * 2 | KEEP r") == [14, -14, 2]
    assert column("FROM x-* | EVAL r = MV_MIN(k) | KEEP r") == ["z", None, None], "null stays null"
    assert check_types(parse("FROM x-* | EVAL r = MV_MIN(t) | KEEP r"), MAPPING)["r"] == "date"


LIMITS = {"limit": "long", "key": "keyword", "@timestamp": "date"}
RUNS = [  # one limits document per key per hourly run; key y was scaled from 1 to 2 at the 11:00 run
    {"@timestamp": "2026-03-02T10:00:00Z", "key": "y", "limit": 1},
    {"@timestamp": "2026-03-02T11:00:00Z", "key": "y", "limit": 2},
    {"@timestamp": "2026-03-02T12:00:00Z", "key": "y", "limit": 2},
]


def windowed(query: dict[str, Any] | None) -> Enrich:
    return Enrich("limits-*", "key", ("limit",), LIMITS, query)


def test_a_policy_range_query_keeps_the_documents_within_now_at_execute_time() -> None:
    indices = {"x-1": load_rows(DOCS, MAPPING), "limits-1": load_rows(RUNS, LIMITS)}
    policy = windowed({"range": {"@timestamp": {"gte": "now-90m"}}})

    def stamps(executed: datetime) -> list[int]:
        return [row["@timestamp"].hour for row in enrich_index(policy, indices, executed)]

    assert stamps(NOW) == [11, 12], "12:10 - 90m = 10:40"
    assert stamps(NOW + timedelta(minutes=40)) == [12], "12:50 - 90m = 11:20"
    assert stamps(NOW - timedelta(hours=1, minutes=10)) == [10, 11, 12], "documents after `now` are kept too"
    assert [r["@timestamp"].hour for r in enrich_index(windowed(None), indices, None)] == [10, 11, 12]
    bounded = windowed({"range": {"@timestamp": {"gt": "now-2h", "lt": "now-1h+5m"}}})
    assert [r["@timestamp"].hour for r in enrich_index(bounded, indices, NOW)] == [11]

    query = 'FROM x-* | EVAL key = "y" | ENRICH p WITH cap = limit | EVAL r = MV_MIN(cap) | KEEP cap, r | LIMIT 1'
    commands = parse(query)
    check_types(commands, MAPPING, {"p": policy})
    assert evaluate(commands, indices, policies={"p": policy}, executed=NOW) == [{"cap": (2, 2), "r": 2}]
    no_window = evaluate(commands, indices, policies={"p": windowed(None)})
    assert no_window == [{"cap": (1, 2, 2), "r": 1}], "without the window an old, smaller limit wins forever"
    with pytest.raises(EsqlError, match="give the time `_execute` ran"):
        evaluate(commands, indices, policies={"p": policy})


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ({"term": {"key": "y"}}, "one `range` query"),
        ({"range": {"limit": {"gte": 1}}}, r"\[limit\] is not a date"),
        ({"range": {"@timestamp": {"gte": "now-1d/d"}}}, "outside the subset"),
        ({"range": {"@timestamp": {"gte": "now-1M"}}}, "outside the subset"),
        ({"range": {"@timestamp": {"gte": "2026-03-02T11:00:00Z"}}}, "outside the subset"),
        ({"range": {"@timestamp": {"gte": "now-1h", "time_zone": "+01:00"}}}, "range takes"),
    ],
)
def test_a_policy_query_outside_the_subset_is_an_error(query: dict[str, Any], error: str) -> None:
    with pytest.raises(EsqlError, match=error):
        check_types(parse("FROM x-* | ENRICH p ON k"), MAPPING, {"p": windowed(query)})
