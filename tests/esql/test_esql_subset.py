"""The ES|QL subset's semantics where a rule's result depends on them, on hand-made rows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from esql_subset import Enrich, EsqlError, check_types, evaluate, load_rows, parse

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
