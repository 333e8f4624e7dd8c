"""Index and component templates for `metrics-azure.ai_deployment-*` (pure; installed by `setup`).

Every field an inventory document can carry is mapped explicitly, so the first value never decides a
type (a capacity of `1` must not make a utilisation `long`, a model version must not become a date).
A plain data stream: one document per deployment per interval is not a metric time series.
"""

from __future__ import annotations

from metrics_poller.inventory_shaping import DATASET
from metrics_poller.templates import Json, Templates, compose, nest

INDEX_PATTERN = f"metrics-{DATASET}-*"
INDEX_TEMPLATE = f"metrics-poller-{DATASET}"

_KEYWORD: Json = {"type": "keyword", "ignore_above": 1024}

KEYWORDS = (
    "azure.subscription_id",
    "azure.resource.id",
    "azure.resource.name",
    "azure.resource.group",
    "azure.resource.type",
    "azure.deployment.id",
    "azure.deployment.name",
    "azure.deployment.model.format",
    "azure.deployment.model.name",
    "azure.deployment.model.version",
    "azure.deployment.model.lifecycle_status",
    "azure.deployment.model.deprecation_status",
    "azure.deployment.sku.name",
    "azure.deployment.sku.family",
    "azure.deployment.rate_limit.source",
    "azure.deployment.version_upgrade_option",
    "azure.deployment.provisioning_state",
    "azure.deployment.quota.name",
    "azure.quota.name",
    "azure.quota.unit",
    "azure.quota.deployments",
    "cloud.provider",
    "cloud.region",
    "event.dataset",
    "event.module",
    "metricset.name",
    "service.type",
    "ecs.version",
    "agent.name",
    "agent.type",
    "agent.version",
)
TYPED: dict[str, str] = {
    "@timestamp": "date",
    "azure.deployment.model.retirement_date": "date",
    "azure.deployment.model.days_to_retirement": "long",
    "azure.deployment.sku.capacity": "long",
    "azure.deployment.provisioned": "boolean",
    "azure.deployment.dynamic_throttling_enabled": "boolean",
    "azure.deployment.quota.guessed": "boolean",
    "azure.deployment.rate_limit.tokens_per_minute": "long",
    "azure.deployment.rate_limit.requests_per_minute": "long",
    "azure.deployment.usage.tokens_per_minute.max": "long",
    "azure.deployment.usage.requests_per_minute.max": "long",
    "azure.deployment.usage.throttled_requests.total": "long",
    "azure.deployment.utilization.tokens_pct": "float",
    "azure.deployment.utilization.requests_pct": "float",
    "azure.deployment.utilization.provisioned_pct": "float",
    "azure.quota.current": "double",
    "azure.quota.limit": "double",
    "azure.quota.free": "double",
    "azure.quota.used_pct": "float",
    "azure.quota.deployments_capacity": "long",
    "azure.quota.guessed": "boolean",
    "metricset.period": "long",
}


def field_mappings() -> dict[str, Json]:
    fields: dict[str, Json] = {path: dict(_KEYWORD) for path in KEYWORDS}
    fields.update({path: {"type": es_type} for path, es_type in TYPED.items()})
    for part in ("type", "dataset", "namespace"):
        fields[f"data_stream.{part}"] = {"type": "constant_keyword"}
    return fields


def mappings() -> Json:
    return {
        "dynamic": True,
        "date_detection": False,
        "dynamic_templates": [
            {
                "azure_resource_tags": {
                    "path_match": "azure.resource.tags.*",
                    "match_mapping_type": "string",
                    "mapping": dict(_KEYWORD),
                }
            },
            {"strings_as_keywords": {"match_mapping_type": "string", "mapping": dict(_KEYWORD)}},
        ],
        "properties": nest(field_mappings()),
    }


def build(*, retention: str | None = None) -> Templates:
    settings: Json = {"index": {"codec": "best_compression"}}
    return compose(INDEX_TEMPLATE, INDEX_PATTERN, mappings(), settings, retention=retention)
