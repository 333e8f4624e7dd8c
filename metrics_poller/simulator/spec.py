"""The simulator's plain configuration and world types."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

ROUTES = (
    "openid",
    "token",
    "resources",
    "resource",
    "metricDefinitions",
    "metricNamespaces",
    "metrics",
    "getBatch",
    "resourceGraph",
    "deployments",
    "usages",
    "models",
)
FAULT_KINDS = (
    "400",
    "401",
    "403",
    "404",
    "429",
    "500",
    "503",
    "529",
    "timeout",
    "reset",
    "malformed",
    "slow",
    "metric_error",
    "hostile",
)


@dataclass(frozen=True, slots=True)
class SimSpec:
    """Shape and behaviour of one simulated Azure estate; everything derives from `seed`."""

    seed: int = 42
    subscriptions: int = 2
    regions: tuple[str, ...] = ("eastus", "westeurope", "swedencentral")
    accounts_per_region: int = 3
    other_accounts_per_region: int = 1
    resource_groups_per_subscription: int = 2
    publication_delay: float = 0.0
    latency: float = 0.0
    page_size: int = 100
    # Deployments_List pages after this many items, so that every estate exercises `nextLink`.
    deployment_page_size: int = 2
    batch_missing_resource: Literal["omit", "error"] = "omit"
    arm_rate_limit: bool = False
    undefined_metrics: frozenset[str] = frozenset()
    undefined_dimensions: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # Subscriptions (by position) where Microsoft.Insights is not registered: getBatch answers 403 and
    # ARM's Microsoft.Insights routes 409 MissingSubscriptionRegistration (azure-monitor.md §4).
    insights_unregistered: frozenset[int] = frozenset()
    # Metrics that accounts of one kind do not offer (Azure does not promise that OpenAI and AIServices
    # accounts offer the same metrics): left out of their definitions, a 400 when asked for.
    kind_undefined_metrics: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # getBatch refuses a query returning more series than this (Azure: 500,000), with this status.
    # Metrics whose provider declares `fillGapWithZero`: empty minutes come back as 0, not as bare buckets.
    zero_fill: frozenset[str] = frozenset()
    cloud: Literal["public", "usgovernment", "china"] = "public"  # whose token audiences are accepted
    batch_series_limit: int = 500_000
    series_limit_status: Literal[400, 429] = 429

    def __post_init__(self) -> None:
        if self.subscriptions < 1 or self.resource_groups_per_subscription < 1 or not self.regions:
            raise ValueError("a simulation needs at least one subscription, resource group and region")
        if self.accounts_per_region < 0 or self.other_accounts_per_region < 0:
            raise ValueError("account counts must not be negative")
        if self.page_size < 1 or self.deployment_page_size < 1:
            raise ValueError("page sizes must be positive")
        if self.batch_missing_resource not in ("omit", "error"):
            raise ValueError("batch_missing_resource must be 'omit' or 'error'")

    def hidden_dimensions(self, metric: str) -> frozenset[str]:
        """Lower-cased dimension names the simulated definitions leave out for `metric`."""
        return frozenset(d.lower() for d in self.undefined_dimensions.get(metric, frozenset()))

    def metric_defined(self, metric: str, kind: str | None = None) -> bool:
        """Whether `metric` is offered (to accounts of `kind`, when given)."""
        if metric in self.undefined_metrics:
            return False
        return kind is None or metric not in self.kind_undefined_metrics.get(kind, frozenset())


@dataclass(frozen=True, slots=True)
class FaultRule:
    """One injected failure. `route` is a route name or "*"; `match` a case-insensitive substring of
    the request path, query or body; `times` None means unlimited. Kind "hostile" answers 200 with
    `body` verbatim (bad data from a healthy-looking service)."""

    route: str
    kind: str
    retry_after: int | None = 1
    times: int | None = None
    match: str | None = None
    probability: float = 1.0
    delay: float = 0.0
    body: bytes = b""
    error_code: str = "InvalidSamplingType"  # kind "metric_error": the per-metric errorCode inside the 200

    def __post_init__(self) -> None:
        if self.route != "*" and self.route not in ROUTES:
            raise ValueError(f"unknown route {self.route!r}; expected one of *, {', '.join(ROUTES)}")
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {', '.join(FAULT_KINDS)}")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError("probability must be within [0, 1]")
        if self.times is not None and self.times < 0:
            raise ValueError("times must not be negative")


@dataclass(frozen=True, slots=True)
class SimDeployment:
    """A model deployment inside an account (its name is the ModelDeploymentName dimension)."""

    name: str
    model: str
    version: str
    sku: Literal["Standard", "ProvisionedManaged"]


@dataclass(frozen=True, slots=True)
class SimAgent:
    """An agent of a Foundry project (its id, name and version label the agent metrics)."""

    id: str
    name: str
    version: str
    model: str
    deployment: str


@dataclass(frozen=True, slots=True)
class SimAccount:
    """One Cognitive Services account of the simulated estate, or a Foundry project of one (`type`
    `…/accounts/projects`, with `agents`; it shares its parent's deployments)."""

    id: str
    name: str
    subscription_id: str
    resource_group: str
    location: str
    kind: str
    tags: Mapping[str, str]
    deployments: tuple[SimDeployment, ...]
    index: int = 0  # position in the world; keys the account's data
    type: str = "Microsoft.CognitiveServices/accounts"
    agents: tuple[SimAgent, ...] = ()

    @property
    def key(self) -> str:
        return self.id.lower()
