"""The README and `config/crontab.example` are executable documentation: their commands run here.

Each runnable block is run with `sh -c` exactly as written, except that paths are substituted
(`PATHS`): `/etc/metrics-poller/poller.yaml` becomes a configuration for the simulator that the
README's own `metrics-poller simulate --write-config` wrote, `/opt/metrics-poller/bin` a directory
holding the installed `metrics-poller`, and the log, lock, state and credential paths live under a
temporary directory. Blocks that cannot run here are listed in `NOT_RUN` with the reason; a new shell
block in the README fails `test_every_shell_block_is_run_or_excused` until it is one or the other.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
CRONTAB = REPO / "config/crontab.example"
INSTALLED = Path(sys.executable).with_name("metrics-poller")  # what `make install` put in the venv

# README commands that are not run, by what marks them, and why.
NOT_RUN = {
    "make test": "is this test suite; running it from inside itself would recurse",
    "sudo ": "installs into /opt and /etc and calls systemctl: needs root and a systemd host "
    "(the units are checked in test_systemd_units.py)",
    "journalctl ": "follows the journal of the systemd unit installed by the sudo lines above",
    "helm ": "needs a Kubernetes cluster (the chart is rendered and validated in test_helm_chart.py)",
    "docker ": "needs a container engine (the Dockerfile is checked in test_dockerfile.py)",
    "-m real_es": "needs a real Elasticsearch cluster; without ELASTICSEARCH_URL these tests skip themselves",
    "metrics_poller.testing.es_server": "serves until Ctrl-C; `make demo-es` starts the same server and is run",
}
# README commands that are run, by what marks them, and the test that runs them.
RUN = {
    "make demo-es": "tests/runtime/test_es_handling.py (its Makefile recipe)",
    "make demo": "test_make_demo_writes_documents",
    "metrics-poller simulate": "served (fixture)",
    "metrics-poller once": "test_readme_simulate_then_once",
    "backfill": "test_readme_backfill_examples",
    "flock -n": "test_cron_line_runs_and_writes_documents",
}


def readme_blocks(language: str | None = None) -> list[tuple[str, str]]:
    """(language, text) of every fenced block of the README."""
    blocks = re.findall(r"^```(\w*)\n(.*?)^```", README.read_text(encoding="utf-8"), re.S | re.M)
    return [(lang, text) for lang, text in blocks if language is None or lang == language]


def shell_block(marker: str) -> str:
    (block,) = [text for lang, text in readme_blocks() if lang in ("sh", "cron") and marker in text]
    return block


def commands(block: str) -> list[str]:
    """The commands of a shell block: continuation lines joined, comment-only and blank lines dropped."""
    joined = re.sub(r"\\\n\s*", "", block)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def substitute(text: str, paths: dict[str, str]) -> str:
    for old in sorted(paths, key=len, reverse=True):
        text = text.replace(old, paths[old])
    return text


def documents(text: str) -> list[dict[str, Any]]:
    """The Elastic-compatible documents among the lines of `text` (log lines and summaries skipped)."""
    docs = []
    for line in text.splitlines():
        if line.startswith("{"):
            item = orjson.loads(line)
            if "azure" in item and "@timestamp" in item and "metricset" in item:
                docs.append(item)
    return docs


def environ(**extra: str) -> dict[str, str]:
    """The user's environment without any METRICS_POLLER* variable, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("METRICS_POLLER")}
    env["PATH"] = f"{INSTALLED.parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def sh(command: str, cwd: Path, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


class Served:
    """The README's simulator, started by its own command line, and the layout the docs assume."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.sim_config = workdir / "sim.yaml"
        root = workdir / "root"
        self.config = root / "etc/metrics-poller/poller.yaml"
        self.credentials = root / "etc/metrics-poller/credentials"
        self.bin = root / "opt/metrics-poller/bin"
        self.state = root / "var/lib/metrics-poller"
        self.log = root / "var/log/metrics-poller"
        self.lock = root / "run/lock"
        self.paths = {
            "/etc/metrics-poller/poller.yaml": str(self.config),
            "/etc/metrics-poller/credentials": str(self.credentials),
            "/opt/metrics-poller/bin": str(self.bin),
            "/var/lib/metrics-poller": str(self.state),
            "/var/log/metrics-poller": str(self.log),
            "/run/lock": str(self.lock),
        }

    def install(self) -> None:
        """What the README's install steps leave behind: the command, a secret-free poller.yaml, secrets in files."""
        for directory in (self.config.parent, self.credentials, self.bin, self.state, self.log, self.lock):
            directory.mkdir(parents=True, exist_ok=True)
        (self.bin / "metrics-poller").symlink_to(INSTALLED)
        if shutil.which("flock") is None:  # util-linux is essential on Debian; elsewhere, a stand-in
            shim = self.bin / "flock"
            shim.write_text(FLOCK_SHIM.format(python=sys.executable))
            shim.chmod(0o755)
        # The secret moves to the file config/poller.example.yaml names, as the README's steps put it there.
        data = yaml.safe_load(self.sim_config.read_text())
        credential = data["azure"]["credential"]
        (self.credentials / "azure-client-secret").write_text(credential.pop("client_secret") + "\n")
        (self.credentials / "elasticsearch-api-key").write_text("unused-with-ndjson-output\n")
        example = yaml.safe_load((REPO / "config/poller.example.yaml").read_text())
        credential["client_secret_file"] = substitute(example["azure"]["credential"]["client_secret_file"], self.paths)
        self.config.write_text(yaml.safe_dump(data))


