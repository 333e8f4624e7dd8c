"""The Helm chart, rendered with Helm's own engine (the helm-python-sdk wheel bundles it; there is
no helm binary here), linted, and every manifest validated against the Kubernetes 1.30 OpenAPI
schemas in strict mode (unknown fields are errors) with kubernetes-validate."""

from __future__ import annotations

import base64
import itertools
import re
import shlex
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

# Every release needs an Azure target (the chart refuses to render without one); every scenario has it.
SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
BASE: dict[str, Any] = {"config": {"azure": {"subscriptions": [{"id": SUBSCRIPTION}]}}}
ECK_CA = {
    "extraVolumes": [
        {
            "name": "es-ca",
            "secret": {"secretName": "quickstart-es-http-certs-public", "items": [{"key": "ca.crt", "path": "ca.crt"}]},
        }
    ],
    "extraVolumeMounts": [{"name": "es-ca", "mountPath": "/etc/metrics-poller-ca", "readOnly": True}],
    "config": {"elasticsearch": {"ca_certs": "/etc/metrics-poller-ca/ca.crt"}},
}
SECRET_FILES = {
    "elasticsearch.api_key": "es-api-key-value",
    "azure.credential.client_secret": "azure-client-secret-value",
    "azure.credential.certificate_password": "certificate-password-value",
}

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
    "secret-files": {"secretFiles": SECRET_FILES},
    "existing-secret-files": {
        "mode": "cronjob",
        "existingSecretFiles": {"name": "quickstart-es-elastic-user", "keys": {"elasticsearch.password": "elastic"}},
        "config": {"elasticsearch": {"username": "elastic"}},
    },
    "extra-volumes": {"mode": "sharded", "replicas": 2, **ECK_CA},
    "numeric-tag": {"image": {"repository": "registry.example.com/metrics-poller", "tag": 2}},
}


def merged(base: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """Helm's own merge of a values file over another: maps merge key by key, anything else replaces."""
    result = dict(base)
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


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


def render(chart, values: dict[str, Any], *, name: str = RELEASE, base: bool = True) -> list[dict[str, Any]]:
    manifests = chart.render(merged(BASE, values) if base else values, name=name, namespace=NAMESPACE)
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
    assert restricted_violations(pod_spec(docs)) == [], "the restricted Pod Security Standard"


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_lint_finds_nothing_above_info(chart_dir: Path, scenario: str) -> None:
    report = helm.lint(
        chart_dir, merged(BASE, SCENARIOS[scenario]), strict=True, kube_version=f"v{KUBERNETES}", namespace=NAMESPACE
    )
    assert report["total_charts_linted"] == 1
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_configuration_the_pod_sees_is_valid(chart, scenario: str, check_config, tmp_path: Path) -> None:
    """ConfigMap poller.yaml + the container's environment + the secret files mounted in the pod, loaded
    by the poller's own loader."""
    docs = render(chart, SCENARIOS[scenario])
    env = literal_env(docs)
    for secret in envfrom_secrets(docs):
        env.update({k: base64.b64decode(v).decode() for k, v in secret["data"].items()})
    env = materialise_secret_files(docs, tmp_path, env)
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


def envfrom_secrets(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    names = {e["secretRef"]["name"] for e in container(docs).get("envFrom", [])}
    return [d for d in by_kind(docs).get("Secret", []) if d["metadata"]["name"] in names]


def existing_secret_value(secret: str, key: str) -> str:
    """What a Secret the chart does not make holds, in these tests."""
    return f"value of {secret}/{key}"


def materialise_secret_files(docs: list[dict[str, Any]], root: Path, env: dict[str, str]) -> dict[str, str]:
    """Write the files the pod's projected secret volumes hold under `root`, as the kubelet would, and
    return `env` with every path under such a mount moved under `root`."""
    secrets = {d["metadata"]["name"]: d for d in by_kind(docs).get("Secret", [])}
    volumes = {v["name"]: v for v in pod_spec(docs)["volumes"]}
    moved = dict(env)
    for mount in container(docs)["volumeMounts"]:
        projected = volumes[mount["name"]].get("projected")
        if projected is None:
            continue
        directory = root / mount["mountPath"].lstrip("/")
        directory.mkdir(parents=True, exist_ok=True)
        for source in projected["sources"]:
            name = source["secret"]["name"]
            for item in source["secret"]["items"]:
                if name in secrets:
                    value = base64.b64decode(secrets[name]["data"][item["key"]]).decode()
                else:
                    value = existing_secret_value(name, item["key"])
                (directory / item["path"]).write_text(value, encoding="utf-8")
        prefix = mount["mountPath"].rstrip("/") + "/"
        moved = {k: str(directory / v[len(prefix) :]) if v.startswith(prefix) else v for k, v in moved.items()}
    return moved


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
        ({"secretFiles": {"elasticsearch.bearer_token": "t"}}, "unknown setting .*elasticsearch.api_key"),
        ({"existingSecretFiles": {"keys": {"elasticsearch.api_key": "k"}}}, "needs existingSecretFiles.name"),
        ({"existingSecretFiles": {"name": "s"}}, "needs existingSecretFiles.keys"),
        (
            {
                "secretFiles": {"elasticsearch.api_key": "a"},
                "existingSecretFiles": {"name": "s", "keys": {"elasticsearch.api_key": "k"}},
            },
            "both secretFiles and existingSecretFiles",
        ),
        ({"image": {"repository": ""}}, "image.repository: empty"),
    ],
)
def test_impossible_values_are_refused_with_a_message(chart, values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmRenderError, match=message):
        render(chart, values)


