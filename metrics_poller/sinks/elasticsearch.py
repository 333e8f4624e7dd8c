"""The Elasticsearch sink: client construction, template set-up, bulk writes and the cursor store.

The only module that knows the `elasticsearch` client. Writes are `create`-only into the data stream
(elastic-compat.md §1, §11): a 409 means "already stored", so a window written twice is harmless.
Retry policy is owned here (the client's own retries are off for bulk), so a cycle never waits longer
than `retry_attempts` backoffs for one batch.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any, cast

import orjson
from elastic_transport import ConnectionTimeout, TlsError, TransportError
from elasticsearch import (
    ApiError,
    AsyncElasticsearch,
    AuthenticationException,
    AuthorizationException,
)
from elasticsearch.serializer import OrjsonSerializer

from metrics_poller import datasets, inventory_templates, templates
from metrics_poller.config import Elasticsearch as ElasticsearchConfig
from metrics_poller.datasets import OPEN_AI, Dataset
from metrics_poller.model import Document, Outcome
from metrics_poller.shaping import encode
from metrics_poller.sinks import RefusedByConfiguration
from metrics_poller.state import LEGACY_DATASET, CursorKey, StateError

log = logging.getLogger(__name__)

CURSOR_INDEX = "metrics_poller_cursors"
RETRY_STATUSES = frozenset({429, 502, 503, 504})
# Per-item errors that mean "the cluster is busy or degraded", whatever their status.
RETRY_ERROR_TYPES = frozenset(
    {"es_rejected_execution_exception", "circuit_breaking_exception", "unavailable_shards_exception"}
)
AUTH_STATUSES = frozenset({401, 403})
_URL_USERINFO = re.compile(r"//[^/@\s]+@")


class SinkError(Exception):
    """The sink cannot work at all (credentials, privileges, unreachable cluster); one line, no secrets."""


class CredentialsRejected(SinkError):
    """Elasticsearch answered 401: no request with these credentials can succeed."""


class SinkConfigError(SinkError, RefusedByConfiguration):
    """The cluster refuses what this configuration asks for (exit 2)."""


# Dimension-field limits of time-series indices before 8.13 (16, then 21) are below what the catalogue
# maps; 8.19 and 9.x are the supported range.
MINIMUM_VERSION = (8, 13)


# --------------------------------------------------------------------------------------------- client


def build_client(cfg: ElasticsearchConfig) -> AsyncElasticsearch:
    """An `AsyncElasticsearch` for the configured hosts or Cloud id, credentials and TLS settings."""
    options: dict[str, Any] = {
        "request_timeout": cfg.request_timeout,
        "http_compress": True,
        "serializer": OrjsonSerializer(),
        "verify_certs": cfg.verify_certs,
        # Transport-level retries help the small set-up and cursor calls; bulk turns them off.
        "max_retries": 3,
        "retry_on_timeout": True,
    }
    if cfg.cloud_id:
        options["cloud_id"] = cfg.cloud_id
    else:
        options["hosts"] = list(cfg.hosts)
    if cfg.ca_certs:
        options["ca_certs"] = cfg.ca_certs
    if not cfg.verify_certs:
        log.warning(
            "elasticsearch.verify_certs is false: TLS certificates are not checked, so the connection "
            "(and its credentials) can be intercepted; set ca_certs instead"
        )
        options["ssl_show_warn"] = False
    options.update(auth_options(cfg))
    return AsyncElasticsearch(**options)


async def probe(cfg: ElasticsearchConfig) -> tuple[str, str, bool] | None:
    """One authenticated `GET /` (preflight). None when the cluster answered and took the credentials
    (a 403 means they authenticated but lack `monitor`, which writing does not need); otherwise
    (subject, one-line message, unreachable)."""
    server = f"cloud_id {cfg.cloud_id.partition(':')[0]!r}" if cfg.cloud_id else ", ".join(map(_no_userinfo, cfg.hosts))
    secrets = secrets_of(cfg)
    client = build_client(cfg)
    try:
        await client.options(max_retries=0).info()
    except AuthenticationException as exc:
        return credential_key(cfg), f"refused by Elasticsearch at {server} ({describe(exc, secrets)})", False
    except AuthorizationException:
        return None
    except TlsError as exc:
        hint = "check the URL scheme, elasticsearch.ca_certs or elasticsearch.verify_certs"
        return f"elasticsearch at {server}", f"TLS failed ({describe(exc, secrets)}); {hint}", False
    except ApiError as exc:
        return f"elasticsearch at {server}", f"not usable: {describe(exc, secrets)}", exc.meta.status >= 500
    except TransportError as exc:
        return f"elasticsearch at {server}", f"unreachable: {describe(exc, secrets)}", True
    finally:
        await client.close()
    return None


def credential_key(cfg: ElasticsearchConfig) -> str:
    """The configuration key of the credential the client sends (see `auth_options`)."""
    if cfg.api_key is not None:
        return "elasticsearch.api_key"
    if cfg.bearer_token is not None:
        return "elasticsearch.bearer_token"
    if cfg.username is not None:
        return "elasticsearch.username/password"
    return "elasticsearch (no api_key, bearer_token or username configured)"


def _no_userinfo(url: str) -> str:
    return _URL_USERINFO.sub("//", url)


def auth_options(cfg: ElasticsearchConfig) -> dict[str, Any]:
    """Client keyword arguments for the one configured credential (API key > bearer > basic)."""
    configured = [
        name
        for name, present in (
            ("api_key", cfg.api_key is not None),
            ("bearer_token", cfg.bearer_token is not None),
            ("username", cfg.username is not None),
        )
        if present
    ]
    if len(configured) > 1:
        log.warning(
            "several Elasticsearch credentials are configured (%s); using %s",
            ", ".join(configured),
            configured[0],
        )
    if cfg.api_key is not None:
        key = cfg.api_key.get_secret_value()
        # Accept both the encoded form and the `id:api_key` pair Kibana also shows.
        return {"api_key": tuple(key.split(":", 1)) if ":" in key else key}
    if cfg.bearer_token is not None:
        return {"bearer_auth": cfg.bearer_token.get_secret_value()}
    if cfg.username is not None:
        password = cfg.password.get_secret_value() if cfg.password is not None else ""
        return {"basic_auth": (cfg.username, password)}
    return {}


def secrets_of(cfg: ElasticsearchConfig) -> tuple[str, ...]:
    """The secret strings in a configuration, for redaction."""
    values = (cfg.api_key, cfg.password, cfg.bearer_token)
    out: list[str] = []
    for value in values:
        if value is not None and value.get_secret_value():
            secret = value.get_secret_value()
            out.append(secret)
            out.extend(part for part in secret.split(":", 1) if len(part) >= 8)
    return tuple(out)


def redact(text: str, secrets: Sequence[str]) -> str:
    """`text` with every secret, and any credentials written into a URL, replaced."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "[redacted]")
    return _URL_USERINFO.sub("//[redacted]@", text)


