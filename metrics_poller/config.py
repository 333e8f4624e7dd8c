"""Typed configuration: YAML file + `METRICS_POLLER__A__B` environment overrides, validated once.

Every problem is reported as one line naming the key, the value and what is expected; secrets are
`SecretStr` so they never print, and each can also be read from a `*_file` key.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from metrics_poller import datasets as known_datasets
from metrics_poller.durations import Duration, parse_seconds

ENV_PREFIX = "METRICS_POLLER__"
CONFIG_ENV = "METRICS_POLLER_CONFIG"
DEFAULT_PATHS = (Path("config/poller.yaml"), Path("/etc/metrics-poller/poller.yaml"))
BASE_PERIOD = 300
MAX_BACKFILL = 93 * 86400
# Elasticsearch refuses a request body above `http.max_content_length` (100 MB by default) with 413.
MAX_BATCH_BYTES = 90 * 1024 * 1024
# `index.look_back_time` accepts 1m to 7d (Elasticsearch's DataStreamsPlugin.LOOK_BACK_TIME).
LOOK_BACK_RANGE = (60, 7 * 86400)
GRAINS = {"PT1M": 60, "PT5M": 300, "PT15M": 900, "PT30M": 1800, "PT1H": 3600}


class ConfigError(Exception):
    """A user error in the configuration; `lines` holds one message per problem."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


def _read_secret_file(path: str | None, key: str) -> SecretStr | None:
    """The secret in the file `key` names; the error names that key (`key: …` is moved into the location)."""
    if not path:
        return None
    try:
        return SecretStr(Path(path).read_text(encoding="utf-8").strip())
    except OSError as exc:
        raise ValueError(f"{key}: cannot read secret file {path}: {exc.strerror or exc}") from None


class Subscription(_Strict):
    id: Annotated[str, Field(min_length=1)]
    resource_groups: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _plain_id(cls, value: Any) -> Any:
        """`subscriptions: [<guid>]` is short for `[{id: <guid>}]`."""
        if isinstance(value, str):
            return {"id": value}
        if not isinstance(value, dict):
            raise ValueError("expected a subscription id, or {id: <subscription id>, resource_groups: [<name>, ...]}")
        return value

    @field_validator("id")
    @classmethod
    def _guid(cls, value: str) -> str:
        if not re.fullmatch(r"[0-9a-fA-F-]{8,64}", value):
            raise ValueError("expected a subscription GUID such as 00000000-0000-0000-0000-000000000000")
        return value


class Credential(_Strict):
    type: Literal["default", "client_secret", "certificate", "managed_identity", "workload_identity", "azure_cli"] = (
        "default"
    )
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    client_secret_file: str | None = None
    certificate_path: str | None = None
    certificate_password: SecretStr | None = None
    certificate_password_file: str | None = None
    federated_token_file: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> Credential:
        secret = self.client_secret or _read_secret_file(self.client_secret_file, "client_secret_file")
        password = self.certificate_password or _read_secret_file(
            self.certificate_password_file, "certificate_password_file"
        )
        object.__setattr__(self, "client_secret", secret)
        object.__setattr__(self, "certificate_password", password)
        if self.type == "client_secret" and not (self.tenant_id and self.client_id and secret):
            raise ValueError("type: client_secret needs tenant_id, client_id and client_secret (or client_secret_file)")
        if self.type == "certificate" and not (self.tenant_id and self.client_id and self.certificate_path):
            raise ValueError("type: certificate needs tenant_id, client_id and certificate_path")
        return self


