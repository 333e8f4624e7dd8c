"""What an operator reads when something is wrong (issue 11, seen 11), from the installed command
against the simulator and the Elasticsearch test server: one line per problem, naming what is wrong."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from runtime_support import poller_config, run_poller, write_config

from metrics_poller.simulator import Simulator
from metrics_poller.testing.es_server import ElasticsearchServer

WRONG_SECRET = "WRONG-secret-never-printed-0123"


def config_file(sim: Simulator, tmp_path: Path, **overrides: Any) -> tuple[dict[str, Any], Path]:
    data = poller_config(sim, tmp_path, **overrides)
    data["azure"]["metric_groups"] = ["requests"]
    data["azure"]["retry"] = {"attempts": 1}
    return data, tmp_path / "poller.yaml"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_wrong_azure_secret_is_one_line_with_the_aadsts_code(sim: Simulator, tmp_path: Path) -> None:
    data, path = config_file(sim, tmp_path)
    data["azure"]["credential"]["client_secret"] = WRONG_SECRET
    write_config(data, path)
    for command in ("once", "validate"):
        result = run_poller(command, "--config", str(path))
        output = result.stdout + result.stderr
        assert result.returncode == 3, output
        assert output.count("AADSTS7000215") == 1, output
        assert "AADSTS7000215: Invalid client secret provided." in output
        assert "Content:" not in output and "error_description" not in output and "trace_id" not in output
        assert WRONG_SECRET not in output
        assert "Traceback" not in output


def test_an_unreachable_authority_names_the_host_not_an_ssl_object(sim: Simulator, tmp_path: Path) -> None:
    data, path = config_file(sim, tmp_path)
    port = closed_port()
    data["azure"]["endpoints"]["authority"] = f"https://127.0.0.1:{port}"
    write_config(data, path)
    for command in ("once", "validate"):
        result = run_poller(command, "--config", str(path))
        output = result.stdout + result.stderr
        assert result.returncode == 3, output
        assert "SSLContext" not in output and " object at 0x" not in output, output
        assert f"127.0.0.1:{port}" in output and "Connect call failed" in output, output


def test_elasticsearch_401_says_the_credentials_were_rejected(sim: Simulator, tmp_path: Path) -> None:
    with ElasticsearchServer(api_key="right-id:right-value") as es:
        data, path = config_file(sim, tmp_path, output="elasticsearch")
        data["elasticsearch"] = {"hosts": [es.url], "api_key": "wrong-id:wrong-value", "retry_attempts": 1}
        write_config(data, path)
        before = sim.call_count("getBatch")
        result = run_poller("once", "--config", str(path))
        stored = es.documents("metrics-azure.open_ai-default")
        assert sim.call_count("getBatch") == before, "metrics were fetched for an Elasticsearch that refuses us"
    output = result.stdout + result.stderr
    # Caught by the preflight, before any Azure call: a configuration error (exit 2, systemd does not
    # restart on it), one line naming the key.
    assert result.returncode == 2, output
    assert "preflight: elasticsearch.api_key: refused by Elasticsearch" in result.stderr
    assert "(HTTP 401" in result.stderr
    assert "metrics-poller setup" not in output, "running setup cannot fix rejected credentials"
    assert "wrong-value" not in output
    assert not stored


def test_discover_prints_a_table_with_a_header(sim: Simulator, tmp_path: Path) -> None:
    data, path = config_file(sim, tmp_path)
    write_config(data, path)
    result = run_poller("discover", "--config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    header, *rows, total = result.stdout.splitlines()
    assert header.split() == ["SUBSCRIPTION", "LOCATION", "KIND", "RESOURCE", "GROUP/ACCOUNT"]
    wanted = [a for a in sim.accounts if a.kind in ("OpenAI", "AIServices")]
    assert len(rows) == len(wanted) and total == f"{len(wanted)} accounts"
    # Columns line up under the header.
    for row in rows:
        assert row.index(row.split()[1]) == header.index("LOCATION")


def test_subscriptions_may_be_plain_ids(sim: Simulator, tmp_path: Path) -> None:
    data, path = config_file(sim, tmp_path)
    data["azure"]["subscriptions"] = list(sim.subscription_ids)  # as Elastic's integration writes them
    write_config(data, path)
    result = run_poller("discover", "--config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1].endswith(" accounts")
    data["azure"]["subscriptions"] = [[sim.subscription_ids[0]]]
    write_config(data, path)
    result = run_poller("discover", "--config", str(path))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        "config: azure.subscriptions.0: expected a subscription id, or "
        "{id: <subscription id>, resource_groups: [<name>, ...]}"
    ]


def test_a_missing_secret_file_is_blamed_on_its_file_key(sim: Simulator, tmp_path: Path) -> None:
    data, path = config_file(sim, tmp_path)
    del data["azure"]["credential"]["client_secret"]
    data["azure"]["credential"]["client_secret_file"] = str(tmp_path / "absent-secret")
    write_config(data, path)
    result = run_poller("once", "--config", str(path))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"config: azure.credential.client_secret_file: cannot read secret file {tmp_path / 'absent-secret'}: "
        "No such file or directory"
    ]
    # The same through the environment variable the systemd units and the crontab set.
    del data["azure"]["credential"]["client_secret_file"]
    data["azure"]["credential"]["client_secret"] = sim.client_secret
    write_config(data, path)
    env = {"METRICS_POLLER__ELASTICSEARCH__API_KEY_FILE": str(tmp_path / "absent-key")}
    result = run_poller("once", "--config", str(path), env=env)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"config: elasticsearch.api_key_file: cannot read secret file {tmp_path / 'absent-key'}: "
        "No such file or directory"
    ]