# ------------------------------------------------------------------------------ files, secrets, sizing


def test_secrets_as_files_reach_the_poller_through_its_file_keys(chart, check_config, tmp_path: Path) -> None:
    values = {
        "secretFiles": SECRET_FILES,
        "existingSecretFiles": {"name": "quickstart-es-elastic-user", "keys": {"elasticsearch.password": "elastic"}},
        "config": {"elasticsearch": {"username": "elastic"}},
    }
    docs = render(chart, values)
    env = literal_env(docs)
    assert env["METRICS_POLLER__ELASTICSEARCH__API_KEY_FILE"] == "/run/secrets/metrics-poller/elasticsearch.api_key"
    assert "envFrom" not in container(docs), "file secrets are not also environment variables"
    mounts = {m["name"]: m for m in container(docs)["volumeMounts"]}
    assert mounts["secret-files"]["readOnly"] is True
    # No secret value anywhere but in the Secret the chart made for them.
    (secret,) = by_kind(docs)["Secret"]
    assert {k: base64.b64decode(v).decode() for k, v in secret["data"].items()} == SECRET_FILES
    assert not [v for v in SECRET_FILES.values() if v in yaml.safe_dump_all([d for d in docs if d is not secret])]
    # The poller, reading the files where the pod has them, gets every secret.
    cfg = check_config(materialise_secret_files(docs, tmp_path, env), poller_yaml(docs))
    assert cfg.elasticsearch.api_key.get_secret_value() == SECRET_FILES["elasticsearch.api_key"]
    eck_password = existing_secret_value("quickstart-es-elastic-user", "elastic")
    assert cfg.elasticsearch.password.get_secret_value() == eck_password
    assert cfg.azure.credential.client_secret.get_secret_value() == SECRET_FILES["azure.credential.client_secret"]
    assert (
        cfg.azure.credential.certificate_password.get_secret_value()
        == SECRET_FILES["azure.credential.certificate_password"]
    )
    # Changing a secret file rolls the pods.
    before = pod_template(docs)["metadata"]["annotations"]["checksum/secret-files"]
    changed = render(chart, merged(values, {"secretFiles": {"elasticsearch.api_key": "rotated"}}))
    assert pod_template(changed)["metadata"]["annotations"]["checksum/secret-files"] != before
    assert "secret-files" not in {v["name"] for v in pod_spec(render(chart, {}))["volumes"]}


def test_certificate_file_feeds_certificate_path(chart) -> None:
    docs = render(chart, {"secretFiles": {"azure.credential.certificate": "-----BEGIN PRIVATE KEY-----"}})
    path = literal_env(docs)["METRICS_POLLER__AZURE__CREDENTIAL__CERTIFICATE_PATH"]
    assert path == "/run/secrets/metrics-poller/azure.credential.certificate"


def test_extra_volumes_let_the_poller_trust_a_private_ca(chart, check_config) -> None:
    """ECK's self-signed HTTP CA mounted from its Secret and named by elasticsearch.ca_certs."""
    for mode in ("service", "cronjob", "sharded"):
        docs = render(chart, merged(ECK_CA, {"mode": mode}))
        volumes = {v["name"]: v for v in pod_spec(docs)["volumes"]}
        assert volumes["es-ca"]["secret"]["secretName"] == "quickstart-es-http-certs-public"
        mounts = {m["mountPath"]: m for m in container(docs)["volumeMounts"]}
        assert mounts["/etc/metrics-poller-ca"]["name"] == "es-ca"
        ca_certs = poller_yaml(docs)["elasticsearch"]["ca_certs"]
        assert Path(ca_certs).parent == Path("/etc/metrics-poller-ca")
        assert poller_yaml(docs)["elasticsearch"].get("verify_certs", True) is True


