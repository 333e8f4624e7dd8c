"""The metric catalogue: every Azure OpenAI and PTU metric, its field name, and the request groups.

Facts from `shared/reference/azure-monitor.md` §9 and `elastic-compat.md` §4–§7. A request group is a
set of metrics that share one dimension set and one aggregation list, because one Azure call carries one
filter and one aggregation list (a dimension a metric lacks, or an aggregation it does not support, is a
400 for the whole call).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

NAMESPACE = "Microsoft.CognitiveServices/accounts"

# Azure aggregation name → document suffix (elastic-compat.md §4).
AGGREGATION_SUFFIX: dict[str, str] = {
    "Average": "avg",
    "Minimum": "min",
    "Maximum": "max",
    "Total": "total",
    "Count": "count",
}
# Azure aggregation name → key in the response's data points.
AGGREGATION_KEY: dict[str, str] = {
    "Average": "average",
    "Minimum": "minimum",
    "Maximum": "maximum",
    "Total": "total",
    "Count": "count",
}


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One Azure metric: REST name, document field stem, unit, offered aggregations and dimensions."""

    name: str
    field: str
    unit: str
    aggregations: tuple[str, ...]
    dimensions: tuple[str, ...]
    official: bool = False  # one of the fields Elastic's azure_openai integration maps

    def es_type(self, aggregation: str) -> str:
        """Mapping type of `azure.open_ai.<field>.<suffix>`: counts are long, anything that can be
        fractional is float (a long field would silently truncate 0.5)."""
        if aggregation == "Count":
            return "long"
        if aggregation == "Total" and self.unit == "Count" and self.name not in FRACTIONAL_TOTALS:
            return "long"
        return "float"


@dataclass(frozen=True, slots=True)
class MetricGroup:
    """Metrics fetched together: one filter (every dimension split with `eq '*'`) and one aggregation list."""

    name: str
    metrics: tuple[MetricSpec, ...]
    aggregations: tuple[str, ...]
    dimensions: tuple[str, ...]

    @property
    def metric_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.metrics)


# Totals of "Count"-unit metrics that are not whole numbers.
FRACTIONAL_TOTALS = frozenset(
    {
        "FineTunedTrainingHours",
        "RealtimeUsageTime",
        "AgentModelEstimatedCost",  # foundry.md §3.3: a USD estimate, unit Unspecified
        "AgentsHostedMemoryUsage",  # GiB-hours
        "AgentsHostedvCPUUsage",  # vCPU-hours
    }
)

STATS = ("Average", "Minimum", "Maximum")
TOTAL = ("Total",)

REQUEST_DIMENSIONS = (
    "ApiName",
    "OperationName",
    "Region",
    "StreamType",
    "ModelDeploymentName",
    "ModelName",
    "ModelVersion",
    "StatusCode",
)
REQUEST_DIMENSIONS_ALL = (*REQUEST_DIMENSIONS, "IsSpillover", "ServiceTierRequest", "ServiceTierResponse")
AVAILABILITY_DIMENSIONS = tuple(d for d in REQUEST_DIMENSIONS if d != "StatusCode")
TOKEN_DIMENSIONS = ("ApiName", "ModelDeploymentName", "FeatureName", "UsageChannel", "Region", "ModelVersion")
FINE_TUNING_DIMENSIONS = ("ApiName", "ModelDeploymentName", "FeatureName", "UsageChannel", "Region")
MODEL_DIMENSIONS = ("Region", "ModelDeploymentName", "ModelName", "ModelVersion")
UTILIZATION_DIMENSIONS = ("Region", "StreamType", "ModelDeploymentName", "ModelName", "ModelVersion")
REALTIME_DIMENSIONS = ("Region", "ModelDeploymentName")
RAI_DIMENSIONS = ("Region", "ModelDeploymentName", "ModelName", "ModelVersion", "ApiName")

