"""`azure_json.loads`: orjson's speed, `json.loads`'s exact results and exceptions."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metrics_poller.azure_json import loads

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "azure"


def same(body: bytes) -> None:
    expected = json.loads(body)
    actual = loads(body)
    assert repr(actual) == repr(expected)  # repr: tells 1 from 1.0 and -0.0 from 0.0, compares NaN


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("**/*.json")), ids=lambda p: p.name)
def test_fixtures_decode_as_with_the_stdlib(path: Path) -> None:
    same(path.read_bytes())


@pytest.mark.parametrize(
    "body",
    [
        b'{"total": 18446744073709551615}',
        b'{"total": 18446744073709551616}',  # orjson alone would give a float
        b'{"total": -9223372036854775809}',  # 19 digits, below int64
        b'{"total": 100000000000000000000000000000000000000000}',
        b'{"total": NaN, "average": Infinity, "minimum": -Infinity}',
        b'{"total": 1e400}',
        b'{"v": "\\ud800"}',
        b'\xef\xbb\xbf{"a": 1}',
        '{"a": "ü"}'.encode("utf-16"),
        b'{"a": 1, "a": 2}',
        b'[-0, -0.0, 1E2, 0.1, 4.9e-325, 2.2250738585072011e-308]',
        b'{"id": "00000000000000000000000000", "n": 1}',
    ],
)
def test_bodies_orjson_refuses_or_reads_differently(body: bytes) -> None:
    same(body)


@pytest.mark.parametrize("body", [b"", b"{", b"[1,]", b'{"a": "\x01"}', b"\xff", b"[" * 5000 + b"]" * 5000])
def test_errors_are_the_stdlib_errors(body: bytes) -> None:
    with pytest.raises((ValueError, RecursionError)) as stdlib:
        json.loads(body)
    with pytest.raises(stdlib.type) as ours:
        loads(body)
    assert str(ours.value) == str(stdlib.value)


def test_str_bodies_go_to_the_stdlib() -> None:
    assert loads('{"a": [1, 2.5]}') == {"a": [1, 2.5]}


numbers = st.one_of(
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.from_regex(r"-?(0|[1-9][0-9]{0,25})(\.[0-9]{1,25})?([eE][+-]?[0-9]{1,3})?", fullmatch=True),
)


@given(st.lists(numbers, max_size=20))
def test_numbers_decode_as_with_the_stdlib(values: list[object]) -> None:
    body = ("[" + ",".join(v if isinstance(v, str) else json.dumps(v) for v in values) + "]").encode()
    expected = json.loads(body)
    actual = loads(body)
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        assert type(a) is type(e)
        assert a == e or (isinstance(e, float) and math.isnan(e) and math.isnan(a))
        if isinstance(e, float):
            assert math.copysign(1.0, a) == math.copysign(1.0, e)
