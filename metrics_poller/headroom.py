"""Deployment limits, model lifecycle and measured peaks, joined (pure: no I/O, no clock).

The rules are `shared/reference/deployments-and-quota.md`: §3.1 for a deployment's TPM/RPM (its own
`rateLimits`, else the catalogue's per-unit limits × capacity, else the documented ratios, each result
labelled with its source), §3.2 for provisioned types (no TPM/RPM; PTU utilisation instead), §3.3 for
the quota join (catalogue `skus[].usageName`, else the `<format>.<sku>.<model>` convention, marked
guessed), §4 for the retirement date (the SKU's `deprecationDate`, else `deprecation.inference`).
Peaks come from the series the cycle already fetched (`UsagePeaks.observe`); nothing here calls Azure.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from metrics_poller.model import Account, Series, parse_iso_duration


class InventoryDataError(ValueError):
    """A control-plane body that is not what the REST spec promises; the message names the path."""


# Deployment types (D-TYPES), compared without case: the catalogue writes both `provisioned` and
# `Provisioned` (EX-LM). Anything else is an unknown type: stored as such, never given a guessed limit.
SKU_FAMILIES = {
    "standard": "standard",
    "globalstandard": "standard",
    "datazonestandard": "standard",
    "provisionedmanaged": "provisioned",
    "globalprovisionedmanaged": "provisioned",
    "datazoneprovisionedmanaged": "provisioned",
    "provisioned": "provisioned",
    "globalbatch": "batch",
    "datazonebatch": "batch",
    "developertier": "developer",
}
UNKNOWN = "unknown"

# §3.1 rule 3, D-QUOTA (2025-11-26) and D-LIMITS: (RPM, TPM) per capacity unit by model name, for
# Standard-family deployments whose body and catalogue entry both lack rate limits. Labelled "estimated".
DOCUMENTED_PER_UNIT: dict[str, tuple[float, float]] = {
    "gpt-4o": (6.0, 1000.0),
    "gpt-4o-mini": (6.0, 1000.0),
    "gpt-35-turbo": (6.0, 1000.0),
    "o1": (1.0, 6000.0),
    "o1-preview": (1.0, 6000.0),
    "o3": (1.0, 1000.0),
    "o4-mini": (1.0, 1000.0),
    "o3-mini": (1.0, 10000.0),
    "o1-mini": (1.0, 10000.0),
    "o3-pro": (1.0, 10000.0),
    "gpt-4.1": (1.0, 1000.0),
    "gpt-4.1-mini": (1.0, 1000.0),
    "gpt-4.1-nano": (1.0, 1000.0),
    "model-router": (1.0, 1000.0),
}

# The catalogue's "no date" placeholder is 2099-12-31 (EX-LM); any date from 2099 on means none.
_NO_DATE_YEAR = 2099


# ------------------------------------------------------------------------------------- parsed bodies


@dataclass(frozen=True, slots=True)
class Deployment:
    """One `accounts/deployments` item, reduced to what the inventory reports."""

    id: str
    name: str
    model_format: str | None
    model_name: str | None
    model_version: str | None
    sku_name: str | None
    capacity: int | None
    rate_limits: Mapping[str, float]  # per minute, by lower-cased rule key (`token`, `request`)
    version_upgrade_option: str | None
    provisioning_state: str | None
    dynamic_throttling: bool | None

    @property
    def family(self) -> str:
        return SKU_FAMILIES.get((self.sku_name or "").lower(), UNKNOWN)


@dataclass(frozen=True, slots=True)
class CatalogueSku:
    usage_name: str | None
    retirement: datetime | None
    per_unit: Mapping[str, float]  # per minute per capacity unit, by rule key


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    lifecycle_status: str | None
    deprecation_status: str | None
    retirement: datetime | None  # deprecation.inference
    skus: Mapping[str, CatalogueSku]  # by lower-cased SKU name


Catalogue = Mapping[tuple[str, str, str], CatalogueEntry]  # (format, name, version), lower-cased


@dataclass(frozen=True, slots=True)
class Quota:
    name: str
    current: float
    limit: float
    unit: str | None


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InventoryDataError(f"{where}: expected an object")
    return value


def _sub(value: dict[str, Any], key: str) -> dict[str, Any]:
    """A nested object, or an empty one when it is absent or null (optional parts of a body)."""
    inner = value.get(key)
    return inner if isinstance(inner, dict) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _items(pages: Iterable[Any], what: str) -> Iterable[tuple[int, dict[str, Any]]]:
    index = 0
    for page in pages:
        values = _obj(page, what).get("value")
        if not isinstance(values, list):
            raise InventoryDataError(f"{what}: page has no 'value' list")
        for item in values:
            yield index, _obj(item, f"{what}.value[{index}]")
            index += 1


def per_minute(rules: Any) -> dict[str, float]:
    """`rateLimits` → per-minute rate by rule key: `count × 60 / renewalPeriod` (§3.1 rule 1). Rules
    without a positive period or a count are skipped; repeated keys add up."""
    out: dict[str, float] = {}
    if not isinstance(rules, list):
        return out
    for rule in rules:
        if not isinstance(rule, dict):
            continue
        key = _text(rule.get("key"))
        count = _number(rule.get("count"))
        period = _number(rule.get("renewalPeriod"))
        if key is None or count is None or period is None or period <= 0:
            continue
        out[key.lower()] = out.get(key.lower(), 0.0) + count * 60.0 / period
    return out


def parse_deployments(pages: Iterable[Any]) -> list[Deployment]:
    """Deployments_List pages → deployments; raises `InventoryDataError` for a body of the wrong shape."""
    out = []
    for index, item in _items(pages, "deployments"):
        where = f"deployments.value[{index}]"
        name = _text(item.get("name"))
        ident = _text(item.get("id"))
        if name is None or ident is None:
            raise InventoryDataError(f"{where}: no 'id' or 'name'")
        sku = _sub(item, "sku")
        props = _sub(item, "properties")
        model = _sub(props, "model")
        capacity = _number(sku.get("capacity"))
        dynamic = props.get("dynamicThrottlingEnabled")
        out.append(
            Deployment(
                id=ident,
                name=name,
                model_format=_text(model.get("format")),
                model_name=_text(model.get("name")),
                model_version=_text(model.get("version")),
                sku_name=_text(sku.get("name")),
                capacity=int(capacity) if capacity is not None else None,
                rate_limits=per_minute(props.get("rateLimits")),
                version_upgrade_option=_text(props.get("versionUpgradeOption")),
                provisioning_state=_text(props.get("provisioningState")),
                dynamic_throttling=dynamic if isinstance(dynamic, bool) else None,
            )
        )
    return out


def parse_date(value: Any) -> datetime | None:
    """An ISO 8601 date-time (`Z` or an offset, §2.3) as aware UTC; None for absent, unreadable or the
    2099 placeholder."""
    text = _text(value)
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return None if moment.year >= _NO_DATE_YEAR else moment


def _catalogue_per_unit(rules: Any) -> dict[str, float]:
    # Catalogue `skus[].rateLimits` are CallRateLimit objects; their `rules[]` carry the key (2ND-CAT
    # prints them flat, `{count, key, renewalPeriod}`): read both forms.
    if not isinstance(rules, list):
        return {}
    flat: list[Any] = []
    for rule in rules:
        if isinstance(rule, dict) and isinstance(rule.get("rules"), list):
            flat.extend(rule["rules"])
        else:
            flat.append(rule)
    return per_minute(flat)


def parse_catalogue(pages: Iterable[Any]) -> dict[tuple[str, str, str], CatalogueEntry]:
    """Models_List pages (`{model: AccountModel, kind, ...}`) → entries by (format, name, version)."""
    out: dict[tuple[str, str, str], CatalogueEntry] = {}
    for _index, item in _items(pages, "models"):
        model = _sub(item, "model") or item
        fmt, name, version = (_text(model.get(k)) for k in ("format", "name", "version"))
        if fmt is None or name is None or version is None:
            continue  # an entry without identity joins nothing
        deprecation = _sub(model, "deprecation")
        skus: dict[str, CatalogueSku] = {}
        for sku in model.get("skus") or ():
            if not isinstance(sku, dict) or _text(sku.get("name")) is None:
                continue
            skus[sku["name"].lower()] = CatalogueSku(
                usage_name=_text(sku.get("usageName")),
                retirement=parse_date(sku.get("deprecationDate")),
                per_unit=_catalogue_per_unit(sku.get("rateLimits")),
            )
        out[(fmt.lower(), name.lower(), version.lower())] = CatalogueEntry(
            lifecycle_status=_text(model.get("lifecycleStatus")),
            deprecation_status=_text(deprecation.get("deprecationStatus")),
            retirement=parse_date(deprecation.get("inference")),
            skus=skus,
        )
    return out


def parse_usages(pages: Iterable[Any]) -> list[Quota]:
    """Usages_List pages → quota rows; rows without a name or numbers are skipped."""
    out = []
    for _index, item in _items(pages, "usages"):
        name_field = item.get("name")
        name = _text(name_field.get("value")) if isinstance(name_field, dict) else None
        current, limit = _number(item.get("currentValue")), _number(item.get("limit"))
        if name is None or current is None or limit is None:
            continue
        out.append(Quota(name, current, limit, _text(item.get("unit"))))
    return out


# -------------------------------------------------------------------------------------------- limits


@dataclass(frozen=True, slots=True)
class Limits:
    tokens_per_minute: float | None = None
    requests_per_minute: float | None = None
    source: str | None = None  # "deployment", "catalogue", "estimated"; None when unknown


def catalogue_entry(deployment: Deployment, catalogue: Catalogue) -> CatalogueEntry | None:
    key = (deployment.model_format, deployment.model_name, deployment.model_version)
    if None in key:
        return None
    return catalogue.get(tuple(k.lower() for k in key))  # type: ignore[union-attr, arg-type]


def limits(deployment: Deployment, entry: CatalogueEntry | None) -> Limits:
    """TPM and RPM of a deployment (§3.1), or none: provisioned and batch types have no per-minute
    limit (§3.2); an unknown type gets only what its own body states."""
    family = deployment.family
    if family in ("provisioned", "batch"):
        return Limits()
    own = deployment.rate_limits
    if "token" in own or "request" in own:
        return Limits(own.get("token"), own.get("request"), "deployment")
    if family != "standard" or deployment.capacity is None:
        return Limits()
    sku = entry.skus.get((deployment.sku_name or "").lower()) if entry is not None else None
    if sku is not None and ("token" in sku.per_unit or "request" in sku.per_unit):
        tpm, rpm = sku.per_unit.get("token"), sku.per_unit.get("request")
        return Limits(
            tpm * deployment.capacity if tpm is not None else None,
            rpm * deployment.capacity if rpm is not None else None,
            "catalogue",
        )
    documented = DOCUMENTED_PER_UNIT.get((deployment.model_name or "").lower())
    if documented is not None:
        rpm, tpm = documented
        return Limits(tpm * deployment.capacity, rpm * deployment.capacity, "estimated")
    return Limits()


def retirement(deployment: Deployment, entry: CatalogueEntry | None) -> datetime | None:
    """The SKU's `deprecationDate` when the catalogue has one, else `deprecation.inference` (§4)."""
    if entry is None:
        return None
    sku = entry.skus.get((deployment.sku_name or "").lower())
    if sku is not None and sku.retirement is not None:
        return sku.retirement
    return entry.retirement