_M = MetricSpec
METRICS: tuple[MetricSpec, ...] = (
    _M("AzureOpenAIRequests", "requests", "Count", TOTAL, REQUEST_DIMENSIONS_ALL, official=True),
    _M("AzureOpenAITimeToResponse", "time_to_response", "MilliSeconds", STATS, REQUEST_DIMENSIONS, True),
    _M("AzureOpenAIAvailabilityRate", "availability_rate", "Percent", STATS, AVAILABILITY_DIMENSIONS),
    _M("ProcessedPromptTokens", "processed_prompt_tokens", "Count", TOTAL, TOKEN_DIMENSIONS, official=True),
    _M("GeneratedTokens", "generated_tokens", "Count", TOTAL, TOKEN_DIMENSIONS, official=True),
    _M("TokenTransaction", "token_transaction", "Count", TOTAL, TOKEN_DIMENSIONS, official=True),
    _M("FineTunedTrainingHours", "fine_tuned_training_hours", "Count", TOTAL, FINE_TUNING_DIMENSIONS, True),
    _M("ActiveTokens", "active_tokens", "Count", (*STATS, "Total"), MODEL_DIMENSIONS, official=True),
    _M(
        "AzureOpenAIContextTokensCacheMatchRate",
        "context_tokens_cache_match_rate",
        "Percent",
        STATS,
        MODEL_DIMENSIONS,
        official=True,
    ),
    _M("AzureOpenAITTLTInMS", "time_to_last_byte", "MilliSeconds", STATS, MODEL_DIMENSIONS),
    _M("AzureOpenAINormalizedTTFTInMS", "normalized_time_to_first_token", "MilliSeconds", STATS, MODEL_DIMENSIONS),
    _M("AzureOpenAINormalizedTBTInMS", "normalized_time_between_tokens", "MilliSeconds", STATS, MODEL_DIMENSIONS),
    _M("AzureOpenAITokenPerSecond", "tokens_per_second", "Count", STATS, MODEL_DIMENSIONS),
    _M(
        "AzureOpenAIProvisionedManagedUtilizationV2",
        "provisioned_managed_utilization_v2",
        "Percent",
        STATS,
        UTILIZATION_DIMENSIONS,
        official=True,
    ),
    _M(
        "AzureOpenAIProvisionedManagedUtilization",
        "provisioned_managed_utilization",
        "Percent",
        STATS,
        UTILIZATION_DIMENSIONS,
    ),
    _M("AudioPromptTokens", "audio_prompt_tokens", "Count", TOTAL, MODEL_DIMENSIONS),
    _M("AudioCompletionTokens", "audio_completion_tokens", "Count", TOTAL, MODEL_DIMENSIONS),
    _M("RealtimeUsageTime", "realtime_usage_time", "Count", TOTAL, REALTIME_DIMENSIONS),
    _M("RAITotalRequests", "raitotal_requests", "Count", TOTAL, RAI_DIMENSIONS),
    _M("RAIRejectedRequests", "rairejected_requests", "Count", TOTAL, (*RAI_DIMENSIONS, "TextType", "Category")),
    _M(
        "RAIHarmfulRequests",
        "raiharmful_requests",
        "Count",
        TOTAL,
        (*RAI_DIMENSIONS, "TextType", "Category", "Severity"),
    ),
    _M("RAISystemEvent", "raisystem_event", "Unspecified", ("Average",), ("Region", "EventType")),
)
METRICS_BY_NAME: dict[str, MetricSpec] = {m.name: m for m in METRICS}
METRICS_BY_LOWER_NAME: dict[str, MetricSpec] = {m.name.lower(): m for m in METRICS}


def _group(
    name: str,
    metrics: tuple[str, ...],
    aggregations: tuple[str, ...],
    dimensions: tuple[str, ...] | None = None,
    by_name: dict[str, MetricSpec] = METRICS_BY_NAME,
) -> MetricGroup:
    specs = tuple(by_name[m] for m in metrics)
    dimensions = specs[0].dimensions if dimensions is None else dimensions
    for spec in specs:
        if not set(dimensions) <= set(spec.dimensions):
            raise AssertionError(f"group {name}: {spec.name} does not offer every dimension of the group")
        if not set(aggregations) <= set(spec.aggregations):
            raise AssertionError(f"group {name}: {spec.name} does not offer {aggregations}")
    return MetricGroup(name, specs, aggregations, dimensions)


