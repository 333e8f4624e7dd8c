"""The container image definition, checked without a Docker engine.

The Dockerfile is parsed into instructions (comments, line continuations and the JSON "exec" form
handled as Docker does), its properties are asserted, its HEALTHCHECK command is run against a
local HTTP server, and the build context that `.dockerignore` lets through is built into a wheel
with pip, the way the image's `pip install .` step builds it.
"""

from __future__ import annotations

import ast
import fnmatch
import http.server
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

SECRET_NAME = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|API_?KEY|PRIVATE_KEY", re.I)


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int

    @property
    def exec_form(self) -> list[str] | None:
        text = self.args.strip()
        if not text.startswith("["):
            return None
        value = json.loads(text)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value)
        return value


def parse_dockerfile(text: str) -> list[Instruction]:
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue  # comments (and parser directives) and blank lines outside an instruction
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        joined = " ".join(p for p in pending if p)
        pending = []
        keyword, _, args = joined.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    result: list[list[Instruction]] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            result.append([])
        assert result, f"line {ins.line}: {ins.keyword} before the first FROM"
        result[-1].append(ins)
    return result


def key_values(ins: Instruction) -> dict[str, str]:
    """ENV/ARG/LABEL arguments (`k=v k2="v 2"`, or the legacy `ENV k v`) as a mapping."""
    if ins.keyword == "ENV" and "=" not in ins.args.split()[0]:
        key, _, value = ins.args.partition(" ")
        return {key: value.strip()}
    pairs = {}
    for token in shlex.split(ins.args):
        key, sep, value = token.partition("=")
        pairs[key] = value if sep else ""
    return pairs


@pytest.fixture(scope="module")
def dockerfile(repo: Path) -> list[Instruction]:
    return parse_dockerfile((repo / "Dockerfile").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def final_stage(dockerfile: list[Instruction]) -> list[Instruction]:
    return stages(dockerfile)[-1]


def only(stage: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in stage if i.keyword == keyword]
    assert len(found) == 1, f"expected exactly one {keyword} in the final stage, found {len(found)}"
    return found[0]


def test_parser_handles_continuations_and_comments() -> None:
    parsed = parse_dockerfile('# c\nFROM a:1 AS b\nRUN x \\\n  # inner\n  && y\nCMD ["z"]\n')
    assert [(i.keyword, i.args) for i in parsed] == [
        ("FROM", "a:1 AS b"),
        ("RUN", "x && y"),
        ("CMD", '["z"]'),
    ]


def test_every_stage_is_a_pinned_python_311_slim_image(dockerfile: list[Instruction]) -> None:
    froms = [i for i in dockerfile if i.keyword == "FROM"]
    assert froms
    for ins in froms:
        image = next(t for t in ins.args.split() if not t.startswith("--"))
        name, _, tag = image.partition(":")
        assert name in ("python", "docker.io/library/python"), image
        assert tag.startswith("3.11") and "slim" in tag, (
            f"line {ins.line}: base image {image} is not python:3.11-slim"
        )
        assert tag != "latest" and "latest" not in tag.split("-"), image


def test_runs_as_a_fixed_numeric_non_root_user(final_stage: list[Instruction]) -> None:
    user = [i for i in final_stage if i.keyword == "USER"]
    assert user, "the final stage sets no USER, so it runs as root"
    match = re.fullmatch(r"(\d+)(?::(\d+))?", user[-1].args)
    assert match, f"USER {user[-1].args!r} is not numeric (Kubernetes runAsNonRoot cannot check a name)"
    assert int(match.group(1)) != 0
    assert match.group(2) is None or int(match.group(2)) != 0
    # The Helm chart and the example manifests run as the same UID.
    assert int(match.group(1)) == 10001


def test_entrypoint_and_default_command(final_stage: list[Instruction]) -> None:
    assert only(final_stage, "ENTRYPOINT").exec_form == ["metrics-poller"]
    assert only(final_stage, "CMD").exec_form == ["run"]
    assert "9108" in only(final_stage, "EXPOSE").args.split()


def test_environment_suits_a_read_only_root_file_system(final_stage: list[Instruction], check_config) -> None:
    env: dict[str, str] = {}
    for ins in final_stage:
        if ins.keyword == "ENV":
            env.update(key_values(ins))
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"
    assert env["METRICS_POLLER__STATE__PATH"].startswith("/var/lib/metrics-poller/")
    volumes = [v for i in final_stage if i.keyword == "VOLUME" for v in (i.exec_form or i.args.split())]
    assert "/var/lib/metrics-poller" in volumes
    # Every METRICS_POLLER__ variable the image sets is a real configuration key with a valid value.
    cfg = check_config(env)
    assert cfg.http.listen == "0.0.0.0:9108"
    assert cfg.state.path == env["METRICS_POLLER__STATE__PATH"]


def test_no_secret_is_baked_into_the_image(dockerfile: list[Instruction]) -> None:
    for ins in dockerfile:
        if ins.keyword in ("ENV", "ARG"):
            for key, value in key_values(ins).items():
                if SECRET_NAME.search(key) and not key.upper().endswith("_FILE"):
                    assert not value, f"line {ins.line}: {ins.keyword} {key} carries a value into the image"
        if ins.keyword in ("COPY", "ADD"):
            sources = [t for t in ins.args.split() if not t.startswith("--")][:-1]
            for source in sources:
                assert not re.search(r"\.env|secret|credential|\.pem$|\.key$", source, re.I), source


def test_healthcheck_uses_the_standard_library(final_stage: list[Instruction]) -> None:
    check = only(final_stage, "HEALTHCHECK")
    command = check.args[check.args.index("CMD") :].removeprefix("CMD").strip()
    argv = json.loads(command)
    assert argv[0] == "python", "slim images have no curl or wget"
    assert "http://127.0.0.1:9108/healthz" in " ".join(argv)


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False), (None, False)])
def test_healthcheck_command_reports_the_endpoint_status(
    final_stage: list[Instruction], status: int | None, healthy: bool
) -> None:
    """Run the HEALTHCHECK's own command; only its port is moved to a free one for the test."""
    check = only(final_stage, "HEALTHCHECK")
    argv = json.loads(check.args[check.args.index("CMD") + 3 :].strip())
    handler = type("Handler", (_Health,), {"status": status or 200})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    port = server.server_address[1]
    if status is None:
        server.server_close()  # nothing listens: the check must fail, not hang
    else:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        script = argv[-1].replace("127.0.0.1:9108", f"127.0.0.1:{port}")
        assert script != argv[-1]
        result = subprocess.run([sys.executable, *argv[1:-1], script], capture_output=True, timeout=20)
    finally:
        if status is not None:
            server.shutdown()
            server.server_close()
    assert (result.returncode == 0) is healthy, result.stderr.decode()


