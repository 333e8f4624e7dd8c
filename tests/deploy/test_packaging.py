"""Packaging: the project metadata, the lock files every install takes its versions from, and what the
build backend prints while `make install` / `make demo` install the project."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

RUNTIME_LOCK = "requirements/runtime.txt"
TEST_LOCK = "requirements/test.txt"


def pyproject(repo: Path) -> dict:  # type: ignore[type-arg]
    return tomllib.loads((repo / "pyproject.toml").read_text(encoding="utf-8"))


def read_lock(path: Path) -> dict[str, Requirement]:
    """name → the pinned requirement (with its environment marker) of a pip/uv requirements file."""
    pins: dict[str, Requirement] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        req = Requirement(line)
        (spec,) = req.specifier
        assert spec.operator == "==", f"{path.name}: {line!r} is not pinned with =="
        pins[canonicalize_name(req.name)] = req
    return pins


def pinned(req: Requirement) -> Version:
    return Version(next(iter(req.specifier)).version)


def make_dry_run(repo: Path, target: str) -> list[str]:
    """The commands `make TARGET` would run from scratch, as make expands them."""
    result = subprocess.run(
        ["make", "-n", "-B", target], cwd=repo, capture_output=True, text=True, timeout=60, check=True
    )
    return result.stdout.splitlines()


def test_license_is_an_spdx_expression_and_setuptools_supports_it(repo: Path) -> None:
    meta = pyproject(repo)
    assert meta["project"]["license"] == "Apache-2.0", "PEP 639: a plain SPDX expression, not a table"
    assert not [c for c in meta["project"].get("classifiers", []) if c.startswith("License ::")]
    (setuptools,) = [Requirement(r) for r in meta["build-system"]["requires"] if r.startswith("setuptools")]
    spec = setuptools.specifier
    # setuptools 77.0 is the first release that reads PEP 639 expressions; an upper bound keeps a
    # future major release from breaking installs unannounced.
    assert not spec.contains("76.1.0") and spec.contains("77.0.3")
    assert any(s.operator in ("<", "<=", "~=", "==") for s in spec), f"setuptools {spec} has no upper bound"


def test_installing_the_project_prints_no_deprecation(repo: Path, tmp_path: Path) -> None:
    """The editable install `make install` (and so `make demo`) performs, at pip's normal verbosity, into
    a throwaway environment: the build backend must not warn about the project's own metadata."""
    target = tmp_path / "env"
    venv.create(target, with_pip=False)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(target / "bin" / "python"), "install", "--no-deps",
         "--disable-pip-version-check", "-e", str(repo)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert not re.search(r"deprecat", output, re.I), output[-3000:]


@pytest.mark.parametrize("lock", [RUNTIME_LOCK, TEST_LOCK])
def test_lock_satisfies_every_declared_dependency(repo: Path, lock: str) -> None:
    meta = pyproject(repo)["project"]
    declared = [Requirement(r) for r in meta["dependencies"]]
    if lock == TEST_LOCK:
        declared += [Requirement(r) for r in meta["optional-dependencies"]["test"]]
    pins = read_lock(repo / lock)
    for req in declared:
        name = canonicalize_name(req.name)
        assert name in pins, f"{lock}: {req.name} is declared in pyproject.toml but not locked (make lock)"
        assert req.specifier.contains(pinned(pins[name]), prereleases=True), (
            f"{lock}: {name}=={pinned(pins[name])} is outside pyproject.toml's {req.specifier} (make lock)"
        )
        if req.marker is not None:
            assert str(pins[name].marker) == str(req.marker), f"{lock}: {name} lost its marker {req.marker}"


def test_locks_agree_and_cover_every_platform(repo: Path) -> None:
    runtime, test = read_lock(repo / RUNTIME_LOCK), read_lock(repo / TEST_LOCK)
    for name, req in runtime.items():
        assert name in test and pinned(test[name]) == pinned(req), f"{name}: the two locks disagree"
    assert "pytest" not in runtime and "helm-python-sdk" not in runtime, "test tools in the runtime lock"
    # Resolved for every platform (uv --universal), not just this machine: Windows-only packages are
    # there, behind their markers.
    windows = {**default_environment(), "sys_platform": "win32", "platform_system": "Windows"}
    assert [n for n, r in test.items() if r.marker and r.marker.evaluate(windows) and
            not r.marker.evaluate(default_environment())]  # fmt: skip
    for path in (RUNTIME_LOCK, TEST_LOCK):
        header = (repo / path).read_text(encoding="utf-8").splitlines()[:3]
        assert any(line.strip("# ").strip() == "make lock" for line in header), f"{path} not made by make lock"


def test_every_install_command_takes_the_lock(repo: Path) -> None:
    commands = [c for target in ("install", "demo", "test") for c in make_dry_run(repo, target)]
    project_installs = [c for c in commands if " install " in c and " -e " in c]
    assert project_installs, commands
    for command in project_installs:
        assert re.search(rf"(-c|--constraint)[ =]{re.escape(TEST_LOCK)}\b", command), command
    lock = make_dry_run(repo, "lock")
    compiles = [c for c in lock if "pip compile" in c]
    assert [c for c in compiles if c.endswith(f"-o {RUNTIME_LOCK}")]
    assert [c for c in compiles if f"-c {RUNTIME_LOCK}" in c and c.endswith(f"-o {TEST_LOCK}")]
    assert all("--universal" in c for c in compiles)