Cloud = Literal["public", "usgovernment", "china"]
# The five endpoints of each Azure cloud (azure-monitor.md §11; Microsoft's sovereign-cloud pages).
CLOUD_ENDPOINTS: dict[str, dict[str, str]] = {
    "public": {
        "resource_manager": "https://management.azure.com",
        "metrics": "https://{region}.metrics.monitor.azure.com",
        "authority": "https://login.microsoftonline.com",
        "resource_manager_audience": "https://management.azure.com",
        "metrics_audience": "https://metrics.monitor.azure.com",
    },
    "usgovernment": {
        "resource_manager": "https://management.usgovcloudapi.net",
        "metrics": "https://{region}.metrics.monitor.azure.us",
        "authority": "https://login.microsoftonline.us",
        "resource_manager_audience": "https://management.usgovcloudapi.net",
        "metrics_audience": "https://metrics.monitor.azure.us",
    },
    "china": {
        "resource_manager": "https://management.chinacloudapi.cn",
        "metrics": "https://{region}.metrics.monitor.azure.cn",
        "authority": "https://login.chinacloudapi.cn",
        "resource_manager_audience": "https://management.chinacloudapi.cn",
        "metrics_audience": "https://metrics.monitor.azure.cn",
    },
}


class Endpoints(_Strict):
    resource_manager: str = "https://management.azure.com"
    metrics: str = "https://{region}.metrics.monitor.azure.com"
    authority: str = "https://login.microsoftonline.com"
    resource_manager_audience: str = "https://management.azure.com"
    metrics_audience: str = "https://metrics.monitor.azure.com"

    @field_validator("resource_manager", "metrics", "authority", "resource_manager_audience", "metrics_audience")
    @classmethod
    def _https(cls, value: str) -> str:
        if not value.startswith("https://"):
            raise ValueError("expected an https:// URL (bearer tokens are never sent over plain HTTP)")
        return value.rstrip("/")


class Retry(_Strict):
    attempts: Annotated[int, Field(ge=1, le=20)] = 4
    backoff_initial: Annotated[float, Duration(gt=0)] = 1.0
    backoff_max: Annotated[float, Duration(gt=0)] = 30.0
    retry_after_cap: Annotated[float, Duration(gt=0)] = 60.0


class Azure(_Strict):
    cloud: Cloud = "public"
    subscriptions: list[Subscription] = Field(default_factory=list)
    resource_ids: list[str] = Field(default_factory=list)
    kinds: list[str] = Field(default_factory=lambda: ["OpenAI", "AIServices"])
    discovery: Literal["arm", "resource_graph"] = "arm"
    api: Literal["auto", "batch", "arm"] = "auto"
    # Requests and work units in flight; units catching up (an hour-long window each) take a quarter.
    concurrency: Annotated[int, Field(ge=1, le=256)] = 32
    top: Annotated[int, Field(ge=1, le=2_147_483_647)] = 1000
    top_cap: Annotated[int, Field(ge=1, le=2_147_483_647)] = 100_000
    refresh_interval: Annotated[int, Duration(gt=0)] = 600
    definitions_refresh: Annotated[int, Duration(gt=0)] = 86400
    request_timeout: Annotated[float, Duration(gt=0)] = 60.0
    metric_groups: list[str] = Field(default_factory=list)
    credential: Credential = Field(default_factory=Credential)
    endpoints: Endpoints = Field(default_factory=Endpoints)
    ca_bundle: str | None = None
    verify_tls: bool = True
    retry: Retry = Field(default_factory=Retry)

    @model_validator(mode="before")
    @classmethod
    def _cloud_endpoints(cls, data: Any) -> Any:
        """Endpoints not set explicitly come from `cloud` (an unknown cloud is reported by its field)."""
        if not isinstance(data, dict):
            return data
        defaults = CLOUD_ENDPOINTS.get(str(data.get("cloud", "public")))
        endpoints = data.get("endpoints")
        if defaults is None or not (endpoints is None or isinstance(endpoints, dict)):
            return data
        return {**data, "endpoints": {**defaults, **(endpoints or {})}}

    @field_validator("resource_ids")
    @classmethod
    def _resource_ids(cls, values: list[str]) -> list[str]:
        pattern = re.compile(r"/subscriptions/[^/]+/resourceGroups/[^/]+/providers/[^/]+/[^/]+/[^/]+", re.I)
        for value in values:
            if not pattern.fullmatch(value):
                raise ValueError(
                    f"{value!r} is not an ARM resource id; expected "
                    "/subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.CognitiveServices/accounts/<name>"
                )
        return values

    @field_validator("metric_groups")
    @classmethod
    def _groups(cls, values: list[str]) -> list[str]:
        names = [g.name for d in known_datasets.DATASETS for g in d.groups]
        unknown = [v for v in values if v not in names]
        if unknown:
            raise ValueError(f"unknown metric group {unknown[0]!r}; expected some of {', '.join(names)}")
        return values

    @field_validator("ca_bundle")
    @classmethod
    def _ca_exists(cls, value: str | None) -> str | None:
        if value and not Path(value).is_file():
            raise ValueError(f"no such file {value!r}; expected a PEM CA bundle")
        return value

    @model_validator(mode="after")
    def _endpoints(self) -> Azure:
        if "{region}" not in self.endpoints.metrics:
            raise ValueError("endpoints.metrics: must contain a {region} placeholder")
        if self.top > self.top_cap:
            raise ValueError("top: must not exceed top_cap")
        return self