def describe(exc: BaseException, secrets: Sequence[str] = ()) -> str:
    """One line about a client error, without the request body, headers or secrets."""
    if isinstance(exc, ApiError):
        error = exc.body.get("error") if isinstance(exc.body, Mapping) else None
        kind = error.get("type") if isinstance(error, Mapping) else None
        reason = error.get("reason") if isinstance(error, Mapping) else None
        text = f"HTTP {exc.meta.status}" + (f" {kind}" if kind else "") + (f": {reason}" if reason else "")
    elif isinstance(exc, ConnectionTimeout):
        text = "request timed out"
    elif isinstance(exc, TransportError):
        text = f"connection failed ({type(exc).__name__}: {exc.message})"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return redact(" ".join(text.split())[:500], secrets)


def _auth_error(exc: ApiError, secrets: Sequence[str]) -> SinkError:
    if exc.meta.status == 401:
        return CredentialsRejected(
            f"Elasticsearch rejected the credentials ({describe(exc, secrets)}); check elasticsearch.api_key, "
            "username/password or bearer_token (or their *_file)"
        )
    return SinkError(f"Elasticsearch: the credentials lack a privilege: {describe(exc, secrets)}")


# ---------------------------------------------------------------------------------------------- setup


async def setup(
    client: AsyncElasticsearch, cfg: ElasticsearchConfig, selected: Sequence[Dataset] = (OPEN_AI,)
) -> list[str]:
    """Install each selected dataset's component and index templates when they differ from what is
    installed.

    Idempotent: an up-to-date template is reported "unchanged" and not written. Elastic's own
    integration template is respected unless `overwrite_templates` is set.
    """
    secrets = secrets_of(cfg)
    try:
        info = await client.info()
        number = check_version(info.body)
        lines = [f"connected to Elasticsearch {number} (cluster {info.get('cluster_name', '?')})"]
        for dataset in selected:
            lines.extend(await _setup(client, cfg, dataset))
        return lines
    except (AuthenticationException, AuthorizationException) as exc:
        raise _auth_error(exc, secrets) from None
    except (ApiError, TransportError) as exc:
        raise SinkError(f"Elasticsearch set-up failed: {describe(exc, secrets)}") from None


async def ensure_templates(
    client: AsyncElasticsearch, cfg: ElasticsearchConfig, selected: Sequence[Dataset] = (OPEN_AI,)
) -> list[str]:
    """Before the first write: install our templates for each dataset whose data stream no template
    governs yet.

    Without one, dynamic mapping guesses types from the first values (e.g. `model_version`
    "2024-08-06" becomes a date and "0125" is then rejected). Returns the datasets it installed.
    """
    installed: list[str] = []
    for dataset in selected:
        try:
            governed = False
            for name in (dataset.index_template, dataset.integration_template):
                governed = governed or await _get_template(client, "index", name) is not None
            if governed:
                continue
        except AuthorizationException:
            # A writer-only key (create_doc, auto_configure) may not read templates: only `setup` needs
            # manage_index_templates. Writes say so if the templates are missing (require_data_stream).
            log.info("these credentials cannot read index templates; assuming `metrics-poller setup` installed them")
            return installed
        except (ApiError, TransportError):
            pass  # reported below, like a failed installation
        try:
            for line in await setup(client, cfg, (dataset,)):
                log.info("setup: %s", line)
            installed.append(dataset.name)
        except CredentialsRejected:  # `metrics-poller setup` would be refused as well: no advice to run it
            raise
        except AuthenticationException as exc:
            raise _auth_error(exc, secrets_of(cfg)) from None
        except (SinkError, ApiError, TransportError) as exc:
            log.warning(
                "no index template governs %s and installing one failed (%s); run `metrics-poller setup` "
                "with a user allowed to manage index templates",
                dataset.data_stream(cfg.namespace),
                describe(exc, secrets_of(cfg)) if not isinstance(exc, SinkError) else exc,
            )
    return installed