def days_until(moment: datetime, now: datetime) -> int:
    """Whole days from `now` to `moment`, floored (negative once past)."""
    return math.floor((moment - now) / timedelta(days=1))


def quota_key(deployment: Deployment, entry: CatalogueEntry | None) -> tuple[str | None, bool]:
    """The usages `name.value` this deployment draws on, and whether it is guessed from the naming
    convention because the catalogue has no entry (§3.3)."""
    sku = entry.skus.get((deployment.sku_name or "").lower()) if entry is not None else None
    if sku is not None and sku.usage_name:
        return sku.usage_name, False
    if deployment.family != "standard" or not (deployment.model_format and deployment.model_name):
        return None, False
    return f"{deployment.model_format}.{deployment.sku_name}.{deployment.model_name}", True


# --------------------------------------------------------------------------------------------- peaks

# Metrics a peak is read from, preferred first: Azure OpenAI's, then Foundry's "Models" metrics.
TOKEN_METRICS = ("TokenTransaction", "TotalTokens")
REQUEST_METRICS = ("AzureOpenAIRequests", "ModelRequests")
UTILIZATION_METRICS = ("AzureOpenAIProvisionedManagedUtilizationV2", "ProvisionedUtilization")
_WATCHED = frozenset((*TOKEN_METRICS, *REQUEST_METRICS, *UTILIZATION_METRICS))
DEPLOYMENT_DIMENSION = "ModelDeploymentName"
STATUS_DIMENSION = "StatusCode"


