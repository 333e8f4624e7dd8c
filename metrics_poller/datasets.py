"""Datasets: what one Elastic data stream receives, as a declaration (architecture.md §9).

A dataset names the resource type whose metrics it reads (also the metric namespace asked of Azure),
its metric catalogue and request groups, where its values sit in a document
(`azure.<metric_object>.<field>.<suffix>`), how it scales values, and how its documents meet the
ingest pipeline of the Elastic integration that owns the same data stream. Every stage reads these
declarations; none has a branch per dataset.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

from metrics_poller import catalog
from metrics_poller.catalog import AGGREGATION_SUFFIX, MetricGroup, MetricSpec

ACCOUNTS = "Microsoft.CognitiveServices/accounts"
PROJECTS = catalog.PROJECT_NAMESPACE  # Foundry projects: child resources of AIServices accounts


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: it keys hot caches
class Dataset:
    """One Elastic dataset the poller writes (`metrics-<name>-<namespace>`)."""

    name: str  # e.g. "azure.open_ai": data_stream.dataset and event.dataset
    resource_type: str  # what discovery lists; also the metric namespace Azure is asked for
    metrics: tuple[MetricSpec, ...]
    groups: tuple[MetricGroup, ...]
    metric_object: tuple[str, ...]  # path under `azure` that holds the metric values
    integration: str  # the Elastic package that owns the same data stream
    # Azure writes Percent metrics as 0–100; a dataset whose Elastic pipeline divides them by 100
    # stores 0–1, so the poller writes `value / percent_divisor` (the same float division).
    percent_divisor: int = 1
    # Elastic's pipeline for this stream is not idempotent on final documents (it would divide the
    # percentages again): send `pipeline=_none` unless the user names a pipeline.
    bypass_default_pipeline: bool = False
    default: bool = True  # written unless `datasets:` says otherwise
    preview: bool = False

    @cached_property
    def by_lower_name(self) -> Mapping[str, MetricSpec]:
        return {m.name.lower(): m for m in self.metrics}

    @property
    def namespace(self) -> str:
        """The metric namespace of the dataset's resources (equal to their resource type)."""
        return self.resource_type

    def data_stream(self, namespace: str) -> str:
        return f"metrics-{self.name}-{namespace}"

    @property
    def index_pattern(self) -> str:
        return f"metrics-{self.name}-*"

    @property
    def index_template(self) -> str:
        """The poller's own index template for this dataset."""
        return f"metrics-poller-{self.name}"

    @property
    def integration_template(self) -> str:
        """The index template Elastic's integration installs for the same pattern."""
        return f"metrics-{self.name}"

    def pipeline(self, configured: str | None) -> str | None:
        """The `pipeline` bulk parameter: the user's, else `_none` where the default one must not run."""
        if configured:
            return configured
        return "_none" if self.bypass_default_pipeline else None

    def field_name(self, metric: MetricSpec, aggregation: str) -> str:
        """Full document field of one metric aggregate, e.g. `azure.open_ai.requests.total`."""
        return f"azure.{'.'.join(self.metric_object)}.{metric.field}.{AGGREGATION_SUFFIX[aggregation]}"

    def all_fields(self) -> dict[str, str]:
        """Every metric field the dataset can produce → its Elasticsearch type."""
        return {self.field_name(m, a): m.es_type(a) for m in self.metrics for a in m.aggregations}

    @cached_property
    def dimensions(self) -> tuple[str, ...]:
        return tuple(sorted({d for m in self.metrics for d in m.dimensions}))

    @cached_property
    def groups_by_name(self) -> dict[str, MetricGroup]:
        return {g.name: g for g in self.groups}

    def divisor(self, metric: MetricSpec) -> int:
        return self.percent_divisor if metric.unit == "Percent" else 1


OPEN_AI = Dataset(
    name="azure.open_ai",
    resource_type=ACCOUNTS,
    metrics=catalog.METRICS,
    groups=catalog.GROUPS,
    metric_object=("open_ai",),
    integration="azure_openai",
)

AI_FOUNDRY = Dataset(
    name="azure.ai_foundry",
    resource_type=ACCOUNTS,
    metrics=catalog.FOUNDRY_METRICS,
    groups=catalog.FOUNDRY_GROUPS,
    metric_object=("ai_foundry",),
    integration="azure_ai_foundry",
    # foundry.md §2.5: the integration's pipeline stores ModelAvailabilityRate and
    # ProvisionedUtilization ÷ 100 (0–1), and would divide final values again.
    percent_divisor=100,
    bypass_default_pipeline=True,
)

AI_FOUNDRY_AGENT = Dataset(
    name="azure.ai_foundry.agent",
    resource_type=PROJECTS,
    metrics=catalog.AGENT_METRICS,
    groups=catalog.AGENT_GROUPS,
    metric_object=("ai_foundry", "agent"),
    integration="azure_ai_foundry",
    # The fields follow Metricbeat's rule (`agent_events`, …; foundry.md §2.4, §5.1), not the names
    # Elastic's preview pipeline would rename to; the documents are final, so its pipeline (renames
    # that match nothing today, and may match something tomorrow) is not run unless the user names one.
    bypass_default_pipeline=True,
    default=False,  # preview metrics: opt-in via `datasets:`
    preview=True,
)

DATASETS: tuple[Dataset, ...] = (OPEN_AI, AI_FOUNDRY, AI_FOUNDRY_AGENT)
BY_NAME: dict[str, Dataset] = {d.name: d for d in DATASETS}
DEFAULT_NAMES: tuple[str, ...] = tuple(d.name for d in DATASETS if d.default)


def select(names: Sequence[str] | None) -> tuple[Dataset, ...]:
    """The named datasets in declaration order; the default ones when `names` is None."""
    wanted = set(DEFAULT_NAMES if names is None else names)
    return tuple(d for d in DATASETS if d.name in wanted)


def find_metric(name: str) -> MetricSpec | None:
    """A metric of any dataset by case-insensitive REST name (first declaration wins)."""
    lower = name.lower()
    for dataset in DATASETS:
        spec = dataset.by_lower_name.get(lower)
        if spec is not None:
            return spec
    return None