async def _setup(client: AsyncElasticsearch, cfg: ElasticsearchConfig, dataset: Dataset) -> list[str]:
    wanted = templates.build(dataset, tsds=cfg.tsds, look_back=cfg.look_back, retention=cfg.retention)
    lines: list[str] = []
    integration = await _get_template(client, "index", dataset.integration_template)
    if integration is not None and not cfg.overwrite_templates:
        lines.append(
            f"index template {dataset.integration_template} (Elastic's {dataset.integration} integration) is "
            f"installed and governs {dataset.index_pattern}: left it alone and installed nothing; "
            "fields it does not map are mapped dynamically. Set elasticsearch.overwrite_templates: true "
            f"to install {dataset.index_template} at priority {templates.PRIORITY}, above it"
        )
        if dataset.bypass_default_pipeline and not cfg.pipeline:
            lines.append(
                f"documents for {dataset.index_pattern} are sent with pipeline=_none: they are final, and "
                f"the {dataset.integration} ingest pipeline would scale their percentages a second time"
            )
        return lines
    changed = False
    for kind, bodies in (("component", wanted.component_templates), ("index", wanted.index_templates)):
        for name, body in bodies.items():
            line, did_write = await _ensure(client, kind, name, body)
            lines.append(line)
            changed = changed or did_write
    if integration is not None:
        lines.append(
            f"{dataset.index_template} (priority {templates.PRIORITY}) takes precedence over "
            f"{dataset.integration_template} for new backing indices (overwrite_templates is true)"
        )
    stream = dataset.data_stream(cfg.namespace)
    if changed and await _data_stream_exists(client, stream):
        lines.append(
            f"data stream {stream} exists: the new templates apply from its next backing index "
            f"(POST {stream}/_rollover to apply them now)"
        )
    return lines


async def setup_inventory(client: AsyncElasticsearch, cfg: ElasticsearchConfig) -> list[str]:
    """`setup` for the deployment inventory's stream (no Elastic integration shares its pattern)."""
    try:
        return await _setup_inventory(client, cfg)
    except (AuthenticationException, AuthorizationException) as exc:
        raise _auth_error(exc, secrets_of(cfg)) from None
    except (ApiError, TransportError) as exc:
        raise SinkError(f"Elasticsearch set-up failed: {describe(exc, secrets_of(cfg))}") from None


async def _setup_inventory(client: AsyncElasticsearch, cfg: ElasticsearchConfig) -> list[str]:
    wanted = inventory_templates.build(retention=cfg.retention)
    lines = []
    for kind, bodies in (("component", wanted.component_templates), ("index", wanted.index_templates)):
        for name, body in bodies.items():
            lines.append((await _ensure(client, kind, name, body))[0])
    return lines


async def ensure_inventory_templates(client: AsyncElasticsearch, cfg: ElasticsearchConfig) -> None:
    """Before the first inventory write: install its templates when none governs its stream yet."""
    try:
        if await _get_template(client, "index", inventory_templates.INDEX_TEMPLATE) is None:
            for line in await _setup_inventory(client, cfg):
                log.info("setup: %s", line)
    except AuthorizationException:
        log.info("these credentials cannot read index templates; assuming `metrics-poller setup` installed them")
    except (ApiError, TransportError) as exc:
        log.warning(
            "installing the inventory templates failed (%s); run `metrics-poller setup`", describe(exc, secrets_of(cfg))
        )


async def _ensure(client: AsyncElasticsearch, kind: str, name: str, body: Mapping[str, Any]) -> tuple[str, bool]:
    installed = await _get_template(client, kind, name)
    if installed is not None and templates.installed_fingerprint(installed) == templates.fingerprint(body):
        return f"{kind} template {name}: unchanged", False
    if kind == "component":
        await client.cluster.put_component_template(name=name, body=dict(body))
    else:
        await client.indices.put_index_template(name=name, body=dict(body))
    return f"{kind} template {name}: {'created' if installed is None else 'updated'}", True


async def _get_template(client: AsyncElasticsearch, kind: str, name: str) -> Mapping[str, Any] | None:
    """The installed body of one template, or None when there is none."""
    quiet = client.options(ignore_status=404)
    if kind == "component":
        response = await quiet.cluster.get_component_template(name=name)
        key, inner = "component_templates", "component_template"
    else:
        response = await quiet.indices.get_index_template(name=name)
        key, inner = "index_templates", "index_template"
    if response.meta.status == 404:
        return None
    for entry in response.body.get(key, []):
        if entry.get("name") == name:
            body = entry.get(inner)
            return body if isinstance(body, Mapping) else None
    return None


