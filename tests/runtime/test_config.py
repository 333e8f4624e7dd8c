"""Configuration: defaults, environment overrides, one clear line per bad value, secrets never echoed."""

from __future__ import annotations

from pathlib import Path

import pytest

from metrics_poller import config


def errors_of(data: object, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(config.ConfigError) as caught:
        config.parse(data, environ or {})
    return caught.value.lines


def test_defaults_are_valid_and_documented_values() -> None:
    cfg = config.parse({}, {})
    assert cfg.period == 300 and cfg.timegrain == "PT1M" and cfg.latency == 240
    assert cfg.max_backfill == 86400 and cfg.lookback_seconds == 300
    assert cfg.azure.kinds == ["OpenAI", "AIServices"] and cfg.azure.api == "auto"
    assert cfg.elasticsearch.data_stream == "metrics-azure.open_ai-default"
    assert cfg.deadline_seconds < cfg.period
    assert cfg.output == "ndjson"  # nothing configured: NDJSON to stdout
    assert config.parse({"elasticsearch": {"hosts": ["https://es:9200"]}}, {}).output == "elasticsearch"
    assert config.parse({"elasticsearch": {}, "output": "ndjson"}, {}).output == "ndjson"


@pytest.mark.parametrize(
    ("data", "key", "expected"),
    [
        ({"period": 301}, "period", "multiple of 300"),
        ({"period": 0}, "period", "greater than 0"),
        ({"azure": {"concurrency": "many"}}, "azure.concurrency", "integer"),
        ({"azure": {"api": "soap"}}, "azure.api", "'auto', 'batch' or 'arm'"),
        ({"azure": {"endpoints": {"metrics": "https://x.example"}}}, "azure.endpoints.metrics", "{region}"),
        ({"azure": {"endpoints": {"resource_manager": "http://x"}}}, "azure.endpoints.resource_manager", "https://"),
        ({"azure": {"resource_ids": ["nope"]}}, "azure.resource_ids", "ARM resource id"),
        ({"azure": {"metric_groups": ["requests", "bogus"]}}, "azure.metric_groups", "unknown metric group"),
        ({"max_backfill": 94 * 86400}, "max_backfill", "at most 8035200 seconds"),
        ({"elasticsearch": {"namespace": "Prod"}}, "elasticsearch.namespace", "lower-case"),
        ({"elasticsearch": {"retention": "90 days"}}, "elasticsearch.retention", "expected a duration"),
        ({"shard": {"index": 3, "count": 2}}, "shard.index", "below shard.count"),
        ({"output": "kafka"}, "output", "'elasticsearch' or 'ndjson'"),
        ({"surprise": 1}, "surprise", "unknown key"),
        ({"cycle_deadline": 900}, "cycle_deadline", "must not exceed period"),
        ({"azure": {"top": 10, "top_cap": 5}}, "azure.top", "must not exceed top_cap"),
        ({"azure": {"credential": {"type": "client_secret"}}}, "azure.credential.type", "needs tenant_id"),
    ],
)
def test_each_bad_value_gives_one_line_naming_key_and_expectation(data: object, key: str, expected: str) -> None:
    lines = errors_of(data)
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"config: {key}"), lines
    assert expected in lines[0], lines


def test_environment_overrides_every_level() -> None:
    env = {
        "METRICS_POLLER__AZURE__CONCURRENCY": "32",
        "METRICS_POLLER__ELASTICSEARCH__NAMESPACE": "prod",
        "METRICS_POLLER__ELASTICSEARCH__API_KEY": "12345",
        "METRICS_POLLER__AZURE__KINDS": "[OpenAI]",
        "METRICS_POLLER__PERIOD": "600",
        "OTHER": "ignored",
    }
    cfg = config.parse({"azure": {"concurrency": 4}}, env)
    assert cfg.azure.concurrency == 32 and cfg.period == 600 and cfg.azure.kinds == ["OpenAI"]
    assert cfg.elasticsearch.namespace == "prod"
    assert cfg.elasticsearch.api_key is not None and cfg.elasticsearch.api_key.get_secret_value() == "12345"


def test_bad_environment_value_names_the_key() -> None:
    lines = errors_of({}, {"METRICS_POLLER__AZURE__TOP": "lots"})
    assert lines == [lines[0]] and lines[0].startswith("config: azure.top:")


def test_secrets_are_never_echoed_in_errors_or_repr(tmp_path: Path) -> None:
    secret = "s3cr3t-VALUE-xyz"
    lines = errors_of({"azure": {"credential": {"type": "client_secret", "client_secret": secret}}})
    assert all(secret not in line for line in lines)
    secret_file = tmp_path / "secret"
    secret_file.write_text(secret + "\n")
    cfg = config.parse(
        {
            "azure": {
                "credential": {
                    "type": "client_secret",
                    "tenant_id": "t",
                    "client_id": "c",
                    "client_secret_file": str(secret_file),
                }
            },
            "elasticsearch": {"password": secret, "username": "u"},
        },
        {},
    )
    assert cfg.azure.credential.client_secret is not None
    assert cfg.azure.credential.client_secret.get_secret_value() == secret
    assert secret not in repr(cfg) and secret not in str(cfg.model_dump())


def test_missing_secret_file_is_one_line() -> None:
    lines = errors_of({"elasticsearch": {"api_key_file": "/nonexistent/key"}})
    assert len(lines) == 1 and "cannot read secret file" in lines[0]


def test_load_reports_yaml_errors_with_a_line_number(tmp_path: Path) -> None:
    path = tmp_path / "poller.yaml"
    path.write_text("period: 300\nazure: [unclosed\n")
    with pytest.raises(config.ConfigError) as caught:
        config.load(path, {})
    assert len(caught.value.lines) == 1 and "not valid YAML" in caught.value.lines[0]


def test_resolve_path_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The search path is passed in, so a poller installed on this host (/etc/metrics-poller/poller.yaml)
    # cannot change the outcome; `system` stands in for it.
    monkeypatch.chdir(tmp_path)
    system = tmp_path / "etc/metrics-poller/poller.yaml"
    search = (Path("config/poller.yaml"), system)
    assert config.resolve_path(None, {}, search) is None
    system.parent.mkdir(parents=True)
    system.write_text("{}")
    assert config.resolve_path(None, {}, search) == system
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "poller.yaml").write_text("{}")
    assert config.resolve_path(None, {}, search) == Path("config/poller.yaml")
    assert config.resolve_path(None, {"METRICS_POLLER_CONFIG": "/x.yaml"}, search) == Path("/x.yaml")
    assert config.resolve_path("/y.yaml", {"METRICS_POLLER_CONFIG": "/x.yaml"}, search) == Path("/y.yaml")
    assert (Path("config/poller.yaml"), Path("/etc/metrics-poller/poller.yaml")) == config.DEFAULT_PATHS
