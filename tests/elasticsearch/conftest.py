"""Fixtures for the Elasticsearch sink tests: the test server, configurations and documents.

Tests marked `real_es` run against `ELASTICSEARCH_URL` (with `ELASTICSEARCH_API_KEY`, a key allowed to
manage templates and create API keys, and `ELASTICSEARCH_CA_CERTS` if set) when that variable is set,
and against the test server, with security on, otherwise.
"""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from elasticsearch import AsyncElasticsearch

from metrics_poller.catalog import AGGREGATION_SUFFIX, METRICS, NAMESPACE, MetricSpec, dimension_key
from metrics_poller.config import Elasticsearch
from metrics_poller.model import Document
from metrics_poller.sinks.elasticsearch import build_client
from metrics_poller.testing.es_server import ElasticsearchServer


@dataclass
class Target:
    """Where a test writes: a real cluster (`server` is None) or the test server."""

    url: str
    api_key: str | None
    server: ElasticsearchServer | None
    ca_certs: str | None = None


ADMIN_KEY = "test-server-admin-key"


@pytest.fixture
def server() -> Iterator[ElasticsearchServer]:
    with ElasticsearchServer() as instance:
        yield instance


@pytest.fixture
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    url = os.environ.get("ELASTICSEARCH_URL")
    if url and request.node.get_closest_marker("real_es"):
        yield Target(url, os.environ.get("ELASTICSEARCH_API_KEY"), None, os.environ.get("ELASTICSEARCH_CA_CERTS"))
        return
    with ElasticsearchServer(api_key=ADMIN_KEY) as instance:
        yield Target(instance.url, ADMIN_KEY, instance)