def test_installs_this_project_with_pip_like_the_makefile(dockerfile: list[Instruction], repo: Path) -> None:
    build = stages(dockerfile)[0]
    copied = [t for i in build if i.keyword == "COPY" for t in i.args.split()[:-1] if not t.startswith("--")]
    assert {"pyproject.toml", "README.md", "metrics_poller/"} <= set(copied)
    installs = [args for _, args in pip_installs(build)]
    assert any("." in args for args in installs), f"no `pip install .` in the build stage: {installs}"
    # The Makefile installs the same project: the pyproject.toml at the repository root.
    makefile = (repo / "Makefile").read_text(encoding="utf-8")
    make_install = [
        shlex.split(line.strip()) for line in makefile.splitlines() if "pip install" in line and "-e" in line
    ]
    assert make_install, "the Makefile no longer installs the project with pip"
    targets = [w for w in make_install[0] if w.startswith(".")]
    assert targets and targets[0].split("[")[0] == ".", make_install[0]


def pip_installs(stage: list[Instruction]) -> list[tuple[int, list[str]]]:
    """(instruction index, arguments after `pip install`) of every pip install a stage RUNs."""
    found = []
    for index, ins in enumerate(stage):
        if ins.keyword != "RUN":
            continue
        for command in re.split(r"&&|;", ins.args):
            words = shlex.split(command)
            if len(words) >= 2 and words[0].endswith("pip") and words[1] == "install":
                found.append((index, words[2:]))
    return found


def test_dependencies_come_from_the_lock_in_a_layer_before_the_code(dockerfile: list[Instruction]) -> None:
    """A code change must not re-download every dependency: the locked requirements are installed
    in a layer built from the lock file alone, and the code is installed afterwards without resolving."""
    build = stages(dockerfile)[0]
    installs = pip_installs(build)
    from_lock = [(i, args) for i, args in installs if "-r" in args]
    assert from_lock, f"no `pip install -r <lock>` in the build stage: {installs}"
    lock_index, lock_args = from_lock[0]
    assert lock_args[lock_args.index("-r") + 1] == "requirements/runtime.txt"
    copies_before = [i for i in build[:lock_index] if i.keyword == "COPY"]
    assert [i.args.split()[:-1] for i in copies_before] == [["requirements/runtime.txt"]], (
        "only the lock may be copied before the dependencies are installed"
    )
    code_copy = next(n for n, i in enumerate(build) if i.keyword == "COPY" and "metrics_poller/" in i.args)
    assert code_copy > lock_index
    project = [(i, args) for i, args in installs if "." in args]
    assert project and project[0][0] > code_copy
    assert "--no-deps" in project[0][1], "the project install must not resolve dependencies past the lock"
    assert "pip check" in build[project[0][0]].args, "nothing proves the lock satisfies pyproject.toml"


