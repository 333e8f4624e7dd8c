"""Assembly: turn a validated configuration into a ready `Poller` (credential, clients, sink, store)."""

from __future__ import annotations

import gc
import logging
import os
import re
import socket
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from metrics_poller import __version__, datasets
from metrics_poller.config import Config, ConfigError
from metrics_poller.cycle import Poller, utcnow
from metrics_poller.inventory_cycle import Inventory
from metrics_poller.sinks import Sink
from metrics_poller.state import CursorStore, FileCursorStore

if TYPE_CHECKING:
    from metrics_poller.azure_http import Pacing

log = logging.getLogger(__name__)
GC_YOUNG_THRESHOLD = 50_000


def shard_index(cfg: Config, hostname: str | None = None) -> int | None:
    """`shard.index`, or the ordinal of a StatefulSet pod name (`poller-3` → 3) when sharded."""
    if cfg.shard.index is not None or cfg.shard.count <= 1:
        return cfg.shard.index
    name = hostname or os.environ.get("POD_NAME") or socket.gethostname()
    match = re.search(r"-(\d+)$", name)
    if not match:
        raise ConfigError(
            [
                f"config: shard.index: not set, and host name {name!r} does not end in -<ordinal> "
                f"(expected with shard.count {cfg.shard.count}, e.g. a StatefulSet pod name)"
            ]
        )
    index = int(match.group(1))
    if index >= cfg.shard.count:
        raise ConfigError(
            [f"config: shard.index: {index} (from host name {name!r}) must be below shard.count {cfg.shard.count}"]
        )
    return index


def _needs_elasticsearch(cfg: Config) -> bool:
    return cfg.output == "elasticsearch" or cfg.state.backend == "elasticsearch"


async def create_poller(
    cfg: Config,
    *,
    sink: Sink | None = None,
    store: CursorStore | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> Poller:
    from metrics_poller.azure_http import Pacing
    from metrics_poller.credentials import build_credential
    from metrics_poller.discovery import Discoverer
    from metrics_poller.fetching import Fetcher

    # A cycle allocates millions of short-lived, acyclic objects: at the default threshold (700) the
    # cyclic collector ran thousands of times a cycle and found nothing, 2 s of CPU at 10,000 accounts.
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    credential = build_credential(cfg.azure)
    # One ARM read budget and one set of Retry-After holds for every reader, as ARM counts them.
    pacing = Pacing()
    es_client: Any = None
    if _needs_elasticsearch(cfg) and (sink is None or store is None):
        from metrics_poller.sinks.elasticsearch import build_client

        es_client = build_client(cfg.elasticsearch)
    if sink is None:
        if cfg.output == "elasticsearch":
            from metrics_poller.sinks.elasticsearch import ensure_templates, preflight

            try:
                await preflight(es_client, cfg.elasticsearch)
                await ensure_templates(es_client, cfg.elasticsearch, datasets.select(cfg.datasets))
            except BaseException:
                await es_client.close()
                await credential.close()
                raise
        sink = build_sink(cfg, es_client)
    if store is None:
        store = build_store(cfg, es_client)
    poller = Poller(
        cfg,
        discoverer=Discoverer(
            cfg.azure,
            credential,
            pacing=pacing,
            resource_types={d.resource_type for d in datasets.select(cfg.datasets)},
        ),
        fetcher=Fetcher(cfg.azure, credential, pacing=pacing),
        sink=sink,
        store=store,
        inventory=await build_inventory(cfg, credential, sink, es_client, pacing),
        shard_index=shard_index(cfg),
        clock=clock,
    )
    poller.extra_closers.append(credential.close)
    if es_client is not None:
        poller.extra_closers.append(es_client.close)
    return poller


async def build_inventory(cfg: Config, credential: Any, sink: Sink, es_client: Any, pacing: Pacing) -> Inventory | None:
    """The deployment inventory: its ARM reader, and a sink for its own data stream (NDJSON output
    shares the metrics file: every line names its `data_stream`). None when it is off, or when the
    caller brought its own Elasticsearch sink (there is no client to write the inventory's stream)."""
    if not cfg.inventory.enabled or (cfg.output == "elasticsearch" and es_client is None):
        return None
    from metrics_poller.inventory import InventoryReader
    from metrics_poller.inventory_cycle import Inventory
    from metrics_poller.inventory_shaping import DATASET, InventoryContext

    reader = InventoryReader(
        cfg.azure,
        credential,
        catalogue_ttl=cfg.inventory.catalogue_refresh,
        concurrency=cfg.inventory.concurrency,
        pacing=pacing,
    )
    context = InventoryContext(
        namespace=cfg.elasticsearch.namespace,
        period_ms=cfg.inventory.interval * 1000,
        agent={"name": socket.gethostname(), "type": "metrics-poller", "version": __version__},
    )
    if cfg.output == "elasticsearch" and es_client is not None:
        from metrics_poller.sinks.elasticsearch import ElasticsearchSink, ensure_inventory_templates

        await ensure_inventory_templates(es_client, cfg.elasticsearch)
        sink = ElasticsearchSink(
            es_client,
            cfg.elasticsearch,
            cfg.elasticsearch.dead_letter_path,
            stream=f"metrics-{DATASET}-{cfg.elasticsearch.namespace}",
            time_series=False,
        )
    return Inventory(cfg.inventory, cfg.period, reader, sink, context)


def build_sink(cfg: Config, es_client: Any) -> Sink:
    if cfg.output == "ndjson":
        from metrics_poller.sinks.ndjson import NdjsonSink

        return NdjsonSink(cfg.ndjson.path)
    from metrics_poller.sinks.elasticsearch import ElasticsearchSink

    return ElasticsearchSink(es_client, cfg.elasticsearch, cfg.elasticsearch.dead_letter_path)


def build_store(cfg: Config, es_client: Any) -> CursorStore:
    if cfg.state.backend == "file":
        return FileCursorStore(cfg.state.path)
    from metrics_poller.sinks.elasticsearch import ElasticsearchCursorStore

    return ElasticsearchCursorStore(es_client)