# Ordered as Elastic's integration orders its groups, newer metrics after.
GROUPS: tuple[MetricGroup, ...] = (
    # Split by the integration's eight dimensions (not IsSpillover/ServiceTier*), so that requests.total and
    # time_to_response.avg share one document as in Elastic's own data (elastic-compat.md §6).
    _group("requests", ("AzureOpenAIRequests",), TOTAL, REQUEST_DIMENSIONS),
    _group("time_to_response", ("AzureOpenAITimeToResponse",), STATS),
    _group("availability", ("AzureOpenAIAvailabilityRate",), STATS),
    _group("tokens", ("ProcessedPromptTokens", "GeneratedTokens", "TokenTransaction"), TOTAL),
    _group("fine_tuning", ("FineTunedTrainingHours",), TOTAL),
    _group("ptu_tokens_total", ("ActiveTokens", "AudioPromptTokens", "AudioCompletionTokens"), TOTAL),
    _group(
        "ptu_tokens_stats",
        (
            "ActiveTokens",
            "AzureOpenAIContextTokensCacheMatchRate",
            "AzureOpenAITTLTInMS",
            "AzureOpenAINormalizedTTFTInMS",
            "AzureOpenAINormalizedTBTInMS",
            "AzureOpenAITokenPerSecond",
        ),
        STATS,
    ),
    _group(
        "ptu_utilization",
        ("AzureOpenAIProvisionedManagedUtilizationV2", "AzureOpenAIProvisionedManagedUtilization"),
        STATS,
    ),
    _group("realtime", ("RealtimeUsageTime",), TOTAL),
    _group("rai_total", ("RAITotalRequests",), TOTAL),
    _group("rai_rejected", ("RAIRejectedRequests",), TOTAL),
    _group("rai_harmful", ("RAIHarmfulRequests",), TOTAL),
    _group("rai_system", ("RAISystemEvent",), ("Average",)),
)
GROUPS_BY_NAME: dict[str, MetricGroup] = {g.name: g for g in GROUPS}



def select_groups(
    names: list[str] | tuple[str, ...] | None, groups: tuple[MetricGroup, ...] = GROUPS
) -> tuple[MetricGroup, ...]:
    """The configured groups of `groups`, in catalogue order; all of them when `names` is empty."""
    if not names:
        return groups
    wanted = set(names)
    return tuple(g for g in groups if g.name in wanted)


_CAPITAL_AFTER_LOWER = re.compile(r"(?:[^A-Z_\W])([A-Z])[^A-Z]", re.ASCII)


@cache
def manage_property_name(name: str) -> str:
    """Metricbeat's `managePropertyName`: the key Metricbeat derives from an Azure metric or dimension.

    The regex matches are non-overlapping, so a capital right after a match is left alone
    (`TimeToResponse` → `time_toresponse`), exactly as Metricbeat does.
    """
    for old, new in ((" ", "_"), ("/", "_per_"), ("\\", "_"), ("_%_", "_pct_"), (":", "_"), ("_-_", "_")):
        name = name.replace(old, new)
    name = _CAPITAL_AFTER_LOWER.sub(lambda m: m.group(0)[0] + "_" + m.group(0)[1:].lower(), name)
    parts = []
    for part in name.split("."):
        if part.startswith("_"):
            part = part[1:]
        if part.endswith("_"):
            part = part[:-1]
        parts.append(part)
    return "_".join(parts).lower()


@cache
def dimension_key(canonical_name: str) -> str:
    """Document key under `azure.dimensions` for a canonical Azure dimension name."""
    return manage_property_name(canonical_name)


@cache
def canonical_dimension(name: str) -> str:
    """Canonical casing of a dimension name Azure returned lower-cased; unknown names pass through."""
    return _CANONICAL_DIMENSIONS.get(name.lower(), name)




# ---------------------------------------------------------------------------------------------------
# Foundry "Models" metrics of the same accounts (foundry.md §3.2): every model an account serves,
# OpenAI or not. Field stems follow Metricbeat's rule, then the renames of Elastic's azure_ai_foundry
# pipeline (§2.4, §2.5), applied to every aggregation alike.

FOUNDRY_RENAMES = {
    "time_toresponse": "time_to_response",
    "normalized_time_tofirst_token": "normalized_time_to_first_token",
    "time_tolast_byte": "time_to_last_byte",
}


def foundry_field(name: str) -> str:
    """Document field stem of a Models metric: Metricbeat's key after the integration's renames."""
    key = manage_property_name(name)
    return FOUNDRY_RENAMES.get(key, key)


MODEL_REQUEST_DIMENSIONS = REQUEST_DIMENSIONS
MODEL_REQUEST_DIMENSIONS_ALL = REQUEST_DIMENSIONS_ALL
MODEL_LATENCY_DIMENSIONS = tuple(d for d in REQUEST_DIMENSIONS if d != "StatusCode")
MODEL_USAGE_DIMENSIONS = ("ApiName", "Region", "ModelDeploymentName", "ModelName", "ModelVersion")
MODEL_DEPLOYMENT_DIMENSIONS = ("Region", "ModelDeploymentName", "ModelName", "ModelVersion")
MODEL_CONTEXT_DIMENSIONS = (*MODEL_USAGE_DIMENSIONS, "ContextLength")