@dataclass(slots=True)
class Peak:
    """Measured usage of one deployment since its last inventory document, per source metric."""

    per_minute: dict[str, float] = field(default_factory=dict)  # tokens and requests: highest minute
    throttled: dict[str, float] = field(default_factory=dict)  # requests answered 429, summed
    utilization: dict[str, float] = field(default_factory=dict)  # highest PTU utilisation (percent)

    def first(self, table: Mapping[str, float], names: Sequence[str]) -> float | None:
        return next((table[n] for n in names if n in table), None)


class UsagePeaks:
    """Per-minute peaks and 429 totals per (account, deployment), folded in window by window.

    A window's series are complete for each (account, metric) it covers, so the per-minute sums across
    the other dimensions are exact within it and the running maximum across windows is exact too.
    """

    def __init__(self) -> None:
        self._peaks: dict[str, dict[str, Peak]] = {}  # account key → lower-cased deployment → peak

    def observe(self, series: Iterable[Series]) -> None:
        minute_sums: dict[tuple[str, str, str, str], float] = {}
        for one in series:
            if one.metric not in _WATCHED:
                continue
            deployment = one.dimensions.get(DEPLOYMENT_DIMENSION)
            if deployment is None:
                continue
            peak = self._peaks.setdefault(one.account.key, {}).setdefault(deployment.lower(), Peak())
            if one.metric in UTILIZATION_METRICS:
                _fold_utilization(peak, one)
                continue
            minutes = _grain_minutes(one.timegrain)
            throttled = one.metric in REQUEST_METRICS and one.dimensions.get(STATUS_DIMENSION) == "429"
            for point in one.points:
                if point.total is None or not math.isfinite(point.total):
                    continue
                key = (one.account.key, deployment.lower(), one.metric, point.timestamp)
                minute_sums[key] = minute_sums.get(key, 0.0) + point.total / minutes
                if throttled:
                    peak.throttled[one.metric] = peak.throttled.get(one.metric, 0.0) + point.total
                else:
                    peak.throttled.setdefault(one.metric, 0.0)
        for (account, deployment, metric, _stamp), value in minute_sums.items():
            peak = self._peaks[account][deployment]
            if value > peak.per_minute.get(metric, -1.0):
                peak.per_minute[metric] = value

    def take(self, account_key: str) -> dict[str, Peak]:
        """The peaks of one account's deployments, reset: the next document covers the next window."""
        return self._peaks.pop(account_key, {})

    def peek(self, account_key: str) -> Mapping[str, Peak]:
        return self._peaks.get(account_key, {})

    def retain(self, account_keys: set[str]) -> None:
        """Forget accounts no longer polled."""
        for key in [k for k in self._peaks if k not in account_keys]:
            del self._peaks[key]


