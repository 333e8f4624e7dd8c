"""The Helm chart, rendered with Helm's own engine (the helm-python-sdk wheel bundles it; there is
no helm binary here), linted, and every manifest validated against the Kubernetes 1.30 OpenAPI
schemas in strict mode (unknown fields are errors) with kubernetes-validate."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

helm = pytest.importorskip("helm_python", reason="helm-python-sdk is not installed (pip install '.[test]')")
kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate is not installed"
)

KUBERNETES = "1.30.0"
RELEASE, NAMESPACE = "mp", "observability"
FULLNAME = "mp-metrics-poller"
# Custom resources have no schema in kubernetes-validate; their shape is asserted below instead.
CRD_KINDS = {"ServiceMonitor"}

SCENARIOS: dict[str, dict[str, Any]] = {
    "default": {},
    "service": {"mode": "service"},
    "cronjob": {"mode": "cronjob"},
    "sharded": {"mode": "sharded", "replicas": 3},
    "workload-identity": {
        "workloadIdentity": {"enabled": True, "clientId": "11111111-2222-3333-4444-555555555555"},
    },
    "secrets": {"secrets": {"METRICS_POLLER__ELASTICSEARCH__API_KEY": "es-key-value"}},
    "existing-secret": {"existingSecret": "my-poller-secrets"},
    "service-monitor": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
    "sharded-monitor": {"mode": "sharded", "replicas": 2, "serviceMonitor": {"enabled": True}},
    "persistence": {"persistence": {"enabled": True, "storageClassName": "managed-csi"}},
    "cronjob-persistence": {
        "mode": "cronjob",
        "persistence": {"enabled": True, "existingClaim": "poller-state"},
    },
}


@pytest.fixture(scope="module")
def chart_dir(repo: Path) -> Path:
    return repo / "config" / "helm" / "metrics-poller"


@pytest.fixture(scope="module")
def chart(chart_dir: Path):
    try:
        loaded = helm.Chart.load(chart_dir)
    except helm.HelmLibraryError as exc:  # the native library cannot load on this platform
        pytest.skip(f"helm-python-sdk's native library cannot load here: {exc}")
    with loaded:
        yield loaded


def render(chart, values: dict[str, Any]) -> list[dict[str, Any]]:
    manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE)
    docs = []
    for path, text in sorted(manifests.items()):
        if path.endswith(".txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def by_kind(docs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    kinds: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        kinds.setdefault(doc["kind"], []).append(doc)
    return kinds


def pod_spec(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return pod_template(docs)["spec"]


def pod_template(docs: list[dict[str, Any]]) -> dict[str, Any]:
    workloads = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet", "CronJob")]
    assert len(workloads) == 1, [d["kind"] for d in workloads]
    spec = workloads[0]["spec"]
    return spec["jobTemplate"]["spec"]["template"] if workloads[0]["kind"] == "CronJob" else spec["template"]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = pod_spec(docs)["containers"]
    assert len(containers) == 1
    return containers[0]


def literal_env(docs: list[dict[str, Any]]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(docs)["env"] if "value" in e}


def poller_yaml(docs: list[dict[str, Any]]) -> Any:
    (configmap,) = by_kind(docs)["ConfigMap"]
    return yaml.safe_load(configmap["data"]["poller.yaml"])


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_renders_and_validates_strictly(chart, scenario: str) -> None:
    docs = render(chart, SCENARIOS[scenario])
    assert docs
    for doc in docs:
        if doc["kind"] in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(
                f"{doc['kind']}/{doc['metadata']['name']}: {'.'.join(map(str, exc.path))}: {exc.message}"
            )
        assert doc["metadata"]["name"].startswith(FULLNAME)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_lint_finds_nothing_above_info(chart_dir: Path, scenario: str) -> None:
    report = helm.lint(
        chart_dir, SCENARIOS[scenario], strict=True, kube_version=f"v{KUBERNETES}", namespace=NAMESPACE
    )
    assert report["total_charts_linted"] == 1
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_configuration_the_pod_sees_is_valid(chart, scenario: str, check_config) -> None:
    """ConfigMap poller.yaml + the container's environment, loaded by the poller's own loader."""
    docs = render(chart, SCENARIOS[scenario])
    env = literal_env(docs)
    for secret in by_kind(docs).get("Secret", []):
        env.update({k: base64.b64decode(v).decode() for k, v in secret["data"].items()})
    cfg = check_config(env, poller_yaml(docs))
    assert env["METRICS_POLLER_CONFIG"] == "/etc/metrics-poller/poller.yaml"
    assert cfg.http.listen == "0.0.0.0:9108"
    assert cfg.logging.format == "json"
    mode = SCENARIOS[scenario].get("mode", "service")
    if mode == "sharded":
        assert cfg.shard.index is None, "each pod derives its index from its name"
        assert cfg.shard.count == SCENARIOS[scenario]["replicas"]
        assert cfg.state.backend == "elasticsearch"
    else:
        assert (cfg.shard.index, cfg.shard.count) == (0, 1)
    persistent = SCENARIOS[scenario].get("persistence", {}).get("enabled", False)
    assert cfg.state.backend == ("file" if persistent else "elasticsearch")
    if persistent:
        assert cfg.state.path == "/var/lib/metrics-poller/cursors.json"


def test_kinds_per_mode(chart) -> None:
    kinds = {
        mode: sorted(by_kind(render(chart, {"mode": mode}))) for mode in ("service", "cronjob", "sharded")
    }
    assert kinds["service"] == ["ConfigMap", "Deployment", "Service", "ServiceAccount"]
    assert kinds["cronjob"] == ["ConfigMap", "CronJob", "ServiceAccount"]
    assert kinds["sharded"] == ["ConfigMap", "Service", "ServiceAccount", "StatefulSet"]


def test_service_mode_is_one_recreated_pod_running_run(chart) -> None:
    docs = render(chart, {"mode": "service", "replicas": 5})
    (deployment,) = by_kind(docs)["Deployment"]
    assert deployment["spec"]["replicas"] == 1, "replicas only counts shards in sharded mode"
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    assert container(docs)["args"] == ["run"]
    labels = pod_template(docs)["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_probes_in_long_running_modes_only(chart) -> None:
    for mode in ("service", "sharded"):
        c = container(render(chart, {"mode": mode}))
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
        assert c["ports"] == [{"name": "metrics", "containerPort": 9108, "protocol": "TCP"}]
    c = container(render(chart, {"mode": "cronjob"}))
    assert "livenessProbe" not in c and "readinessProbe" not in c


def test_cronjob_runs_once_every_five_minutes_never_overlapping(chart) -> None:
    docs = render(chart, {"mode": "cronjob"})
    (cronjob,) = by_kind(docs)["CronJob"]
    spec = cronjob["spec"]
    assert spec["schedule"] == "*/5 * * * *"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert 0 < spec["startingDeadlineSeconds"] <= 300
    assert spec["jobTemplate"]["spec"]["backoffLimit"] == 0
    assert pod_spec(docs)["restartPolicy"] == "Never"
    assert container(docs)["args"] == ["once"]


def test_sharded_mode_statefulset_and_headless_service(chart) -> None:
    docs = render(chart, {"mode": "sharded", "replicas": 4})
    kinds = by_kind(docs)
    (sts,) = kinds["StatefulSet"]
    (svc,) = kinds["Service"]
    assert sts["spec"]["replicas"] == 4
    assert literal_env(docs)["METRICS_POLLER__SHARD__COUNT"] == "4"
    assert "METRICS_POLLER__SHARD__INDEX" not in literal_env(docs)
    assert literal_env(docs)["METRICS_POLLER__STATE__BACKEND"] == "elasticsearch"
    assert svc["spec"]["clusterIP"] == "None"
    assert sts["spec"]["serviceName"] == svc["metadata"]["name"]
    assert svc["spec"]["selector"].items() <= pod_template(docs)["metadata"]["labels"].items()
    assert container(docs)["args"] == ["run"]


def test_restricted_security_context(chart) -> None:
    for mode in ("service", "cronjob", "sharded"):
        docs = render(chart, {"mode": mode})
        pod = pod_spec(docs)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        sc = container(docs)["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["runAsNonRoot"] is True
        mounts = {m["mountPath"]: m["name"] for m in container(docs)["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]]
        assert volumes[mounts["/etc/metrics-poller"]]["configMap"]["name"] == FULLNAME
        resources = container(docs)["resources"]
        assert resources["requests"]["memory"] and resources["limits"]["memory"]


def test_configmap_holds_values_config(chart) -> None:
    config = {"period": 600, "azure": {"subscriptions": [{"id": "00000000-0000-0000-0000-000000000000"}]}}
    docs = render(chart, {"config": config})
    loaded = poller_yaml(docs)
    assert loaded["period"] == 600
    assert loaded["azure"]["subscriptions"] == config["azure"]["subscriptions"]
    # Defaults from values.yaml are merged in, not replaced.
    assert loaded["output"] == "elasticsearch"
    # The pods roll when the configuration changes.
    before = pod_template(render(chart, {}))["metadata"]["annotations"]["checksum/config"]
    assert pod_template(docs)["metadata"]["annotations"]["checksum/config"] != before


def test_workload_identity(chart) -> None:
    client_id = "11111111-2222-3333-4444-555555555555"
    docs = render(chart, {"workloadIdentity": {"enabled": True, "clientId": client_id, "tenantId": "t-1"}})
    (sa,) = by_kind(docs)["ServiceAccount"]
    assert sa["metadata"]["annotations"]["azure.workload.identity/client-id"] == client_id
    assert sa["metadata"]["annotations"]["azure.workload.identity/tenant-id"] == "t-1"
    assert pod_template(docs)["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    assert pod_spec(docs)["serviceAccountName"] == sa["metadata"]["name"]
    assert literal_env(docs)["METRICS_POLLER__AZURE__CREDENTIAL__TYPE"] == "workload_identity"
    plain = render(chart, {})
    assert "azure.workload.identity/use" not in pod_template(plain)["metadata"]["labels"]
    assert "annotations" not in by_kind(plain)["ServiceAccount"][0]["metadata"]


def test_secret_from_values(chart) -> None:
    docs = render(chart, SCENARIOS["secrets"])
    (secret,) = by_kind(docs)["Secret"]
    assert base64.b64decode(secret["data"]["METRICS_POLLER__ELASTICSEARCH__API_KEY"]) == b"es-key-value"
    assert container(docs)["envFrom"] == [{"secretRef": {"name": secret["metadata"]["name"]}}]
    # The secret value is nowhere else in the manifests (no plain env, no ConfigMap).
    others = [d for d in docs if d["kind"] != "Secret"]
    assert "es-key-value" not in yaml.safe_dump_all(others)
    assert "checksum/secret" in pod_template(docs)["metadata"]["annotations"]


def test_existing_secret(chart) -> None:
    docs = render(chart, SCENARIOS["existing-secret"])
    assert "Secret" not in by_kind(docs)
    assert container(docs)["envFrom"] == [{"secretRef": {"name": "my-poller-secrets"}}]
    assert "envFrom" not in container(render(chart, {}))


def test_metrics_service_and_service_monitor(chart) -> None:
    docs = render(chart, SCENARIOS["service-monitor"])
    (svc,) = by_kind(docs)["Service"]
    annotations = svc["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "9108"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert svc["spec"]["ports"][0]["port"] == 9108
    assert svc["spec"]["publishNotReadyAddresses"] is True
    (monitor,) = by_kind(docs)["ServiceMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == svc["spec"]["ports"][0]["name"]
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert "ServiceMonitor" not in by_kind(render(chart, {}))
    assert "ServiceMonitor" not in by_kind(
        render(chart, {"mode": "cronjob", "serviceMonitor": {"enabled": True}})
    )


def test_persistence(chart) -> None:
    docs = render(chart, SCENARIOS["persistence"])
    (pvc,) = by_kind(docs)["PersistentVolumeClaim"]
    assert pvc["spec"]["storageClassName"] == "managed-csi"
    mounts = {m["mountPath"]: m["name"] for m in container(docs)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(docs)["volumes"]}
    state = volumes[mounts["/var/lib/metrics-poller"]]
    assert state["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert literal_env(docs)["METRICS_POLLER__STATE__PATH"] == "/var/lib/metrics-poller/cursors.json"
    existing = render(chart, SCENARIOS["cronjob-persistence"])
    assert "PersistentVolumeClaim" not in by_kind(existing)
    volumes = {v["name"]: v for v in pod_spec(existing)["volumes"]}
    assert volumes["state"]["persistentVolumeClaim"]["claimName"] == "poller-state"
    # Without persistence the state directory is an emptyDir and the cursors live in Elasticsearch.
    plain = render(chart, {})
    assert "emptyDir" in {v["name"]: v for v in pod_spec(plain)["volumes"]}["state"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"mode": "daemon"}, "mode must be one of"),
        ({"secrets": {"METRICS_POLLER__ELASTICSEARCH__API_KEY": "x"}, "existingSecret": "s"}, "not both"),
        ({"secrets": {"api_key": "x"}}, "METRICS_POLLER__"),
        ({"mode": "sharded", "persistence": {"enabled": True}}, "disable persistence"),
        ({"mode": "sharded", "replicas": 0}, "at least 1"),
        ({"state": {"backend": "file"}}, "needs persistence.enabled"),
        ({"workloadIdentity": {"enabled": True}}, "clientId"),
    ],
)
def test_impossible_values_are_refused_with_a_message(chart, values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmRenderError, match=message):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)