def _model(name: str, unit: str, aggregations: tuple[str, ...], dims: tuple[str, ...], official: bool) -> MetricSpec:
    return MetricSpec(name, foundry_field(name), unit, aggregations, dims, official)


FOUNDRY_METRICS: tuple[MetricSpec, ...] = (
    _model("ModelAvailabilityRate", "Percent", STATS, MODEL_DEPLOYMENT_DIMENSIONS, True),
    _model("ModelRequests", "Count", TOTAL, MODEL_REQUEST_DIMENSIONS_ALL, True),
    _model("NormalizedTimeBetweenTokens", "MilliSeconds", STATS, MODEL_LATENCY_DIMENSIONS, True),
    _model("NormalizedTimeToFirstToken", "MilliSeconds", STATS, MODEL_LATENCY_DIMENSIONS, True),
    _model("TimeToLastByte", "MilliSeconds", STATS, MODEL_LATENCY_DIMENSIONS, True),
    _model("TimeToResponse", "MilliSeconds", STATS, MODEL_REQUEST_DIMENSIONS, True),
    _model("TokensPerSecond", "Count", STATS, MODEL_LATENCY_DIMENSIONS, True),
    _model("InputTokens", "Count", TOTAL, MODEL_USAGE_DIMENSIONS, True),
    _model("OutputTokens", "Count", TOTAL, MODEL_USAGE_DIMENSIONS, True),
    _model("TotalTokens", "Count", TOTAL, MODEL_USAGE_DIMENSIONS, True),
    _model("ProvisionedUtilization", "Percent", STATS, MODEL_DEPLOYMENT_DIMENSIONS, True),
    _model("AnnotatedPages", "Count", TOTAL, MODEL_USAGE_DIMENSIONS, False),
    _model("GeneratedImages", "Count", TOTAL, MODEL_USAGE_DIMENSIONS, False),
    _model("TotalPages", "Count", TOTAL, MODEL_USAGE_DIMENSIONS, False),
    _model("AudioInputTokens", "Count", TOTAL, MODEL_DEPLOYMENT_DIMENSIONS, False),
    _model("AudioOutputTokens", "Count", TOTAL, MODEL_DEPLOYMENT_DIMENSIONS, False),
    _model("cacheReadInputTokens", "Count", TOTAL, MODEL_CONTEXT_DIMENSIONS, False),
    _model("ephemeral1hInputTokens", "Count", TOTAL, MODEL_CONTEXT_DIMENSIONS, False),
    _model("ephemeral5mInputTokens", "Count", TOTAL, MODEL_CONTEXT_DIMENSIONS, False),
)
FOUNDRY_METRICS_BY_NAME: dict[str, MetricSpec] = {m.name: m for m in FOUNDRY_METRICS}


def _foundry(
    name: str, metrics: tuple[str, ...], aggregations: tuple[str, ...], dims: tuple[str, ...] | None = None
) -> MetricGroup:
    return _group(name, metrics, aggregations, dims, FOUNDRY_METRICS_BY_NAME)


# Elastic's groups M1–M4 (§1.3), each metric with every aggregation it offers; groups sharing a
# dimension set form one family and so share documents, as Metricbeat's do.
FOUNDRY_GROUPS: tuple[MetricGroup, ...] = (
    _foundry("models_availability", ("ModelAvailabilityRate", "ProvisionedUtilization"), STATS),  # M1
    # Split by Elastic's eight dimensions (not IsSpillover/ServiceTier*) so that requests and
    # time_to_response share one document, as in the integration's data.
    _foundry("models_requests", ("ModelRequests",), TOTAL, MODEL_REQUEST_DIMENSIONS),  # M2
    _foundry("models_time_to_response", ("TimeToResponse",), STATS),  # M2
    _foundry(
        "models_latency",
        ("NormalizedTimeBetweenTokens", "NormalizedTimeToFirstToken", "TimeToLastByte", "TokensPerSecond"),
        STATS,
    ),  # M3
    _foundry(
        "models_tokens",
        ("InputTokens", "OutputTokens", "TotalTokens", "AnnotatedPages", "GeneratedImages", "TotalPages"),
        TOTAL,
    ),  # M4 and the usage metrics of the same dimensions
    _foundry("models_audio_tokens", ("AudioInputTokens", "AudioOutputTokens"), TOTAL),
    _foundry(
        "models_context_tokens", ("cacheReadInputTokens", "ephemeral1hInputTokens", "ephemeral5mInputTokens"), TOTAL
    ),
)


