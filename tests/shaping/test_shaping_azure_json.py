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

from metrics_poller.azure_json import (
    AzureDataError,
    ResourceMetrics,
    decode_batch,
    decode_resource,
    parse_resource_metrics,
    resource_id_of,
)
from metrics_poller.model import Account
from metrics_poller.shaping import DocumentContext, shape

RID = "/subscriptions/S/resourceGroups/RG/providers/Microsoft.CognitiveServices/accounts/Acc"
ACCOUNT = Account(id=RID, name="Acc", subscription_id="S", resource_group="RG", location="eastus", kind="OpenAI")


CONTEXT = DocumentContext(period_ms=60_000)


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
    # Buckets as sent (the empty one included); shaping reads only the requested aggregations.
    assert [(p.time.minute, p.values) for p in series.points] == [
        (0, {"total": 12.0}),
        (1, {}),
        (2, {"total": 0.5, "average": 9.0}),
    ]
    assert series.aggregations == ("total",)
    assert series.points[0].time == datetime(2026, 1, 1, tzinfo=UTC)
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
    assert series.aggregations == ("average", "maximum")
    (document,) = shape([series], CONTEXT)
    assert document.source["azure"]["open_ai"] == {"active_tokens": {"avg": 1, "max": 2}}
    (series,) = parse(body, aggregations=()).series
    assert series.aggregations == ("average", "minimum", "maximum", "total", "count")
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
    body = item(metric("AzureOpenAIRequests", one_series([{"timeStamp": "2026-01-01T00:00:00Z", "total": 1}])))
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
        {"metadatavalues": [meta("modeldeploymentname", str(i))], "data": [{"timeStamp": "2026-01-01T00:00:00Z"}]}
        for i in range(3)
    ]
    result = parse(item(metric("AzureOpenAIRequests", empty)))
    assert result.series_counts == {"AzureOpenAIRequests": 3}
    assert shape(result.series, CONTEXT) == []  # bare buckets only: no document


def test_non_finite_values_are_dropped() -> None:
    data = [
        {"timeStamp": "2026-01-01T00:00:00Z", "total": math.nan},
        {"timeStamp": "2026-01-01T00:01:00Z", "total": math.inf},
        {"timeStamp": "2026-01-01T00:02:00Z", "total": 1e308},
    ]
    raw = json.dumps(item(metric("AzureOpenAIRequests", one_series(data)))).encode()  # NaN, Infinity
    (series,) = parse(decode_resource(raw)).series
    documents = shape([series], CONTEXT)
    assert [d.source["azure"]["open_ai"]["requests"]["total"] for d in documents] == [10**308 * 1.0]


def test_values_beyond_double_range_are_infinite() -> None:
    bucket = b'{"timeStamp":"2026-01-01T00:00:00Z","total":1e400}'
    raw = b'{"value":[{"name":"AzureOpenAIRequests","timeseries":[{"data":[' + bucket + b"]}]}]}"
    assert isinstance(decode_resource(raw), dict)  # the typed decoder refused; the stdlib read it
    parsed = parse(decode_resource(raw))
    assert parsed.series[0].points[0].total == math.inf  # as json.loads reads it: dropped by shaping
    exact = json.loads(raw.replace(b"1e400", b"-1" + b"0" * 400))  # the stdlib keeps it an exact int
    assert parse(exact).series[0].points[0].total == -math.inf
    with pytest.raises(AzureDataError, match=r"value\[0\].name: expected `str \| object`, got `int`"):
        parse({**exact, "value": [{**exact["value"][0], "name": 10**400}]})


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
    body = item(metric("AzureOpenAIRequests", one_series([{"timeStamp": text, "total": 1}])))
    for decoded in (decode_resource(json.dumps(body).encode()), body):
        (document,) = shape(parse(decoded).series, CONTEXT)
        assert document.source["@timestamp"] == "2026-01-01T00:00:00.000Z"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "resource item: expected `object`, got `array`"),
        ({"error": {"code": "BadRequest"}}, "resource item: object missing required field `value`"),
        (item("x"), "value[0]: expected `object`, got `str`"),  # type: ignore[arg-type]
        (item({"timeseries": []}), "value[0]: object missing required field `name`"),
        (
            item(metric("AzureOpenAIRequests", None)),
            "metric AzureOpenAIRequests: timeseries: expected a list, got null",
        ),
        (
            item(metric("AzureOpenAIRequests", one_series([{"timeStamp": "2026-01-01T00:00:00Z", "total": "1"}]))),
            "value[0].timeseries[0].data[0].total: expected `float | null`, got `str`",
        ),
        (
            item(metric("AzureOpenAIRequests", one_series([{"timeStamp": "2026-01-01T00:00:00Z", "total": True}]))),
            "value[0].timeseries[0].data[0].total: expected `float | null`, got `bool`",
        ),
        (
            item(metric("AzureOpenAIRequests", one_series([{"timeStamp": "yesterday", "total": 1}]))),
            "metric AzureOpenAIRequests: timeseries[0].data[0].timeStamp: not an ISO 8601 time: 'yesterday'",
        ),
        (
            item(metric("AzureOpenAIRequests", one_series([{"total": 1}]))),
            "data[0]: object missing required field `timeStamp`",
        ),
        (item(metric("AzureOpenAIRequests", one_series([[1]]))), "data[0]: expected `object`, got `array`"),
        (
            item(metric("AzureOpenAIRequests", [{"data": {}}])),
            "timeseries[0].data: expected `array | null`, got `object`",
        ),
        (item(metric("AzureOpenAIRequests", ["x"])), "value[0].timeseries[0]: expected `object`, got `str`"),
        (
            item(metric("AzureOpenAIRequests", one_series([], [meta("region", 3)]))),
            "timeseries[0].metadatavalues[0].value: expected `str`, got `int`",
        ),
        (
            item(metric("AzureOpenAIRequests", one_series([], [{"value": "x"}]))),
            "metadatavalues[0]: object missing required field `name`",
        ),
        (
            item(metric("AzureOpenAIRequests", one_series([], ["x"]))),
            "metadatavalues[0]: expected `object`, got `str`",
        ),
        (
            item(metric("AzureOpenAIRequests", [{"metadatavalues": {}}])),
            "metadatavalues: expected `array | null`, got `object`",
        ),
        ({"interval": 5, "value": []}, "interval: expected `str | null`, got `int`"),
    ],
)
def test_bad_data_is_one_clear_line(body: object, message: str) -> None:
    with pytest.raises(AzureDataError) as caught:
        parse(body)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
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