async def _data_stream_exists(client: AsyncElasticsearch, name: str) -> bool:
    response = await client.options(ignore_status=404).indices.get_data_stream(name=name)
    return response.meta.status != 404 and bool(response.body.get("data_streams"))


# ------------------------------------------------------------------------------------------- check

# What `run`, `once` and `backfill` need (Fleet's writer: create_doc + auto_configure); `setup` alone
# needs manage_index_templates.
CLUSTER_PRIVILEGES = ("monitor",)
SETUP_PRIVILEGES = ("manage_index_templates",)
STREAM_PRIVILEGES = ("create_doc", "auto_configure")
CURSOR_PRIVILEGES = ("read", "write", "create_index")


def check_version(info: Mapping[str, Any]) -> str:
    """The cluster's version from `GET /`; raises `SinkConfigError` below 8.13."""
    number = str(info.get("version", {}).get("number", "?"))
    match = re.match(r"(\d+)\.(\d+)", number)
    if match is not None and (int(match[1]), int(match[2])) < MINIMUM_VERSION:
        raise SinkConfigError(
            f"Elasticsearch {number} is not supported: metrics-poller needs 8.13 or later (older 8.x "
            "limit a time-series index to fewer dimension fields than Azure OpenAI metrics carry); "
            "8.19 and 9.x are supported"
        )
    return number


async def check_pipeline(client: AsyncElasticsearch, cfg: ElasticsearchConfig) -> str | None:
    """Whether `elasticsearch.pipeline` exists; raises `SinkConfigError` when it does not. Returns a
    note when it cannot be checked (the credentials lack read_pipeline), None when there is nothing to say."""
    if not cfg.pipeline or cfg.pipeline == "_none":
        return None
    response = await client.options(ignore_status=(403, 404)).ingest.get_pipeline(id=cfg.pipeline)
    if response.meta.status == 404:
        raise SinkConfigError(
            f"elasticsearch.pipeline: ingest pipeline {cfg.pipeline!r} does not exist in Elasticsearch; "
            "create it or remove the setting"
        )
    if response.meta.status == 403:
        return f"elasticsearch: pipeline {cfg.pipeline} not checked (the credentials lack read_pipeline)"
    return None


async def preflight(client: AsyncElasticsearch, cfg: ElasticsearchConfig) -> None:
    """Before the first Azure call of a run: one authenticated request, the version and the pipeline."""
    secrets = secrets_of(cfg)
    try:
        check_version((await client.info()).body)
        note = await check_pipeline(client, cfg)
    except (AuthenticationException, AuthorizationException) as exc:
        raise _auth_error(exc, secrets) from None
    except (ApiError, TransportError) as exc:
        raise SinkError(f"Elasticsearch check failed: {describe(exc, secrets)}") from None
    if note:
        log.info("%s", note)


async def check_access(
    client: AsyncElasticsearch, cfg: ElasticsearchConfig, selected: Sequence[Dataset] = (OPEN_AI,)
) -> list[str]:
    """Connectivity, version, pipeline, privileges and template state, one line each, for
    `metrics-poller validate`.

    Raises `SinkError` when the cluster is unreachable, the credentials are refused, or a privilege
    the writer needs is missing; `SinkConfigError` for an unsupported version or a missing pipeline.
    """
    secrets = secrets_of(cfg)
    try:
        info = await client.info()
        number = check_version(info.body)
        lines = [f"elasticsearch: connected to {number} (cluster {info.get('cluster_name', '?')})"]
        note = await check_pipeline(client, cfg)
        if note:
            lines.append(note)
        lines.extend(await _check_privileges(client, cfg, selected))
        for dataset in selected:
            lines.append(await _template_state(client, cfg, dataset))
    except (AuthenticationException, AuthorizationException) as exc:
        raise _auth_error(exc, secrets) from None
    except (ApiError, TransportError) as exc:
        raise SinkError(f"Elasticsearch check failed: {describe(exc, secrets)}") from None
    return lines


def missing_privileges(response: Mapping[str, Any]) -> list[str]:
    """`privilege on target` for every `false` in a `_has_privileges` answer."""
    missing = [f"cluster privilege {name}" for name, ok in response.get("cluster", {}).items() if not ok]
    for target, privileges in response.get("index", {}).items():
        missing.extend(f"{name} on {target}" for name, ok in privileges.items() if not ok)
    return missing


