"""The README, the example configurations, the systemd units, the crontab, the Kubernetes examples, the
Helm chart and the Dockerfile agree on every path of the installed layout.

The README's "Running it" section is the reference: configuration in /etc/metrics-poller/poller.yaml,
one file per secret under /etc/metrics-poller/credentials/, cursors in
/var/lib/metrics-poller/cursors.json, the command in /opt/metrics-poller/bin. Issue 11 saw the example
configuration name /etc/metrics-poller/azure-client-secret, so `validate` failed outside the unit.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
SOURCES = sorted(
    {
        README,
        REPO / "Dockerfile",
        REPO / "config/crontab.example",
        *(REPO / "config").glob("*.yaml"),
        *(REPO / "config/systemd").iterdir(),
        *(REPO / "config/kubernetes").glob("*.yaml"),
        *(p for p in (REPO / "config/helm").rglob("*") if p.is_file()),
    }
)

CONFIG = "/etc/metrics-poller/poller.yaml"
CREDENTIALS = "/etc/metrics-poller/credentials"
STATE = "/var/lib/metrics-poller/cursors.json"
LAYOUT = {
    "/etc/metrics-poller",
    CONFIG,
    "/etc/metrics-poller/environment",
    CREDENTIALS,
    "/var/lib/metrics-poller",
    STATE,
    "/opt/metrics-poller",
    "/opt/metrics-poller/bin",
    "/opt/metrics-poller/bin/metrics-poller",
    "/opt/metrics-poller/bin/pip",
    "/var/log/metrics-poller",
    "/var/log/metrics-poller/once.log",
}
# systemd specifiers: %S is the state directory root (/var/lib for system units).
SPECIFIERS = {"%S/": "/var/lib/"}
PATH = re.compile(r"(?:/etc|/var/lib|/var/log|/opt|%S)/metrics-poller(?:/[A-Za-z0-9_.-]*[A-Za-z0-9_-])*")


def paths_in(source: Path) -> set[str]:
    text = source.read_text(encoding="utf-8")
    found = set()
    for match in PATH.findall(text):
        for specifier, value in SPECIFIERS.items():
            match = match.replace(specifier, value)
        found.add(match)
    return found


def credential_names(paths: set[str]) -> set[str]:
    return {p.removeprefix(CREDENTIALS + "/") for p in paths if p.startswith(CREDENTIALS + "/")}


def test_the_readme_names_the_whole_layout() -> None:
    readme = paths_in(README)
    assert {CONFIG, CREDENTIALS, STATE, "/opt/metrics-poller/bin/metrics-poller"} <= readme


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_path_is_part_of_the_readme_layout(source: Path) -> None:
    readme_names = credential_names(paths_in(README))

    def in_layout(path: str) -> bool:
        return path in LAYOUT or (path.startswith(CREDENTIALS + "/") and credential_names({path}) <= readme_names)

    strays = sorted(p for p in paths_in(source) if not in_layout(p))
    assert not strays, f"{source.name} names paths outside the README's layout: {strays}"


def test_secret_files_live_in_the_credentials_directory() -> None:
    example = yaml.safe_load((REPO / "config/poller.example.yaml").read_text())
    named = [
        example["azure"]["credential"]["client_secret_file"],
        example["elasticsearch"]["api_key_file"],
    ]
    crontab = (REPO / "config/crontab.example").read_text()
    named += re.findall(r"^METRICS_POLLER__\w+_FILE=(\S+)", crontab, re.M)
    units = "".join(p.read_text() for p in (REPO / "config/systemd").glob("*.service"))
    loaded = re.findall(r"^LoadCredential=([\w-]+):(\S+)", units, re.M)
    named += [path for _, path in loaded]
    readme_names = credential_names(paths_in(README))
    for path in named:
        assert path.startswith(CREDENTIALS + "/"), f"{path} is not under {CREDENTIALS}/"
        assert Path(path).name in readme_names, f"{path}: the README never tells where to put it"
    # systemd hands each credential to the poller under the name of its file.
    assert loaded and all(name == Path(path).name for name, path in loaded)
    assert set(re.findall(r"_FILE=%d/([\w-]+)", units)) <= {name for name, _ in loaded}


def test_config_and_state_paths_agree() -> None:
    example = yaml.safe_load((REPO / "config/poller.example.yaml").read_text())
    assert example["state"]["path"] == STATE
    assert CONFIG in (REPO / "config/poller.example.yaml").read_text()
    crontab = (REPO / "config/crontab.example").read_text()
    assert f"--config {CONFIG}" in crontab
    assert re.search(rf"^METRICS_POLLER__STATE__PATH={STATE}$", crontab, re.M)
    for unit in (REPO / "config/systemd").glob("*.service"):
        text = unit.read_text()
        assert f"METRICS_POLLER_CONFIG={CONFIG}" in text, unit.name
        assert "METRICS_POLLER__STATE__PATH=%S/metrics-poller/cursors.json" in text, unit.name
        assert "ExecStart=/opt/metrics-poller/bin/metrics-poller " in text, unit.name
    for manifest in [REPO / "config/kubernetes/cronjob.yaml"]:
        docs = [d for d in yaml.safe_load_all(manifest.read_text()) if d]
        text = yaml.safe_dump(docs)
        assert f"value: {CONFIG}" in text and "mountPath: /etc/metrics-poller" in text, manifest.name
