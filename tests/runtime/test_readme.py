"""The README's configuration reference and the configuration model must agree."""

from __future__ import annotations

import re
import typing
from pathlib import Path

from pydantic import BaseModel

from metrics_poller.config import Config

README = Path(__file__).resolve().parents[2] / "README.md"


def model_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        nested = [
            t
            for t in (field.annotation, *typing.get_args(field.annotation))
            for t in (t, *typing.get_args(t))
            if isinstance(t, type) and issubclass(t, BaseModel)
        ]
        if not nested:
            keys.add(prefix + name)
            continue
        is_list = typing.get_origin(field.annotation) is list
        keys |= model_keys(nested[0], f"{prefix}{name}{'[]' if is_list else ''}.")
    return keys


def readme_keys() -> set[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Configuration reference", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z_.\[\]]+)` \|", section, re.M))


def test_every_configuration_key_is_documented_and_nothing_else() -> None:
    documented, actual = readme_keys(), model_keys(Config)
    assert actual - documented == set(), "keys missing from the README"
    assert documented - actual == set(), "README documents keys that do not exist"


def test_the_agent_field_table_is_the_catalogue() -> None:
    """Every agent group, metric → field, aggregation list and dimension list, as the catalogue has it."""
    from metrics_poller.catalog import AGGREGATION_SUFFIX
    from metrics_poller.datasets import AI_FOUNDRY_AGENT

    text = README.read_text(encoding="utf-8")
    section = text.split("### Foundry agent metrics (preview)", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z_]+)` \| (.+?) \| ([a-z/]+) \| (.+?) \|$", section, re.M)
    documented = {
        name: (set(re.findall(r"`(\w+)` → `(\w+)`", metrics)), aggs, dims) for name, metrics, aggs, dims in rows
    }
    expected = {
        g.name: (
            {(m.name, m.field) for m in g.metrics},
            "/".join(AGGREGATION_SUFFIX[a] for a in g.aggregations),
            ", ".join(g.dimensions),
        )
        for g in AI_FOUNDRY_AGENT.groups
    }
    assert documented == expected
