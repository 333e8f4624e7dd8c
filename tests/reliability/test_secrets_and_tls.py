"""Secrets never leak (stdout, stderr, DEBUG log records, the /metrics body), in success and failure
paths; TLS verification is on by default and turning it off warns at every start."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from reliability_support import base_config, parse, with_elasticsearch, write_config

from metrics_poller import telemetry
from metrics_poller.runtime import create_poller
from metrics_poller.service import start_listener
from metrics_poller.simulator import SimSpec, Simulator
from metrics_poller.testing.es_server import ElasticsearchServer

WRONG_CLIENT_SECRET = "wrong-client-secret-Qx7Zr2Lp9"
CERT_PASSWORD = "cert-password-Hm4Vb8Nc1"
ES_API_KEY = "es-api-key-Tn5Wq3Jd8:Kf6Ys2Pg4Rb9"
ES_PASSWORD = "es-password-Lc3Xv7Mz5"
URL_PASSWORD = "url-password-Bd2Hn6Qw8"


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    spec = SimSpec(seed=5, subscriptions=1, regions=("eastus",), accounts_per_region=2)
    with Simulator(spec) as simulator:  # real time: the subprocesses poll "now"
        yield simulator


def cli(config_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("METRICS_POLLER", "SSL_CERT", "REQUESTS_CA"))}
    return subprocess.run(
        [sys.executable, "-m", "metrics_poller", *args, "--config", str(config_path)],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def assert_clean(text: str, *secrets: str) -> None:
    for secret in secrets:
        for part in {secret, *secret.split(":")}:
            assert part not in text, f"secret {part[:4]}… leaked:\n{text[-2000:]}"
    assert "Traceback" not in text, text[-2000:]


def debug(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "logging": {"level": "DEBUG", "format": "json"}}


# ------------------------------------------------------------------------------------------ secrets


def test_wrong_client_secret_and_es_key_never_appear_in_any_output(sim: Simulator, tmp_path: Path) -> None:
    with ElasticsearchServer(api_key="the-right-key:the-right-value") as es:
        base = base_config(sim, tmp_path, metric_groups=["requests"])
        data = debug(with_elasticsearch(base, es, api_key=ES_API_KEY))
        data["azure"]["credential"]["client_secret"] = WRONG_CLIENT_SECRET
        path = write_config(data, tmp_path / "poller.yaml")
        for command in ("once", "validate", "discover"):
            result = cli(path, command)
            assert result.returncode != 0, (command, result.stdout, result.stderr)
            assert_clean(result.stdout + result.stderr, WRONG_CLIENT_SECRET, ES_API_KEY)
        # With the right Azure secret the preflight reaches Elasticsearch, which refuses the key: one line
        # naming the key, exit 2 (a configuration error: restarting cannot fix it).
        data["azure"]["credential"]["client_secret"] = sim.client_secret
        result = cli(write_config(data, tmp_path / "poller.yaml"), "once")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "preflight: elasticsearch.api_key: refused by Elasticsearch" in result.stderr
    assert_clean(result.stdout + result.stderr, sim.client_secret, ES_API_KEY)


def test_es_password_in_config_and_url_never_appear_when_es_is_unreachable(sim: Simulator, tmp_path: Path) -> None:
    port = closed_port()
    for name, es_section in (
        ("config", {"hosts": [f"http://127.0.0.1:{port}"], "username": "elastic", "password": ES_PASSWORD}),
        ("url", {"hosts": [f"http://elastic:{URL_PASSWORD}@127.0.0.1:{port}"]}),
    ):
        data = debug(base_config(sim, tmp_path / name, metric_groups=["requests"]))
        data["output"] = "elasticsearch"
        data.pop("ndjson")
        data["elasticsearch"] = {**es_section, "request_timeout": 2, "retry_attempts": 1}
        path = write_config(data, tmp_path / f"{name}.yaml")
        for command in ("validate", "once"):
            result = cli(path, command)
            assert result.returncode == 3, (name, command, result.stdout, result.stderr)
            assert_clean(result.stdout + result.stderr, ES_PASSWORD, URL_PASSWORD, sim.client_secret)


def test_certificate_password_never_appears_when_the_certificate_is_bad(sim: Simulator, tmp_path: Path) -> None:
    bogus = tmp_path / "cert.pem"
    bogus.write_text(f"-----BEGIN CERTIFICATE-----\n{CERT_PASSWORD}\n-----END CERTIFICATE-----\n")
    data = debug(base_config(sim, tmp_path, metric_groups=["requests"]))
    data["azure"]["credential"] = {
        "type": "certificate",
        "tenant_id": sim.tenant_id,
        "client_id": sim.client_id,
        "certificate_path": str(bogus),
        "certificate_password": CERT_PASSWORD + "x",
    }
    path = write_config(data, tmp_path / "poller.yaml")
    for command in ("validate", "once"):
        result = cli(path, command)
        assert result.returncode == 2, result.stdout + result.stderr
        assert "config: azure.credential.certificate_path: cannot load the certificate" in result.stderr
        assert_clean(result.stdout + result.stderr, CERT_PASSWORD)


async def test_debug_log_records_and_metrics_endpoint_hold_no_secret(
    sim: Simulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with ElasticsearchServer(api_key="the-right-key:the-right-value") as es:
        data = with_elasticsearch(base_config(sim, tmp_path, metric_groups=["requests"]), es, api_key=ES_API_KEY)
        cfg = parse(data)
        caplog.set_level(logging.DEBUG)
        for name in ("azure", "msal", "elastic_transport", "elasticsearch", "urllib3", "aiohttp"):
            logging.getLogger(name).setLevel(logging.DEBUG)
        port = closed_port()
        health = telemetry.Health(period=300)
        runner = await start_listener(f"127.0.0.1:{port}", health)
        try:
            try:
                poller = await create_poller(cfg)  # the wrong key is refused while templates are ensured
            except Exception as exc:
                text = f"{type(exc).__name__}: {exc}"
            else:
                try:
                    report = await poller.run_cycle()
                    text = report.summary() + "".join(f.reason for f in report.failures)
                    assert not report.ok
                except Exception as exc:  # the sink raises SinkError when the key is refused
                    text = f"{type(exc).__name__}: {exc}"
                finally:
                    await poller.close()
            async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as reply:
                metrics = await reply.text()
        finally:
            await runner.cleanup()
            for name in ("azure", "msal", "elastic_transport", "elasticsearch", "urllib3", "aiohttp"):
                logging.getLogger(name).setLevel(logging.NOTSET)
    assert "metrics_poller_" in metrics
    records = "\n".join(
        f"{r.name} {r.getMessage()} {r.exc_text or ''} {r.exc_info[1] if r.exc_info else ''}" for r in caplog.records
    )
    assert caplog.records, "nothing was logged at DEBUG"
    assert_clean(text + "\n" + metrics + "\n" + records, ES_API_KEY, sim.client_secret)


# ---------------------------------------------------------------------------------------------- TLS


def test_an_untrusted_azure_ca_fails_clearly_with_exit_3(sim: Simulator, tmp_path: Path) -> None:
    data = base_config(sim, tmp_path, metric_groups=["requests"])
    del data["azure"]["ca_bundle"]  # the simulator's private CA is not in the system trust store
    data["azure"]["request_timeout"] = 30  # azure-identity's own connection retries take a few seconds
    result = cli(write_config(data, tmp_path / "poller.yaml"), "once")
    output = result.stdout + result.stderr
    assert result.returncode == 3, output
    assert "Traceback" not in output
    assert "TLS certificate verification failed" in output, output
    assert not (tmp_path / "out.ndjson").exists() or not (tmp_path / "out.ndjson").read_text()


def test_azure_verify_tls_false_works_and_warns(sim: Simulator, tmp_path: Path) -> None:
    data = base_config(sim, tmp_path, metric_groups=["requests"], verify_tls=False)
    del data["azure"]["ca_bundle"]
    data["logging"] = {"format": "json"}
    result = cli(write_config(data, tmp_path / "poller.yaml"), "once")
    assert result.returncode == 0, result.stdout + result.stderr
    warnings = [line for line in result.stderr.splitlines() if '"warning"' in line.lower() and "verify" in line]
    assert warnings and any("azure.verify_tls" in line for line in warnings), result.stderr
    assert (tmp_path / "out.ndjson").read_text()


def test_elasticsearch_verify_certs_false_warns(sim: Simulator, es: ElasticsearchServer, tmp_path: Path) -> None:
    data = with_elasticsearch(base_config(sim, tmp_path, metric_groups=["requests"]), es, verify_certs=False)
    data["logging"] = {"format": "json"}
    result = cli(write_config(data, tmp_path / "poller.yaml"), "once")
    assert result.returncode == 0, result.stdout + result.stderr
    assert any("verify_certs" in line and '"warning"' in line.lower() for line in result.stderr.splitlines()), (
        result.stderr
    )
