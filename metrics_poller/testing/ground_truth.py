"""Compare stored documents with the simulator's ground truth: missing, duplicated, wrong values.

Used by the restart and fault tests, the chaos soak and the benchmarks. A document is identified by
(account, timestamp, dimension map); its value is the set of `azure.<metric object>.<field>.<suffix>`
numbers of its dataset (`azure.open_ai.*` by default), scaled as the dataset declares.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

from metrics_poller.catalog import AGGREGATION_KEY, AGGREGATION_SUFFIX, MetricGroup, dimension_key
from metrics_poller.datasets import OPEN_AI, Dataset

INVENTORY_DATASET = "azure.ai_deployment"
DocKey = tuple[str, str, frozenset[tuple[str, str]]]  # (account key, @timestamp, dimensions)

Key = TypeVar("Key")

_SUFFIX_OF_KEY = {AGGREGATION_KEY[a]: AGGREGATION_SUFFIX[a] for a in AGGREGATION_KEY}


class TruthSource(Protocol):
    def expected(
        self,
        account_id: str,
        metric: str,
        start: datetime,
        end: datetime,
        grain: str = "PT1M",
        dimensions: Sequence[str] | None = None,
    ) -> Mapping[frozenset[tuple[str, str]], Mapping[datetime, Mapping[str, float]]]: ...


@dataclass
class Comparison(Generic[Key]):
    """Stored documents against the expected ones, each known by a key (a `DocKey` for metrics, a
    deployment id for the inventory)."""

    expected: int = 0
    stored: int = 0
    missing: list[Key] = field(default_factory=list)
    duplicated: list[Key] = field(default_factory=list)
    unexpected: list[Key] = field(default_factory=list)
    wrong: list[tuple[Key, str, object, object]] = field(default_factory=list)

    def add(self, other: Comparison[Key]) -> None:
        """Fold another part of the same comparison (e.g. one time chunk) into this one."""
        self.expected += other.expected
        self.stored += other.stored
        self.missing += other.missing
        self.duplicated += other.duplicated
        self.unexpected += other.unexpected
        self.wrong += other.wrong

    @property
    def perfect(self) -> bool:
        return not (self.missing or self.duplicated or self.unexpected or self.wrong)

    def summary(self) -> str:
        return (
            f"expected {self.expected}, stored {self.stored}, missing {len(self.missing)}, "
            f"duplicated {len(self.duplicated)}, unexpected {len(self.unexpected)}, wrong values {len(self.wrong)}"
        )


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def expected_documents(
    truth: TruthSource,
    accounts: Iterable[tuple[str, str]],
    groups: Sequence[MetricGroup],
    start: datetime,
    end: datetime,
    grain: str = "PT1M",
    dataset: Dataset = OPEN_AI,
) -> dict[DocKey, dict[str, float]]:
    """Every document the poller should store for `accounts` ((id, key) pairs) over `[start, end)`."""
    out: dict[DocKey, dict[str, float]] = {}
    for account_id, account_key in accounts:
        for group in groups:
            aggregations = {AGGREGATION_KEY[a] for a in group.aggregations}
            for metric in group.metrics:
                divisor = dataset.divisor(metric)
                series = truth.expected(account_id, metric.name, start, end, grain, list(group.dimensions))
                for dims, points in series.items():
                    dim_key = frozenset((dimension_key(name), value) for name, value in dims)
                    for moment, values in points.items():
                        fields = out.setdefault((account_key, stamp(moment), dim_key), {})
                        for agg, value in values.items():
                            if agg in aggregations:
                                fields[f"{metric.field}.{_SUFFIX_OF_KEY[agg]}"] = value / divisor
    return {k: v for k, v in out.items() if v}


def stored_key(document: Mapping[str, Any]) -> DocKey:
    azure = document["azure"]
    dims = {k: v for k, v in (azure.get("dimensions") or {}).items() if k != "fingerprint"}
    return (azure["resource"]["id"].lower(), document["@timestamp"], frozenset(dims.items()))


def stored_values(document: Mapping[str, Any], dataset: Dataset = OPEN_AI) -> dict[str, float]:
    metrics: Any = document["azure"]
    for part in dataset.metric_object:
        metrics = metrics.get(part, {})
    values: dict[str, float] = {}
    for metric, aggregates in metrics.items():
        for suffix, value in aggregates.items():
            values[f"{metric}.{suffix}"] = value
    return values


def compare(
    expected: Mapping[DocKey, Mapping[str, float]],
    stored: Iterable[Mapping[str, Any]],
    *,
    only_within: tuple[str, str] | None = None,
    dataset: Dataset = OPEN_AI,
) -> Comparison[DocKey]:
    """Diff the dataset's stored documents against the expectation (documents of other datasets are
    ignored); `only_within` limits stored docs to a `[start, end)` range of `@timestamp` strings."""
    pairs = []
    for hit in stored:
        document = hit.get("_source", hit)  # search hits or plain documents
        if document.get("data_stream", {}).get("dataset", dataset.name) != dataset.name:
            continue  # another dataset's (the inventory's have their own ground truth, inventory_truth)
        key = stored_key(document)
        if only_within and not (only_within[0] <= key[1] < only_within[1]):
            continue
        pairs.append((key, stored_values(document, dataset)))
    return compare_keyed(expected, pairs)


def compare_keyed(
    expected: Mapping[DocKey, Mapping[str, float]], stored: Iterable[tuple[DocKey, Mapping[str, float]]]
) -> Comparison[DocKey]:
    """Diff already-keyed stored documents ((key, values) pairs) against the expectation."""
    result = Comparison[DocKey](expected=len(expected))
    counts: Counter[DocKey] = Counter()
    seen: dict[DocKey, Mapping[str, float]] = {}
    for key, values in stored:
        counts[key] += 1
        seen[key] = values
    result.stored = sum(counts.values())
    result.duplicated = [k for k, n in counts.items() if n > 1]
    result.unexpected = [k for k in counts if k not in expected]
    for key, fields in expected.items():
        got = seen.get(key)
        if got is None:
            result.missing.append(key)
            continue
        for name in set(fields) | set(got):
            want, have = fields.get(name), got.get(name)
            if want is None or have is None or float(want) != float(have):
                result.wrong.append((key, name, want, have))
    return result
