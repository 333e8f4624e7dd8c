"""The simulated control plane of Azure OpenAI and Foundry: deployments, the regional model catalogue
and quota usages.

Pure functions of the world, the seed and the day. Bodies follow the 2025-09-01 REST spec of
Microsoft.CognitiveServices (`Deployments_List`, `Models_List`, `Usages_List`) and the real-world
shapes in `shared/reference/deployments-and-quota.md` §2: `rateLimits` as `count` per `renewalPeriod`
seconds, catalogue `skus[].usageName` as the quota key, `deprecation.inference` as the retirement date,
`2099-12-31` as "no date". Lifecycle dates are relative to the simulator's day so that every estate has
versions retiring within 30 days and versions already retired but still deployed, whatever the date.

Foundry (AIServices) accounts also list their non-OpenAI deployments (the models whose traffic only the
Foundry "Models" metrics carry): serverless `GlobalStandard`, capacity 1, with their publisher's
`model.format`, no `rateLimits` and no `versionUpgradeOption`, and catalogue entries whose SKU names the
Models-as-a-Service quota key `AIServices.GlobalStandard.MaaS` without per-unit rate limits (EX-LM's
Llama entry). Usages_List carries no row for that key: no source shows one, so none is invented.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from metrics_poller.simulator.hashing import key64, mix64, pick, uniform
from metrics_poller.simulator.spec import SimAccount, SimDeployment
from metrics_poller.simulator.world import FOUNDRY_MODELS, MODELS, Model, model_of

# Deployments_List and friends accept these api-versions (the stable versions of the spec folder up to
# the one the SDK defaults to); anything else is refused as ARM refuses an unregistered version.
API_VERSIONS = frozenset({"2023-05-01", "2024-10-01", "2025-06-01", "2025-09-01"})
DEPLOYMENT_TYPE = "Microsoft.CognitiveServices/accounts/deployments"
NO_DATE = "2099-12-31T00:00:00Z"  # the catalogue's "no retirement date" placeholder (EX-LM Llama)

STANDARD_SKUS = ("Standard", "GlobalStandard", "DataZoneStandard")
PROVISIONED_SKUS = ("ProvisionedManaged", "GlobalProvisionedManaged")
# Capacities that fit the simulated traffic (data.py: a deployment peaks at roughly 30-60 K tokens and
# 80-190 requests a minute): deployments whose metrics carry 429s sit near or above their limit, the
# others well below it, so utilisation and throttling agree as they do in a real estate. Models with
# 1 RPM per unit need more units for the same request rate.
_STANDARD_CAPACITY = {False: (120, 240), True: (30, 50)}
_ONE_RPM_CAPACITY = {False: (250, 400), True: (100, 150)}
_PROVISIONED_CAPACITY = {"ProvisionedManaged": (50, 100, 150), "GlobalProvisionedManaged": (15, 25, 50)}
_UPGRADE_OPTIONS = ("OnceNewDefaultVersionAvailable", "OnceCurrentVersionExpired", "NoAutoUpgrade", None)


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """A catalogue entry's lifecycle: status and retirement offset in days from the simulator's day
    (None = the 2099 placeholder); `ptu_offset` is a SKU-specific earlier date for provisioned SKUs."""

    status: str
    offset: int | None
    deprecation_status: str | None = "Planned"  # None: absent, as on EX-LM's Llama entry
    ptu_offset: int | None = None


# Chosen so that every estate has each case of D-RETIRE: retired but still deployed (Deprecated),
# retiring within 30 days (Deprecating), a Tentative preview date, the no-date placeholder, and GA.
LIFECYCLE: dict[tuple[str, str], Lifecycle] = {
    ("gpt-35-turbo", "0125"): Lifecycle("Deprecated", -12),
    ("gpt-4o", "2024-08-06"): Lifecycle("Deprecating", 18, ptu_offset=9),
    ("gpt-4o-mini", "2024-07-18"): Lifecycle("Deprecating", 27),
    ("gpt-4o", "2024-11-20"): Lifecycle("GenerallyAvailable", 185),
    ("gpt-4.1", "2025-04-14"): Lifecycle("GenerallyAvailable", 300),
    ("gpt-4.1-mini", "2025-04-14"): Lifecycle("GenerallyAvailable", 300),
    ("o3-mini", "2025-01-31"): Lifecycle("GenerallyAvailable", 240),
    ("text-embedding-3-large", "1"): Lifecycle("GenerallyAvailable", 330),
    ("text-embedding-3-small", "1"): Lifecycle("GenerallyAvailable", None),
    ("text-embedding-ada-002", "2"): Lifecycle("GenerallyAvailable", 330),
    ("gpt-4o-realtime-preview", "2024-12-17"): Lifecycle("Preview", 45, deprecation_status="Tentative"),
    # Non-OpenAI models: the same cases, one retiring within 30 days, Llama with EX-LM's placeholder.
    ("DeepSeek-R1", "1"): Lifecycle("GenerallyAvailable", 200),
    ("Meta-Llama-3.1-405B-Instruct", "1"): Lifecycle("Stable", None, deprecation_status=None),
    ("Phi-4", "7"): Lifecycle("GenerallyAvailable", 150),
    ("Mistral-Large-2411", "2"): Lifecycle("Deprecating", 21),
    ("grok-3", "1"): Lifecycle("Preview", 60, deprecation_status="Tentative"),
    ("Cohere-embed-v3-english", "1"): Lifecycle("GenerallyAvailable", None),
}
# `model.format` of non-OpenAI models: the publisher, spelled as ARM writes it (case matters). `Meta`:
# EX-LM; `Microsoft`, `Mistral AI`: a public Foundry deployment guide's table of ARM `model.format`
# values (deployments-and-quota.md §0 lists no official source for them); the others follow the same
# rule, the publisher's name [inferred].
FORMATS: dict[str, str] = {
    "DeepSeek-R1": "DeepSeek",
    "Meta-Llama-3.1-405B-Instruct": "Meta",
    "Phi-4": "Microsoft",
    "Mistral-Large-2411": "Mistral AI",
    "grok-3": "xAI",
    "Cohere-embed-v3-english": "Cohere",
}
# Serverless (Models-as-a-Service) deployments of non-OpenAI models: EX-LM's Llama entry offers one SKU,
# `GlobalStandard`, capacity at most 1, quota key `AIServices.GlobalStandard.MaaS`, no rate limits.
MAAS_SKU = "GlobalStandard"
MAAS_USAGE = "AIServices.GlobalStandard.MaaS"

# Rate limit per capacity unit as the catalogue publishes it, `(count, renewalPeriod)` for the request
# and token rules (D-QUOTA table: older chat models 6 RPM + 1,000 TPM per unit, o3-mini 1 RPM + 10,000
# TPM, gpt-4.1 family 1 RPM + 1,000 TPM). The realtime preview has none, as for models D-QUOTA omits.
PER_UNIT: dict[str, tuple[tuple[float, float], tuple[float, float]] | None] = {
    "gpt-35-turbo": ((1.0, 10.0), (1000.0, 60.0)),
    "gpt-4o": ((1.0, 10.0), (1000.0, 60.0)),
    "gpt-4o-mini": ((1.0, 10.0), (1000.0, 60.0)),
    "gpt-4.1": ((1.0, 60.0), (1000.0, 60.0)),
    "gpt-4.1-mini": ((1.0, 60.0), (1000.0, 60.0)),
    "o3-mini": ((1.0, 60.0), (10000.0, 60.0)),
    "text-embedding-3-large": ((1.0, 10.0), (1000.0, 60.0)),
    "text-embedding-3-small": ((1.0, 10.0), (1000.0, 60.0)),
    "text-embedding-ada-002": ((1.0, 10.0), (1000.0, 60.0)),
    "gpt-4o-realtime-preview": None,
}

# The model part of a quota key is not always the model name (EX-LM: `OpenAI.Standard.GPT4o`).
_QUOTA_MODEL = {"gpt-4o": "GPT4o"}
# PTU quota is one pool per deployment type, whatever the model (D-PTU).
PTU_POOLS = {
    "ProvisionedManaged": "OpenAI.ProvisionedManaged",
    "GlobalProvisionedManaged": "OpenAI.GlobalProvisionedManaged",
}


@dataclass(frozen=True, slots=True)
class DeploymentTruth:
    """What the simulator knows about one deployment, whether or not its body says it."""

    account: SimAccount
    deployment: SimDeployment
    sku: str
    capacity: int
    tokens_per_minute: float | None  # None: provisioned, or no rate limit exists
    requests_per_minute: float | None
    publishes_rate_limits: bool  # `properties.rateLimits` present in the body
    upgrade_option: str | None
    usage_name: str
    model_format: str = "OpenAI"

    @property
    def id(self) -> str:
        return f"{self.account.id}/deployments/{self.deployment.name}"

    @property
    def provisioned(self) -> bool:
        return self.sku in PROVISIONED_SKUS


def day_of(now: datetime) -> datetime:
    """Midnight UTC of `now`: lifecycle dates move once a day, not with every request."""
    moment = now.astimezone(UTC)
    return datetime(moment.year, moment.month, moment.day, tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def model_format(model: Model) -> str:
    return "OpenAI" if model.openai else FORMATS[model.name]


def usage_name(model: str, sku: str) -> str:
    if sku in PTU_POOLS:
        return PTU_POOLS[sku]
    return f"OpenAI.{sku}.{_QUOTA_MODEL.get(model, model)}"


def truth(seed: int, account: SimAccount, deployment: SimDeployment, throttled: bool) -> DeploymentTruth:
    """`throttled`: the deployment's simulated request metrics include 429s."""
    key = key64(seed, "inventory", account.id.lower(), deployment.name)
    model = model_of(deployment)
    if not model.openai:  # serverless: no limit published, no auto-upgrade option (EX-LM, D-MODELS)
        return DeploymentTruth(
            account=account,
            deployment=deployment,
            sku=MAAS_SKU,
            capacity=1,
            tokens_per_minute=None,
            requests_per_minute=None,
            publishes_rate_limits=False,
            upgrade_option=None,
            usage_name=MAAS_USAGE,
            model_format=model_format(model),
        )
    per_unit = PER_UNIT[deployment.model]
    if deployment.sku == "ProvisionedManaged":
        sku = pick(key, 1, PROVISIONED_SKUS)
        sizes: tuple[int, ...] = _PROVISIONED_CAPACITY[sku]
    else:
        sku = pick(key, 1, STANDARD_SKUS)
        one_rpm = per_unit is not None and per_unit[0][1] == 60.0
        sizes = (_ONE_RPM_CAPACITY if one_rpm else _STANDARD_CAPACITY)[throttled]
    capacity = sizes[mix64(key ^ 2) % len(sizes)]
    tpm = rpm = None
    if per_unit is not None and sku not in PROVISIONED_SKUS:
        (r_count, r_period), (t_count, t_period) = per_unit
        rpm = capacity * r_count * 60.0 / r_period
        tpm = capacity * t_count * 60.0 / t_period
    # About one deployment in five comes without `rateLimits` (seen for older api-versions and some
    # types, §6.3): the poller must then fall back on the catalogue.
    publishes = tpm is not None and uniform(key, 3) >= 0.2
    options = _UPGRADE_OPTIONS
    return DeploymentTruth(
        account=account,
        deployment=deployment,
        sku=sku,
        capacity=capacity,
        tokens_per_minute=tpm,
        requests_per_minute=rpm,
        publishes_rate_limits=publishes,
        upgrade_option=options[mix64(key ^ 4) % len(options)],
        usage_name=usage_name(deployment.model, sku),
    )


