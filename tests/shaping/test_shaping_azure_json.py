"""The Azure metric JSON parser: shapes it must read, and bad data it must reject with one clear line."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metrics_poller.azure_json import AzureDataError, parse_resource_metrics, parse_timestamp, resource_id_of
from metrics_poller.model import Account

RID = "/subscriptions/S/resourceGroups/RG/providers/Microsoft.CognitiveServices/accounts/Acc"
ACCOUNT = Account(
    id=RID, name="Acc", subscription_id="S", resource_group="RG", location="eastus", kind="OpenAI"
)


def meta(name: str, value: Any) -> dict[str, Any]:
    return {"name": {"value": name, "localizedValue": name}, "value": value}


def metric(name: Any, timeseries: Any, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"{RID}/providers/Microsoft.Insights/metrics/{name}",
        "type": "Microsoft.Insights/metrics",
        "name": {"value": name, "localizedValue": name},
        "unit": "Count",
        "timeseries": timeseries,
        "errorCode": "Success",
        **extra,
    }


def item(*metrics: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"interval": "PT1M", "value": list(metrics), **extra}


def parse(
    body: object,
    dimensions: Sequence[str] = ("ModelDeploymentName", "StatusCode"),
    aggregations: Sequence[str] = ("Total",),
) -> Any:
    return parse_resource_metrics(
        body,
        account=ACCOUNT,
        group="requests",
        requested_dimensions=dimensions,
        requested_aggregations=aggregations,
        timegrain="PT1M",
    )


def one_series(data: list[Any], metadata: list[Any] | None = None) -> list[dict[str, Any]]:
    element: dict[str, Any] = {"data": data}
    if metadata is not None:
        element["metadatavalues"] = metadata
    return [element]


def test_reads_a_series() -> None:
    body = item(
        metric(
            "AzureOpenAIRequests",
            one_series(
                [
                    {"timeStamp": "2026-01-01T00:00:00Z", "total": 12},
                    {"timeStamp": "2026-01-01T00:01:00Z"},
                    {"timeStamp": "2026-01-01T00:02:00Z", "total": 0.5, "average": 9.0},
                ],
                [meta("modeldeploymentname", "GPT-4o"), meta("statuscode", "200")],
            ),
        )
    )
    result = parse(body)
    (series,) = result.series
    assert series.account is ACCOUNT
    assert (series.group, series.metric, series.timegrain) == ("requests", "AzureOpenAIRequests", "PT1M")
    assert series.dimensions == {"ModelDeploymentName": "GPT-4o", "StatusCode": "200"}
    assert [(p.timestamp.minute, dict(p.values)) for p in series.points] == [
        (0, {"total": 12.0}),
        (2, {"total": 0.5}),
    ]
    assert series.points[0].timestamp == datetime(2026, 1, 1, tzinfo=UTC)
    assert result.series_counts == {"AzureOpenAIRequests": 1}
    assert result.metric_errors == {}
    assert result.interval == "PT1M"


def test_names_are_canonicalised() -> None:
    body = item(
        metric(
            "azureopenairequests",
            one_series(
                [{"timeStamp": "2026-01-01T00:00:00Z", "total": 1}],
                [
                    meta("MODELDEPLOYMENTNAME", "a"),  # requested: casing from the request
                    meta("region", "b"),  # not requested, known to the catalogue
                    meta("somethingnew", "c"),  # unknown: passes through
                ],
            ),
        )
    )
    (series,) = parse(body).series
    assert series.metric == "AzureOpenAIRequests"
    assert series.dimensions == {"ModelDeploymentName": "a", "Region": "b", "somethingnew": "c"}


def test_unknown_metric_keeps_its_name() -> None:
    body = item(metric("BrandNewMetric", one_series([{"timeStamp": "2026-01-01T00:00:00Z", "total": 1}])))
    assert [s.metric for s in parse(body).series] == ["BrandNewMetric"]


def test_only_requested_aggregations_are_read() -> None:
    point = {
        "timeStamp": "2026-01-01T00:00:00Z",
        "average": 1,
        "minimum": 0,
        "maximum": 2,
        "total": 3,
        "count": 4,
    }
    body = item(metric("ActiveTokens", one_series([point])))
    (series,) = parse(body, aggregations=("average", "Maximum")).series
    assert dict(series.points[0].values) == {"average": 1.0, "maximum": 2.0}
    (series,) = parse(body, aggregations=()).series
    assert set(series.points[0].values) == {"average", "minimum", "maximum", "total", "count"}
    with pytest.raises(ValueError, match="unknown aggregation 'P99'"):
        parse(body, aggregations=("P99",))


def test_tolerates_missing_and_extra_keys() -> None:
    body = {
        "cost": 0,
        "startime": "2026-01-01T00:00:00.000Z",  # the docs' misspelling
        "value": [
            {
                "name": {"value": "AzureOpenAIRequests"},
                "timeseries": [{"data": [{"timeStamp": "2026-01-01T00:00:00Z", "total": 1, "extra": "x"}]}],
                "brandNewKey": 1,
            },  # no errorCode (2018-01-01), no metadatavalues
            {"name": "GeneratedTokens", "timeseries": [{"metadatavalues": None}]},  # no data
        ],
    }
    result = parse(body)
    (series,) = result.series
    assert series.dimensions == {}
    assert series.timegrain == "PT1M"  # no echoed interval: the requested one
    assert result.interval is None
    assert result.series_counts == {"AzureOpenAIRequests": 1, "GeneratedTokens": 1}


def test_echoed_interval_is_the_time_grain() -> None:
    body = item(
        metric("AzureOpenAIRequests", one_series([{"timeStamp": "2026-01-01T00:00:00Z", "total": 1}]))
    )
    body["interval"] = "PT5M"
    result = parse(body)
    assert result.interval == "PT5M"
    assert result.series[0].timegrain == "PT5M"


def test_metric_error_inside_a_200() -> None:
    body = item(
        metric("AzureOpenAIRequests", one_series([{"timeStamp": "2026-01-01T00:00:00Z", "total": 1}])),
        metric(
            "GeneratedTokens",
            [],
            errorCode="InvalidSamplingType",
            errorMessage="Sampling type\nis not found.",
        ),
        metric("TokenTransaction", [], errorCode="Throttled"),
    )
    result = parse(body)
    assert result.metric_errors == {
        "GeneratedTokens": "InvalidSamplingType: Sampling type is not found.",
        "TokenTransaction": "Throttled",
    }
    assert result.series_counts == {"AzureOpenAIRequests": 1}


def test_series_counts_include_empty_series() -> None:
    empty = [
        {"metadatavalues": [meta("modeldeploymentname", str(i))], "data": [{"timeStamp": "x"}]}
        for i in range(3)
    ]
    result = parse(item(metric("AzureOpenAIRequests", empty)))
    assert result.series == []  # bare buckets only: their timestamps are never even parsed
    assert result.series_counts == {"AzureOpenAIRequests": 3}


def test_non_finite_values_are_dropped_and_huge_ones_kept() -> None:
    data = [
        {"timeStamp": "2026-01-01T00:00:00Z", "total": math.nan},
        {"timeStamp": "2026-01-01T00:01:00Z", "total": math.inf},
        {"timeStamp": "2026-01-01T00:02:00Z", "total": 1e308},
        {"timeStamp": "2026-01-01T00:03:00Z", "total": 10**400},
    ]
    body = json.loads(json.dumps(item(metric("AzureOpenAIRequests", one_series(data)))))
    (series,) = parse(body).series
    assert [p.values["total"] for p in series.points] == [1e308, 10**400]


@pytest.mark.parametrize(
    "text",
    [
        "2026-01-01T00:00:00Z",
        "2026-01-01T00:00:00.000Z",
        "2026-01-01T00:00:00.0000000Z",
        "2026-01-01T01:00:00+01:00",
        "2026-01-01T00:00:00",
    ],
)
def test_timestamp_forms(text: str) -> None:
    parsed = parse_timestamp(text)
    assert parsed == datetime(2026, 1, 1, tzinfo=UTC)
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "resource item: expected an object, got list"),
        ({"error": {"code": "BadRequest"}}, "value: expected a list of metrics, got null"),
        (item("x"), "value[0]: expected a metric object, got str 'x'"),  # type: ignore[arg-type]
        (item({"timeseries": []}), "value[0]: metric without a name"),
        (
            item(metric("AzureOpenAIRequests", None)),
            "metric AzureOpenAIRequests: timeseries: expected a list",
        ),
        (
            item(
                metric(
                    "AzureOpenAIRequests", one_series([{"timeStamp": "2026-01-01T00:00:00Z", "total": "1"}])
                )
            ),
            "metric AzureOpenAIRequests: timeseries[0].data[0]: total: expected a number, got str '1'",
        ),
        (
            item(
                metric(
                    "AzureOpenAIRequests", one_series([{"timeStamp": "2026-01-01T00:00:00Z", "total": True}])
                )
            ),
            "total: expected a number, got bool True",
        ),
        (
            item(metric("AzureOpenAIRequests", one_series([{"timeStamp": "yesterday", "total": 1}]))),
            "timeseries[0].data[0]: timeStamp: not an ISO-8601 time: 'yesterday'",
        ),
        (
            item(metric("AzureOpenAIRequests", one_series([{"total": 1}]))),
            "timeStamp: expected a string, got null",
        ),
        (item(metric("AzureOpenAIRequests", one_series([[1]]))), "data[0]: expected an object, got list"),
        (
            item(metric("AzureOpenAIRequests", [{"data": {}}])),
            "timeseries[0].data: expected a list, got dict",
        ),
        (item(metric("AzureOpenAIRequests", ["x"])), "timeseries[0]: expected an object, got str"),
        (
            item(metric("AzureOpenAIRequests", one_series([], [meta("region", 3)]))),
            "timeseries[0].metadatavalues[0]: value of 'region' is int 3, expected a string",
        ),
        (
            item(metric("AzureOpenAIRequests", one_series([], [{"value": "x"}]))),
            "metadatavalues[0]: missing name",
        ),
        (item(metric("AzureOpenAIRequests", one_series([], ["x"]))), "metadatavalues[0]: expected an object"),
        (item(metric("AzureOpenAIRequests", [{"metadatavalues": {}}])), "metadatavalues: expected a list"),
        ({"interval": 5, "value": []}, "interval: expected a string, got int 5"),
    ],
)
def test_bad_data_is_one_clear_line(body: object, message: str) -> None:
    with pytest.raises(AzureDataError) as caught:
        parse(body)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=12,
)
plausible_keys = st.sampled_from(
    ["value", "interval", "name", "timeseries", "data", "metadatavalues", "timeStamp", "total", "errorCode"]
)
plausible = st.recursive(
    json_values,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(plausible_keys, children, max_size=4),
    max_leaves=20,
)


@given(plausible)
def test_arbitrary_json_raises_only_azure_data_error(body: object) -> None:
    try:
        parse(body)
    except AzureDataError as exc:
        assert "\n" not in str(exc)


# ------------------------------------------------------------------------------ resource ids


def test_resource_id_from_batch_item() -> None:
    assert resource_id_of({"resourceid": RID, "value": []}) == RID


def test_resource_id_from_metric_id_keeps_case() -> None:
    body = {"value": [{"id": f"{RID}/providers/microsoft.insights/Metrics/AzureOpenAIRequests"}]}
    assert resource_id_of(body) == RID


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        {},
        {"value": []},
        {"value": ["x"]},
        {"value": [{"id": 3}]},
        {"value": [{"id": "no-marker"}]},
        {"resourceid": ""},
    ],
)
def test_resource_id_unknown(body: object) -> None:
    assert resource_id_of(body) is None