def test_production_code_never_imports_the_test_only_package(repo: Path) -> None:
    """`metrics_poller.testing` is left out of the image: nothing outside it may import it."""
    offenders = []
    for path in (repo / "metrics_poller").rglob("*.py"):
        if "testing" in path.relative_to(repo / "metrics_poller").parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            if any(n == "metrics_poller.testing" or n.startswith("metrics_poller.testing.") for n in names):
                offenders.append(str(path.relative_to(repo)))
    assert not offenders


# ------------------------------------------------------------------------------ build context


def dockerignore_included(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent directories wins."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    included = True
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pattern = pattern.strip("/")
        for candidate in candidates:
            if _match(pattern, candidate):
                included = negate
                break
    return included


def _match(pattern: str, path: str) -> bool:
    if pattern.startswith("**/"):
        rest = pattern[3:]
        segments = path.split("/")
        return any(fnmatch.fnmatchcase("/".join(segments[i:]), rest) for i in range(len(segments)))
    return fnmatch.fnmatchcase(path, pattern) and pattern.count("/") == path.count("/")


def test_dockerignore_matcher_follows_last_match_rule() -> None:
    rules = ["*", "!pkg/", "**/__pycache__"]
    assert dockerignore_included(rules, "pkg/a.py")
    assert not dockerignore_included(rules, "pkg/__pycache__/a.pyc")
    assert not dockerignore_included(rules, ".venv/bin/python")


def _context_files(repo: Path) -> list[str]:
    rules = [
        line.strip()
        for line in (repo / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    files = []
    for folder, dirs, names in os.walk(repo):
        if Path(folder) == repo:
            dirs[:] = [d for d in dirs if d not in (".git", ".venv")]  # never part of any context
        for name in names:
            rel = (Path(folder) / name).relative_to(repo).as_posix()
            if dockerignore_included(rules, rel):
                files.append(rel)
    return files


def test_build_context_excludes_everything_but_the_package(repo: Path) -> None:
    files = _context_files(repo)
    assert "pyproject.toml" in files
    assert "metrics_poller/cli.py" in files
    assert "requirements/runtime.txt" in files and "requirements/test.txt" not in files
    assert not [f for f in files if f.startswith("metrics_poller/testing/")], "test-only code in the image"
    assert not [f for f in files if f.startswith(("tests/", "config/", ".ci/", "state/", "out/"))]
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]


def test_context_copied_by_the_dockerfile_builds_the_console_script(
    dockerfile: list[Instruction], repo: Path, tmp_path: Path
) -> None:
    """`pip install .` on exactly the files the build stage copies (after .dockerignore) must work."""
    if not (repo / "README.md").is_file():
        pytest.fail("README.md is missing: pyproject names it as the readme and the Dockerfile copies it")
    build = stages(dockerfile)[0]
    sources = [t for i in build if i.keyword == "COPY" for t in i.args.split()[:-1] if not t.startswith("--")]
    context = set(_context_files(repo))
    src = tmp_path / "src"
    for rel in sorted(context):
        if any(rel == s.rstrip("/") or rel.startswith(s.rstrip("/") + "/") for s in sources):
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(repo / rel, src / rel)
    for source in sources:
        assert (src / source.rstrip("/")).exists(), (
            f"COPY {source}: not in the build context (.dockerignore?)"
        )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "--disable-pip-version-check",
            "-w",
            str(tmp_path / "dist"),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert not re.search(r"deprecat", result.stdout + result.stderr, re.I), result.stderr[-3000:]
    wheels = list((tmp_path / "dist").glob("metrics_poller-*.whl"))
    assert len(wheels) == 1
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = wheel.namelist()
        assert "metrics_poller/cli.py" in names
        assert "metrics_poller/simulator/server.py" in names  # `demo` and `simulate` are production commands
        assert not [n for n in names if n.startswith("metrics_poller/testing/")]
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        text = wheel.read(entry_points).decode()
    assert re.search(r"^metrics-poller\s*=\s*metrics_poller\.cli:main$", text, re.M), text