def deployment_item(item: DeploymentTruth) -> dict[str, object]:
    """One `Deployment` as Deployments_List returns it (2025-09-01)."""
    dep = item.deployment
    properties: dict[str, object] = {
        "model": {"format": item.model_format, "name": dep.model, "version": dep.version},
        "provisioningState": "Succeeded",
        "currentCapacity": item.capacity,
        "raiPolicyName": "Microsoft.DefaultV2",
        "capabilities": _capabilities(model_of(dep)),
    }
    if item.upgrade_option is not None:  # absent when null (D-MODELS)
        properties["versionUpgradeOption"] = item.upgrade_option
    per_unit = PER_UNIT.get(dep.model)
    if item.publishes_rate_limits and per_unit is not None:
        (r_count, r_period), (t_count, t_period) = per_unit
        properties["rateLimits"] = [
            {"key": "request", "renewalPeriod": r_period, "count": r_count * item.capacity},
            {"key": "token", "renewalPeriod": t_period, "count": t_count * item.capacity},
        ]
    return {
        "id": item.id,
        "name": dep.name,
        "type": DEPLOYMENT_TYPE,
        "sku": {"name": item.sku, "capacity": item.capacity},
        "properties": properties,
        "etag": f'"{key64("etag", item.id):016x}"',
    }