# ---------------------------------------------------------------------------------------------------
# Agent metrics of Foundry projects (`Microsoft.CognitiveServices/accounts/projects`, preview;
# foundry.md §3.3): every metric of the "AI Agents" and "Shared Resources" categories with every
# aggregation and dimension the supported-metrics page lists. Field stems are Metricbeat's keys with
# no renames (§2.4, §5.1): Elastic's preview pipeline renames paths that can never occur, so its
# declared `agent.events.total` … stay empty under Metricbeat too. The "Resource" (compute) category
# is not catalogued: the reference gives its dimensions only as a pool, not per metric.

PROJECT_NAMESPACE = "Microsoft.CognitiveServices/accounts/projects"  # = model.PROJECT_TYPE
ALL_STATS = ("Count", "Total", "Average", "Maximum", "Minimum")  # the page's order: Count is listed first
TOTAL_STATS = ("Total", "Average", "Maximum", "Minimum")
AGENT_TOKEN_DIMENSIONS = ("AgentId", "ModelName", "TokenType")
AGENT_MODEL_DIMENSIONS = ("AgentName", "AgentVersion", "ModelDeploymentName")
TOOLBOX_DIMENSIONS = ("ToolboxName", "ToolboxVersion")
COSMOS_DIMENSIONS = ("DatabaseName", "ContainerName")


def _agent(name: str, unit: str, aggregations: tuple[str, ...], dims: tuple[str, ...], official: bool) -> MetricSpec:
    return MetricSpec(name, manage_property_name(name), unit, aggregations, dims, official)


AGENT_METRICS: tuple[MetricSpec, ...] = (
    # The nine Elastic's preview package requests (groups A1–A8, §1.3).
    _agent("AgentEvents", "Count", ALL_STATS, ("EventType",), True),
    _agent("AgentInputTokens", "Count", TOTAL_STATS, AGENT_TOKEN_DIMENSIONS, True),
    _agent("AgentOutputTokens", "Count", TOTAL_STATS, AGENT_TOKEN_DIMENSIONS, True),
    _agent("AgentMessages", "Count", ALL_STATS, ("EventType", "ThreadId"), True),
    _agent("AgentResponses", "Count", ALL_STATS, ("AgentId", "ModelName", "ResponseStatus"), True),
    _agent(
        "AgentRuns",
        "Count",
        ALL_STATS,
        ("AgentId", "ModelName", "RunStatus", "StatusCode", "ThreadId", "StreamType"),
        True,
    ),
    _agent("AgentThreads", "Count", ALL_STATS, ("EventType",), True),
    _agent("AgentToolCalls", "Count", ALL_STATS, ("AgentId", "ModelName", "ToolName"), True),
    _agent("AgentUsageIndexedFiles", "Count", ALL_STATS, ("ErrorCode", "Status", "VectorStoreId"), True),
    # The rest of the category, newer than Elastic's preview.
    _agent("AgentModelCacheReadTokens", "Count", TOTAL, AGENT_MODEL_DIMENSIONS, False),
    _agent("AgentModelCacheWriteTokens", "Count", TOTAL, AGENT_MODEL_DIMENSIONS, False),
    _agent("AgentModelEstimatedCost", "Unspecified", TOTAL, AGENT_MODEL_DIMENSIONS, False),  # USD estimate
    _agent("AgentModelOutputTokens", "Count", TOTAL, AGENT_MODEL_DIMENSIONS, False),
    _agent("AgentModelUncachedInputTokens", "Count", TOTAL, AGENT_MODEL_DIMENSIONS, False),
    _agent("AgentsHostedMemoryUsage", "Count", TOTAL_STATS, ("AgentId",), False),  # GiB-hours
    _agent("AgentsHostedvCPUUsage", "Count", TOTAL_STATS, ("AgentId",), False),  # vCPU-hours
    _agent("ToolboxCallToolCalls", "Count", TOTAL, (*TOOLBOX_DIMENSIONS, "Status"), False),
    _agent("ToolboxToolsDeferred", "Count", TOTAL_STATS, TOOLBOX_DIMENSIONS, False),
    _agent("ToolboxToolSearchCalls", "Count", TOTAL, (*TOOLBOX_DIMENSIONS, "Status"), False),
    _agent("ToolboxToolSearchEnabled", "Count", TOTAL, TOOLBOX_DIMENSIONS, False),
    _agent("ToolboxToolSearchResults", "Count", TOTAL_STATS, TOOLBOX_DIMENSIONS, False),
    _agent("ToolboxToolsVisible", "Count", TOTAL_STATS, TOOLBOX_DIMENSIONS, False),
    # Shared Resources (Preview).
    _agent("CosmosDbRequestUnits", "Count", TOTAL_STATS, COSMOS_DIMENSIONS, False),
    _agent("CosmosDbThrottledRequests", "Count", ALL_STATS, COSMOS_DIMENSIONS, False),
    _agent("SearchRetrievalRequests", "Count", ALL_STATS, ("ResourceType", "IndexName"), False),
    _agent("SearchStoragePerKnowledgeBase", "Bytes", STATS, ("IndexName",), False),
)
AGENT_METRICS_BY_NAME: dict[str, MetricSpec] = {m.name: m for m in AGENT_METRICS}


