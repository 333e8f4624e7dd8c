"""Durations: the pure parser (property tests) and every duration-valued configuration key."""

from __future__ import annotations

import math
import typing
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from metrics_poller import config
from metrics_poller.durations import UNITS, Duration, format_seconds, parse_seconds

whole = st.integers(min_value=0, max_value=10**7)
units = st.sampled_from(sorted(UNITS))


@given(whole)
def test_integer_seconds_are_seconds(n: int) -> None:
    assert parse_seconds(n) == n
    assert parse_seconds(str(n)) == n


@given(st.lists(st.tuples(st.integers(0, 999), units), min_size=1, max_size=4))
def test_suffixed_parts_add_up(parts: list[tuple[int, str]]) -> None:
    text = "".join(f"{n}{unit}" for n, unit in parts)
    assert parse_seconds(text) == pytest.approx(sum(n * UNITS[unit] for n, unit in parts))


@given(*(st.none() | st.integers(0, 99) for _ in range(5)))
def test_iso_8601_durations(
    weeks: int | None, days: int | None, hours: int | None, minutes: int | None, seconds: int | None
) -> None:
    date = "".join(f"{n}{u}" for n, u in ((weeks, "W"), (days, "D")) if n is not None)
    time = "".join(f"{n}{u}" for n, u in ((hours, "H"), (minutes, "M"), (seconds, "S")) if n is not None)
    text = "P" + date + (f"T{time}" if time else "")
    expected = sum(
        (n or 0) * size for n, size in ((weeks, 604800), (days, 86400), (hours, 3600), (minutes, 60), (seconds, 1))
    )
    if not date and not time:
        with pytest.raises(ValueError, match="seconds"):
            parse_seconds(text)
    else:
        assert parse_seconds(text) == expected
        assert parse_seconds(text.lower()) == expected


@given(st.integers(1, 10**9))
def test_elasticsearch_form_round_trips(milliseconds: int) -> None:
    seconds = milliseconds / 1000
    text = format_seconds(seconds)
    assert text[-1] in "smhd" and text[: -2 if text.endswith("ms") else -1].isdigit()
    assert parse_seconds(text) == pytest.approx(seconds)


@given(st.text(max_size=12) | st.floats() | st.integers(max_value=-1) | st.booleans() | st.none())
def test_anything_else_is_a_value_error_that_names_the_unit(value: Any) -> None:
    try:
        seconds = parse_seconds(value)
    except ValueError as exc:
        assert "seconds" in str(exc) or "days" in str(exc)
    else:
        assert math.isfinite(seconds) and seconds >= 0


def test_examples_from_the_readme() -> None:
    examples = {
        "300s": 300,
        "5m": 300,
        "1h30m": 5400,
        "7d": 604800,
        "1w": 604800,
        "500ms": 0.5,
        "PT5M": 300,
        "P1D": 86400,
        "P1DT12H": 129600,
        "PT1.5S": 1.5,
        300: 300,
        0.05: 0.05,
    }
    for text, seconds in examples.items():
        assert parse_seconds(text) == seconds, text
    for bad in ("5 min", "-5m", "P1M", "P1Y", "PT", "5M", "m5", ""):
        with pytest.raises(ValueError):
            parse_seconds(bad)


def duration_keys(model: type[BaseModel], prefix: str = "") -> dict[str, type]:
    """Every configuration key annotated with `Duration`, and the type the application reads."""
    keys: dict[str, type] = {}
    for name, field in model.model_fields.items():
        annotation = field.annotation
        nested = [
            t for t in (annotation, *typing.get_args(annotation)) if isinstance(t, type) and issubclass(t, BaseModel)
        ]
        if nested:
            keys |= duration_keys(nested[0], f"{prefix}{name}.")
            continue
        # `Annotated[int, Duration()]` lands in `metadata`; `Annotated[int, Duration()] | None` stays in the type.
        inner = [a for a in typing.get_args(annotation) if typing.get_origin(a) is typing.Annotated]
        metadata = [*field.metadata, *(m for a in inner for m in a.__metadata__)]
        if any(isinstance(m, Duration) for m in metadata):
            kinds = [annotation, *typing.get_args(annotation), *(typing.get_args(a)[0] for a in inner)]
            keys[prefix + name] = next(t for t in kinds if t in (int, float, str))
    return keys