def _capabilities(model: Model) -> dict[str, str]:
    if model.family == "embedding":
        return {"embeddings": "true"}
    if model.family == "realtime":
        return {"realtime": "true"}
    return {"chatCompletion": "true", "completion": "true"}


def catalogue(region: str, now: datetime) -> list[dict[str, object]]:
    """Models_List for one region: one `Model` per (name, version) the world deploys (EX-LM shape),
    OpenAI models as kind `OpenAI`, the others as kind `AIServices` (EX-LM's Llama)."""
    day = day_of(now)
    out: list[dict[str, object]] = []
    for model in (*MODELS, *FOUNDRY_MODELS):
        life = LIFECYCLE[(model.name, model.version)]
        inference = NO_DATE if life.offset is None else _iso(day + timedelta(days=life.offset))
        deprecation = {"inference": inference}
        if life.deprecation_status is not None:
            deprecation["deprecationStatus"] = life.deprecation_status
        if model.openai:
            skus = [_catalogue_sku(model, s, day, life) for s in _skus_of(model)]
        else:
            skus = [{"name": MAAS_SKU, "usageName": MAAS_USAGE, "capacity": {"maximum": 1, "default": 1}}]
        entry: dict[str, object] = {
            "format": model_format(model),
            "name": model.name,
            "version": model.version,
            "isDefaultVersion": (model.name, model.version) != ("gpt-4o", "2024-08-06"),
            "skus": skus,
            "capabilities": _capabilities(model),
            "deprecation": deprecation,
            "lifecycleStatus": life.status,
            "systemData": {"createdBy": "Microsoft", "createdAt": "2024-05-13T00:00:00Z"},
        }
        out.append({"kind": "OpenAI" if model.openai else "AIServices", "skuName": "S0", "model": entry})
    return out


