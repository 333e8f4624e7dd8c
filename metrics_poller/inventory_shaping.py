"""Inventory records → documents of `metrics-azure.ai_deployment-<namespace>` (dataset azure.ai_deployment).

One document per deployment (`metricset.name: deployment`) and one per (subscription, region, quota
name) (`metricset.name: quota`) per inventory run, `@timestamp` the run's time. Unknown values are left
out, never filled with a guess; a figure that is derived rather than read says so
(`rate_limit.source`, `quota.guessed`). The `_id` is deterministic, so writing a run twice is a 409.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson

from metrics_poller.headroom import DeploymentRecord, QuotaRecord
from metrics_poller.model import Document

DATASET = "azure.ai_deployment"
GROUP = "inventory"  # `Document.groups`: inventory documents move no metric cursor
_GROUPS = frozenset((GROUP,))


@dataclass(frozen=True, kw_only=True)
class InventoryContext:
    namespace: str = "default"
    period_ms: int  # the inventory interval: how often each deployment gets a document
    agent: Mapping[str, str] = field(default_factory=dict)
    ecs_version: str = "8.11.0"


def _number(value: float | None) -> int | float | None:
    if value is None:
        return None
    return int(value) if float(value).is_integer() else value


def _iso(moment: datetime) -> str:
    t = moment.astimezone(UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _pruned(value: object) -> object:
    """Drop None values and objects left empty: an unknown field is absent, not null."""
    if isinstance(value, dict):
        out = {k: p for k, v in value.items() if (p := _pruned(v)) is not None and p != {}}
        return out or None
    return value


def _document_id(kind: str, key: str, timestamp: datetime) -> str:
    epoch_ms = int(timestamp.timestamp() * 1000)
    material = f"{kind}\x1f{key.lower()}\x1f{epoch_ms}".encode("utf-8", "surrogatepass")
    digest = hashlib.blake2b(material, digest_size=18, person=b"metrics-poller-i")
    return base64.urlsafe_b64encode(digest.digest()).decode("ascii")


def _common(context: InventoryContext, name: str, timestamp: datetime) -> dict[str, object]:
    source: dict[str, object] = {
        "@timestamp": _iso(timestamp),
        "data_stream": {"dataset": DATASET, "namespace": context.namespace, "type": "metrics"},
        "ecs": {"version": context.ecs_version},
        "event": {"dataset": DATASET, "module": "azure"},
        "metricset": {"name": name, "period": context.period_ms},
        "service": {"type": "azure"},
    }
    if context.agent:
        source["agent"] = dict(context.agent)
    return source


def _encode(source: dict[str, object]) -> bytes:
    return orjson.dumps(_pruned(source), option=orjson.OPT_SORT_KEYS)


def deployment_document(record: DeploymentRecord, context: InventoryContext, timestamp: datetime) -> Document:
    dep = record.deployment
    account = record.account
    family = dep.family
    limits = record.limits
    deployment: dict[str, object] = {
        "id": dep.id,
        "name": dep.name,
        "model": {
            "format": dep.model_format,
            "name": dep.model_name,
            "version": dep.model_version,
            "lifecycle_status": record.lifecycle_status,
            "deprecation_status": record.deprecation_status,
            "retirement_date": _iso(record.retirement) if record.retirement else None,
            "days_to_retirement": record.days_to_retirement,
        },
        "sku": {"name": dep.sku_name, "capacity": dep.capacity, "family": family},
        "provisioned": None if family == "unknown" else family == "provisioned",
        "rate_limit": {
            "tokens_per_minute": _number(limits.tokens_per_minute),
            "requests_per_minute": _number(limits.requests_per_minute),
            "source": limits.source,
        },
        "version_upgrade_option": dep.version_upgrade_option,
        "provisioning_state": dep.provisioning_state,
        "dynamic_throttling_enabled": dep.dynamic_throttling,
        "quota": {"name": record.quota_name, "guessed": record.quota_guessed if record.quota_name else None},
        "usage": {
            "tokens_per_minute": {"max": _number(record.tokens_per_minute_max)},
            "requests_per_minute": {"max": _number(record.requests_per_minute_max)},
            "throttled_requests": {"total": _number(record.throttled_total)},
        },
        "utilization": {
            "tokens_pct": record.tokens_pct,
            "requests_pct": record.requests_pct,
            "provisioned_pct": _number(record.provisioned_utilization_max) if family == "provisioned" else None,
        },
    }
    resource: dict[str, object] = {
        "group": account.resource_group,
        "id": account.id,
        "name": account.name,
        "tags": dict(account.tags) or None,
        "type": account.type,
    }
    source = _common(context, "deployment", timestamp)
    source["azure"] = {"deployment": deployment, "resource": resource, "subscription_id": account.subscription_id}
    source["cloud"] = {"provider": "azure", "region": account.location}
    return Document(_document_id("deployment", dep.id, timestamp), _encode(source), account.key, _GROUPS)


def quota_document(record: QuotaRecord, context: InventoryContext, timestamp: datetime) -> Document:
    quota = record.quota
    capacity = [d.capacity for d in record.drawers if d.capacity is not None]
    body: dict[str, object] = {
        "name": quota.name,
        "current": _number(quota.current),
        "limit": _number(quota.limit),
        "free": _number(quota.limit - quota.current),
        "unit": quota.unit,
        "used_pct": record.used_pct,
        "deployments": [d.deployment_id for d in record.drawers] or None,
        "deployments_capacity": sum(capacity) if capacity else None,
        "guessed": any(d.guessed for d in record.drawers) if record.drawers else None,
    }
    source = _common(context, "quota", timestamp)
    source["azure"] = {"quota": body, "subscription_id": record.subscription_id}
    source["cloud"] = {"provider": "azure", "region": record.region}
    key = f"{record.subscription_id}/{record.region}/{quota.name}"
    scope = f"{record.subscription_id}/{record.region}".lower()
    return Document(_document_id("quota", key, timestamp), _encode(source), scope, _GROUPS)