def _fold_utilization(peak: Peak, one: Series) -> None:
    for point in one.points:
        value = point.maximum if point.maximum is not None else point.average
        if value is not None and math.isfinite(value) and value > peak.utilization.get(one.metric, -1.0):
            peak.utilization[one.metric] = value


def _grain_minutes(timegrain: str) -> float:
    try:
        return max(1.0, parse_iso_duration(timegrain).total_seconds() / 60.0)
    except ValueError:
        return 1.0


# ---------------------------------------------------------------------------------------------- join


@dataclass(frozen=True, slots=True)
class DeploymentRecord:
    """One deployment's inventory document, as plain values (shaping writes it)."""

    account: Account
    deployment: Deployment
    limits: Limits
    lifecycle_status: str | None
    deprecation_status: str | None
    retirement: datetime | None
    days_to_retirement: int | None
    quota_name: str | None
    quota_guessed: bool
    tokens_per_minute_max: float | None
    requests_per_minute_max: float | None
    throttled_total: float | None
    provisioned_utilization_max: float | None

    @property
    def tokens_pct(self) -> float | None:
        return _pct(self.tokens_per_minute_max, self.limits.tokens_per_minute)

    @property
    def requests_pct(self) -> float | None:
        return _pct(self.requests_per_minute_max, self.limits.requests_per_minute)


