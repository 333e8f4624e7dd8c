"""`shape` and `encode`: grouping, number rules, field layout, order independence."""

from __future__ import annotations

import dataclasses
import json
import math
import random
from datetime import UTC, datetime, timedelta

import msgspec
import orjson
from hypothesis import given
from hypothesis import strategies as st

from metrics_poller.model import Account, Document, Point, Series
from metrics_poller.shaping import DocumentContext, encode, shape

ACCOUNT = Account(
    id="/subscriptions/S1/resourceGroups/RG1/providers/Microsoft.CognitiveServices/accounts/Acc1",
    name="Acc1",
    subscription_id="S1",
    resource_group="RG1",
    location="westeurope",
    kind="OpenAI",
)
OTHER = Account(
    id="/subscriptions/S1/resourceGroups/RG1/providers/Microsoft.CognitiveServices/accounts/Acc2",
    name="Acc2",
    subscription_id="S1",
    resource_group="RG1",
    location="westeurope",
    kind="OpenAI",
)
CONTEXT = DocumentContext(period_ms=300_000)
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DIMS = {"ModelDeploymentName": "d1", "Region": "westeurope"}


def series(
    metric: str,
    values: list[dict[str, float]],
    *,
    group: str = "g",
    dims: dict[str, str] | None = None,
    account: Account = ACCOUNT,
    timegrain: str = "PT1M",
) -> Series:
    points = tuple(Point((T0 + timedelta(minutes=i)).isoformat(), **v) for i, v in enumerate(values))
    return Series(account, group, metric, timegrain, DIMS if dims is None else dims, points)


def azure(document: Document) -> dict[str, object]:
    block = document.source["azure"]
    assert isinstance(block, dict)
    return block


def test_layout_of_one_document() -> None:
    context = DocumentContext(
        namespace="team_a", period_ms=60_000, agent={"type": "metrics-poller", "name": "h", "version": "1"}
    )
    (document,) = shape([series("AzureOpenAIRequests", [{"total": 3.0}])], context)
    source = document.source
    assert list(source) == [
        "@timestamp",
        "agent",
        "azure",
        "cloud",
        "data_stream",
        "ecs",
        "event",
        "metricset",
        "service",
    ]
    assert source["@timestamp"] == "2026-03-01T12:00:00.000Z"
    assert source["agent"] == {"name": "h", "type": "metrics-poller", "version": "1"}
    assert source["data_stream"] == {"dataset": "azure.open_ai", "namespace": "team_a", "type": "metrics"}
    assert source["event"] == {"dataset": "azure.open_ai", "module": "azure"}
    assert source["metricset"] == {"name": "monitor", "period": 60_000}
    assert source["service"] == {"type": "azure"}
    assert source["ecs"] == {"version": "8.11.0"}
    assert source["cloud"] == {"provider": "azure", "region": "westeurope"}
    block = azure(document)
    assert list(block) == ["dimensions", "namespace", "open_ai", "resource", "subscription_id", "timegrain"]
    assert block["namespace"] == "Microsoft.CognitiveServices/accounts"
    assert block["resource"] == {
        "group": "RG1",
        "id": ACCOUNT.id,
        "name": "Acc1",
        "type": "Microsoft.CognitiveServices/accounts",
    }
    assert block["open_ai"] == {"requests": {"total": 3}}
    assert document.account_key == ACCOUNT.id.lower()


def test_no_agent_block_without_an_identity() -> None:
    (document,) = shape([series("AzureOpenAIRequests", [{"total": 1.0}])], CONTEXT)
    assert "agent" not in document.source


def test_no_dimensions_object_without_dimensions() -> None:
    (document,) = shape([series("AzureOpenAIRequests", [{"total": 1.0}], dims={})], CONTEXT)
    assert "dimensions" not in azure(document)


