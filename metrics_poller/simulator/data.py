"""Simulated metric data: a pure function of (seed, account, metric, dimensions, minute).

Each account's series layout (which dimension combinations exist for which metric) is derived once
from its deployments; a minute's value is one splitmix64 of the series key and the minute, so serving
a 50-account batch costs a few thousand integer hashes and no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from metrics_poller.catalog import ACCOUNT_METRICS_BY_NAME, AGENT_METRICS, METRICS_BY_NAME, MetricSpec
from metrics_poller.simulator.hashing import GOLDEN, MASK64, key64, mix64, pick, uniform
from metrics_poller.simulator.spec import SimAccount, SimDeployment
from metrics_poller.simulator.world import PROJECT_TYPE, model_of, region_display

# One minute's (or one bucket's) aggregate: sample count, total, minimum, maximum.
Agg = tuple[int, float, float, float]

DISPLAY_NAMES: dict[str, str] = {
    "AzureOpenAIRequests": "Azure OpenAI Requests",
    "AzureOpenAITimeToResponse": "Time to Response",
    "AzureOpenAIAvailabilityRate": "Azure OpenAI AvailabilityRate",
    "ProcessedPromptTokens": "Processed Prompt Tokens",
    "GeneratedTokens": "Generated Completion Tokens",
    "TokenTransaction": "Processed Inference Tokens",
    "FineTunedTrainingHours": "Processed FineTuned Training Hours",
    "ActiveTokens": "Active Tokens",
    "AzureOpenAIContextTokensCacheMatchRate": "Prompt Token Cache Match Rate",
    "AzureOpenAITTLTInMS": "Time to Last Byte",
    "AzureOpenAINormalizedTTFTInMS": "Normalized Time to First Byte",
    "AzureOpenAINormalizedTBTInMS": "Time Between Token",
    "AzureOpenAITokenPerSecond": "Tokens Per Second",
    "AzureOpenAIProvisionedManagedUtilizationV2": "Provisioned-managed Utilization V2",
    "AzureOpenAIProvisionedManagedUtilization": "Provisioned-managed Utilization",
    "AudioPromptTokens": "Audio Prompt Tokens",
    "AudioCompletionTokens": "Audio Completion Tokens",
    "RealtimeUsageTime": "Realtime API Seconds Used",
    "RAITotalRequests": "Total Volume Sent For Safety Check",
    "RAIRejectedRequests": "Blocked Volume",
    "RAIHarmfulRequests": "Harmful Volume Detected",
    "RAISystemEvent": "Safety System Event",
    "ModelAvailabilityRate": "Model Availability Rate",
    "ModelRequests": "Model Requests",
    "NormalizedTimeBetweenTokens": "Normalized Time Between Tokens",
    "NormalizedTimeToFirstToken": "Normalized Time to First Token",
    "TimeToLastByte": "Time to Last Byte",
    "TimeToResponse": "Time to Response",
    "TokensPerSecond": "Tokens Per Second",
    "InputTokens": "Input Tokens",
    "OutputTokens": "Output Tokens",
    "TotalTokens": "Total Tokens",
    "ProvisionedUtilization": "Provisioned Utilization",
    "AnnotatedPages": "Annotated Pages",
    "GeneratedImages": "Generated Images",
    "TotalPages": "Total Pages",
    "AudioInputTokens": "Audio Input Tokens",
    "AudioOutputTokens": "Audio Output Tokens",
    "cacheReadInputTokens": "Cache Read Input Tokens",
    "ephemeral1hInputTokens": "Ephemeral 1h Input Tokens",
    "ephemeral5mInputTokens": "Ephemeral 5m Input Tokens",
}
DISPLAY_NAMES.update(
    {
        "AgentEvents": "Agent Events",
        "AgentInputTokens": "Agent Input Tokens",
        "AgentOutputTokens": "Agent Output Tokens",
        "AgentMessages": "Agent User Messages",
        "AgentResponses": "Agent Responses",
        "AgentRuns": "Agent Runs",
        "AgentThreads": "Agent Threads",
        "AgentToolCalls": "Agent Tool Calls",
        "AgentUsageIndexedFiles": "Agent Indexed Files",
        "AgentModelCacheReadTokens": "Agent Model Cache Read Tokens",
        "AgentModelCacheWriteTokens": "Agent Model Cache Write Tokens",
        "AgentModelEstimatedCost": "Agent Model Estimated Cost",
        "AgentModelOutputTokens": "Agent Model Output Tokens",
        "AgentModelUncachedInputTokens": "Agent Model Uncached Input Tokens",
        "AgentsHostedMemoryUsage": "Hosted Agents Memory Usage",
        "AgentsHostedvCPUUsage": "Hosted Agents vCPU Usage",
        "ToolboxCallToolCalls": "Toolbox Call Tool Calls",
        "ToolboxToolsDeferred": "Toolbox Tools Deferred",
        "ToolboxToolSearchCalls": "Toolbox Tool Search Calls",
        "ToolboxToolSearchEnabled": "Toolbox Tool Search Enabled",
        "ToolboxToolSearchResults": "Toolbox Tool Search Results",
        "ToolboxToolsVisible": "Toolbox Tools Visible",
        "CosmosDbRequestUnits": "Cosmos DB Request Units",
        "CosmosDbThrottledRequests": "Cosmos DB Throttled Requests",
        "SearchRetrievalRequests": "Search Retrieval Requests",
        "SearchStoragePerKnowledgeBase": "Search Storage Per Knowledge Base",
    }
)
# The supported-metrics page's categories (foundry.md §3.2, §3.3); the rest are "Azure OpenAI".
CATEGORIES: dict[str, str] = {
    **dict.fromkeys(("ModelAvailabilityRate", "ModelRequests"), "Models - HTTP Requests"),
    **dict.fromkeys(
        (
            "NormalizedTimeBetweenTokens",
            "NormalizedTimeToFirstToken",
            "TimeToLastByte",
            "TimeToResponse",
            "TokensPerSecond",
        ),
        "Models - Latency",
    ),
    **dict.fromkeys(
        (
            "InputTokens",
            "OutputTokens",
            "TotalTokens",
            "ProvisionedUtilization",
            "AnnotatedPages",
            "GeneratedImages",
            "TotalPages",
            "AudioInputTokens",
            "AudioOutputTokens",
            "cacheReadInputTokens",
            "ephemeral1hInputTokens",
            "ephemeral5mInputTokens",
        ),
        "Models - Usage",
    ),
    **{m.name: "AI Agents" for m in AGENT_METRICS},
    **dict.fromkeys(
        (
            "CosmosDbRequestUnits",
            "CosmosDbThrottledRequests",
            "SearchRetrievalRequests",
            "SearchStoragePerKnowledgeBase",
        ),
        "Shared Resources",
    ),
}
# "Models" metrics that measure the same traffic as an Azure OpenAI metric. For an OpenAI model they
# are built from that metric's own series (same keys, so the same values), merged over whatever
# dimensions the Models metric lacks: both families then agree, as they do in Azure (foundry.md §5.13).
TWINS: dict[str, str] = {
    "ModelRequests": "AzureOpenAIRequests",
    "TimeToResponse": "AzureOpenAITimeToResponse",
    "ModelAvailabilityRate": "AzureOpenAIAvailabilityRate",
    "InputTokens": "ProcessedPromptTokens",
    "OutputTokens": "GeneratedTokens",
    "TotalTokens": "TokenTransaction",
    "ProvisionedUtilization": "AzureOpenAIProvisionedManagedUtilizationV2",
    "AudioInputTokens": "AudioPromptTokens",
    "AudioOutputTokens": "AudioCompletionTokens",
}

API_NAMES = (
    "Azure OpenAI API version 2024-10-21",
    "Azure OpenAI API version 2024-02-01",
    "Azure OpenAI API version 2025-01-01-preview",
    "Azure OpenAI API version 2024-12-01-preview",
)
_OPERATIONS = {
    "chat": ("ChatCompletions_Create", "ChatCompletions_Create", "Responses_Create", "Completions_Create"),
    "embedding": ("Embeddings_Create",),
    "realtime": ("Realtime_Connect",),
}
# Token metrics carry ApiName "OpenAI", FeatureName = the model name and UsageChannel "Cloud", as real
# ones do (Elastic's azure_openai pipeline test fixtures, elastic-compat.md §2); request metrics carry
# the API version as ApiName.
TOKEN_API_NAME = "OpenAI"
USAGE_CHANNEL = "Cloud"
_STREAM_TYPES = ("Streaming", "Non-Streaming")
_TEXT_TYPES = ("Prompt", "Completion")
_CATEGORIES = ("Hate", "Sexual", "Violence", "SelfHarm", "Jailbreak")
_SEVERITIES = ("Low", "Medium", "High")
_EVENT_TYPES = ("BlocklistUpdated", "ContentFilterPolicyChanged", "AbuseMonitoringAlert")


@dataclass(frozen=True, slots=True)
class Behaviour:
    """How one metric's data is invented: which deployments carry it and the value shape.

    `shape` is "count" (integral total), "fraction" (fractional total), "stats" (avg/min/max) or
    "stats_total" (avg/min/max and an integral total); `low`/`high`/`divisor` give the per-sample value
    range in integer units, `scale` the per-minute total of a count series.
    """

    profiles: str  # request, token, finetune, model, utilization, rai, event
    applies: str  # all, chat, text, ptu, realtime
    shape: str
    scale: float = 0.0
    low: int = 0
    high: int = 0
    divisor: int = 1
    clip: int | None = None  # inclusive upper bound in units (percentages)
    region_display: bool = False  # request metrics carry "East US", token metrics "eastus"


_B = Behaviour
BEHAVIOURS: dict[str, Behaviour] = {
    "AzureOpenAIRequests": _B("request", "all", "count", scale=120, region_display=True),
    "AzureOpenAITimeToResponse": _B("request", "all", "stats", low=250, high=4000, region_display=True),
    "AzureOpenAIAvailabilityRate": _B(
        "request", "all", "stats", low=9500, high=10000, divisor=100, clip=10000, region_display=True
    ),
    "ProcessedPromptTokens": _B("token", "all", "count", scale=30000),
    "GeneratedTokens": _B("token", "text", "count", scale=8000),
    "TokenTransaction": _B("token", "all", "count", scale=38000),
    "FineTunedTrainingHours": _B("finetune", "chat", "fraction", scale=0.0166),
    "ActiveTokens": _B("model", "ptu", "stats_total", low=400, high=20000),
    "AzureOpenAIContextTokensCacheMatchRate": _B("model", "ptu", "stats", low=1000, high=9000, divisor=100, clip=10000),
    "AzureOpenAITTLTInMS": _B("model", "chat", "stats", low=800, high=12000),
    "AzureOpenAINormalizedTTFTInMS": _B("model", "ptu", "stats", low=40, high=600),
    "AzureOpenAINormalizedTBTInMS": _B("model", "ptu", "stats", low=5, high=60),
    "AzureOpenAITokenPerSecond": _B("model", "chat", "stats", low=20, high=220),
    "AzureOpenAIProvisionedManagedUtilizationV2": _B(
        "utilization", "ptu", "stats", low=300, high=9800, divisor=100, clip=10000
    ),
    "AzureOpenAIProvisionedManagedUtilization": _B(
        "utilization", "ptu", "stats", low=300, high=9800, divisor=100, clip=10000
    ),
    "AudioPromptTokens": _B("model", "realtime", "count", scale=3000),
    "AudioCompletionTokens": _B("model", "realtime", "count", scale=2000),
    "RealtimeUsageTime": _B("model", "realtime", "fraction", scale=40.0),
    "RAITotalRequests": _B("rai", "chat", "count", scale=90),
    "RAIRejectedRequests": _B("rai", "chat", "count", scale=4),
    "RAIHarmfulRequests": _B("rai", "chat", "count", scale=2),
    "RAISystemEvent": _B("event", "all", "stats", low=1, high=10),
    # Models metrics without an Azure OpenAI twin of the same or finer dimensions.
    "NormalizedTimeBetweenTokens": _B("request", "chat", "stats", low=5, high=60, region_display=True),
    "NormalizedTimeToFirstToken": _B("request", "chat", "stats", low=40, high=600, region_display=True),
    "TimeToLastByte": _B("request", "chat", "stats", low=800, high=12000, region_display=True),
    "TokensPerSecond": _B("request", "chat", "stats", low=20, high=220, region_display=True),
    # No simulated model reads documents, draws images or is an Anthropic model: defined, no data.
    **{
        name: _B("token", "none", "count", scale=10)
        for name in (
            "AnnotatedPages",
            "GeneratedImages",
            "TotalPages",
            "cacheReadInputTokens",
            "ephemeral1hInputTokens",
            "ephemeral5mInputTokens",
        )
    },
}

# A gentle day/night cycle so that dashboards built on the data look like traffic.
_DIURNAL = tuple(1.0 + 0.45 * math.sin(2 * math.pi * (m - 540) / 1440) for m in range(1440))


class Series:
    """One dimension combination of one metric on one account; `value` is the heart of the data."""

    __slots__ = ("behaviour", "combo", "density", "key", "scale")

    def __init__(self, key: int, combo: tuple[str, ...], behaviour: Behaviour, weight: float, density: float):
        self.key = key
        self.combo = combo
        self.behaviour = behaviour
        self.scale = behaviour.scale * weight
        self.density = int(density * 1024)

    def value(self, minute: int, partial: bool = False) -> Agg | None:
        """This series' aggregate for one minute (epoch minute index), None when it has no data."""
        # splitmix64 of (key, minute), inlined: this is the hottest line of the simulator.
        h = ((self.key ^ ((minute * GOLDEN) & MASK64)) + GOLDEN) & MASK64
        h = ((h ^ (h >> 30)) * 0xBF58_476D_1CE4_E5B9) & MASK64
        h = ((h ^ (h >> 27)) * 0x94D0_49BB_1331_11EB) & MASK64
        h ^= h >> 31
        if (h & 1023) >= self.density:
            return None
        r = h >> 10
        b = self.behaviour
        if b.shape == "count":
            whole = max(1, round(self.scale * (0.3 + 1.4 * (r & 0xFFFF) / 65536.0) * _DIURNAL[minute % 1440]))
            if partial:
                whole //= 2
            return (1, float(whole), float(whole), float(whole))
        if b.shape == "fraction":
            part = round(self.scale * (0.2 + 1.6 * (r & 0xFFFF) / 65536.0), 4)
            if partial:
                part = round(part / 2, 4)
            return (1, part, part, part)
        return self._stats(r, partial)

    def _stats(self, r: int, partial: bool) -> Agg:
        b = self.behaviour
        span = b.high - b.low
        units = b.low + (r & 0xFFFFF) % span
        if b.clip is not None and (r >> 44) % 4 == 0:
            units = b.clip  # e.g. a full 100 % availability minute
        count = 2 + (r >> 20) % 30
        if partial:
            count = max(2, count // 2)
        # Spreads of at least one unit keep minimum < average < maximum even after float rounding.
        spread = max(1, units // 4)
        low = max(0, units - 1 - (r >> 26) % spread)
        high = units + 1 + (r >> 35) % spread
        if b.clip is not None:
            high = min(b.clip, high)
        d = b.divisor
        return (count, units * count / d, low / d, high / d)


@dataclass(frozen=True, slots=True)
class MetricLayout:
    """The series one account has for one metric, with the metric's dimension names in catalogue order."""

    dimensions: tuple[str, ...]
    series: tuple[Series, ...]


_Profile = tuple[dict[str, str], float, float]  # dimension values, weight, density


def build_layout(seed: int, account: SimAccount) -> dict[str, MetricLayout]:
    """Every catalogue metric's series for `account` (empty for accounts without deployments)."""
    if account.type == PROJECT_TYPE:
        return build_agent_layout(seed, account)
    akey = key64(seed, "data", account.id.lower())
    families = _families(akey, account)
    return {name: _metric_layout(seed, account, spec, families) for name, spec in ACCOUNT_METRICS_BY_NAME.items()}


def _metric_layout(
    seed: int,
    account: SimAccount,
    spec: MetricSpec,
    families: dict[str, list[tuple[SimDeployment | None, _Profile]]],
) -> MetricLayout:
    # A Models metric with a twin takes the twin's series (keys, behaviour, one per twin combination)
    # and labels each with its own dimensions; `project` then merges those it does not tell apart.
    source = TWINS.get(spec.name, spec.name)
    source_dimensions = ACCOUNT_METRICS_BY_NAME[source].dimensions
    openai_only = spec.name in METRICS_BY_NAME  # the Azure OpenAI family sees only OpenAI models
    behaviour = BEHAVIOURS[source]
    region = region_display(account.location) if behaviour.region_display else account.location
    seen: dict[tuple[str, ...], Series] = {}
    for deployment, (dims, weight, density) in families[behaviour.profiles]:
        if deployment is not None and not _applies(behaviour.applies, deployment):
            continue
        if deployment is not None and openai_only and not model_of(deployment).openai:
            continue
        values = {**dims, "Region": region}
        source_combo = tuple(values[d] for d in source_dimensions)
        if source_combo not in seen:
            key = key64(seed, account.id.lower(), source, *source_combo)
            combo = tuple(values[d] for d in spec.dimensions)
            seen[source_combo] = Series(key, combo, behaviour, weight, density)
    return MetricLayout(spec.dimensions, tuple(seen.values()))


def _applies(rule: str, deployment: SimDeployment) -> bool:
    family = model_of(deployment).family
    if rule == "all":
        return True
    if rule == "none":
        return False
    if rule == "ptu":
        return deployment.sku == "ProvisionedManaged"
    if rule == "text":
        return family in ("chat", "realtime")
    return family == rule


def _families(akey: int, account: SimAccount) -> dict[str, list[tuple[SimDeployment | None, _Profile]]]:
    out: dict[str, list[tuple[SimDeployment | None, _Profile]]] = {
        k: [] for k in ("request", "token", "finetune", "model", "utilization", "rai", "event")
    }
    for i, deployment in enumerate(account.deployments):
        dkey = mix64(akey ^ (i + 1) * 0x5851F42D4C957F2D)
        model_dims = {
            "ModelDeploymentName": deployment.name,
            "ModelName": deployment.model,
            "ModelVersion": deployment.version,
        }
        out["request"] += [(deployment, p) for p in _request_profiles(dkey, deployment, model_dims)]
        out["token"] += [(deployment, p) for p in _token_profiles(dkey, deployment, model_dims)]
        out["model"].append((deployment, (model_dims, 1.0, 0.9)))
        out["utilization"] += [
            (deployment, ({**model_dims, "StreamType": s}, 1.0, 0.95)) for s in _subset(dkey, 40, _STREAM_TYPES, 2)
        ]
        out["rai"] += [(deployment, p) for p in _rai_profiles(dkey, model_dims)]
        if i == 0 and uniform(akey, 50) < 0.3:
            out["finetune"].append((deployment, _finetune_profile(dkey, model_dims)))
    if any(model_of(d).openai for d in account.deployments):  # Azure OpenAI content safety events
        out["event"] = [(None, ({"EventType": e}, 1.0, 0.2)) for e in _subset(akey, 60, _EVENT_TYPES, 2)]
    return out


def _subset(key: int, salt: int, options: tuple[str, ...], most: int) -> list[str]:
    """1..`most` distinct options, deterministically."""
    count = 1 + mix64(key ^ salt) % most
    start = mix64(key ^ (salt + 1)) % len(options)
    return [options[(start + j) % len(options)] for j in range(min(count, len(options)))]


def _request_profiles(key: int, deployment: SimDeployment, model_dims: dict[str, str]) -> list[_Profile]:
    family = model_of(deployment).family
    ptu = deployment.sku == "ProvisionedManaged"
    tier = "Provisioned" if ptu else "Standard"
    profiles: list[_Profile] = []
    for j in range(1 + mix64(key ^ 20) % 3):
        base = {
            **model_dims,
            "ApiName": pick(key, 21 + j * 101, API_NAMES),
            "OperationName": pick(key, 22 + j * 101, _OPERATIONS[family]),
            "StreamType": "Non-Streaming" if family == "embedding" else pick(key, 23 + j * 101, _STREAM_TYPES),
            "IsSpillover": "false",
            "ServiceTierRequest": tier,
            "ServiceTierResponse": tier,
        }
        weight = 1.0 / (j + 1)
        profiles.append(({**base, "StatusCode": "200"}, weight, 0.92))
        for status, chance, share, density in (
            ("429", 0.6 if ptu else 0.25, 0.1, 0.5),
            ("400", 0.3, 0.04, 0.3),
            ("500", 0.1, 0.02, 0.15),
            ("401", 0.05, 0.02, 0.1),
        ):
            if uniform(key, 24 + j * 101 + int(status)) < chance:
                profiles.append(({**base, "StatusCode": status}, weight * share, density))
        if ptu and uniform(key, 25 + j * 101) < 0.5:
            spill = {**base, "StatusCode": "200", "IsSpillover": "true", "ServiceTierResponse": "Standard"}
            profiles.append((spill, weight * 0.2, 0.4))
    return profiles


def _token_profiles(key: int, deployment: SimDeployment, model_dims: dict[str, str]) -> list[_Profile]:
    dims = {**model_dims, "ApiName": TOKEN_API_NAME, "FeatureName": deployment.model, "UsageChannel": USAGE_CHANNEL}
    return [(dims, 1.0, 0.9)]


def _rai_profiles(key: int, model_dims: dict[str, str]) -> list[_Profile]:
    profiles: list[_Profile] = []
    api = pick(key, 70, API_NAMES)
    for j in range(1 + mix64(key ^ 71) % 3):
        dims = {
            **model_dims,
            "ApiName": api,
            "TextType": pick(key, 72 + j * 101, _TEXT_TYPES),
            "Category": pick(key, 73 + j * 101, _CATEGORIES),
            "Severity": pick(key, 74 + j * 101, _SEVERITIES),
        }
        profiles.append((dims, 1.0, 0.6 if j == 0 else 0.25))
    return profiles


def _finetune_profile(key: int, model_dims: dict[str, str]) -> _Profile:
    model = model_dims["ModelName"]
    dims = {**model_dims, "ApiName": TOKEN_API_NAME, "FeatureName": model, "UsageChannel": USAGE_CHANNEL}
    return (dims, 1.0, 0.5)


# ------------------------------------------------------------------------------------ agent metrics

# Value shapes of the project metrics (foundry.md §3.3); counts are whole numbers per minute, the
# hosted-agent usages (GiB-hours, vCPU-hours) and the cost estimate fractions, storage a gauge.
AGENT_BEHAVIOURS: dict[str, Behaviour] = {
    "AgentEvents": _B("agent", "all", "count", scale=12),
    "AgentThreads": _B("agent", "all", "count", scale=3),
    "AgentInputTokens": _B("agent", "all", "count", scale=2400),
    "AgentOutputTokens": _B("agent", "all", "count", scale=700),
    "AgentMessages": _B("agent", "all", "count", scale=5),
    "AgentResponses": _B("agent", "all", "count", scale=6),
    "AgentRuns": _B("agent", "all", "count", scale=4),
    "AgentToolCalls": _B("agent", "all", "count", scale=5),
    "AgentUsageIndexedFiles": _B("agent", "all", "count", scale=2),
    "AgentModelCacheReadTokens": _B("agent", "all", "count", scale=900),
    "AgentModelCacheWriteTokens": _B("agent", "all", "count", scale=150),
    "AgentModelEstimatedCost": _B("agent", "all", "fraction", scale=0.02),
    "AgentModelOutputTokens": _B("agent", "all", "count", scale=700),
    "AgentModelUncachedInputTokens": _B("agent", "all", "count", scale=1500),
    "AgentsHostedMemoryUsage": _B("agent", "all", "fraction", scale=0.033),
    "AgentsHostedvCPUUsage": _B("agent", "all", "fraction", scale=0.017),
    "ToolboxCallToolCalls": _B("agent", "all", "count", scale=4),
    "ToolboxToolsDeferred": _B("agent", "all", "count", scale=2),
    "ToolboxToolSearchCalls": _B("agent", "all", "count", scale=3),
    "ToolboxToolSearchEnabled": _B("agent", "all", "count", scale=1),
    "ToolboxToolSearchResults": _B("agent", "all", "count", scale=8),
    "ToolboxToolsVisible": _B("agent", "all", "count", scale=12),
    "CosmosDbRequestUnits": _B("agent", "all", "count", scale=300),
    "CosmosDbThrottledRequests": _B("agent", "all", "count", scale=1),
    "SearchRetrievalRequests": _B("agent", "all", "count", scale=6),
    "SearchStoragePerKnowledgeBase": _B("agent", "all", "stats", low=100_000, high=5_000_000),
}
_AGENT_EVENT_TYPES = ("AgentCreated", "AgentUpdated", "RunCreated")
_THREAD_EVENT_TYPES = ("ThreadCreated", "ThreadDeleted")
_MESSAGE_EVENT_TYPES = ("UserMessageCreated",)
_TOKEN_TYPES = ("Text", "Cached")
_RESPONSE_STATUSES = ("completed", "failed", "incomplete")
_RUN_STATUSES = (("completed", "200"), ("failed", "500"), ("cancelled", "200"))
_TOOLS = ("file_search", "code_interpreter", "bing_grounding", "function")


def build_agent_layout(seed: int, project: SimAccount) -> dict[str, MetricLayout]:
    """Every agent metric's series for a Foundry project: per agent, thread, tool, vector store."""
    pkey = key64(seed, "agents", project.id.lower())
    threads = [f"thread_{mix64(pkey ^ (100 + t)):012x}" for t in range(1 + mix64(pkey ^ 99) % 3)]
    store = f"vs_{mix64(pkey ^ 98):012x}"
    rows: dict[str, list[tuple[dict[str, str], float, float]]] = {m.name: [] for m in AGENT_METRICS}
    for events, metric in ((_AGENT_EVENT_TYPES, "AgentEvents"), (_THREAD_EVENT_TYPES, "AgentThreads")):
        rows[metric] += [({"EventType": e}, 1.0, 0.7) for e in _subset(pkey, 101 + len(metric), events, 3)]
    rows["AgentMessages"] += [({"EventType": _MESSAGE_EVENT_TYPES[0], "ThreadId": t}, 1.0, 0.5) for t in threads]
    for i, agent in enumerate(project.agents):
        akey = mix64(pkey ^ (i + 1) * 0x5851F42D4C957F2D)
        by_agent = {"AgentId": agent.id, "ModelName": agent.model}
        for token_type in _subset(akey, 110, _TOKEN_TYPES, 2):
            for metric in ("AgentInputTokens", "AgentOutputTokens"):
                rows[metric].append(({**by_agent, "TokenType": token_type}, 1.0, 0.8))
        for status in _subset(akey, 111, _RESPONSE_STATUSES, 2):
            rows["AgentResponses"].append(({**by_agent, "ResponseStatus": status}, 1.0, 0.7))
        for run_status, code in _subset_pairs(akey, 112, _RUN_STATUSES, 2):
            for thread in _subset(akey, 113, tuple(threads), 2):
                stream = pick(akey, 114, ("Streaming", "Non-Streaming"))
                run = {"RunStatus": run_status, "StatusCode": code, "ThreadId": thread, "StreamType": stream}
                dims = {**by_agent, **run}
                rows["AgentRuns"].append((dims, 1.0, 0.6))
        for tool in _subset(akey, 115, _TOOLS, 2):
            rows["AgentToolCalls"].append(({**by_agent, "ToolName": tool}, 1.0, 0.6))
        model = {"AgentName": agent.name, "AgentVersion": agent.version, "ModelDeploymentName": agent.deployment}
        for metric in (
            "AgentModelCacheReadTokens",
            "AgentModelCacheWriteTokens",
            "AgentModelEstimatedCost",
            "AgentModelOutputTokens",
            "AgentModelUncachedInputTokens",
        ):
            rows[metric].append((model, 1.0, 0.8))
        if uniform(akey, 116) < 0.5:  # a hosted agent
            for metric in ("AgentsHostedMemoryUsage", "AgentsHostedvCPUUsage"):
                rows[metric].append(({"AgentId": agent.id}, 1.0, 0.9))
    rows["AgentUsageIndexedFiles"] += [
        ({"ErrorCode": "None", "Status": "completed", "VectorStoreId": store}, 1.0, 0.4),
        ({"ErrorCode": "UnsupportedFileType", "Status": "failed", "VectorStoreId": store}, 0.5, 0.1),
    ]
    toolbox = {"ToolboxName": f"{project.name}-tools", "ToolboxVersion": "1"}
    for status in ("Success", "Failed"):
        for metric in ("ToolboxCallToolCalls", "ToolboxToolSearchCalls"):
            rows[metric].append(({**toolbox, "Status": status}, 1.0 if status == "Success" else 0.2, 0.5))
    for metric in (
        "ToolboxToolsDeferred",
        "ToolboxToolSearchEnabled",
        "ToolboxToolSearchResults",
        "ToolboxToolsVisible",
    ):
        rows[metric].append((toolbox, 1.0, 0.5))
    for container in ("thread-message-store", "agent-entity-store"):
        cosmos = {"DatabaseName": "enterprise_memory", "ContainerName": container}
        rows["CosmosDbRequestUnits"].append((cosmos, 1.0, 0.8))
        rows["CosmosDbThrottledRequests"].append((cosmos, 1.0, 0.1))
    index = f"{project.name}-index"
    rows["SearchRetrievalRequests"].append(({"ResourceType": "AzureAISearch", "IndexName": index}, 1.0, 0.5))
    rows["SearchStoragePerKnowledgeBase"].append(({"IndexName": index}, 1.0, 1.0))

    layouts: dict[str, MetricLayout] = {}
    for spec in AGENT_METRICS:
        behaviour = AGENT_BEHAVIOURS[spec.name]
        series = [
            Series(
                key64(seed, project.id.lower(), spec.name, *(dims[d] for d in spec.dimensions)),
                tuple(dims[d] for d in spec.dimensions),
                behaviour,
                weight,
                density,
            )
            for dims, weight, density in rows[spec.name]
        ]
        layouts[spec.name] = MetricLayout(spec.dimensions, tuple(series))
    return layouts


def _subset_pairs(key: int, salt: int, options: tuple[tuple[str, str], ...], most: int) -> list[tuple[str, str]]:
    count = 1 + mix64(key ^ salt) % most
    start = mix64(key ^ (salt + 1)) % len(options)
    return [options[(start + j) % len(options)] for j in range(min(count, len(options)))]


# ------------------------------------------------------------------------------------------ aggregation


@dataclass(frozen=True, slots=True)
class Bucket:
    """One output bucket: its label (epoch seconds) and the minutes [first, stop) it aggregates."""

    label: int
    first: int
    stop: int


def plan_buckets(start: int, end: int, grain: int | None) -> list[Bucket]:
    """Buckets aligned to `grain` seconds (None = one bucket for the whole span, Azure's FULL), labelled by
    their start; minutes outside [start, end) are clipped away."""
    first_minute = start // 60
    stop_minute = -(-end // 60)
    if grain is None:
        return [Bucket(first_minute * 60, first_minute, stop_minute)]
    buckets = []
    label = start - start % grain
    while label < end:
        first = max(label // 60, first_minute)
        stop = min((label + grain) // 60, stop_minute)
        buckets.append(Bucket(label, first, stop))
        label += grain
    return buckets


@dataclass(frozen=True, slots=True)
class Publication:
    """Which minutes exist yet: minutes from `missing_from` on are absent, from `partial_from` on partial."""

    missing_from: int | None = None
    partial_from: int | None = None

    @classmethod
    def at(cls, now: float, delay: float) -> Publication:
        """Minute m is published once its end (m+1)*60 is at or before now - delay; partial within 2*delay."""
        missing = math.floor((now - delay) / 60)
        partial = math.floor((now - 2 * delay) / 60) if delay > 0 else missing
        return cls(missing, partial)


FINAL = Publication()


def aggregate(series: Sequence[Series], buckets: Sequence[Bucket], publication: Publication) -> list[Agg | None]:
    """One aggregate per bucket over every series and minute (None for an empty bucket)."""
    missing = publication.missing_from
    if len(series) == 1:
        return _aggregate_one(series[0], buckets, publication)
    partial_from = publication.partial_from
    out: list[Agg | None] = []
    for bucket in buckets:
        stop = bucket.stop if missing is None else min(bucket.stop, missing)
        count, total, low, high, seen = 0, 0.0, math.inf, -math.inf, False
        for minute in range(bucket.first, stop):
            partial = partial_from is not None and minute >= partial_from
            for s in series:
                v = s.value(minute, partial)
                if v is None:
                    continue
                seen = True
                count += v[0]
                total += v[1]
                if v[2] < low:
                    low = v[2]
                if v[3] > high:
                    high = v[3]
        out.append((count, total, low, high) if seen else None)
    return out


def _aggregate_one(series: Series, buckets: Sequence[Bucket], publication: Publication) -> list[Agg | None]:
    """`aggregate` for a single series, the common case once every dimension is split; it adds in the
    same order as the general path, so the floats are identical."""
    missing = publication.missing_from
    partial_from = publication.partial_from
    out: list[Agg | None] = []
    for bucket in buckets:
        acc: Agg | None = None
        stop = bucket.stop if missing is None else min(bucket.stop, missing)
        for minute in range(bucket.first, stop):
            v = series.value(minute, partial_from is not None and minute >= partial_from)
            if v is None:
                continue
            if acc is None:
                acc = (v[0], 0.0 + v[1], v[2], v[3])
            else:
                acc = (acc[0] + v[0], acc[1] + v[1], min(acc[2], v[2]), max(acc[3], v[3]))
        out.append(acc)
    return out


def project(
    layout: MetricLayout, split: Sequence[str], filters: dict[str, frozenset[str]]
) -> list[tuple[tuple[str, ...], list[Series]]]:
    """Group the layout's series by their values of the `split` dimensions (canonical names), keeping
    only series whose values pass `filters` (lower-cased dimension name → allowed lower-cased values)."""
    index = {d.lower(): i for i, d in enumerate(layout.dimensions)}
    split_at = [index[d.lower()] for d in split]
    checks = [(index[d], allowed) for d, allowed in filters.items()]
    groups: dict[tuple[str, ...], list[Series]] = {}
    for s in layout.series:
        if all(s.combo[i].lower() in allowed for i, allowed in checks):
            groups.setdefault(tuple(s.combo[i] for i in split_at), []).append(s)
    return list(groups.items())


AGGREGATION_VALUE: dict[str, Callable[[Agg], float]] = {
    "average": lambda a: a[1] / a[0],
    "minimum": lambda a: a[2],
    "maximum": lambda a: a[3],
    "total": lambda a: a[1],
    "count": lambda a: float(a[0]),
}


def score(aggs: Iterable[Agg | None], aggregation: str) -> float:
    """One series' value of `aggregation` over the whole window: what `orderby` ranks series by."""
    present = [a for a in aggs if a is not None]
    if not present:
        return -math.inf
    if aggregation == "total":
        return sum(a[1] for a in present)
    if aggregation == "count":
        return float(sum(a[0] for a in present))
    if aggregation == "minimum":
        return min(a[2] for a in present)
    if aggregation == "maximum":
        return max(a[3] for a in present)
    return sum(a[1] for a in present) / sum(a[0] for a in present)
