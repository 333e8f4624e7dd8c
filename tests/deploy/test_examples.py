"""The plain Kubernetes CronJob example and the crontab example."""

from __future__ import annotations

import re
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


def test_crontab_example_holds_no_secret(repo: Path) -> None:
    """Secrets are named by *_FILE variables, never written into the crontab (test_documentation_runs.py
    runs its job line)."""
    crontab = (repo / "config/crontab.example").read_text()
    variables = re.findall(r"^([A-Za-z_][A-Za-z0-9_]*)\s*=", crontab, re.M)
    assert any(v.endswith("_FILE") for v in variables)
    for key in variables:
        assert key.endswith("_FILE") or not re.search(r"SECRET|PASSWORD|API_KEY|TOKEN", key), (
            f"{key} holds a secret in the crontab"
        )


def test_readme_cronjob_example_is_valid(repo: Path) -> None:
    readme = (repo / "README.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", readme, re.S) if "kind: CronJob" in b]
    assert blocks, "the README shows a Kubernetes CronJob"
    for block in blocks:
        doc = yaml.safe_load(block)
        kubernetes_validate.validate(doc, "1.30.0", strict=True)
        assert doc["spec"]["concurrencyPolicy"] == "Forbid"