def test_metrics_sharing_a_key_share_a_document() -> None:
    documents = shape(
        [
            series("ActiveTokens", [{"total": 10.0}, {"total": 11.0}], group="ptu_tokens_total"),
            series(
                "ActiveTokens", [{"average": 2.5, "minimum": 1.0, "maximum": 4.0}], group="ptu_tokens_stats"
            ),
            series("AzureOpenAIContextTokensCacheMatchRate", [{"average": 50.0}], group="ptu_tokens_stats"),
        ],
        CONTEXT,
    )
    assert len(documents) == 2
    first, second = documents
    assert azure(first)["open_ai"] == {
        "active_tokens": {"avg": 2.5, "max": 4, "min": 1, "total": 10},
        "context_tokens_cache_match_rate": {"avg": 50},
    }
    assert first.groups == {"ptu_tokens_total", "ptu_tokens_stats"}
    assert azure(second)["open_ai"] == {"active_tokens": {"total": 11}}
    assert second.groups == {"ptu_tokens_total"}


def test_each_key_part_separates_documents() -> None:
    documents = shape(
        [
            series("AzureOpenAIRequests", [{"total": 1.0}]),
            series("AzureOpenAIRequests", [{"total": 1.0}], account=OTHER),
            series("AzureOpenAIRequests", [{"total": 1.0}], timegrain="PT5M"),
            series("AzureOpenAIRequests", [{"total": 1.0}], dims={**DIMS, "StatusCode": "200"}),
            series("AzureOpenAIRequests", [{}, {"total": 1.0}]),
        ],
        CONTEXT,
    )
    assert len(documents) == 5
    assert len({d.id for d in documents}) == 5


def test_dimension_names_become_keys_and_values_stay_raw() -> None:
    dims = {"ModelDeploymentName": "GPT-4o", "StatusCode": "200", "Region": "East US", "ModelVersion": "0301"}
    (document,) = shape([series("AzureOpenAIRequests", [{"total": 1.0}], dims=dims)], CONTEXT)
    block = azure(document)["dimensions"]
    assert isinstance(block, dict)
    assert list(block) == ["fingerprint", "model_deployment_name", "model_version", "region", "status_code"]
    assert block["model_deployment_name"] == "GPT-4o"
    assert block["model_version"] == "0301"


def test_unknown_metric_uses_metricbeat_names() -> None:
    (document,) = shape([series("SomeNewMetricInMS", [{"average": 1.5, "count": 4.0}])], CONTEXT)
    # Metricbeat's rule leaves a run of capitals alone: "InMS" → "inms".
    assert azure(document)["open_ai"] == {"some_new_metric_inms": {"avg": 1.5, "count": 4}}


def test_non_finite_values_are_dropped() -> None:
    documents = shape(
        [
            series("AzureOpenAITimeToResponse", [{"average": math.nan, "maximum": math.inf, "minimum": 2.0}]),
            series("AzureOpenAIRequests", [{}, {"total": -math.inf}, {"total": math.nan}]),
        ],
        CONTEXT,
    )
    (document,) = documents
    assert azure(document)["open_ai"] == {"time_to_response": {"min": 2}}
    assert document.groups == {"g"}


def test_conflicting_values_keep_the_larger() -> None:
    a = series("AzureOpenAIRequests", [{"total": 2.0}], group="a")
    b = series("AzureOpenAIRequests", [{"total": 5.0}], group="b")
    for order in ([a, b], [b, a]):
        (document,) = shape(order, CONTEXT)
        assert azure(document)["open_ai"] == {"requests": {"total": 5}}


def test_aggregations_not_asked_for_are_ignored() -> None:
    asked = msgspec.structs.replace(series("AzureOpenAIRequests", [{"average": 1.0}]), aggregations=("total",))
    assert shape([asked], CONTEXT) == []


def test_timestamps_are_utc_milliseconds() -> None:
    moment = datetime(2026, 3, 1, 13, 30, 0, 123456, tzinfo=UTC)
    one = Series(ACCOUNT, "g", "AzureOpenAIRequests", "PT1M", {}, (Point(moment.isoformat(), total=1.0),))
    (document,) = shape([one], CONTEXT)
    assert document.source["@timestamp"] == "2026-03-01T13:30:00.123Z"