DURATION_KEYS = duration_keys(config.Config)


def test_every_duration_key_of_the_issue_is_a_duration() -> None:
    expected = {
        "period",
        "latency",
        "initial_lookback",
        "max_backfill",
        "backfill_step",
        "cycle_deadline",
        "azure.refresh_interval",
        "azure.definitions_refresh",
        "azure.request_timeout",
        "azure.retry.backoff_initial",
        "azure.retry.backoff_max",
        "azure.retry.retry_after_cap",
        "elasticsearch.request_timeout",
        "elasticsearch.look_back",
        "elasticsearch.retention",
        "inventory.interval",
        "inventory.catalogue_refresh",
    }
    assert set(DURATION_KEYS) == expected


def nested(key: str, value: Any) -> dict[str, Any]:
    data: dict[str, Any] = {}
    node = data
    *parents, last = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    if key == "cycle_deadline":
        data["period"] = "1h"
    return data


def read(cfg: config.Config, key: str) -> Any:
    value: Any = cfg
    for part in key.split("."):
        value = getattr(value, part)
    return value


@pytest.mark.parametrize("key", sorted(DURATION_KEYS))
@pytest.mark.parametrize(("written", "seconds"), [(600, 600), ("600s", 600), ("10m", 600), ("PT10M", 600)])
def test_every_duration_key_takes_seconds_and_duration_strings(key: str, written: Any, seconds: int) -> None:
    value = read(config.parse(nested(key, written), {}), key)
    assert value == (format_seconds(seconds) if DURATION_KEYS[key] is str else seconds)
    assert type(value) is DURATION_KEYS[key]


@pytest.mark.parametrize("key", sorted(DURATION_KEYS))
def test_a_bad_duration_is_one_line_that_says_the_unit(key: str) -> None:
    with pytest.raises(config.ConfigError) as caught:
        config.parse(nested(key, "ten minutes"), {})
    (line,) = caught.value.lines
    assert line.startswith(f"config: {key}: expected a duration") and "seconds" in line and "5m" in line


@pytest.mark.parametrize(
    ("data", "key", "expected"),
    [
        ({"period": "301s"}, "period", "multiple of 300 seconds"),
        ({"period": "5m1s"}, "period", "multiple of 300 seconds"),
        ({"period": "0.5s"}, "period", "whole number of seconds"),
        ({"latency": "2d"}, "latency", "at most 86400 seconds (1d)"),
        ({"max_backfill": "94d"}, "max_backfill", "at most 8035200 seconds (93d)"),
        ({"period": "P1M"}, "period", "years and months"),
        ({"backfill_step": "-1h"}, "backfill_step", "0 seconds or more"),
    ],
)
def test_duration_bounds_name_the_key_and_the_unit(data: dict[str, Any], key: str, expected: str) -> None:
    with pytest.raises(config.ConfigError) as caught:
        config.parse(data, {})
    (line,) = caught.value.lines
    assert line.startswith(f"config: {key}: ") and expected in line, line


def test_elastic_style_settings_from_the_issue() -> None:
    cfg = config.parse({"period": "300s", "latency": "4m", "max_backfill": "7d", "backfill_step": "1h"}, {})
    assert (cfg.period, cfg.latency, cfg.max_backfill, cfg.backfill_step) == (300, 240, 604800, 3600)
    assert config.parse({"period": "5m"}, {}).period == 300
    assert config.parse({}, {"METRICS_POLLER__PERIOD": "10m"}).period == 600
