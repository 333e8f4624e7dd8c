"""B3: the pure pipeline, Azure response bytes → bulk request bytes, timed by this process's CPU.

getBatch response bodies are generated once by the simulator's backend (no HTTP, not timed); then each
is run through the production code the poller runs per response: `fetching._batch_values`
(`azure_json.loads`), `azure_json.parse_resource_metrics` per account, `shaping.shape` per unit window, and
`ElasticsearchSink._encode_all` plus the bulk payload assembly of `ElasticsearchSink._send`. The floor
is `orjson.dumps` of the same final documents (their sources as Python objects).
"""

from __future__ import annotations

import gc
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from metrics_poller import config
from metrics_poller.azure_http import Capture
from metrics_poller.azure_json import parse_resource_metrics, resource_id_of
from metrics_poller.catalog import GROUPS
from metrics_poller.fetching import _batch_values, batch_filter, order_by
from metrics_poller.model import Account, Document, Window
from metrics_poller.planning import BATCH_LIMIT, families
from metrics_poller.shaping import DocumentContext, collector_paused, shape
from metrics_poller.simulator.api import Backend
from metrics_poller.sinks.elasticsearch import ElasticsearchSink
from tests.benchmarks.worker import sim_spec

Unit = tuple[list[Account], list[tuple[Any, bytes]]]  # accounts, [(group, response body)]


def _accounts(backend: Backend) -> list[Account]:
    out = []
    for a in backend.world.accounts:
        if a.kind not in ("OpenAI", "AIServices"):
            continue
        out.append(
            Account(
                id=a.id,
                name=a.name,
                resource_group=a.resource_group,
                subscription_id=a.subscription_id,
                location=a.location,
                kind=a.kind,
                tags=dict(a.tags),
            )
        )
    return out


def responses(params: dict[str, Any]) -> tuple[list[Unit], Window]:
    """One 5-minute window of every group for every account, as getBatch response bytes."""
    backend = Backend(sim_spec(params))
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    end = now - timedelta(minutes=5)
    window = Window(end - timedelta(minutes=5), end, timedelta(minutes=1))
    by_region: dict[tuple[str, str], list[Account]] = {}
    for account in _accounts(backend):
        by_region.setdefault((account.subscription_id, account.location), []).append(account)
    units: list[Unit] = []
    for (subscription, region), members in sorted(by_region.items()):
        for i in range(0, len(members), BATCH_LIMIT):
            chunk = members[i : i + BATCH_LIMIT]
            for family in families(GROUPS):
                bodies = []
                for group in family:
                    params_ = {
                        "starttime": window.start.isoformat().replace("+00:00", "Z"),
                        "endtime": window.end.isoformat().replace("+00:00", "Z"),
                        "interval": "PT1M",
                        "metricnamespace": "Microsoft.CognitiveServices/accounts",
                        "metricnames": ",".join(group.metric_names),
                        "aggregation": ",".join(group.aggregations),
                    }
                    flt = batch_filter(group.dimensions)
                    if flt:
                        params_["filter"] = flt
                        params_["top"] = "1000"
                        params_["orderby"] = order_by(group.aggregations) or ""
                    body = orjson.dumps({"resourceids": [a.id for a in chunk]})
                    reply = backend.get_batch(region, subscription, params_, body, now)
                    assert reply.status == 200, reply.body
                    bodies.append((group, orjson.dumps(reply.body)))
                units.append((chunk, bodies))
    return units, window


def _pipeline(
    units: list[Unit],
    window: Window,
    sink: ElasticsearchSink,
    context: DocumentContext,
    stages: dict[str, float] | None = None,
) -> tuple[int, int, list[Document]]:
    """The production steps per unit; with `stages`, also the CPU seconds of each step added to it."""
    clock = time.process_time if stages is not None else _no_clock
    laps = stages if stages is not None else {}
    documents_out: list[Document] = []
    payload_bytes = 0
    for chunk, bodies in units:
        by_key = {a.key: a for a in chunk}
        series = []
        for group, raw in bodies:
            started = clock()
            capture = Capture()
            capture.body = raw
            values = _batch_values(None, capture)
            decoded = clock()
            with collector_paused():  # as `Fetcher._batch` digests a body
                for item in values:
                    account = by_key[resource_id_of(item).lower()]  # type: ignore[union-attr]
                    parsed = parse_resource_metrics(
                        item,
                        account=account,
                        group=group.name,
                        requested_dimensions=group.dimensions,
                        requested_aggregations=group.aggregations,
                        timegrain=window.timegrain,
                    )
                    series.extend(parsed.series)
            del values
            if stages is not None:
                laps["decode"] += decoded - started
                laps["parse"] += clock() - decoded
        started = clock()
        documents = shape(series, context)
        shaped = clock()
        encoded = sink._encode_all(documents)  # as `ElasticsearchSink.write`
        payload = sink._payload(range(len(encoded)), encoded)  # as `ElasticsearchSink._send`
        if stages is not None:
            laps["shape"] += shaped - started
            laps["bulk"] += clock() - shaped
        payload_bytes += len(payload)
        documents_out.extend(documents)
    return len(documents_out), payload_bytes, documents_out


def _no_clock() -> float:
    return 0.0


def _floor(sources: list[dict[str, Any]]) -> int:
    total = 0
    for source in sources:
        total += len(orjson.dumps(source))
    return total


def _cpu(fn: Any, *args: Any) -> tuple[float, Any]:
    gc.collect()
    start = time.process_time()
    result = fn(*args)
    return time.process_time() - start, result


def measure(params: dict[str, Any]) -> dict[str, Any]:
    units, window = responses(params)
    cfg = config.parse({"output": "elasticsearch", "http": {"listen": None}}, environ={})
    sink = ElasticsearchSink(None, cfg.elasticsearch, None)  # type: ignore[arg-type]  # only _encode is used
    context = DocumentContext(
        namespace="default", period_ms=300_000, agent={"name": "bench", "type": "metrics-poller", "version": "0"}
    )
    input_bytes = sum(len(raw) for _, bodies in units for _, raw in bodies)
    repeats = int(params.get("repeats", 3))
    pipeline_times, floor_times = [], []
    documents: list[Document] = []
    payload = 0
    for _ in range(repeats):
        seconds, (_count, payload, documents) = _cpu(_pipeline, units, window, sink, context)
        pipeline_times.append(seconds)
        sources = [d.source for d in documents]  # the final documents as objects, not timed
        floor_seconds, _ = _cpu(_floor, sources)
        floor_times.append(floor_seconds)
        del sources
    # One more pass, timed per step (the timers cost a little, so it is not the headline figure).
    stages = dict.fromkeys(("decode", "parse", "shape", "bulk"), 0.0)
    gc.collect()
    _pipeline(units, window, sink, context, stages)
    pipeline_s = sorted(pipeline_times)[len(pipeline_times) // 2]
    floor_s = sorted(floor_times)[len(floor_times) // 2]
    return {
        "documents": len(documents),
        "responses": sum(len(b) for _, b in units),
        "input_bytes": input_bytes,
        "bulk_bytes": payload,
        "pipeline_cpu": pipeline_s,
        "floor_cpu": floor_s,
        "docs_per_cpu_second": len(documents) / pipeline_s,
        "floor_docs_per_cpu_second": len(documents) / floor_s,
        "ratio_to_floor": pipeline_s / floor_s,
        "stage_us_per_document": {name: 1e6 * seconds / len(documents) for name, seconds in stages.items()},
    }