def test_event_duration_when_given() -> None:
    context = DocumentContext(period_ms=300_000, event_duration_ns=12)
    (document,) = shape([series("AzureOpenAIRequests", [{"total": 1.0}])], context)
    assert document.source["event"] == {"dataset": "azure.open_ai", "duration": 12, "module": "azure"}


def test_tags_are_sorted() -> None:
    tagged = dataclasses.replace(ACCOUNT, tags={"z": "1", "a": "2"})
    (document,) = shape([series("AzureOpenAIRequests", [{"total": 1.0}], account=tagged)], CONTEXT)
    resource = azure(document)["resource"]
    assert isinstance(resource, dict)
    assert list(resource) == ["group", "id", "name", "tags", "type"]
    assert list(resource["tags"]) == ["a", "z"]


# ------------------------------------------------------------------------------------- numbers


def written(value: float) -> bytes:
    """How shaping writes one aggregate value (the bytes of `requests.total`)."""
    documents = shape([series("AzureOpenAIRequests", [{"total": value}])], CONTEXT)
    if not documents:
        return b""
    (document,) = documents
    return document.body.split(b'"requests":{"total":', 1)[1].split(b"}", 1)[0]


@given(st.integers(min_value=-(2**200), max_value=2**200))
def test_integral_floats_serialise_as_integers(number: int) -> None:
    value = float(number)
    assert written(value) == b"%d" % int(value)


@given(st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer()))
def test_fractional_floats_round_trip(value: float) -> None:
    assert json.loads(written(value)) == value


def test_non_finite_values_write_nothing() -> None:
    assert [written(v) for v in (math.nan, math.inf, -math.inf)] == [b""] * 3
    assert written(-0.0) == b"0"


def test_encode_keeps_key_order_and_handles_huge_integers() -> None:
    assert encode({"b": 1, "a": {"d": 2, "c": 3}}) == b'{"b":1,"a":{"d":2,"c":3}}'
    huge = 10**30
    assert encode({"v": huge, "w": [-huge]}) == b'{"v":%d,"w":[%d]}' % (huge, -huge)
    assert orjson.loads(encode({"v": 2**64 - 1})) == {"v": 2**64 - 1}


# ---------------------------------------------------------------------------------- properties

values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.integers(-1000, 1000).map(float),
)
points = st.dictionaries(st.sampled_from(["average", "minimum", "maximum", "total", "count"]), values)
metric_names = st.sampled_from(["AzureOpenAIRequests", "ActiveTokens", "GeneratedTokens", "Unknown"])
dims = st.sampled_from([{}, DIMS, {"Region": "x"}])
random_series = st.builds(
    lambda metric, group, d, account, vals: series(metric, vals, group=group, dims=d, account=account),
    metric_names,
    st.sampled_from(["g1", "g2"]),
    dims,
    st.sampled_from([ACCOUNT, OTHER]),
    st.lists(points, max_size=4),
)


@given(st.lists(random_series, max_size=8), st.randoms(use_true_random=False))
def test_merging_is_order_independent(batch: list[Series], rng: random.Random) -> None:
    shuffled = list(batch)
    rng.shuffle(shuffled)
    first = {d.id: (d.body, d.groups) for d in shape(batch, CONTEXT)}
    second = {d.id: (d.body, d.groups) for d in shape(shuffled, CONTEXT)}
    assert first == second


@given(st.lists(random_series, max_size=8))
def test_every_document_has_a_finite_value(batch: list[Series]) -> None:
    for document in shape(batch, CONTEXT):
        open_ai = azure(document)["open_ai"]
        assert isinstance(open_ai, dict)
        assert open_ai
        for aggregates in open_ai.values():
            assert aggregates
            assert all(math.isfinite(v) for v in aggregates.values())
