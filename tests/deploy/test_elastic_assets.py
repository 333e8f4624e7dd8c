"""The README's ES|QL alert rules, run against the documents `make demo` writes.

Parsed, type-checked against the index template's mapping and evaluated with `tests/esql/esql_subset.py`
(see its docstring for why there is no engine), and compared with a direct computation over the same documents.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from esql_subset import EsqlError, by_data_stream, check_types, evaluate, parse, source_fields

from metrics_poller import templates

REPO = Path(__file__).resolve().parents[2]
UTILISATION = "azure.open_ai.provisioned_managed_utilization_v2.avg"
LATENCY = "azure.open_ai.time_to_response.avg"
REQUESTS = "azure.open_ai.requests.total"
DEPLOYMENT = "azure.dimensions.model_deployment_name"


def readme_rules() -> dict[str, str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("### Elastic's dashboards and alerts") :]
    section = section[: section.index("\n## ")]
    blocks = re.findall(r"```esql\n(.*?)```", section, re.S)
    rules = {}
    for block in blocks:
        for name, field in (
            ("utilisation", f"MAX({UTILISATION})"),
            ("latency", f"MAX({LATENCY})"),
            ("throttling", 'azure.dimensions.status_code == "429"'),
        ):
            if field in block:
                rules[name] = block
    assert set(rules) == {"utilisation", "latency", "throttling"}, f"README rules found: {sorted(rules)}"
    return rules


@pytest.fixture(scope="module")
def mapping() -> dict[str, str]:
    return {path: spec["type"] for path, spec in templates.field_mappings().items()}


@pytest.fixture(scope="module")
def demo_documents(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    from metrics_poller.demo import run_demo

    out = tmp_path_factory.mktemp("demo")
    assert run_demo(str(out)) == 0
    (path,) = out.glob("*.ndjson")
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


@pytest.fixture(scope="module")
def indices(demo_documents: list[dict[str, Any]], mapping: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    return by_data_stream(demo_documents, mapping)


def rows_of(indices: dict[str, list[dict[str, Any]]]) -> Iterator[dict[str, Any]]:
    for rows in indices.values():
        yield from rows


def test_the_parser_rejects_what_is_not_es_ql() -> None:
    for broken in ("FROM x | WHERE", "FROM x | STATS y = MAX(a) BY", "FROM x | FOO a", "FROM x | WHERE a = 1"):
        with pytest.raises(EsqlError):
            parse(broken)


@pytest.mark.parametrize("rule", ["utilisation", "latency", "throttling"])
def test_rule_fields_exist_in_the_demo_documents_with_the_right_type(
    rule: str, mapping: dict[str, str], indices: dict[str, list[dict[str, Any]]]
) -> None:
    commands = parse(readme_rules()[rule])
    assert commands[0].args == ("metrics-azure.open_ai-*",), "every namespace, not just default"
    check_types(commands, mapping)  # raises on an unmapped field or a type clash
    present = {path for row in rows_of(indices) for path, value in row.items() if value is not None}
    missing = source_fields(commands) - present
    assert not missing, f"{rule}: no demo document carries {sorted(missing)}"


def test_type_checker_catches_a_wrong_field_or_type(mapping: dict[str, str]) -> None:
    with pytest.raises(EsqlError, match="Unknown column"):
        check_types(parse("FROM m | WHERE azure.open_ai.requests.count > 1"), mapping)
    with pytest.raises(EsqlError, match="cannot compare"):
        check_types(parse(f"FROM m | WHERE azure.dimensions.status_code == 429 AND {REQUESTS} > 0"), mapping)
    with pytest.raises(EsqlError, match="needs a number"):
        check_types(parse(f"FROM m | STATS x = MAX({DEPLOYMENT})"), mapping)


def by_deployment(rows: Iterator[dict[str, Any]], field: str) -> dict[str, list[Any]]:
    grouped: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        if row.get(field) is not None and row.get(DEPLOYMENT) is not None:
            grouped[row[DEPLOYMENT]].append(row[field])
    return grouped


def between_lowest_two(values: list[float]) -> float:
    """A threshold that the lowest value fails and every other one passes."""
    distinct = sorted(set(values))
    assert len(distinct) >= 2, "the demo's values are all equal: the rule would not be put to the test"
    return (distinct[0] + distinct[1]) / 2


def fired(result: list[dict[str, Any]], column: str) -> list[tuple[float, str]]:
    values = [(r[column], r[DEPLOYMENT]) for r in result]
    assert [v for v, _ in values] == sorted((v for v, _ in values), reverse=True), "SORT … DESC"
    return sorted(values, reverse=True)


def windows(indices: dict[str, list[dict[str, Any]]]) -> Iterator[dict[str, list[dict[str, Any]]]]:
    """The documents one bucket at a time: what a rule sees when its time window holds one minute."""
    stamps = sorted({r["@timestamp"] for r in rows_of(indices)})
    for stamp in stamps:
        yield {name: [r for r in rows if r["@timestamp"] == stamp] for name, rows in indices.items()}


def test_utilisation_rule_compares_percent_as_percent(indices: dict[str, list[dict[str, Any]]]) -> None:
    rule = readme_rules()["utilisation"]
    # Elastic's shipped rule multiplies by 100 again.
    shipped = rule.replace(f"MAX({UTILISATION})", f"MAX({UTILISATION}) * 100")
    defect_seen = False
    for window in windows(indices):
        peaks = {d: max(v) for d, v in by_deployment(rows_of(window), UTILISATION).items()}
        if not peaks:
            continue
        assert all(0 <= p <= 100 for p in peaks.values()), "stored as Azure's 0-100 percent"
        result = evaluate(parse(rule), window)
        expected = sorted(((round(p, 2), d) for d, p in peaks.items() if p > 85), reverse=True)
        assert fired(result, "provisioned_utilization") == expected
        fired_by_shipped = evaluate(parse(shipped), window)
        assert len(fired_by_shipped) == sum(p > 0.85 for p in peaks.values())
        defect_seen |= len(fired_by_shipped) > len(result)
    assert defect_seen, "on the demo's data the x100 rule fires for deployments below 85 %"


def test_latency_rule(indices: dict[str, list[dict[str, Any]]]) -> None:
    peaks = {d: max(v) for d, v in by_deployment(rows_of(indices), LATENCY).items()}
    rule = readme_rules()["latency"]
    for threshold in (5000, between_lowest_two(list(peaks.values()))):
        result = evaluate(parse(rule.replace("> 5000", f"> {threshold}")), indices)
        expected = sorted(((round(p, 2), d) for d, p in peaks.items() if p > threshold), reverse=True)
        assert fired(result, "time_to_response") == expected
    assert 0 < len(result) < len(peaks)


def test_throttling_rule_reads_429s_from_the_request_metric(indices: dict[str, list[dict[str, Any]]]) -> None:
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row in rows_of(indices):
        if row.get(REQUESTS) is not None and row.get(DEPLOYMENT) is not None:
            totals[row[DEPLOYMENT]][0] += row[REQUESTS]
            if row.get("azure.dimensions.status_code") == "429":
                totals[row[DEPLOYMENT]][1] += row[REQUESTS]
    expected = sorted(
        (
            (round(100 * throttled / requests, 2), d, requests, throttled)
            for d, (requests, throttled) in totals.items()
            if throttled >= 5 and 100 * throttled / requests > 5
        ),
        reverse=True,
    )
    result = evaluate(parse(readme_rules()["throttling"]), indices)
    got = [(r["throttled_pct"], r[DEPLOYMENT], r["requests"], r["throttled"]) for r in result]
    assert sorted(got, reverse=True) == expected
    assert [g[0] for g in got] == sorted((g[0] for g in got), reverse=True)
    assert result, "the demo throttles some deployments: the rule must see them"
    assert all(isinstance(r["requests"], int) for r in result)


def test_rules_read_every_namespace_where_the_shipped_ones_read_default_only(
    indices: dict[str, list[dict[str, Any]]],
) -> None:
    elsewhere = {name.replace("-default", "-prod"): rows for name, rows in indices.items()}
    rule = readme_rules()["throttling"]
    assert evaluate(parse(rule), elsewhere) == evaluate(parse(rule), indices)
    shipped = rule.replace("FROM metrics-azure.open_ai-*", "FROM metrics-azure.open_ai-default")
    assert evaluate(parse(shipped), indices) and not evaluate(parse(shipped), elsewhere)