async def _check_privileges(
    client: AsyncElasticsearch, cfg: ElasticsearchConfig, selected: Sequence[Dataset]
) -> list[str]:
    streams = [d.data_stream(cfg.namespace) for d in selected]
    response = await client.options(ignore_status=(400, 500)).security.has_privileges(
        cluster=[*CLUSTER_PRIVILEGES, *SETUP_PRIVILEGES],
        index=[
            {"names": streams, "privileges": list(STREAM_PRIVILEGES)},
            {"names": [CURSOR_INDEX], "privileges": list(CURSOR_PRIVILEGES)},
        ],
    )
    if response.meta.status != 200:
        # Security disabled (or unlicensed): every request is allowed, nothing to check.
        return ["elasticsearch: privileges not checked (security is not enabled on this cluster)"]
    missing = missing_privileges(response.body)
    for_setup = [f"cluster privilege {p}" for p in SETUP_PRIVILEGES]
    writer = [m for m in missing if not m.endswith(f" on {CURSOR_INDEX}") and m not in for_setup]
    if writer:
        raise SinkError(f"the Elasticsearch credentials lack: {', '.join(writer)}")
    lines = ["elasticsearch: privileges ok for writing " + ", ".join(streams)]
    if any(m in for_setup for m in missing):
        lines.append(
            "elasticsearch: no manage_index_templates: enough for run and once; `metrics-poller setup` "
            "needs it (run setup once with other credentials)"
        )
    if len(missing) > len(writer):
        lines.append(
            f"elasticsearch: no {', '.join(m.split(' on ')[0] for m in missing if m not in writer)} on "
            f"{CURSOR_INDEX} (needed only with state.backend: elasticsearch)"
        )
    return lines


async def _template_state(client: AsyncElasticsearch, cfg: ElasticsearchConfig, dataset: Dataset) -> str:
    wanted = templates.build(dataset, tsds=cfg.tsds, look_back=cfg.look_back, retention=cfg.retention)
    where = f"elasticsearch: {dataset.name}:"
    try:
        installed = await _get_template(client, "index", dataset.index_template)
    except AuthorizationException:
        return f"{where} templates not checked (reading them needs manage_index_templates)"
    if installed is None:
        if await _get_template(client, "index", dataset.integration_template) is not None:
            return f"{where} Elastic's {dataset.integration_template} template governs the stream"
        return f"{where} templates not installed; run `metrics-poller setup`"
    body = wanted.index_templates[dataset.index_template]
    if templates.installed_fingerprint(installed) != templates.fingerprint(body):
        return f"{where} templates differ from this configuration; run `metrics-poller setup`"
    return f"{where} templates installed and current"


# --------------------------------------------------------------------------------- bulk classification


class Verdict(Enum):
    """What to do with one bulk item."""

    CREATED = "created"
    FAILURE_STORE = "failure_store"  # refused, but kept in the data stream's failure store
    DUPLICATE = "duplicate"
    RETRY = "retry"
    PERMANENT = "permanent"
    FATAL = "fatal"  # credentials or privileges: nothing will work until an operator acts


def classify(status: int, error: Mapping[str, Any] | None, failure_store: str | None = None) -> Verdict:
    """Pure mapping of one bulk item result to a verdict."""
    kind = error.get("type") if error else None
    if 200 <= status < 300:
        return Verdict.FAILURE_STORE if failure_store == "used" else Verdict.CREATED
    if status == 409:
        return Verdict.DUPLICATE if kind == "version_conflict_engine_exception" else Verdict.RETRY
    if status in AUTH_STATUSES and kind == "security_exception":
        return Verdict.FATAL
    if status == 429 or status >= 500 or kind in RETRY_ERROR_TYPES:
        return Verdict.RETRY
    return Verdict.PERMANENT


def plan_batches(sizes: Sequence[int], max_count: int, max_bytes: int) -> list[list[int]]:
    """Split item positions into consecutive batches of ≤ `max_count` items and ≤ `max_bytes` bytes
    (an item larger than `max_bytes` travels alone)."""
    batches: list[list[int]] = []
    current: list[int] = []
    current_bytes = 0
    for position, size in enumerate(sizes):
        if current and (len(current) >= max_count or current_bytes + size > max_bytes):
            batches.append(current)
            current, current_bytes = [], 0
        current.append(position)
        current_bytes += size
    if current:
        batches.append(current)
    return batches