class Elasticsearch(_Strict):
    hosts: list[str] = Field(default_factory=lambda: ["https://localhost:9200"])
    api_key: SecretStr | None = None
    api_key_file: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    password_file: str | None = None
    bearer_token: SecretStr | None = None
    cloud_id: str | None = None
    ca_certs: str | None = None
    verify_certs: bool = True
    namespace: str = "default"
    pipeline: str | None = None
    tsds: bool = False
    look_back: Annotated[str, Duration(gt=0)] = "7d"
    retention: Annotated[str, Duration(gt=0)] | None = None
    overwrite_templates: bool = False
    batch_size: Annotated[int, Field(ge=1, le=100_000)] = 5000
    batch_bytes: Annotated[int, Field(ge=1024)] = 10 * 1024 * 1024
    concurrency: Annotated[int, Field(ge=1, le=64)] = 2
    request_timeout: Annotated[float, Duration(gt=0)] = 60.0
    retry_attempts: Annotated[int, Field(ge=1, le=20)] = 5
    dead_letter_path: str | None = None

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9_.]{1,100}", value) or value.startswith((".", "_")):
            raise ValueError("expected a lower-case data stream namespace of letters, digits, '_' or '.'")
        return value

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, values: list[str]) -> list[str]:
        return [es_host_url(value) for value in values]

    @field_validator("cloud_id")
    @classmethod
    def _cloud_id(cls, value: str | None) -> str | None:
        if value is not None:
            cloud_id_host(value)
        return value

    @field_validator("batch_bytes")
    @classmethod
    def _batch_bytes(cls, value: int) -> int:
        if value > MAX_BATCH_BYTES:
            raise ValueError(
                f"expected at most {MAX_BATCH_BYTES} (90 MiB): Elasticsearch refuses requests above "
                "http.max_content_length, 100 MB by default"
            )
        return value

    @model_validator(mode="after")
    def _look_back_range(self) -> Elasticsearch:
        seconds = self.look_back_seconds
        if not LOOK_BACK_RANGE[0] <= seconds <= LOOK_BACK_RANGE[1]:
            raise ValueError(
                f"look_back: {self.look_back} is outside 1m to 7d, the range Elasticsearch accepts for "
                "index.look_back_time"
            )
        return self

    @property
    def look_back_seconds(self) -> int:
        """`look_back` in seconds."""
        return int(parse_seconds(self.look_back))

    @model_validator(mode="after")
    def _secrets(self) -> Elasticsearch:
        object.__setattr__(self, "api_key", self.api_key or _read_secret_file(self.api_key_file, "api_key_file"))
        object.__setattr__(self, "password", self.password or _read_secret_file(self.password_file, "password_file"))
        if self.password and not self.username:
            raise ValueError("username: required when password is set")
        if not self.hosts and not self.cloud_id:
            raise ValueError("hosts: empty; expected at least one URL such as https://localhost:9200, or cloud_id")
        plain = [h for h in self.hosts if h.startswith("http://")] if not self.cloud_id else []
        if self.ca_certs and plain:
            raise ValueError(
                f"ca_certs: set, but host {_without_userinfo(plain[0])} is plain http://; "
                "expected https:// hosts with ca_certs (or no ca_certs)"
            )
        return self

    @property
    def data_stream(self) -> str:
        """The `azure.open_ai` data stream; every dataset's is `Dataset.data_stream(namespace)`."""
        return known_datasets.OPEN_AI.data_stream(self.namespace)


