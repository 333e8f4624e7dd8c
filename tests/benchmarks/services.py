"""The Azure simulator and the Elasticsearch test server in a child process of their own.

The child is started with the `spawn` method (a fresh interpreter), so neither its CPU time nor its
memory is counted in the poller process's `getrusage(RUSAGE_SELF)`. The parent talks to it over a pipe:
`calls` (the simulator's call counters), `reset`, `rusage` (the child's own CPU seconds) and `stop`.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import resource
from collections import Counter
from dataclasses import asdict
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any

from metrics_poller.simulator import SimSpec

START_TIMEOUT = 120.0


def _serve(conn: Connection, spec_fields: dict[str, Any], with_es: bool) -> None:
    from metrics_poller.simulator import Simulator
    from metrics_poller.testing.es_server import ElasticsearchServer

    spec = SimSpec(**spec_fields)
    es: ElasticsearchServer | None = None
    with Simulator(spec) as sim:
        # Azure has each account's series before the first query; the simulator builds them on it. Built
        # here, that one-time set-up does not share the poller's cores while a cycle is measured.
        sim.prepare()
        # And keeps them out of the collector's full passes: scanning that large, static heap stalled
        # the simulator for a second at a time, starving the poller with it.
        gc.freeze()
        if with_es:
            es = ElasticsearchServer().start()
        openai = sum(1 for a in sim.accounts if a.kind in ("OpenAI", "AIServices"))
        conn.send({"azure": sim.azure_config(), "es_url": es.url if es else None, "accounts": openai})
        try:
            while True:
                command = conn.recv()
                if command == "calls":
                    conn.send(dict(sim.calls))
                elif command == "reset":
                    sim.reset_calls()
                    conn.send(True)
                elif command == "rusage":
                    usage = resource.getrusage(resource.RUSAGE_SELF)
                    conn.send({"cpu": usage.ru_utime + usage.ru_stime, "max_rss_kb": usage.ru_maxrss})
                elif command == "es_count":
                    conn.send(len(es.documents("metrics-azure.open_ai-default")) if es is not None else 0)
                else:
                    conn.send(True)
                    break
        finally:
            if es is not None:
                es.close()


class Services:
    """`with Services(spec) as svc:` → `svc.azure` (the poller's `azure:` section), `svc.es_url`."""

    def __init__(self, spec: SimSpec, *, elasticsearch: bool = False) -> None:
        self.spec = spec
        self.elasticsearch = elasticsearch
        self.azure: dict[str, Any] = {}
        self.es_url: str | None = None
        self.accounts = 0
        self._conn: Connection | None = None
        self._process: multiprocessing.process.BaseProcess | None = None

    def __enter__(self) -> Services:
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        fields = asdict(self.spec)
        self._process = context.Process(
            target=_serve, args=(child, fields, self.elasticsearch), name="bench-services", daemon=True
        )
        self._process.start()
        self._conn = parent
        if not parent.poll(START_TIMEOUT):
            raise RuntimeError("the simulator process did not start")
        hello = parent.recv()
        self.azure, self.es_url, self.accounts = hello["azure"], hello["es_url"], hello["accounts"]
        return self

    def _ask(self, command: str) -> Any:
        assert self._conn is not None
        self._conn.send(command)
        return self._conn.recv()

    def calls(self) -> Counter[tuple[str, int]]:
        return Counter(self._ask("calls"))

    def reset(self) -> None:
        self._ask("reset")

    def rusage(self) -> dict[str, float]:
        return dict(self._ask("rusage"))

    def es_count(self) -> int:
        return int(self._ask("es_count"))

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._conn is not None:
            with contextlib.suppress(EOFError, OSError):
                self._ask("stop")
        if self._process is not None:
            self._process.join(timeout=20)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()