def backoff_delay(attempt: int, initial: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with jitter before retry number `attempt` (1-based)."""
    ceiling = min(cap, initial * 2.0 ** (attempt - 1))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


def dead_letter_record(document: Document, status: int, error: Mapping[str, Any] | None, now: datetime) -> bytes:
    """One NDJSON line of the dead-letter file."""
    record = {
        "@timestamp": now.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "reason": dict(error or {}),
        "status": status,
        "_id": document.id,
        "document": orjson.Fragment(document.body),  # the stored bytes, unchanged
    }
    return encode(record) + b"\n"  # shaping.encode: huge integral values must not raise


# ------------------------------------------------------------------------------------------------ sink


class _Abandon(Exception):
    """The batch cannot succeed by retrying now; its documents stay RETRYABLE."""


class _TooLarge(Exception):
    """413: the request exceeds http.max_content_length; split it."""


@dataclass(frozen=True, slots=True)
class _Target:
    """Where one dataset's documents go: its data stream and the `pipeline` bulk parameter."""

    stream: str
    pipeline: str | None

    @classmethod
    def of(cls, dataset_name: str, cfg: ElasticsearchConfig) -> _Target:
        dataset = datasets.BY_NAME[dataset_name]
        return cls(dataset.data_stream(cfg.namespace), dataset.pipeline(cfg.pipeline))


@dataclass(frozen=True, slots=True)
class _Write:
    """One `write` call: its documents, their encoded bulk lines and their outcomes (filled in by the batches)."""

    documents: Sequence[Document]
    encoded: Sequence[bytes]
    outcomes: list[Outcome]


# The action line of every document without an `_id` (TSDS), and the parts of one with it: orjson writes
# `{"create":{"_id":…}}` as exactly these bytes around the encoded id.
_CREATE_WITHOUT_ID = orjson.dumps({"create": {}}) + b"\n"
_CREATE_ID_HEAD, _CREATE_ID_TAIL = b'{"create":{"_id":', b"}}\n"


class ElasticsearchSink:
    """Bulk `create` writer into each document's data stream (`metrics-<dataset>-<namespace>`);
    see `write` for the outcome of each document."""

    def __init__(
        self,
        client: AsyncElasticsearch,
        cfg: ElasticsearchConfig,
        dead_letter_path: str | None,
        *,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        rng: random.Random | None = None,
        stream: str | None = None,
        time_series: bool | None = None,
    ) -> None:
        self._client = client
        self._cfg = cfg
        self._stream = stream  # every document goes here when set; else to its dataset's stream
        # In TSDS mode Elasticsearch derives `_id` from the dimensions and rejects a different one.
        self._send_ids = not (cfg.tsds if time_series is None else time_series)
        self._dead_letter = Path(dead_letter_path) if dead_letter_path else None
        self._backoff = (backoff_initial, backoff_max)
        self._rng = rng or random.Random()
        self._secrets = secrets_of(cfg)
        self._semaphore = asyncio.Semaphore(cfg.concurrency)
        self._dead_letter_lock = asyncio.Lock()
        self.last_problem: str | None = None

    async def write(self, documents: Sequence[Document]) -> list[Outcome]:
        """Store `documents`; one outcome per document, in input order.

        CREATED / DUPLICATE: stored. RETRYABLE: not stored after every retry (fetch again).
        PERMANENT: rejected by Elasticsearch and written to the dead-letter file. Raises `SinkError`
        when the credentials are refused.
        """
        if not documents:
            return []
        job = _Write(documents, self._encode_all(documents), [Outcome.RETRYABLE] * len(documents))
        by_dataset: dict[str, list[int]] = {}
        for position, document in enumerate(documents):
            by_dataset.setdefault(document.dataset, []).append(position)
        tasks = []
        for name, positions in by_dataset.items():
            target = _Target(self._stream, self._cfg.pipeline) if self._stream else _Target.of(name, self._cfg)
            sizes = [len(job.encoded[p]) for p in positions]
            for batch in plan_batches(sizes, self._cfg.batch_size, self._cfg.batch_bytes):
                members = [positions[i] for i in batch]
                tasks.append(asyncio.create_task(self._write_batch(target, members, job)))
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return job.outcomes

    async def close(self) -> None:
        """Close the client's connections."""
        await self._client.close()

    def _encode_all(self, documents: Sequence[Document]) -> list[bytes]:
        """Each document's two bulk lines, `action\\nsource\\n`, as one bytes object."""
        if not self._send_ids:
            return [_CREATE_WITHOUT_ID + d.body + b"\n" for d in documents]
        dumps, join = orjson.dumps, b"".join
        return [join((_CREATE_ID_HEAD, dumps(d.id), _CREATE_ID_TAIL, d.body, b"\n")) for d in documents]

    @staticmethod
    def _payload(positions: Iterable[int], encoded: Sequence[bytes]) -> bytes:
        """The bulk request body of the documents at `positions`."""
        return b"".join([encoded[position] for position in positions])

    async def _write_batch(self, target: _Target, positions: list[int], job: _Write) -> None:
        pending = positions
        for attempt in range(1, self._cfg.retry_attempts + 1):
            if attempt > 1:
                await asyncio.sleep(backoff_delay(attempt - 1, *self._backoff, self._rng))
            try:
                items = await self._send(target, pending, job.encoded)
            except _Abandon:
                return
            except _TooLarge:
                await self._split(target, pending, job)
                return
            if items is None:
                continue
            if len(items) != len(pending):
                log.error("Elasticsearch answered %d bulk items for %d documents", len(items), len(pending))
                return
            pending = await self._settle(target, pending, items, job)
            if not pending:
                return
        # Counted in the cycle summary with its cause, not once per batch (an outage is many batches).
        log.debug(
            "%d documents not stored after %d bulk attempts; they will be fetched again",
            len(pending),
            self._cfg.retry_attempts,
        )

    async def _split(self, target: _Target, positions: list[int], job: _Write) -> None:
        """After a 413: write each half on its own; a single document that is still too large is rejected."""
        if len(positions) == 1:
            position = positions[0]
            document = job.documents[position]
            job.outcomes[position] = Outcome.PERMANENT
            error = {"type": "request_too_large", "reason": "larger than the cluster's http.max_content_length"}
            log.warning("document %s rejected (HTTP 413, larger than http.max_content_length)", document.id)
            await self._write_dead_letters([dead_letter_record(document, 413, error, datetime.now(UTC))])
            return
        log.info("bulk request of %d documents too large (HTTP 413); sending it in halves", len(positions))
        middle = len(positions) // 2
        for half in (positions[:middle], positions[middle:]):
            await self._write_batch(target, half, job)

    async def _send(self, target: _Target, positions: Sequence[int], encoded: Sequence[bytes]) -> list[Any] | None:
        """One bulk request; its items, or None when the whole request should be retried."""
        payload = self._payload(positions, encoded)
        try:
            async with self._semaphore:
                response = await self._client.options(max_retries=0).bulk(
                    # Pre-encoded NDJSON passes through the client's serializer untouched.
                    operations=cast(Any, payload),
                    index=target.stream,
                    pipeline=target.pipeline,
                    # A missing template must never let the first write create a plain index.
                    require_data_stream=True,
                    filter_path="errors,items.*.status,items.*.error,items.*.failure_store",
                )
        except (AuthenticationException, AuthorizationException) as exc:
            raise _auth_error(exc, self._secrets) from None
        except ApiError as exc:
            if exc.meta.status == 413:
                raise _TooLarge from None
            self.last_problem = describe(exc, self._secrets)
            if exc.meta.status in RETRY_STATUSES:
                log.debug("bulk request refused, will retry: %s", self.last_problem)
                return None
            # A whole-request rejection is not the documents' fault: leave them RETRYABLE.
            log.error("bulk request rejected: %s", self.last_problem)
            raise _Abandon from None
        except TransportError as exc:
            self.last_problem = describe(exc, self._secrets)
            log.debug("bulk request failed, will retry: %s", self.last_problem)
            return None
        items = response.body.get("items")
        return list(items) if isinstance(items, list) else []

    async def _settle(self, target: _Target, positions: Sequence[int], items: Sequence[Any], job: _Write) -> list[int]:
        """Record each item's outcome; return the positions to retry."""
        documents, outcomes = job.documents, job.outcomes
        results: list[Mapping[str, Any]] = [
            next(iter(item.values()), {}) if isinstance(item, Mapping) else {} for item in items
        ]
        self._stop_if_refused_alike(results)
        retry: list[int] = []
        rejected: list[bytes] = []
        fatal: tuple[int, Mapping[str, Any] | None] | None = None
        kept_apart = 0
        now = datetime.now(UTC)
        for position, result in zip(positions, results, strict=True):
            status = int(result.get("status", 0))
            error = result.get("error")
            verdict = classify(status, error, result.get("failure_store"))
            if verdict is Verdict.CREATED:
                outcomes[position] = Outcome.CREATED
            elif verdict is Verdict.FAILURE_STORE:
                outcomes[position] = Outcome.FAILURE_STORE
                kept_apart += 1
            elif verdict is Verdict.DUPLICATE:
                outcomes[position] = Outcome.DUPLICATE
            elif verdict is Verdict.RETRY:
                retry.append(position)
            elif verdict is Verdict.PERMANENT:
                outcomes[position] = Outcome.PERMANENT
                rejected.append(dead_letter_record(documents[position], status, error, now))
                log.warning(
                    "document %s rejected (HTTP %d %s)",
                    documents[position].id,
                    status,
                    (error or {}).get("type", "unknown"),
                )
            else:
                fatal = (status, error)
        if kept_apart:
            log.warning("%d documents refused and kept in the failure store of %s", kept_apart, self._stream)
        if rejected:
            await self._write_dead_letters(rejected)
        if fatal is not None:
            status, error = fatal
            kind = (error or {}).get("type", "security_exception")
            reason = redact(str((error or {}).get("reason", ""))[:300], self._secrets)
            raise SinkError(f"Elasticsearch refused the write to {target.stream}: HTTP {status} {kind}: {reason}")
        return retry

    def _stop_if_refused_alike(self, results: Sequence[Mapping[str, Any]]) -> None:
        """Every item of a batch refused for the same permanent reason is the configuration's fault, not
        the documents': say it once and stop, rather than dead-letter the whole estate."""
        if len(results) < 2:
            return
        first = results[0]
        error = first.get("error")
        if classify(int(first.get("status", 0)), error) is not Verdict.PERMANENT or not isinstance(error, Mapping):
            return
        if any(r.get("status") != first.get("status") or r.get("error") != error for r in results[1:]):
            return
        kind, reason = error.get("type", "unknown"), redact(str(error.get("reason", ""))[:300], self._secrets)
        hint = ""
        if "requires a data stream" in reason:
            hint = " (run `metrics-poller setup` to install the index templates)"
        elif "pipeline with id" in reason:
            hint = " (check elasticsearch.pipeline)"
        # The hint comes before Elasticsearch's reason, which may be long and is cut at the line's end.
        raise SinkConfigError(
            f"Elasticsearch refused all {len(results)} documents of a batch alike, so nothing more is "
            f"written{hint}: HTTP {first.get('status')} {kind}: {reason}"
        )

    async def _write_dead_letters(self, lines: Sequence[bytes]) -> None:
        if self._dead_letter is None:
            log.error("%d documents rejected; no dead_letter_path is configured, so they are dropped", len(lines))
            return
        async with self._dead_letter_lock:
            try:
                await asyncio.to_thread(_append, self._dead_letter, b"".join(lines))
            except OSError as exc:
                log.error("cannot write the dead-letter file %s: %s", self._dead_letter, exc.strerror or exc)


def _append(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as handle:
        handle.write(data)


# ----------------------------------------------------------------------------------------- cursor store

CURSOR_MAPPINGS: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "key": {"type": "keyword"},
        "account": {"type": "keyword"},
        "group": {"type": "keyword"},
        "cursor": {"type": "date"},
        "updated": {"type": "date"},
    },
}
CURSOR_SETTINGS: dict[str, Any] = {"index": {"number_of_shards": 1, "auto_expand_replicas": "0-1"}}
_PAGE = 1000