@pytest.fixture
def namespace() -> str:
    """A fresh namespace per test, so tests never share a data stream on a real cluster."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def cfg(target: Target, namespace: str) -> Elasticsearch:
    return make_config(target.url, namespace=namespace, api_key=target.api_key, ca_certs=target.ca_certs)


@pytest.fixture
async def client(cfg: Elasticsearch) -> AsyncIterator[AsyncElasticsearch]:
    instance = build_client(cfg)
    try:
        yield instance
    finally:
        # Only ever deletes this test's own stream (its namespace is unique).
        await instance.options(ignore_status=404).indices.delete_data_stream(name=cfg.data_stream)
        await instance.close()


def make_config(url: str, **overrides: Any) -> Elasticsearch:
    """A sink configuration for tests: small batches and fast timeouts unless overridden."""
    values: dict[str, Any] = {"hosts": [url], "request_timeout": 5.0, "retry_attempts": 5}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Elasticsearch.model_validate(values)


# ---------------------------------------------------------------------------------------------- documents
# Built by hand from elastic-compat.md §2/§3/§8. Tests reach them through the `docs` fixture because
# the suite runs with --import-mode=importlib (no imports between test modules).

SUBSCRIPTION = "12cabcb4-86e8-404f-a3d2-1dc9982f45ca"


def fingerprint(dimensions: Mapping[str, str]) -> str:
    """elastic-compat.md §8: base64(sha1(0x00 key 0x00 value …)) over sorted keys."""
    digest = hashlib.sha1(usedforsecurity=False)
    for key in sorted(dimensions):
        digest.update(b"\x00" + key.encode() + b"\x00" + dimensions[key].encode())
    return base64.b64encode(digest.digest()).decode()


def recent_minute(minutes_ago: int = 10) -> datetime:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    return now - timedelta(minutes=minutes_ago)


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def make_document(
    namespace: str,
    moment: datetime,
    metrics: Mapping[str, Mapping[str, float | int]],
    dimensions: Mapping[str, str],
    *,
    account: str = "obs-openai-test-01",
    tags: Mapping[str, str] | None = None,
) -> Document:
    """A final-form document as elastic-compat.md §2/§3 describe it."""
    resource_id = (
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/obs-openai-service-rs/providers/"
        f"Microsoft.CognitiveServices/accounts/{account}"
    )
    azure: dict[str, Any] = {
        "namespace": NAMESPACE,
        "open_ai": {name: dict(values) for name, values in metrics.items()},
        "resource": {
            "group": "obs-openai-service-rs",
            "id": resource_id,
            "name": account,
            "type": NAMESPACE,
        },
        "subscription_id": SUBSCRIPTION,
        "timegrain": "PT1M",
    }
    if dimensions:
        azure["dimensions"] = {**dimensions, "fingerprint": fingerprint(dimensions)}
    if tags:
        azure["resource"]["tags"] = dict(tags)
    source = {
        "@timestamp": stamp(moment),
        "azure": azure,
        "cloud": {"provider": "azure", "region": "eastus"},
        "data_stream": {"dataset": "azure.open_ai", "namespace": namespace, "type": "metrics"},
        "ecs": {"version": "8.11.0"},
        "event": {"dataset": "azure.open_ai", "duration": 2216811793, "module": "azure"},
        "metricset": {"name": "monitor", "period": 300000},
        "service": {"type": "azure"},
        "agent": {"name": "metrics-poller", "type": "metrics-poller", "version": "0.1.0"},
    }
    print_ = azure.get("dimensions", {}).get("fingerprint", "")
    identity = f"{resource_id.lower()}|{source['@timestamp']}|{print_}"
    doc_id = base64.urlsafe_b64encode(hashlib.sha256(identity.encode()).digest()[:18]).decode()
    return Document(doc_id, orjson.dumps(source), resource_id.lower(), frozenset({"requests"}))


def request_documents(namespace: str, count: int, *, start: datetime | None = None) -> list[Document]:
    """`count` request documents (one per minute and deployment), like the sample event."""
    start = start or recent_minute(count + 5)
    out = []
    for i in range(count):
        dims = {
            "api_name": "Azure OpenAI API version 2024-04-01-preview",
            "model_deployment_name": f"deployment-{i % 3}",
            "model_name": "gpt-35-turbo",
            "model_version": "0301",
            "operation_name": "ChatCompletions_Create",
            "region": "East US",
            "status_code": "200",
            "stream_type": "Streaming",
        }
        metrics = {"requests": {"total": i + 1}, "time_to_response": {"avg": 120.5}}
        out.append(make_document(namespace, start + timedelta(minutes=i // 3), metrics, dims))
    return out


def every_field_documents(namespace: str, moment: datetime | None = None) -> list[Document]:
    """Documents carrying every catalogue field: one per dimension set (metrics sharing one are
    merged, as the grouping rule of elastic-compat.md §6 requires), every aggregation of each metric,
    and whole-number values written as JSON integers (the case dynamic mapping gets wrong)."""
    moment = moment or recent_minute()
    by_dimensions: dict[tuple[str, ...], list[MetricSpec]] = {}
    for spec in METRICS:
        by_dimensions.setdefault(tuple(sorted(spec.dimensions)), []).append(spec)
    return [_metric_document(namespace, moment, dims, specs) for dims, specs in by_dimensions.items()]


def _metric_document(
    namespace: str, moment: datetime, dimensions: tuple[str, ...], specs: list[MetricSpec]
) -> Document:
    dims = {dimension_key(d): f"{d}-value" for d in dimensions}
    metrics = {spec.field: {AGGREGATION_SUFFIX[a]: 7 for a in spec.aggregations} for spec in specs}
    tags = {"team": "ml", "cost-center": "42"}
    return make_document(namespace, moment, metrics, dims, tags=tags)


def flatten_mapping(properties: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """`GET _mapping` properties → `path → type` of every leaf."""
    out: dict[str, str] = {}
    for name, spec in properties.items():
        if "properties" in spec:
            out.update(flatten_mapping(spec["properties"], f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = spec.get("type", "object")
    return out


class Docs:
    """The document builders, as the `docs` fixture hands them to tests."""

    make = staticmethod(make_document)
    requests = staticmethod(request_documents)
    every_field = staticmethod(every_field_documents)
    recent_minute = staticmethod(recent_minute)
    flatten_mapping = staticmethod(flatten_mapping)


@pytest.fixture
def docs() -> type[Docs]:
    return Docs
