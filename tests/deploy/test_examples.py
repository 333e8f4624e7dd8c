"""The plain Kubernetes CronJob example and the crontab example."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate is not installed"
)


def test_kubernetes_cronjob_example_is_valid(repo: Path, check_config) -> None:
    docs = [d for d in yaml.safe_load_all((repo / "config/kubernetes/cronjob.yaml").read_text()) if d]
    for doc in docs:
        kubernetes_validate.validate(doc, "1.30.0", strict=True)
    kinds = {d["kind"]: d for d in docs}
    assert set(kinds) == {"ServiceAccount", "ConfigMap", "CronJob"}
    spec = kinds["CronJob"]["spec"]
    assert spec["schedule"] == "*/5 * * * *"
    assert spec["concurrencyPolicy"] == "Forbid"
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["args"] == ["once"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    # No secret in the file: secrets come from a Secret the operator creates.
    assert c["envFrom"] == [{"secretRef": {"name": "metrics-poller"}}]
    config_mount = next(m for m in c["volumeMounts"] if m["name"] == "config")
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["METRICS_POLLER_CONFIG"] == config_mount["mountPath"] + "/poller.yaml"
    # The example configuration plus the secrets it expects is a valid poller configuration.
    poller = yaml.safe_load(kinds["ConfigMap"]["data"]["poller.yaml"])
    cfg = check_config({**env, "METRICS_POLLER__AZURE__CREDENTIAL__CLIENT_SECRET": "s"}, poller)
    assert cfg.state.backend == "elasticsearch"


def test_crontab_example(repo: Path, tmp_path: Path, check_config) -> None:
    env: dict[str, str] = {}
    jobs = []
    for line in (repo / "config/crontab.example").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if re.match(r"^[A-Za-z_][A-Za-z0-9_]*\s*=", line):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip().strip('"')
        else:
            jobs.append(line)
    assert len(jobs) == 1
    fields = jobs[0].split(None, 5)
    assert fields[:5] == ["*/5", "*", "*", "*", "*"]
    assert "%" not in fields[5], "cron turns an unescaped % into a newline"
    words = shlex.split(fields[5])
    assert words[:3] == ["flock", "-n", "/run/lock/metrics-poller.lock"]
    command = words[3 : words.index(next(w for w in words if w.startswith(">")))]
    assert command[0] == "metrics-poller"
    assert command[-1] == "once"
    assert command[command.index("--config") + 1].startswith("/etc/metrics-poller/")
    assert "/opt/metrics-poller/bin" in env["PATH"].split(":")
    # The variables are real configuration keys; the secret files they name are read at start-up.
    for key, value in list(env.items()):
        if key.endswith("_FILE"):
            secret = tmp_path / Path(value).name
            secret.write_text("s3cret\n")
            env[key] = str(secret)
        else:
            assert not re.search(r"SECRET|PASSWORD|API_KEY|TOKEN", key), (
                f"{key} holds a secret in the crontab"
            )
    cfg = check_config(env)
    assert cfg.azure.credential.client_secret.get_secret_value() == "s3cret"


def test_readme_cronjob_example_is_valid(repo: Path) -> None:
    readme = (repo / "README.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", readme, re.S) if "kind: CronJob" in b]
    assert blocks, "the README shows a Kubernetes CronJob"
    for block in blocks:
        doc = yaml.safe_load(block)
        kubernetes_validate.validate(doc, "1.30.0", strict=True)
        assert doc["spec"]["concurrencyPolicy"] == "Forbid"
