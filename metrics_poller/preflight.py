"""Preflight: before the first Azure call of `once`, `run` and `backfill`, check that every place the
poller will write to, listen on or connect to is usable, so a bad setting is one line, not a traceback
after Azure was already polled.

Each check is a function `Context -> problems`; `run` executes the ones that apply and raises
`PreflightError` with every problem found. Checks touch the file system, sockets or Elasticsearch only
as much as the real run would (no Azure call, no document written).
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import ssl
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from metrics_poller.config import Config

Command = Literal["once", "run", "backfill", "validate", "setup"]
EXIT_CONFIG, EXIT_UNREACHABLE = 2, 3


@dataclass(frozen=True, slots=True)
class Problem:
    """One unusable setting: `subject` names the configuration key or the server."""

    subject: str
    message: str
    unreachable: bool = False  # a server that could not be reached (exit 3), not a bad setting (exit 2)

    def line(self) -> str:
        return f"preflight: {self.subject}: {self.message}"


class PreflightError(Exception):
    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__("\n".join(p.line() for p in problems))
        self.problems = list(problems)

    @property
    def lines(self) -> list[str]:
        return [p.line() for p in self.problems]

    @property
    def exit_code(self) -> int:
        """2 when any setting is wrong (restarting cannot fix it), 3 when only servers were unreachable."""
        return EXIT_UNREACHABLE if all(p.unreachable for p in self.problems) else EXIT_CONFIG


@dataclass(frozen=True, slots=True)
class Context:
    cfg: Config
    command: Command


Check = Callable[[Context], Awaitable[list[Problem]]]


# ------------------------------------------------------------------------------------------ paths


def path_problem(path: str, *, directory_only: bool = False) -> str | None:
    """Why a file at `path` cannot be created or appended to (None when it can).

    With `directory_only` the file itself is replaced rather than opened (atomic rename), so only its
    directory must be writable; an existing file must still be a readable regular file.
    """
    target = Path(path)
    if target.is_dir():
        return f"{path} is a directory; expected a file path"
    parent = target.parent
    ancestor = parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"cannot create {path}: {ancestor} is not a directory"
    if not target.exists() and not os.access(ancestor, os.W_OK | os.X_OK):
        return f"cannot create {path}: {ancestor} is not writable"
    if parent.is_dir() and directory_only:
        try:
            fd, probe = tempfile.mkstemp(prefix=".preflight-", dir=parent)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            return f"cannot write in {parent}: {exc.strerror or exc}"
    if target.exists():
        try:
            with target.open("rb" if directory_only else "ab"):
                pass
        except OSError as exc:
            return f"cannot {'read' if directory_only else 'write'} {path}: {exc.strerror or exc}"
    return None


async def output_paths(ctx: Context) -> list[Problem]:
    """ndjson.path (unless stdout) and elasticsearch.dead_letter_path must accept appended lines."""
    cfg = ctx.cfg
    wanted: list[tuple[str, str]] = []
    if cfg.output == "ndjson" and cfg.ndjson.path != "-":
        wanted.append(("ndjson.path", cfg.ndjson.path))
    if cfg.output == "elasticsearch" and cfg.elasticsearch.dead_letter_path:
        wanted.append(("elasticsearch.dead_letter_path", cfg.elasticsearch.dead_letter_path))
    problems = []
    for key, path in wanted:
        why = path_problem(path)
        if why:
            problems.append(Problem(key, why))
    return problems


async def cursor_path(ctx: Context) -> list[Problem]:
    """state.path: its directory writable (atomic replace), the file, if any, a readable cursor file."""
    cfg = ctx.cfg
    if cfg.state.backend != "file" or ctx.command == "backfill":  # backfill never reads or moves cursors
        return []
    why = path_problem(cfg.state.path, directory_only=True)
    if why:
        return [Problem("state.path", why)]
    from metrics_poller.state import FileCursorStore, StateError

    try:
        await FileCursorStore(cfg.state.path).load()
    except StateError as exc:
        return [Problem("state.path", str(exc))]
    return []


# ----------------------------------------------------------------------------------------- listener


def listen_problem(listen: str) -> str | None:
    """Why `host:port` cannot be bound for the health listener (None when it can)."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, ValueError) as exc:
        return f"cannot resolve {host!r}: {getattr(exc, 'strerror', None) or exc}"
    family, kind, proto, _, address = infos[0]
    try:
        with socket.socket(family, kind, proto) as sock:
            if os.name == "posix":  # as asyncio's server does, so a socket in TIME_WAIT is no obstacle
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return f"cannot listen on {listen}: the address is already in use (another poller running?)"
        return f"cannot listen on {listen}: {exc.strerror or exc}"
    return None


async def listen_address(ctx: Context) -> list[Problem]:
    listen = ctx.cfg.http.listen
    if ctx.command != "run" or not listen:
        return []
    why = listen_problem(listen)
    return [Problem("http.listen", why)] if why else []


# ------------------------------------------------------------------------------------- Elasticsearch


def _uses_elasticsearch(cfg: Config) -> bool:
    return cfg.output == "elasticsearch" or cfg.state.backend == "elasticsearch"


async def elasticsearch_files(ctx: Context) -> list[Problem]:
    """The CA bundle exists: without it the client cannot even be built."""
    # Checked here, not when the configuration is read: in a pod the file is a mounted secret.
    ca_certs = ctx.cfg.elasticsearch.ca_certs
    wanted = ctx.command == "setup" or _uses_elasticsearch(ctx.cfg)
    if not wanted or not ca_certs:
        return []
    if not Path(ca_certs).is_file():
        return [Problem("elasticsearch.ca_certs", f"no such file {ca_certs}; expected a PEM CA bundle")]
    try:  # what the client does with it (elastic_transport's node), so a bad file fails here, not there
        ssl.create_default_context().load_verify_locations(cafile=ca_certs)
    except (ssl.SSLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or type(exc).__name__
        return [Problem("elasticsearch.ca_certs", f"cannot read {ca_certs} ({reason}); expected a PEM CA bundle")]
    return []


async def elasticsearch_access(ctx: Context) -> list[Problem]:
    """One authenticated request to Elasticsearch when documents or cursors go there."""
    cfg = ctx.cfg
    if not _uses_elasticsearch(cfg) or await elasticsearch_files(ctx):
        return []  # a missing CA bundle is `elasticsearch_files`' problem, reported once
    from metrics_poller.sinks.elasticsearch import probe

    answer = await probe(cfg.elasticsearch)
    if answer is None:
        return []
    subject, message, unreachable = answer
    return [Problem(subject, message, unreachable)]


# -------------------------------------------------------------------------------------------- run

CHECKS: tuple[Check, ...] = (output_paths, cursor_path, listen_address, elasticsearch_files, elasticsearch_access)
# `validate` and `setup` report Elasticsearch's answers themselves; only what stops them building a client.
LOCAL_ELASTICSEARCH_CHECKS: tuple[Check, ...] = (elasticsearch_files,)


async def check(cfg: Config, command: Command, checks: Sequence[Check] = CHECKS) -> None:
    """Run every check (concurrently); raise `PreflightError` listing every problem found."""
    ctx = Context(cfg, command)
    found = await asyncio.gather(*(one(ctx) for one in checks))
    problems = [problem for problems in found for problem in problems]
    if problems:
        raise PreflightError(problems)