def stored_group(dataset: str, group: str) -> str:
    """The `group` field of a cursor document: `<dataset>/<group>`, or the bare group name for
    `azure.open_ai`, whose cursors were stored that way before datasets existed. The index keeps
    its original strict mapping, so upgrading needs no mapping change (and no `manage` privilege),
    and an upgraded poller overwrites the documents an older one wrote (same `_id`)."""
    return group if dataset == LEGACY_DATASET else f"{dataset}/{group}"


def parse_stored_group(value: str) -> tuple[str, str]:
    """(dataset, group) of a cursor document's `group` field (see `stored_group`)."""
    dataset, slash, group = value.rpartition("/")
    return (dataset, group) if slash else (LEGACY_DATASET, value)


def cursor_id(account: str, group: str) -> str:
    """Deterministic document id of one cursor (resource ids can be long; `_id` is ≤ 512 bytes);
    `group` as `stored_group` writes it."""
    return hashlib.sha256(f"{account.lower()}\x00{group}".encode()).hexdigest()


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


class ElasticsearchCursorStore:
    """Cursors as documents in a plain index, for pods without local state.

    The default name avoids the `metrics-*-*` / `logs-*-*` patterns that Fleet turns into data streams,
    which would refuse the `index` (overwrite) operation a cursor needs.
    """

    def __init__(self, client: AsyncElasticsearch, index: str = CURSOR_INDEX) -> None:
        self._client = client
        self._index = index
        self._ready = False

    async def load(self) -> dict[CursorKey, datetime]:
        """Every stored cursor; empty when the index does not exist yet."""
        cursors: dict[CursorKey, datetime] = {}
        after: list[Any] | None = None
        try:
            while True:
                page = await self._page(after)
                if page is None:
                    return cursors
                hits = page.get("hits", {}).get("hits", [])
                for hit in hits:
                    source = hit["_source"]
                    dataset, group = parse_stored_group(source["group"])
                    cursors[(source["account"], dataset, group)] = _parse_iso(source["cursor"])
                if len(hits) < _PAGE:
                    return cursors
                after = hits[-1]["sort"]
        except (ApiError, TransportError) as exc:
            raise StateError(f"cannot read cursors from index {self._index}: {describe(exc)}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"index {self._index} holds a malformed cursor document ({exc})") from None

    async def _page(self, after: list[Any] | None) -> Mapping[str, Any] | None:
        response = await self._client.options(ignore_status=404).search(
            index=self._index,
            query={"match_all": {}},
            size=_PAGE,
            sort=[{"key": "asc"}],
            search_after=after,
            source_includes=["account", "group", "cursor"],
        )
        return None if response.meta.status == 404 else response.body

    async def save(self, changes: Mapping[CursorKey, datetime]) -> None:
        """Store exactly the given cursors (one document each) and make them visible to a restart."""
        if not changes:
            return
        now = _iso(datetime.now(UTC))
        lines: list[bytes] = []
        for (account, dataset, group), moment in sorted(changes.items()):
            stored = stored_group(dataset, group)
            ident = cursor_id(account, stored)
            lines.append(orjson.dumps({"index": {"_id": ident}}))
            source = {"key": ident, "account": account.lower(), "group": stored, "cursor": _iso(moment)}
            lines.append(orjson.dumps({**source, "updated": now}))
        try:
            await self._ensure_index()
            response = await self._client.bulk(
                operations=cast(Any, b"\n".join(lines) + b"\n"), index=self._index, refresh="wait_for"
            )
        except (ApiError, TransportError) as exc:
            raise StateError(f"cannot save cursors to index {self._index}: {describe(exc)}") from None
        results = [next(iter(item.values())) for item in response.body.get("items", [])]
        failed = [result for result in results if result.get("error")]
        if failed:
            error = failed[0]["error"]
            raise StateError(
                f"cannot save {len(failed)} cursors to index {self._index}: "
                f"HTTP {failed[0].get('status')} {error.get('type')}: {error.get('reason')}"
            )

    async def _ensure_index(self) -> None:
        if self._ready:
            return
        # Creating without asking first needs no `view_index_metadata` privilege on the index.
        response = await self._client.options(ignore_status=400).indices.create(
            index=self._index, mappings=CURSOR_MAPPINGS, settings=CURSOR_SETTINGS
        )
        if response.meta.status == 400:
            error = response.body.get("error", {})
            if error.get("type") != "resource_already_exists_exception":
                reason = f"{error.get('type')}: {error.get('reason')}"
                raise StateError(f"cannot create index {self._index}: {reason}")
        self._ready = True