def _quantity_bytes(quantity: str) -> float:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 1e3, "M": 1e6, "G": 1e9}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMG]i?|k)?", quantity)
    assert match, quantity
    return float(match.group(1)) * units.get(match.group(2) or "", 1)


def test_memory_request_and_limit_cover_the_measured_catch_up_peak(chart, repo: Path) -> None:
    """BENCHMARKS.md's B4 (24 h catch-up, default concurrency) peak RSS, plus at least 20 % margin, in
    every mode of the chart and in the plain CronJob example."""
    text = (repo / "BENCHMARKS.md").read_text(encoding="utf-8")
    section = text[text.index("## B4") :]
    header, _, row = [line for line in section.splitlines() if line.startswith("|")][:3]
    columns = [c.strip() for c in header.strip("|").split("|")]
    peak_mb = float(row.strip("|").split("|")[columns.index("peak RSS MB")].strip())
    assert peak_mb >= 500  # the table was read, not a stray cell
    example = [d for d in yaml.safe_load_all((repo / "config/kubernetes/cronjob.yaml").read_text()) if d]
    manifests = {mode: render(chart, {"mode": mode}) for mode in ("service", "cronjob", "sharded")}
    manifests["config/kubernetes/cronjob.yaml"] = example
    for where, docs in manifests.items():
        resources = container(docs)["resources"]
        for kind in ("requests", "limits"):
            assert _quantity_bytes(resources[kind]["memory"]) >= 1.2 * peak_mb * 1e6, (where, kind, resources)


def test_readme_builds_and_pushes_the_image_the_chart_then_runs(chart, repo: Path) -> None:
    """The README's Helm steps: the image pushed is the image the chart's pods run with those values."""
    text = (repo / "README.md").read_text(encoding="utf-8")
    section = text[text.index("### In Kubernetes (Helm)") :]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "no shell block in the README's Helm section"
    commands = [shlex.split(c) for c in block.group(1).replace("\\\n", " ").splitlines() if c.strip()]
    built = next(c[c.index("-t") + 1] for c in commands if c[:2] == ["docker", "build"])
    pushed = next(c[2] for c in commands if c[:2] == ["docker", "push"])
    install = next(c for c in commands if c[:2] == ["helm", "install"])
    assert built == pushed
    values: dict[str, Any] = {}
    for word, following in itertools.pairwise(install):
        if word == "--set":
            key, _, value = following.partition("=")
            *parents, leaf = key.split(".")
            node = values
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
    assert container(render(chart, values))["image"] == pushed


@pytest.mark.parametrize(
    ("tag", "image"),
    [(2, "registry.example.com/metrics-poller:2"), ("1.10", "registry.example.com/metrics-poller:1.10"),
     ("", "registry.example.com/metrics-poller:0.1.0")],
)  # fmt: skip
def test_image_tag_renders_as_written(chart, tag: object, image: str) -> None:
    docs = render(chart, {"image": {"repository": "registry.example.com/metrics-poller", "tag": tag}})
    assert container(docs)["image"] == image


def test_fractional_numeric_image_tag_is_refused(chart) -> None:
    with pytest.raises(helm.HelmRenderError, match=r"image.tag: 1.1 is not a string.*quote the tag"):
        render(chart, {"image": {"tag": 1.1}})


def test_no_azure_target_is_refused_before_anything_is_installed(chart) -> None:
    with pytest.raises(helm.HelmRenderError, match=r"config.azure: no Azure target; set config.azure.subscriptions"):
        render(chart, {}, base=False)
    resource_id = (
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/a"
    )
    assert render(chart, {"config": {"azure": {"resource_ids": [resource_id]}}}, base=False)
    from_env = {"extraEnv": [{"name": "METRICS_POLLER__AZURE__SUBSCRIPTIONS", "value": f"[{{id: {SUBSCRIPTION}}}]"}]}
    assert render(chart, from_env, base=False)


@pytest.mark.parametrize(
    "path",
    [
        "elasticsearch.api_key",
        "elasticsearch.password",
        "elasticsearch.bearer_token",
        "azure.credential.client_secret",
        "azure.credential.certificate_password",
        "api_key",  # misplaced, still a secret
    ],
)
def test_a_secret_under_config_is_refused(chart, path: str) -> None:
    config: dict[str, Any] = {}
    node = config
    *parents, leaf = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = "s3cr3t-value"
    with pytest.raises(helm.HelmRenderError, match=rf"config\.{re.escape(path)}: a secret in config") as caught:
        render(chart, {"config": config})
    assert "s3cr3t-value" not in str(caught.value)


