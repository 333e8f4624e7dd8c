"""`azure.dimensions.fingerprint` and `_id`: Elasticsearch's test vectors, the contract's pre-image, and
the properties the cursor logic relies on (determinism, no collisions between different keys)."""

from __future__ import annotations

import base64
import hashlib
import random
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metrics_poller.shaping import document_id, fingerprint, fingerprint_values

SAMPLE_DIMENSIONS = {
    "api_name": "Azure OpenAI API version 2024-04-01-preview",
    "model_deployment_name": "gpt-chat-pilot",
    "model_name": "gpt-35-turbo",
    "model_version": "0301",
    "operation_name": "ChatCompletions_Create",
    "region": "East US",
    "status_code": "200",
    "stream_type": "Streaming",
}
# elastic-compat.md §8, verbatim; `\0` there is one 0x00 byte (so `\00301` is 0x00 then "0301").
SAMPLE_PRE_IMAGE = (
    r"\0api_name\0Azure OpenAI API version 2024-04-01-preview\0model_deployment_name\0gpt-chat-pilot"
    r"\0model_name\0gpt-35-turbo\0model_version\00301\0operation_name\0ChatCompletions_Create"
    r"\0region\0East US\0status_code\0200\0stream_type\0Streaming"
).replace("\\0", "\x00")


def sha1_base64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha1(data).digest()).decode()


def test_sample_event_pre_image() -> None:
    assert fingerprint(SAMPLE_DIMENSIONS) == sha1_base64(SAMPLE_PRE_IMAGE.encode())
    assert fingerprint(SAMPLE_DIMENSIONS) == "S+pG6Muak1h3Q4/jIr7DnHOX4a8="


def test_equals_processor_over_the_dimensions_field() -> None:
    assert fingerprint(SAMPLE_DIMENSIONS) == fingerprint_values({"azure.dimensions": SAMPLE_DIMENSIONS})


@pytest.mark.parametrize(
    ("values", "salt", "expected"),
    [
        ({"foo": "fooValue", "bar": "barValue"}, "", "IgxzmZVknx4+Og/eUpvIlqH9PdI="),  # testBasic
        ({"foo": "foo", "bar": None}, "", "WoyqQDn9vALAGmScjA9Z2yg7sos="),  # testIgnoreMissing
        ({"foo": "foo"}, "salt", "rWTTCYvRPQAzKXydmKwyC+//dmM="),  # testSalt
        ({"foo": "foo"}, "   ", "WoyqQDn9vALAGmScjA9Z2yg7sos="),  # a blank salt counts as none
    ],
)
def test_elasticsearch_vectors(values: dict[str, object], salt: str, expected: str) -> None:
    assert fingerprint_values(values, salt=salt) == expected


def test_no_value_writes_nothing() -> None:
    assert fingerprint_values({"foo": None}) is None
    assert fingerprint_values({}) is None


def test_scalar_encodings() -> None:
    cases: list[tuple[object, bytes]] = [
        (True, b"\x01"),
        (False, b"\x02"),
        (7, (7).to_bytes(4, "little")),
        (2**40, (2**40).to_bytes(8, "little")),
        (-1, b"\xff" * 4),
        (1.5, bytes.fromhex("000000000000f83f")),
        (b"raw", b"raw"),
        ("é", "é".encode()),
    ]
    for value, encoded in cases:
        assert fingerprint_values({"f": value}) == sha1_base64(b"\x00" + encoded), value
    assert fingerprint_values({"f": [1, "a"]}) == sha1_base64(b"\x00\x01\x00\x00\x00\x00a")
    assert fingerprint_values({"f": {"b": None, "a": "x"}}) == sha1_base64(b"\x00a\x00x\x00b\x00")
    with pytest.raises(TypeError):
        fingerprint_values({"f": object()})


def test_keys_sort_like_java_strings() -> None:
    # By code point U+FF5E sorts before U+1F600; by UTF-16 code unit (0xD83D < 0xFF5E), as in Java, after.
    dims = {"\uff5e": "b", "\U0001f600": "a"}
    assert fingerprint(dims) == sha1_base64("\x00\U0001f600\x00a\x00\uff5e\x00b".encode())


dimension_maps = st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=5)
plain_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=8)


@given(dimension_maps, st.randoms(use_true_random=False))
def test_independent_of_insertion_order(dims: dict[str, str], rng: random.Random) -> None:
    items = list(dims.items())
    rng.shuffle(items)
    assert fingerprint(dict(items)) == fingerprint(dims)


@given(dimension_maps, dimension_maps)
def test_distinct_maps_distinct_fingerprints(first: dict[str, str], second: dict[str, str]) -> None:
    if first != second:
        assert fingerprint(first) != fingerprint(second)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"a": "b\0c\0d"}, {"a": "b", "c": "d"}),  # identical ES pre-images
        ({"a\0b": "c"}, {"a": "b\0c"}),
        ({"a": "\ud800"}, {"a": "?"}),  # a lone surrogate is "?" in Java's UTF-8
    ],
)
def test_no_separator_ambiguity(first: dict[str, str], second: dict[str, str]) -> None:
    assert fingerprint(first) != fingerprint(second)


@given(st.dictionaries(plain_text, plain_text, max_size=5))
def test_matches_processor_whenever_elasticsearch_is_unambiguous(dims: dict[str, str]) -> None:
    assert fingerprint(dims) == fingerprint_values({"azure.dimensions": dims})


# --------------------------------------------------------------------------------------------- _id

ACCOUNT = "/subscriptions/S/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/a1"
MOMENT = datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
fingerprints = st.one_of(st.none(), st.text(alphabet="ABCxyz019+/=", min_size=1, max_size=28))
moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
).map(lambda moment: moment.replace(microsecond=moment.microsecond // 1000 * 1000))
id_keys = st.tuples(st.text(max_size=12), st.sampled_from(["PT1M", "PT5M", "PT1H"]), moments, fingerprints)


def test_id_is_compact_and_url_safe() -> None:
    ident = document_id(ACCOUNT, "PT1M", MOMENT, "S+pG6Muak1h3Q4/jIr7DnHOX4a8=")
    assert len(ident) == 24
    assert set(ident) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_id_is_pinned() -> None:
    # A changed _id re-writes every bucket once after an upgrade: change this only on purpose.
    assert document_id(ACCOUNT, "PT1M", MOMENT, None) == "-aOG1ZQy91VgYjq-npdPh1J3"


def test_id_ignores_account_case_and_time_zone() -> None:
    other_zone = MOMENT.astimezone(timezone(timedelta(hours=2)))
    assert document_id(ACCOUNT.upper(), "PT1M", other_zone, "x") == document_id(ACCOUNT, "PT1M", MOMENT, "x")


def test_id_rejects_naive_times() -> None:
    with pytest.raises(ValueError, match="time zone"):
        document_id(ACCOUNT, "PT1M", datetime(2026, 1, 1), None)


@given(id_keys)
def test_id_is_deterministic(key: tuple[str, str, datetime, str | None]) -> None:
    assert document_id(*key) == document_id(*key)


@given(id_keys, id_keys)
def test_id_differs_when_any_part_differs(
    first: tuple[str, str, datetime, str | None], second: tuple[str, str, datetime, str | None]
) -> None:
    normalised = [(k[0].lower(), *k[1:]) for k in (first, second)]
    if normalised[0] != normalised[1]:
        assert document_id(*first) != document_id(*second)


def test_id_parts_cannot_run_together() -> None:
    assert document_id("a\x1fPT1M", "PT5M", MOMENT, None) != document_id("a", "PT1M\x1fPT5M", MOMENT, None)
