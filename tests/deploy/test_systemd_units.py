"""systemd units: `systemd-analyze verify` must be silent, the security exposure must stay <= 2.0,
and the environment the units set must be a valid poller configuration.

`verify` refuses a unit whose ExecStart binary does not exist, and the units name the install path
/opt/metrics-poller/bin/metrics-poller, which no test machine has. Rather than editing the units,
each test builds a throw-away root directory holding a copy of the system's unit directory (for the
targets the units refer to), the unit files unchanged and an executable stub at the ExecStart path,
and runs `systemd-analyze verify --root=<that directory>`.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ANALYZE = shutil.which("systemd-analyze")
pytestmark = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze is not installed (apt-get install systemd)"
)

UNITS = ("metrics-poller.service", "metrics-poller-once.service", "metrics-poller-once.timer")
SERVICES = UNITS[:2]
SYSTEM_UNIT_DIRS = (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))


def directives(path: Path) -> dict[str, list[str]]:
    """`Section.Key` -> every value assigned, in order (systemd allows repeated keys)."""
    result: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        result.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return result


def one(values: dict[str, list[str]], key: str) -> str:
    assert key in values, f"{key} is not set"
    return values[key][-1]


@pytest.fixture(scope="module")
def unit_dir(repo: Path) -> Path:
    return repo / "config" / "systemd"


@pytest.fixture()
def fake_root(tmp_path: Path, unit_dir: Path) -> Path:
    root = tmp_path / "root"
    system = next((d for d in SYSTEM_UNIT_DIRS if (d / "multi-user.target").exists()), None)
    if system is None:
        pytest.skip("no systemd unit directory with multi-user.target on this machine")
    shutil.copytree(system, root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    for name in UNITS:
        shutil.copy2(unit_dir / name, root / "etc/systemd/system" / name)
        for start in directives(unit_dir / name).get("Service.ExecStart", []):
            binary = root / shlex.split(start.lstrip("-@:+!"))[0].lstrip("/")
            binary.parent.mkdir(parents=True, exist_ok=True)
            binary.write_text("#!/bin/sh\nexit 0\n")
            binary.chmod(0o755)
    return root


def verify(root: Path, unit: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ANALYZE, "verify", "--man=no", f"--root={root}", unit],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("unit", UNITS)
def test_verify_reports_nothing(fake_root: Path, unit: str) -> None:
    result = verify(fake_root, unit)
    assert result.stderr == "", result.stderr
    assert result.returncode == 0, result.stdout


def test_verify_harness_sees_warnings_and_missing_binaries(fake_root: Path) -> None:
    """The harness must be able to fail: an unknown key and a missing binary are both reported."""
    unit = fake_root / "etc/systemd/system/metrics-poller.service"
    unit.write_text(unit.read_text().replace("WatchdogSec=120", "WatchdogSec=soon"))
    assert "ignoring: soon" in verify(fake_root, "metrics-poller.service").stderr
    (fake_root / "opt/metrics-poller/bin/metrics-poller").unlink()
    result = verify(fake_root, "metrics-poller.service")
    assert result.returncode != 0 and "not executable" in result.stderr


@pytest.mark.parametrize("unit", SERVICES)
def test_security_exposure_is_at_most_2(unit_dir: Path, unit: str) -> None:
    result = subprocess.run(
        [ANALYZE, "security", "--offline=yes", "--no-pager", str(unit_dir / unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    match = re.search(r"Overall exposure level for (\S+): (\d+(?:\.\d+)?)", last)
    assert match and match.group(1) == unit, last
    assert float(match.group(2)) <= 2.0, result.stdout


def test_service_is_a_notify_service_with_a_watchdog(unit_dir: Path) -> None:
    d = directives(unit_dir / "metrics-poller.service")
    assert one(d, "Service.Type") == "notify"
    assert shlex.split(one(d, "Service.ExecStart")) == ["/opt/metrics-poller/bin/metrics-poller", "run"]
    # The poller pings at least every 30 s; leave room for a slow ping or two.
    assert int(one(d, "Service.WatchdogSec")) >= 90
    assert one(d, "Service.Restart") == "on-failure"
    assert "2" in one(d, "Service.RestartPreventExitStatus").split()
    # SIGTERM stops it within 30 s; systemd must not SIGKILL earlier.
    assert int(one(d, "Service.TimeoutStopSec").removesuffix("s")) > 30
    assert one(d, "Install.WantedBy") == "multi-user.target"


def test_once_service_and_timer(unit_dir: Path) -> None:
    d = directives(unit_dir / "metrics-poller-once.service")
    assert one(d, "Service.Type") == "oneshot"
    assert shlex.split(one(d, "Service.ExecStart")) == ["/opt/metrics-poller/bin/metrics-poller", "once"]
    assert "Install.WantedBy" not in d, "the timer starts it; it must not be enabled on its own"
    t = directives(unit_dir / "metrics-poller-once.timer")
    assert one(t, "Timer.Persistent") == "true"
    assert one(t, "Timer.AccuracySec") == "1s"
    assert one(t, "Timer.Unit") == "metrics-poller-once.service"
    assert one(t, "Install.WantedBy") == "timers.target"
    calendar = subprocess.run(
        [ANALYZE, "calendar", "--iterations=3", one(t, "Timer.OnCalendar")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert calendar.returncode == 0, calendar.stderr
    assert "Normalized form: *-*-* *:00/5:00" in calendar.stdout
    elapses = re.findall(r"(?:Next elapse|Iter\. #\d+): \S+ \S+ (\d\d):(\d\d):(\d\d)", calendar.stdout)
    assert len(elapses) == 3
    assert all(int(m) % 5 == 0 and s == "00" for _, m, s in elapses)


HARDENING = {
    "DynamicUser": "yes",
    "StateDirectory": "metrics-poller",
    "ConfigurationDirectory": "metrics-poller",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "NoNewPrivileges": "yes",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "PrivateUsers": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "ProtectProc": "invisible",
    "ProcSubset": "pid",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "RestrictNamespaces": "yes",
    "RestrictRealtime": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "SystemCallArchitectures": "native",
    "UMask": "0077",
    "DevicePolicy": "closed",
    "RemoveIPC": "yes",
    "KeyringMode": "private",
}


@pytest.mark.parametrize("unit", SERVICES)
def test_hardening(unit_dir: Path, unit: str) -> None:
    d = directives(unit_dir / unit)
    wrong = {k: d.get(f"Service.{k}") for k, v in HARDENING.items() if d.get(f"Service.{k}", [None])[-1] != v}
    assert not wrong, wrong
    assert d["Service.SystemCallFilter"] == ["@system-service", "~@privileged @resources"]
    # Both units share one state directory, so they must run as the same (dynamic) user.
    assert one(d, "Service.User") == "metrics-poller"
    assert "Service.IPAddressDeny" not in d, "Azure and Elasticsearch addresses are not fixed"


@pytest.mark.parametrize("unit", SERVICES)
def test_environment_is_a_valid_configuration_and_secrets_come_from_credentials(
    unit_dir: Path, unit: str, tmp_path: Path, check_config
) -> None:
    d = directives(unit_dir / unit)
    assert one(d, "Service.EnvironmentFile") == "-/etc/metrics-poller/environment"
    credentials = dict(v.split(":", 1) for v in d["Service.LoadCredential"])
    assert all(path.startswith("/etc/metrics-poller/") for path in credentials.values())
    # What systemd would hand the process: %S is /var/lib, %d the private credentials directory.
    state, creds = tmp_path / "state", tmp_path / "credentials"
    state.mkdir()
    creds.mkdir()
    for name in credentials:
        (creds / name).write_text(f"value-of-{name}\n")
    env: dict[str, str] = {}
    for assignment in d["Service.Environment"]:
        for token in shlex.split(assignment):
            key, _, value = token.partition("=")
            env[key] = value.replace("%S", str(state)).replace("%d", str(creds))
    for key, value in env.items():
        if re.search(r"SECRET|PASSWORD|API_KEY|TOKEN", key) and not key.endswith("_FILE"):
            pytest.fail(f"{key} carries a secret value in the unit")
        if key.endswith("_FILE"):
            assert value.startswith(str(creds) + "/"), f"{key} must point into %d (LoadCredential=)"
            assert Path(value).name in credentials, f"{key} names a credential that is not loaded"
    assert env["METRICS_POLLER_CONFIG"] == "/etc/metrics-poller/poller.yaml"
    cfg = check_config(env)
    assert cfg.state.backend == "file"
    assert cfg.state.path == f"{state}/metrics-poller/cursors.json"
    assert cfg.azure.credential.client_secret.get_secret_value() == "value-of-azure-client-secret"
    assert cfg.elasticsearch.api_key.get_secret_value() == "value-of-elasticsearch-api-key"


MDWE_PROBE = """
import ctypes, importlib, ssl, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN (Linux >= 6.3)
    sys.exit(77)
for name in sys.argv[1:]:
    importlib.import_module(name)
assert ctypes.CFUNCTYPE(ctypes.c_int)(lambda: 7)() == 7  # libffi closure
ssl.create_default_context()
import trustme
trustme.CA().issue_cert("localhost")
print("ok")
"""


def test_python_and_dependencies_run_with_memory_deny_write_execute(repo: Path) -> None:
    """MemoryDenyWriteExecute=yes refuses writable+executable mappings. The kernel's own switch for
    the same rule (prctl PR_SET_MDWE) is applied to a Python process that then imports the poller
    and its native dependencies and makes a ctypes callback."""
    modules = [
        "metrics_poller.cli",
        "metrics_poller.config",
        "aiohttp",
        "azure.identity",
        "elasticsearch",
        "orjson",
        "pydantic",
        "apscheduler.schedulers.asyncio",
        "prometheus_client",
        "ecs_logging",
        "cryptography.hazmat.primitives.asymmetric.rsa",
    ]
    result = subprocess.run(
        [sys.executable, "-c", MDWE_PROBE, *modules],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(repo)},
    )
    if result.returncode == 77:
        pytest.skip("this kernel has no PR_SET_MDWE (Linux < 6.3), so the rule cannot be applied here")
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]
