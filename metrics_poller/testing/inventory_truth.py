"""Ground truth of the inventory documents, from the simulator's own knowledge (not from the poller's rules).

For each deployment: its type, capacity and true limits (the simulator knows them whether or not the
body publishes `rateLimits`), the lifecycle it serves, its quota key, and the peaks and 429 total of
the window the poller fetched, computed from the metric ground truth split by `ModelDeploymentName`:
Azure OpenAI's metrics for OpenAI models, Foundry's `TotalTokens` / `ModelRequests` for the other models
of Foundry accounts (only those metrics measure them), when the azure.ai_foundry dataset was polled.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from metrics_poller.simulator import Simulator
from metrics_poller.simulator.inventory import LIFECYCLE, PROVISIONED_SKUS, day_of
from metrics_poller.simulator.world import model_of
from metrics_poller.testing.ground_truth import Comparison

Fields = dict[str, Any]


def _peak_per_minute(sim: Simulator, account_id: str, metric: str, start: datetime, end: datetime) -> dict[str, float]:
    out: dict[str, float] = {}
    for dims, points in sim.expected(account_id, metric, start, end, "PT1M", ["ModelDeploymentName"]).items():
        name = dict(dims)["ModelDeploymentName"].lower()
        out[name] = max(p["total"] for p in points.values())
    return out


def _throttled(sim: Simulator, account_id: str, metric: str, start: datetime, end: datetime) -> dict[str, float]:
    out: dict[str, float] = {}
    split = ["ModelDeploymentName", "StatusCode"]
    for dims, points in sim.expected(account_id, metric, start, end, "PT1M", split).items():
        values = dict(dims)
        name = values["ModelDeploymentName"].lower()
        total = sum(p["total"] for p in points.values()) if values["StatusCode"] == "429" else 0.0
        out[name] = out.get(name, 0.0) + total
    return out


def _utilization(sim: Simulator, account_id: str, start: datetime, end: datetime) -> dict[str, float]:
    metric = "AzureOpenAIProvisionedManagedUtilizationV2"
    out: dict[str, float] = {}
    for dims, points in sim.expected(account_id, metric, start, end, "PT1M", ["ModelDeploymentName"]).items():
        out[dict(dims)["ModelDeploymentName"].lower()] = max(p["maximum"] for p in points.values())
    return out


def _number(value: float | None) -> float | None:
    return None if value is None else float(value)


def expected_deployments(
    sim: Simulator,
    account_ids: Iterable[str],
    start: datetime,
    end: datetime,
    timestamp: datetime,
    *,
    foundry: bool = True,
) -> dict[str, Fields]:
    """`azure.deployment.*` values each deployment document must carry, by lower-cased deployment id;
    None means the field must be absent. `foundry`: the azure.ai_foundry dataset was polled, so the
    non-OpenAI deployments have measured usage."""
    out: dict[str, Fields] = {}
    day = day_of(sim.now())
    for account_id in account_ids:
        openai = (
            _peak_per_minute(sim, account_id, "TokenTransaction", start, end),
            _peak_per_minute(sim, account_id, "AzureOpenAIRequests", start, end),
            _throttled(sim, account_id, "AzureOpenAIRequests", start, end),
        )
        others: tuple[dict[str, float], ...] = ({}, {}, {})
        if foundry and any(not model_of(t.deployment).openai for t in sim.deployment_truths(account_id)):
            others = (
                _peak_per_minute(sim, account_id, "TotalTokens", start, end),
                _peak_per_minute(sim, account_id, "ModelRequests", start, end),
                _throttled(sim, account_id, "ModelRequests", start, end),
            )
        utilization = _utilization(sim, account_id, start, end)
        for truth in sim.deployment_truths(account_id):
            dep = truth.deployment
            key = dep.name.lower()
            tokens, requests, throttled = openai if model_of(dep).openai else others
            life = LIFECYCLE[(dep.model, dep.version)]
            offset = life.ptu_offset if truth.provisioned and life.ptu_offset is not None else life.offset
            retires = None if offset is None else day + timedelta(days=offset)
            tpm, rpm = truth.tokens_per_minute, truth.requests_per_minute
            days = None if retires is None else math.floor((retires - timestamp) / timedelta(days=1))
            source = None if tpm is None else ("deployment" if truth.publishes_rate_limits else "catalogue")
            fields: Fields = {
                "name": dep.name,
                "sku.name": truth.sku,
                "sku.capacity": truth.capacity,
                "provisioned": truth.provisioned,
                "model.format": truth.model_format,
                "model.name": dep.model,
                "model.version": dep.version,
                "model.lifecycle_status": life.status,
                "model.days_to_retirement": days,
                "rate_limit.tokens_per_minute": _number(tpm),
                "rate_limit.requests_per_minute": _number(rpm),
                "rate_limit.source": source,
                "version_upgrade_option": truth.upgrade_option,
                "quota.name": truth.usage_name,
                "usage.tokens_per_minute.max": tokens.get(key),
                "usage.requests_per_minute.max": requests.get(key),
                "usage.throttled_requests.total": throttled.get(key),
                "utilization.tokens_pct": _pct(tokens.get(key), tpm),
                "utilization.requests_pct": _pct(requests.get(key), rpm),
                "utilization.provisioned_pct": utilization.get(key) if truth.sku in PROVISIONED_SKUS else None,
            }
            out[truth.id.lower()] = fields
    return out


def _pct(used: float | None, limit: float | None) -> float | None:
    if used is None or limit is None:
        return None
    return round(used / limit * 100.0, 2)


def _get(source: Mapping[str, Any], path: str) -> Any:
    node: Any = source
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def compare_deployments(
    expected: Mapping[str, Fields], documents: Iterable[Mapping[str, Any]]
) -> Comparison[str]:
    """Deployment documents (`metricset.name: deployment`) against `expected_deployments`, by deployment id."""
    result = Comparison[str](expected=len(expected))
    seen: set[str] = set()
    for doc in documents:
        if _get(doc, "metricset.name") != "deployment":
            continue
        result.stored += 1
        key = str(_get(doc, "azure.deployment.id")).lower()
        if key in seen:
            result.duplicated.append(key)
            continue
        seen.add(key)
        want = expected.get(key)
        if want is None:
            result.unexpected.append(key)
            continue
        deployment = _get(doc, "azure.deployment")
        for path, value in want.items():
            got = _get(deployment, path)
            if isinstance(value, float) and isinstance(got, int | float):
                if not math.isclose(got, value, rel_tol=1e-9, abs_tol=1e-6):
                    result.wrong.append((key, path, value, got))
            elif got != value:
                result.wrong.append((key, path, value, got))
    result.missing = sorted(set(expected) - seen)
    return result