ES_DEFAULT_PORT = 9200


def es_host_url(text: str) -> str:
    """An `elasticsearch.hosts` entry as the full URL the client needs.

    Beats-style `host:port` (no scheme) means https; a host without a port gets Elasticsearch's 9200,
    except an explicit `https://` URL, which keeps the URL default 443 as the client does (Elastic Cloud
    endpoints). Raises ValueError with a one-line message naming the entry (credentials left out).
    """
    raw = text.strip()
    shown = _without_userinfo(raw)
    if not raw:
        raise ValueError("empty host; expected a URL such as https://localhost:9200")
    explicit = re.match(r"(?i)^([a-z][a-z0-9+.-]*)://", raw)
    scheme = explicit.group(1).lower() if explicit else "https"
    if scheme not in ("http", "https"):
        raise ValueError(f"host {shown!r} has scheme {scheme!r}; expected http or https")
    parts = urlsplit(raw if explicit else "https://" + raw)
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"host {shown!r} has no valid port; expected host:port such as localhost:9200") from None
    if not parts.hostname or parts.query or parts.fragment:
        raise ValueError(f"host {shown!r} is not host:port or a URL such as https://localhost:9200")
    if port is None and not (explicit and scheme == "https"):
        port = ES_DEFAULT_PORT
    netloc = parts.netloc if port is None or parts.port is not None else f"{parts.netloc}:{port}"
    return str(urlunsplit((scheme, netloc, parts.path.rstrip("/"), "", "")))


def cloud_id_host(value: str) -> str:
    """The Elasticsearch host encoded in an Elastic Cloud id (`<name>:<base64 of host$es$kibana>`)."""
    expected = "expected <deployment name>:<base64 id> as shown in the Elastic Cloud console"
    _, colon, encoded = value.partition(":")
    try:
        decoded = base64.b64decode(encoded.encode("ascii")).decode("ascii")
    except (ValueError, UnicodeError):
        decoded = ""
    parts = decoded.split("$")
    if not colon or len(parts) < 2 or not parts[0] or not parts[1]:
        raise ValueError(f"not an Elastic Cloud id; {expected}")
    host, _, port = parts[0].rpartition(":") if ":" in parts[0] else (parts[0], "", "")
    if not host or (port and not port.isdigit()):
        raise ValueError(f"the Elastic Cloud id names no valid host; {expected}")
    return f"{parts[1]}.{host}"


def _without_userinfo(url: str) -> str:
    return re.sub(r"//[^/@\s]*@", "//", url)


class Ndjson(_Strict):
    path: str = "-"


class State(_Strict):
    backend: Literal["file", "elasticsearch"] = "file"
    path: str = "state/cursors.json"


class Http(_Strict):
    listen: str | None = "127.0.0.1:9108"

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[^\s:]*:\d{1,5}|\[[0-9a-fA-F:]+\]:\d{1,5}", value):
            raise ValueError("expected host:port, e.g. 0.0.0.0:9108")
        return value


class Shard(_Strict):
    index: Annotated[int, Field(ge=0)] | None = None
    count: Annotated[int, Field(ge=1)] = 1

    @model_validator(mode="after")
    def _in_range(self) -> Shard:
        if self.index is not None and self.index >= self.count:
            raise ValueError(f"index: {self.index} must be below shard.count {self.count}")
        return self


class Inventory(_Strict):
    """The deployment inventory (`metrics-azure.ai_deployment-<namespace>`)."""

    enabled: bool = True
    # Every account's deployments are read once per interval; each cycle reads its share.
    interval: Annotated[int, Duration(gt=0)] = 3600
    catalogue_refresh: Annotated[int, Duration(gt=0)] = 86400
    # ARM's read bucket paces these reads; the connections must not: at 4 in flight and 100 ms a read,
    # the share of a 10,000-account estate (about 1,350 paged reads) outlasted the cycle's metrics.
    concurrency: Annotated[int, Field(ge=1, le=64)] = 16