stamps = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)).map(
    lambda moment: moment.isoformat().replace("+00:00", "Z")
)
numbers = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**53), 2**53)
buckets = st.builds(
    lambda stamp, values: {"timeStamp": stamp, **values},
    stamps,
    st.dictionaries(st.sampled_from(["average", "minimum", "maximum", "total", "count"]), numbers),
)
names = st.text(min_size=1, max_size=6)
dimension_lists = st.lists(st.builds(meta, names, st.text(max_size=6)), max_size=3)
series_lists = st.lists(
    st.builds(lambda d, m: {"metadatavalues": m, "data": d}, st.lists(buckets, max_size=3), dimension_lists),
    max_size=3,
)
well_formed = st.builds(
    lambda metrics, interval: {"values": [{"resourceid": RID, "interval": interval, "value": metrics}]},
    st.lists(st.builds(metric, st.sampled_from(["AzureOpenAIRequests", "Other"]), series_lists), max_size=2),
    st.sampled_from(["PT1M", "pt5m"]),
)


@given(well_formed)
def test_typed_and_lenient_reading_agree(body: dict[str, Any]) -> None:
    raw = json.dumps(body).encode()
    (typed,) = decode_batch(raw)
    assert isinstance(typed, ResourceMetrics)  # the fast path took it
    (plain,) = json.loads(raw)["values"]
    assert resource_id_of(typed) == resource_id_of(plain) == RID
    for aggregations in (("Total",), ()):
        fast, lenient = parse(typed, aggregations=aggregations), parse(plain, aggregations=aggregations)
        assert fast == lenient
        assert [d.body for d in shape(fast.series, CONTEXT)] == [d.body for d in shape(lenient.series, CONTEXT)]


def test_one_bad_item_leaves_the_others_readable() -> None:
    good = {
        "resourceid": RID,
        **item(metric("AzureOpenAIRequests", one_series([{"timeStamp": "2026-01-01T00:00:00Z", "total": 1}]))),
    }
    bad = {"resourceid": RID + "2", "value": "oops"}
    first, second = decode_batch(json.dumps({"values": [good, bad]}).encode())
    assert len(parse(first).series) == 1
    with pytest.raises(AzureDataError, match="value: expected `array`, got `str`"):
        parse(second)
    with pytest.raises(AzureDataError, match="no 'values' list"):
        decode_batch(b'{"value": []}')
    with pytest.raises(ValueError):
        decode_batch(b"<html>")


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


def test_zero_filled_buckets_lose_only_their_statistics() -> None:
    from metrics_poller.azure_json import without_zero_fill
    from metrics_poller.model import Point

    t = "2026-03-01T00:00:00Z"
    zero_stats = Point(t, average=0.0, minimum=0.0, maximum=0.0)
    zero_all = Point(t, average=0.0, minimum=0.0, maximum=0.0, total=0.0)
    no_samples = Point(t, average=0.0, minimum=0.0, maximum=0.0, count=0.0)
    real = Point(t, average=0.0, minimum=0.0, maximum=5.0)
    busy = Point(t, average=0.0, minimum=0.0, maximum=0.0, total=3.0)
    bare = Point(t, total=0.0)
    cleared = Point(t)
    assert list(without_zero_fill([zero_stats, real, busy, bare], False)) == [cleared, real, busy, bare]
    assert list(without_zero_fill([zero_all], False)) == [Point(t, total=0.0)]
    assert list(without_zero_fill([no_samples], True)) == [Point(t, count=0.0)]  # a count of 0 always decides
    assert list(without_zero_fill([zero_stats], True)) == [zero_stats]  # 0 % can be a real reading
    untouched = [real, bare]
    assert without_zero_fill(untouched, False) is untouched