def _skus_of(model: Model) -> tuple[str, ...]:
    if model.family == "chat":
        return STANDARD_SKUS + PROVISIONED_SKUS
    return STANDARD_SKUS


def _catalogue_sku(model: Model, sku: str, day: datetime, life: Lifecycle) -> dict[str, object]:
    item: dict[str, object] = {"name": sku, "usageName": usage_name(model.name, sku)}
    if sku in PROVISIONED_SKUS:
        item["capacity"] = {"minimum": 15, "maximum": 1000, "step": 5, "default": 50}
        if life.ptu_offset is not None:  # a SKU date earlier than the model's (EX-LM gpt-35-turbo)
            item["deprecationDate"] = _iso(day + timedelta(days=life.ptu_offset))
        return item
    item["capacity"] = {"minimum": 1, "maximum": 1000, "step": 1, "default": 10}
    per_unit = PER_UNIT[model.name]
    if per_unit is not None:
        (r_count, r_period), (t_count, t_period) = per_unit
        item["rateLimits"] = [
            {"key": "request", "renewalPeriod": r_period, "count": r_count},
            {"key": "token", "renewalPeriod": t_period, "count": t_count},
        ]
    return item


@dataclass(frozen=True, slots=True)
class QuotaTruth:
    name: str
    current: int
    limit: int
    localized: str


def quotas(seed: int, subscription: str, region: str, deployed: Iterable[DeploymentTruth]) -> list[QuotaTruth]:
    """Usages_List rows of one (subscription, region): every quota key of the catalogue, `currentValue`
    the capacity its deployments hold plus some held by accounts the poller cannot see (§3.3)."""
    held: dict[str, int] = {}
    for item in deployed:
        held[item.usage_name] = held.get(item.usage_name, 0) + item.capacity
    names = sorted({usage_name(m.name, s) for m in MODELS for s in _skus_of(m)})
    out = []
    for name in names:
        key = key64(seed, "quota", subscription.lower(), region.lower(), name)
        hidden = 0 if uniform(key, 1) < 0.6 else 10 * (1 + mix64(key ^ 2) % 5)
        current = held.get(name, 0) + hidden
        limit = max(300, current + 50 * (1 + mix64(key ^ 3) % 8)) if uniform(key, 4) >= 0.05 else current
        out.append(QuotaTruth(name, current, limit, name.replace(".", " ")))
    return out


def usage_items(rows: Iterable[QuotaTruth], account_count: int) -> list[dict[str, object]]:
    items: list[dict[str, object]] = [
        {
            "name": {"value": "AccountCount", "localizedValue": "Cognitive Services total account limit"},
            "currentValue": account_count,
            "limit": 200,
            "unit": "Count",
        }
    ]
    for row in rows:
        items.append(
            {
                "name": {"value": row.name, "localizedValue": row.localized},
                "currentValue": row.current,
                "limit": row.limit,
                "unit": "Count",
            }
        )
    return items
