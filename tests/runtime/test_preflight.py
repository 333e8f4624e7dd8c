"""Preflight, driven through the installed `metrics-poller` command: every unusable output path, cursor
path, listen address or Elasticsearch setting is one line naming the key or the server, exit 2 or 3,
no traceback, and not a single Azure call (the simulator counts them)."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from runtime_support import command, main, poller_config, write_config

from metrics_poller import config
from metrics_poller.simulator import Simulator
from metrics_poller.testing.es_server import ElasticsearchServer

KEY = "preflight-api-key-0123456789"


@pytest.fixture
def es() -> Iterator[ElasticsearchServer]:
    with ElasticsearchServer(api_key=KEY) as server:
        yield server


def _with_es(data: dict[str, Any], es: ElasticsearchServer, **options: Any) -> dict[str, Any]:
    data = {**data, "output": "elasticsearch"}
    data.pop("ndjson")
    data["elasticsearch"] = {"hosts": [es.url], "api_key": KEY, "retry_attempts": 1, "request_timeout": 5, **options}
    return data


def _blocker(tmp: Path) -> Path:
    """A regular file where a directory is needed (fails as root too, unlike permission bits)."""
    path = tmp / "not-a-directory"
    path.write_text("x")
    return path


Case = Callable[[dict[str, Any], Path, ElasticsearchServer], dict[str, Any]]
CASES: dict[str, tuple[Case, int, str]] = {
    "ndjson.path under a file": (
        lambda d, t, e: {**d, "ndjson": {"path": str(_blocker(t) / "out.ndjson")}},
        2,
        "preflight: ndjson.path: cannot create",
    ),
    "ndjson.path is a directory": (lambda d, t, e: {**d, "ndjson": {"path": str(t)}}, 2, "ndjson.path"),
    "state.path under a file": (
        lambda d, t, e: {**d, "state": {"backend": "file", "path": str(_blocker(t) / "c.json")}},
        2,
        "preflight: state.path: cannot create",
    ),
    "state.path holds no cursor file": (
        lambda d, t, e: {**d, "state": {"backend": "file", "path": str(_blocker(t))}},
        2,
        "preflight: state.path: cannot read cursor file",
    ),
    "dead_letter_path under a file": (
        lambda d, t, e: _with_es(d, e, dead_letter_path=str(_blocker(t) / "dead.ndjson")),
        2,
        "preflight: elasticsearch.dead_letter_path",
    ),
    "wrong Elasticsearch api_key": (
        lambda d, t, e: {**_with_es(d, e), "elasticsearch": {**_with_es(d, e)["elasticsearch"], "api_key": "wrong"}},
        2,
        "preflight: elasticsearch.api_key: refused by Elasticsearch at http://127.0.0.1",
    ),
    "Elasticsearch not listening (Beats-style host)": (
        lambda d, t, e: _with_es(d, e, hosts=["127.0.0.1:9"]),
        3,
        "preflight: elasticsearch at https://127.0.0.1:9: unreachable",
    ),
    "http URL without a port means 9200": (
        lambda d, t, e: _with_es(d, e, hosts=["http://127.0.0.1"]),
        3,
        "preflight: elasticsearch at http://127.0.0.1:9200: unreachable",
    ),
    "Beats-style host is https, the server speaks http": (
        lambda d, t, e: _with_es(d, e, hosts=[e.url.removeprefix("http://")], request_timeout=1),
        2,
        "TLS failed",
    ),
    "malformed cloud_id": (
        lambda d, t, e: _with_es(d, e, cloud_id="my-deployment:bm90LWJhc2U2NA"),
        2,
        "config: elasticsearch.cloud_id: not an Elastic Cloud id",
    ),
    "ca_certs missing": (
        lambda d, t, e: _with_es(d, e, hosts=["https://127.0.0.1:9200"], ca_certs=str(t / "missing.pem")),
        2,
        "preflight: elasticsearch.ca_certs: no such file",
    ),
    "ca_certs not a PEM bundle": (
        lambda d, t, e: _with_es(d, e, hosts=["https://127.0.0.1:9200"], ca_certs=str(_blocker(t))),
        2,
        "preflight: elasticsearch.ca_certs: cannot read",
    ),
    "ca_certs with an http:// host": (
        lambda d, t, e: _with_es(d, e, ca_certs=str(_blocker(t))),
        2,
        "config: elasticsearch.ca_certs: set, but host http://127.0.0.1",
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_an_unusable_setting_is_one_line_before_any_azure_call(
    sim: Simulator, es: ElasticsearchServer, tmp_path: Path, name: str
) -> None:
    change, code, expected = CASES[name]
    data = change(poller_config(sim, tmp_path), tmp_path, es)
    sim.reset_calls()
    exit_code, out, err = main("once", "--config", str(write_config(data, tmp_path / "poller.yaml")))
    lines = err.splitlines()
    assert exit_code == code, out + err
    assert len(lines) == 1 and expected in lines[0], lines
    assert "Traceback" not in err and KEY not in err
    assert sim.calls == {}, sim.calls  # not even a token request


@pytest.mark.parametrize(
    ("subcommand", "name"),
    [("once", "state.path under a file"), ("backfill", "Elasticsearch not listening (Beats-style host)")],
)
def test_the_installed_command_stops_before_azure(
    sim: Simulator, es: ElasticsearchServer, tmp_path: Path, subcommand: str, name: str
) -> None:
    """What was seen (issue 11, item 4): these settings passed validation, Azure was polled, then a
    traceback and exit 1, so systemd restarted the poller every 10 s."""
    change, code, expected = CASES[name]
    data = change(poller_config(sim, tmp_path), tmp_path, es)
    args = ["--since=-1h"] if subcommand == "backfill" else []
    sim.reset_calls()
    result = command(subcommand, "--config", str(write_config(data, tmp_path / "poller.yaml")), *args)
    assert result.returncode == code, result.stdout + result.stderr
    assert [line for line in result.stderr.splitlines() if expected in line] == result.stderr.splitlines()
    assert len(result.stderr.splitlines()) == 1
    assert sim.calls == {}


@pytest.mark.parametrize("case", ["ca_certs missing", "ca_certs not a PEM bundle"])
@pytest.mark.parametrize("subcommand", ["validate", "setup"])
def test_validate_and_setup_name_a_bad_ca_bundle_before_any_call(
    sim: Simulator, es: ElasticsearchServer, tmp_path: Path, subcommand: str, case: str
) -> None:
    """Found by the configuration fuzz: the client refused to be built, and `validate` printed a
    traceback after polling Azure."""
    change, code, expected = CASES[case]
    data = change(poller_config(sim, tmp_path), tmp_path, es)
    sim.reset_calls()
    result = command(subcommand, "--config", str(write_config(data, tmp_path / "poller.yaml")))
    assert result.returncode == code, result.stdout + result.stderr
    assert result.stdout == ""
    assert [line for line in result.stderr.splitlines() if expected in line] == result.stderr.splitlines()
    assert len(result.stderr.splitlines()) == 1
    assert sim.calls == {}
    assert not es.requests, es.requests


def test_run_with_its_port_taken_is_one_line_and_closes_everything(
    sim: Simulator, es: ElasticsearchServer, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        data = _with_es(poller_config(sim, tmp_path, http={"listen": f"127.0.0.1:{port}"}), es)
        sim.reset_calls()
        result = command("run", "--config", str(write_config(data, tmp_path / "poller.yaml")))
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.splitlines() == [
        f"preflight: http.listen: cannot listen on 127.0.0.1:{port}: the address is already in use "
        "(another poller running?)"
    ]
    assert sim.calls == {}


def test_several_problems_are_one_line_each(sim: Simulator, tmp_path: Path) -> None:
    blocker = _blocker(tmp_path)
    data = poller_config(sim, tmp_path, ndjson={"path": str(blocker / "o")}, state={"path": str(blocker / "c")})
    code, _, err = main("once", "--config", str(write_config(data, tmp_path / "poller.yaml")))
    assert code == 2
    assert sorted(line.split(":")[1].strip() for line in err.splitlines()) == ["ndjson.path", "state.path"]


def test_a_usable_configuration_passes_and_writes_nothing_extra(
    sim: Simulator, es: ElasticsearchServer, tmp_path: Path
) -> None:
    data = _with_es(poller_config(sim, tmp_path, state={"path": str(tmp_path / "new" / "dir" / "c.json")}), es)
    data["azure"]["metric_groups"] = ["requests"]
    data["elasticsearch"]["dead_letter_path"] = str(tmp_path / "dead" / "letters.ndjson")
    code, out, err = main("once", "--config", str(write_config(data, tmp_path / "poller.yaml")))
    assert code == 0, out + err
    assert (tmp_path / "new" / "dir" / "c.json").is_file()
    assert not list((tmp_path / "new" / "dir").glob(".preflight-*"))


# ------------------------------------------------------------------------------------ pure parsing


@pytest.mark.parametrize(
    ("entry", "url"),
    [
        ("127.0.0.1:9200", "https://127.0.0.1:9200"),
        ("es.example.com", "https://es.example.com:9200"),
        ("http://localhost", "http://localhost:9200"),
        ("https://my.es.io", "https://my.es.io"),
        ("https://user:pw@es:9243/prefix/", "https://user:pw@es:9243/prefix"),
        ("[::1]:9200", "https://[::1]:9200"),
    ],
)
def test_elasticsearch_hosts_become_urls_the_client_accepts(entry: str, url: str) -> None:
    from metrics_poller.sinks.elasticsearch import build_client

    cfg = config.parse({"elasticsearch": {"hosts": [entry]}}, environ={})
    assert cfg.elasticsearch.hosts == [url]
    build_client(cfg.elasticsearch)  # the client takes it (it raises for host:port or http://host)


@pytest.mark.parametrize("entry", ["ftp://es:9200", "es:port", "", "https://", "https://es:9200?x=1"])
def test_a_bad_host_is_a_config_line_without_credentials(entry: str) -> None:
    with pytest.raises(config.ConfigError) as info:
        config.parse({"elasticsearch": {"hosts": [entry.replace("//", "//u:SECRETPW@", 1)]}}, environ={})
    assert info.value.lines[0].startswith("config: elasticsearch.hosts: ")
    assert "SECRETPW" not in info.value.lines[0]