def _agents(
    name: str, metrics: tuple[str, ...], aggregations: tuple[str, ...], dims: tuple[str, ...] | None = None
) -> MetricGroup:
    return _group(name, metrics, aggregations, dims, AGENT_METRICS_BY_NAME)


# Elastic's A1–A8 (A1 and A6 share a dimension set and aggregations, so one call), then the newer
# metrics; each metric with every aggregation it offers.
AGENT_GROUPS: tuple[MetricGroup, ...] = (
    _agents("agent_events", ("AgentEvents", "AgentThreads"), ALL_STATS),  # A1, A6
    _agents("agent_tokens", ("AgentInputTokens", "AgentOutputTokens"), TOTAL_STATS),  # A2
    _agents("agent_messages", ("AgentMessages",), ALL_STATS),  # A3
    _agents("agent_responses", ("AgentResponses",), ALL_STATS),  # A4
    _agents("agent_runs", ("AgentRuns",), ALL_STATS),  # A5
    _agents("agent_tool_calls", ("AgentToolCalls",), ALL_STATS),  # A7
    _agents("agent_indexed_files", ("AgentUsageIndexedFiles",), ALL_STATS),  # A8
    _agents(
        "agent_model_usage",
        (
            "AgentModelCacheReadTokens",
            "AgentModelCacheWriteTokens",
            "AgentModelEstimatedCost",
            "AgentModelOutputTokens",
            "AgentModelUncachedInputTokens",
        ),
        TOTAL,
    ),
    _agents("agent_hosted_usage", ("AgentsHostedMemoryUsage", "AgentsHostedvCPUUsage"), TOTAL_STATS),
    _agents("toolbox_calls", ("ToolboxCallToolCalls", "ToolboxToolSearchCalls"), TOTAL),
    _agents("toolbox_enabled", ("ToolboxToolSearchEnabled",), TOTAL),
    _agents("toolbox_tools", ("ToolboxToolsDeferred", "ToolboxToolSearchResults", "ToolboxToolsVisible"), TOTAL_STATS),
    _agents("cosmos_db", ("CosmosDbRequestUnits",), TOTAL_STATS),
    _agents("cosmos_db_throttled", ("CosmosDbThrottledRequests",), ALL_STATS),
    _agents("search_requests", ("SearchRetrievalRequests",), ALL_STATS),
    _agents("search_storage", ("SearchStoragePerKnowledgeBase",), STATS),
)


# Every dimension of every catalogue: the canonical casing of names Azure returns lower-cased.
ALL_DIMENSIONS: tuple[str, ...] = tuple(
    sorted({d for m in (*METRICS, *FOUNDRY_METRICS, *AGENT_METRICS) for d in m.dimensions})
)
_CANONICAL_DIMENSIONS: dict[str, str] = {d.lower(): d for d in ALL_DIMENSIONS}

# Every catalogued metric of the `Microsoft.CognitiveServices/accounts` namespace (both families).
ACCOUNT_METRICS: tuple[MetricSpec, ...] = (*METRICS, *FOUNDRY_METRICS)
ACCOUNT_METRICS_BY_NAME: dict[str, MetricSpec] = {m.name: m for m in ACCOUNT_METRICS}
ACCOUNT_METRICS_BY_LOWER_NAME: dict[str, MetricSpec] = {m.name.lower(): m for m in ACCOUNT_METRICS}