def test_file_keys_and_empty_secrets_under_config_are_fine(chart) -> None:
    config = {
        "elasticsearch": {"api_key_file": "/run/secrets/other/es", "password": None},
        "azure": {"credential": {"type": "workload_identity", "federated_token_file": "/var/run/token"}},
    }
    assert poller_yaml(render(chart, {"config": config}))["elasticsearch"]["api_key_file"] == "/run/secrets/other/es"


DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


@pytest.mark.parametrize(
    ("release", "values"),
    [
        ("r" * 63, {}),
        ("mp", {"fullnameOverride": "f" * 63}),
        ("a" * 40, {"nameOverride": "n" * 30}),
    ],
)
def test_long_names_still_make_valid_pod_names(chart, release: str, values: dict[str, Any]) -> None:
    from metrics_poller.runtime import shard_index

    replicas = 12
    sharded = render(chart, merged(values, {"mode": "sharded", "replicas": replicas}), name=release)
    (sts,) = by_kind(sharded)["StatefulSet"]
    name = sts["metadata"]["name"]
    last_pod = f"{name}-{replicas - 1}"
    assert len(last_pod) <= 63 and DNS_LABEL.fullmatch(last_pod), last_pod
    # The StatefulSet controller labels each pod controller-revision-hash=<name>-<10-character hash>.
    assert len(f"{name}-{'h' * 10}") <= 63
    (svc,) = by_kind(sharded)["Service"]
    assert sts["spec"]["serviceName"] == svc["metadata"]["name"]
    # Each pod still derives its shard from its name.
    cfg = _config_seen_by(sharded)
    assert shard_index(cfg, hostname=last_pod) == replicas - 1
    (cronjob,) = by_kind(render(chart, merged(values, {"mode": "cronjob"}), name=release))["CronJob"]
    assert len(cronjob["metadata"]["name"]) <= 52, "Job names add an 11-character suffix"
    for mode in ("service", "cronjob", "sharded"):
        for doc in render(chart, merged(values, {"mode": mode}), name=release):
            meta = doc["metadata"]
            if doc["kind"] == "Service":
                assert len(meta["name"]) <= 63 and DNS_LABEL.fullmatch(meta["name"]), meta["name"]
            assert len(meta["name"]) <= 253
            for value in meta.get("labels", {}).values():
                assert len(value) <= 63 and LABEL_VALUE.fullmatch(value), value


def _config_seen_by(docs: list[dict[str, Any]]) -> Any:
    from metrics_poller import config

    env = {k: v for k, v in literal_env(docs).items() if k.startswith(config.ENV_PREFIX)}
    return config.parse(poller_yaml(docs), env)


# ------------------------------------------------------------------------------ Pod Security Standards

# The restricted profile (which includes baseline), as listed on
# https://kubernetes.io/docs/concepts/security/pod-security-standards/ (Kubernetes 1.30).
RESTRICTED_VOLUME_TYPES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret",
}  # fmt: skip


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    found = []
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            found.append(f"spec.{field}")
    pod_sc = pod.get("securityContext", {})
    selinux_types = (None, "", "container_t", "container_init_t", "container_kvm_t")
    if pod_sc.get("seLinuxOptions", {}).get("type") not in selinux_types:
        found.append("spec.securityContext.seLinuxOptions.type")
    for sysctl in pod_sc.get("sysctls", []):
        found.append(f"sysctl {sysctl['name']}")
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUME_TYPES:
            found.append(f"volume {volume['name']}: {sorted(kinds)}")
    for c in pod.get("initContainers", []) + pod["containers"]:
        sc = c.get("securityContext", {})
        where = f"container {c['name']}"
        if sc.get("privileged"):
            found.append(f"{where}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            found.append(f"{where}: allowPrivilegeEscalation must be false")
        if sc.get("procMount", "Default") != "Default":
            found.append(f"{where}: procMount")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            found.append(f"{where}: capabilities must drop ALL")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            found.append(f"{where}: capabilities added")
        for port in c.get("ports", []):
            if port.get("hostPort"):
                found.append(f"{where}: hostPort")
        run_as_non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
        if run_as_non_root is not True:
            found.append(f"{where}: runAsNonRoot must be true")
        if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
            found.append(f"{where}: runAsUser 0")
        seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append(f"{where}: seccompProfile must be RuntimeDefault or Localhost")
    return found


def test_restricted_checker_finds_violations() -> None:
    pod = {
        "hostNetwork": True,
        "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
        "containers": [{"name": "c", "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}],
    }
    found = " ".join(restricted_violations(pod))
    for expected in ("hostNetwork", "hostPath", "allowPrivilegeEscalation", "drop ALL", "added", "runAsNonRoot"):
        assert expected in found