class Logging(_Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["auto", "json", "text"] = "auto"


class Config(_Strict):
    # The Elastic datasets to write (datasets.py); the preview agent metrics are opt-in.
    datasets: list[str] = Field(default_factory=lambda: list(known_datasets.DEFAULT_NAMES))
    # Duration-valued keys take integer seconds or a duration string (`300s`, `5m`, `7d`, `PT5M`).
    period: Annotated[int, Duration(gt=0)] = 300
    timegrain: Literal["PT1M", "PT5M", "PT15M", "PT30M", "PT1H"] = "PT1M"
    latency: Annotated[int, Duration(ge=0, le=86400)] = 240
    initial_lookback: Annotated[int, Duration(gt=0)] | None = None
    max_backfill: Annotated[int, Duration(gt=0, le=MAX_BACKFILL)] = 86400
    backfill_step: Annotated[int, Duration(gt=0)] = 3600
    cycle_deadline: Annotated[int, Duration(gt=0)] | None = None
    # Default: Elasticsearch when an `elasticsearch` section is configured, NDJSON otherwise.
    output: Literal["elasticsearch", "ndjson"] | None = None
    azure: Azure = Field(default_factory=Azure)
    elasticsearch: Elasticsearch = Field(default_factory=Elasticsearch)
    ndjson: Ndjson = Field(default_factory=Ndjson)
    state: State = Field(default_factory=State)
    http: Http = Field(default_factory=Http)
    shard: Shard = Field(default_factory=Shard)
    inventory: Inventory = Field(default_factory=Inventory)
    logging: Logging = Field(default_factory=Logging)

    @field_validator("period")
    @classmethod
    def _period(cls, value: int) -> int:
        if value % BASE_PERIOD:
            raise ValueError(
                f"expected a positive multiple of {BASE_PERIOD} seconds (Azure OpenAI documents are "
                "aggregated on 5-minute boundaries, and cycles are aligned to them)"
            )
        return value

    @field_validator("datasets")
    @classmethod
    def _datasets(cls, values: list[str]) -> list[str]:
        known = ", ".join(known_datasets.BY_NAME)
        unknown = [v for v in values if v not in known_datasets.BY_NAME]
        if unknown:
            raise ValueError(f"unknown dataset {unknown[0]!r}; expected some of {known}")
        if not values:
            raise ValueError(f"expected at least one of {known}")
        return list(dict.fromkeys(values))

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        if self.azure.metric_groups:
            # Datasets none of whose groups are listed: an error when `datasets` names them, dropped
            # when they are only there by default (a configuration written before datasets existed).
            wanted = set(self.azure.metric_groups)
            unused = [d for d in known_datasets.select(self.datasets) if not {g.name for g in d.groups} & wanted]
            if unused and "datasets" in self.model_fields_set:
                dataset = unused[0]
                raise ValueError(
                    f"datasets: {dataset.name} is selected but azure.metric_groups names none of its groups "
                    f"({', '.join(g.name for g in dataset.groups)}); add some, or remove it from datasets"
                )
            object.__setattr__(self, "datasets", [d for d in self.datasets if d not in {u.name for u in unused}])
        if self.output is None:
            configured = "elasticsearch" in self.model_fields_set
            object.__setattr__(self, "output", "elasticsearch" if configured else "ndjson")
        grain = GRAINS[self.timegrain]
        if self.period % grain:
            raise ValueError(f"period: {self.period} must be a multiple of the time grain {self.timegrain}")
        if self.backfill_step % grain:
            raise ValueError(f"backfill_step: must be a multiple of the time grain {self.timegrain}")
        if self.inventory.interval % self.period:
            raise ValueError(
                f"inventory.interval: {self.inventory.interval} must be a multiple of period {self.period} "
                "(each cycle reads an equal share of the accounts)"
            )
        if self.cycle_deadline is not None and self.cycle_deadline > self.period:
            raise ValueError("cycle_deadline: must not exceed period (cycles never overlap)")
        es = self.elasticsearch
        reach = self.max_backfill + self.latency + grain
        if self.output == "elasticsearch" and es.tsds and reach > es.look_back_seconds:
            # The first backing index of a time-series stream takes nothing older than look_back.
            raise ValueError(
                f"max_backfill: {self.max_backfill}s (plus latency and one grain) reaches further back than "
                f"elasticsearch.look_back ({es.look_back}) with elasticsearch.tsds: true, and Elasticsearch "
                "would refuse those points; lower max_backfill or raise elasticsearch.look_back (at most 7d)"
            )
        return self

    @property
    def grain_seconds(self) -> int:
        return GRAINS[self.timegrain]

    @property
    def deadline_seconds(self) -> float:
        """Time one cycle may take: inside the period so cycles never overlap."""
        return float(self.cycle_deadline or max(self.period - 30, int(self.period * 0.9)))

    @property
    def lookback_seconds(self) -> int:
        return self.initial_lookback or self.period


# --------------------------------------------------------------------------------------------- loading


def resolve_path(
    explicit: str | None, environ: Mapping[str, str] | None = None, search: Sequence[Path] = DEFAULT_PATHS
) -> Path | None:
    """`--config`, then `$METRICS_POLLER_CONFIG`, then the first of `search` that exists (./config/poller.yaml,
    /etc/metrics-poller/poller.yaml); None if none does."""
    environ = os.environ if environ is None else environ
    if explicit:
        return Path(explicit)
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV])
    for candidate in search:
        if candidate.is_file():
            return candidate
    return None


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """`METRICS_POLLER__AZURE__CONCURRENCY=16` → `{"azure": {"concurrency": 16}}` (values parsed as YAML)."""
    tree: dict[str, Any] = {}
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX) :].split("__") if p]
        if not path:
            continue
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        # Secret-like values stay strings even when they look like numbers.
        if isinstance(value, (int, float, bool)) and any(
            s in path[-1] for s in ("secret", "password", "key", "token", "id")
        ):
            value = raw
        node = tree
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[path[-1]] = value
    return tree


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def format_errors(error: ValidationError) -> list[str]:
    """One line per problem: `config: <key>: <what is wrong>; got <value>` (secrets never echoed)."""
    lines = []
    for item in error.errors(include_url=False):
        key = ".".join(str(p) for p in item["loc"])
        message = item["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        # Cross-field checks name their key at the start of the message ("top: must not exceed ...").
        named = _NAMED_MESSAGE.match(message)
        if named:
            key = f"{key}.{named.group(1)}" if key else named.group(1)
            message = named.group(2)
        key = key or "(top level)"
        if item["type"] == "extra_forbidden":
            message = "unknown key (check the spelling against the README's configuration reference)"
        elif item["type"] == "missing":
            message = "required key is missing"
        shown = "" if _is_secret_key(key) or item["type"] in ("extra_forbidden", "missing") else _shown(item)
        lines.append(f"config: {key}: {message}{shown}")
    return lines


_NAMED_MESSAGE = re.compile(r"^([a-z_][a-z0-9_.]*): (.+)$", re.S)


def _is_secret_key(key: str) -> bool:
    return any(s in key for s in ("secret", "password", "api_key", "token"))


def _shown(item: Any) -> str:
    value = item.get("input")
    if isinstance(value, (dict, list)) or value is None:
        return ""
    text = str(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"; got {text!r}"


def parse(data: Any, environ: Mapping[str, str] | None = None) -> Config:
    """Validate a loaded mapping merged with environment overrides; raises `ConfigError`."""
    environ = os.environ if environ is None else environ
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(["config: (top level): expected a mapping of keys to values"])
    merged = _merge(data, env_overrides(environ))
    try:
        return Config.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc)) from None


def load(path: str | Path | None, environ: Mapping[str, str] | None = None) -> Config:
    """Read, merge and validate; a missing file is an error only when it was named."""
    data: Any = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError([f"config: cannot read {path}: {exc.strerror or exc}"]) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark is not None else ""
            problem = " ".join(str(getattr(exc, "problem", None) or exc).split())  # one line, whatever the error
            raise ConfigError([f"config: {path}{where}: not valid YAML ({problem})"]) from None
    return parse(data, environ)