def _pct(used: float | None, limit: float | None) -> float | None:
    # Not clipped at 100: with dynamic quota a deployment may legitimately pass its limit (D-DYN).
    if used is None or limit is None or limit <= 0:
        return None
    return round(used / limit * 100.0, 2)


def join(
    account: Account,
    deployments: Sequence[Deployment],
    catalogue: Catalogue,
    peaks: Mapping[str, Peak],
    now: datetime,
) -> list[DeploymentRecord]:
    """Each deployment with its limits, lifecycle, quota key and measured peaks."""
    out = []
    for deployment in deployments:
        entry = catalogue_entry(deployment, catalogue)
        retires = retirement(deployment, entry)
        name, guessed = quota_key(deployment, entry)
        peak = peaks.get(deployment.name.lower())
        out.append(
            DeploymentRecord(
                account=account,
                deployment=deployment,
                limits=limits(deployment, entry),
                lifecycle_status=entry.lifecycle_status if entry else None,
                deprecation_status=entry.deprecation_status if entry else None,
                retirement=retires,
                days_to_retirement=days_until(retires, now) if retires is not None else None,
                quota_name=name,
                quota_guessed=guessed,
                tokens_per_minute_max=peak.first(peak.per_minute, TOKEN_METRICS) if peak else None,
                requests_per_minute_max=peak.first(peak.per_minute, REQUEST_METRICS) if peak else None,
                throttled_total=peak.first(peak.throttled, REQUEST_METRICS) if peak else None,
                provisioned_utilization_max=peak.first(peak.utilization, UTILIZATION_METRICS) if peak else None,
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class Drawer:
    """A deployment known to draw on a quota: its id and capacity."""

    deployment_id: str
    capacity: int | None
    guessed: bool


@dataclass(frozen=True, slots=True)
class QuotaRecord:
    subscription_id: str
    region: str
    quota: Quota
    drawers: tuple[Drawer, ...]

    @property
    def used_pct(self) -> float | None:
        if self.quota.limit <= 0:
            return None
        return round(self.quota.current / self.quota.limit * 100.0, 2)


def quota_records(
    subscription_id: str,
    region: str,
    quotas: Sequence[Quota],
    drawers: Mapping[str, Sequence[Drawer]],
) -> list[QuotaRecord]:
    """Quota rows with the deployments known to draw on each (keys compared without case)."""
    by_name: dict[str, list[Drawer]] = {}
    for name, members in drawers.items():
        by_name.setdefault(name.lower(), []).extend(members)
    return [
        QuotaRecord(subscription_id, region, q, tuple(sorted(by_name.get(q.name.lower(), ()), key=_drawer_id)))
        for q in quotas
    ]


def _drawer_id(drawer: Drawer) -> str:
    return drawer.deployment_id.lower()