# A minimal `flock -n FILE COMMAND...` for hosts without util-linux (fcntl locks, same exit status).
FLOCK_SHIM = """#!{python}
import fcntl, os, sys
args = sys.argv[1:]
if args[:1] != ["-n"]:
    sys.exit("flock shim: only -n FILE COMMAND is supported")
with open(args[1], "a") as lock:
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        sys.exit(1)
    sys.exit(os.spawnvp(os.P_WAIT, "sh", ["sh", "-c", " ".join(args[2:])]) if len(args) > 3
             else os.spawnvp(os.P_WAIT, args[2], args[2:]))
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Runs the README's `metrics-poller simulate …` line, as written, until the module is done."""
    workdir = tmp_path_factory.mktemp("docs")
    simulate, *_ = commands(shell_block("metrics-poller simulate"))
    process = subprocess.Popen(
        ["sh", "-c", simulate],
        cwd=workdir,
        env=environ(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, stopped below with Ctrl-C's signal
    )
    try:
        assert process.stdout is not None
        announced = []
        for line in process.stdout:
            announced.append(line)
            if line.startswith("serving"):
                break
        assert (workdir / "sim.yaml").is_file(), "".join(announced)
        served = Served(workdir)
        served.install()
        yield served
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=30)


def test_readme_simulate_then_once(served: Served) -> None:
    _, *rest = commands(shell_block("metrics-poller simulate"))
    assert rest == ["metrics-poller once --config sim.yaml"], "the README's second shell changed; update this test"
    for command in rest:
        result = sh(substitute(command, served.paths), served.workdir, environ())
        assert result.returncode == 0, result.stdout + result.stderr
        assert documents(result.stdout), "no documents on stdout (ndjson.path: -)"


def cron_environment(served: Served) -> tuple[dict[str, str], str]:
    """The crontab's variables and its one job line, paths substituted, as cron hands them to sh."""
    variables: dict[str, str] = {}
    jobs = []
    for line in CRONTAB.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if re.match(r"^[A-Za-z_][A-Za-z0-9_]*\s*=", line):
            key, _, value = line.partition("=")
            variables[key.strip()] = substitute(value.strip().strip('"'), served.paths)
        else:
            jobs.append(line)
    (job,) = jobs
    fields = job.split(None, 5)
    assert fields[:5] == ["*/5", "*", "*", "*", "*"], "every 5 minutes, on the 5-minute boundaries"
    assert "%" not in fields[5], "cron turns an unescaped % into a newline"
    # cron runs the command with $SHELL -c in an environment of HOME, LOGNAME, SHELL and the crontab's variables.
    env = {"HOME": str(served.state), "LOGNAME": "metrics-poller", **variables}
    return env, fields[5]


def readme_cron_job() -> str:
    (block,) = [text for lang, text in readme_blocks("cron")]
    (line,) = commands(block)
    return line.split(None, 5)[5]


@pytest.mark.parametrize("source", ["config/crontab.example", "README"])
def test_cron_line_runs_and_writes_documents(served: Served, source: str) -> None:
    env, job = cron_environment(served)
    if source == "README":
        job = readme_cron_job()
    log = served.log / "once.log"
    log.unlink(missing_ok=True)
    (served.state / "cursors.json").unlink(missing_ok=True)
    result = subprocess.run(
        [env["SHELL"], "-c", substitute(job, served.paths)],
        cwd=served.state,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = log.read_text() if log.exists() else ""
    assert result.returncode == 0, output + result.stdout + result.stderr
    assert result.stdout == result.stderr == "", "everything goes to the log, so cron mails nothing"
    assert documents(output), "the cron run wrote no documents to its log"
    assert (served.state / "cursors.json").is_file(), "METRICS_POLLER__STATE__PATH from the crontab was not used"


def test_readme_backfill_examples(served: Served) -> None:
    for command in commands(shell_block("backfill --since")):
        result = sh(substitute(command, served.paths), served.workdir, environ())
        assert result.returncode == 0, command + "\n" + result.stdout + result.stderr
        assert documents(result.stdout), f"{command}: no documents written"


def test_make_demo_writes_documents() -> None:
    shell = [text for lang, text in readme_blocks() if lang == "sh"]
    (command,) = [c for text in shell for c in commands(text) if re.match(r"make demo(\s|$)", c)]
    result = sh(command, REPO, environ(), timeout=300)  # writes ./out/ of the checkout, which git ignores
    assert result.returncode == 0, result.stdout + result.stderr
    assert "cycle ok" in result.stdout + result.stderr
    written = [documents(p.read_text()) for p in (REPO / "out").glob("*.ndjson")]
    assert any(written), "make demo wrote no documents under ./out/"


def test_every_shell_block_is_run_or_excused() -> None:
    shell = [text for lang, text in readme_blocks() if lang in ("sh", "cron", "bash", "shell", "console")]
    assert len(shell) >= 7
    for text in shell:
        for command in commands(text):
            assert any(m in command for m in (*RUN, *NOT_RUN)), f"README command neither run nor excused: {command}"
