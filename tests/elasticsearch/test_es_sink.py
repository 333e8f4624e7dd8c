"""The bulk sink through the real client: idempotency, retries, dead letters, TSDS, batching."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from elasticsearch import AsyncElasticsearch

from metrics_poller.config import Elasticsearch
from metrics_poller.model import Document, Outcome
from metrics_poller.sinks.elasticsearch import (
    ElasticsearchSink,
    Verdict,
    backoff_delay,
    build_client,
    classify,
    plan_batches,
    setup,
)
from metrics_poller.testing.es_server import ElasticsearchServer


def _fast_sink(client: AsyncElasticsearch, cfg: Elasticsearch, dead_letter: Path | None = None) -> ElasticsearchSink:
    return ElasticsearchSink(
        client, cfg, str(dead_letter) if dead_letter else None, backoff_initial=0.01, backoff_max=0.05
    )


async def _stored_ids(client: AsyncElasticsearch, stream: str) -> list[str]:
    await client.indices.refresh(index=stream)
    response = await client.search(index=stream, query={"match_all": {}}, size=1000)
    return [hit["_id"] for hit in response["hits"]["hits"]]


# ------------------------------------------------------------------------------------------- pure parts


def test_classify() -> None:
    assert classify(201, None) is Verdict.CREATED
    assert classify(409, {"type": "version_conflict_engine_exception"}) is Verdict.DUPLICATE
    assert classify(429, {"type": "es_rejected_execution_exception"}) is Verdict.RETRY
    assert classify(503, {"type": "unavailable_shards_exception"}) is Verdict.RETRY
    assert classify(400, {"type": "es_rejected_execution_exception"}) is Verdict.RETRY
    for kind in ("document_parsing_exception", "mapper_parsing_exception", "illegal_argument_exception"):
        assert classify(400, {"type": kind}) is Verdict.PERMANENT
    assert classify(403, {"type": "security_exception"}) is Verdict.FATAL


def test_plan_batches_respects_count_and_bytes() -> None:
    assert plan_batches([10] * 7, 3, 1000) == [[0, 1, 2], [3, 4, 5], [6]]
    assert plan_batches([10, 10, 10, 10], 100, 25) == [[0, 1], [2, 3]]
    assert plan_batches([5, 500, 5], 100, 100) == [[0], [1], [2]]  # an oversized item travels alone
    assert plan_batches([], 10, 10) == []


def test_backoff_grows_and_is_capped() -> None:
    import random

    rng = random.Random(1)
    delays = [backoff_delay(n, 1.0, 8.0, rng) for n in range(1, 8)]
    assert 0.5 <= delays[0] <= 1.0
    assert all(4.0 <= d <= 8.0 for d in delays[4:])


# ------------------------------------------------------------------------------------ against a server


@pytest.mark.real_es
async def test_window_written_twice_is_stored_once(docs: Any, client: AsyncElasticsearch, cfg: Elasticsearch) -> None:
    await setup(client, cfg)
    documents = docs.requests(cfg.namespace, 12)
    sink = _fast_sink(client, cfg)

    assert await sink.write(documents) == [Outcome.CREATED] * 12
    assert await sink.write(documents) == [Outcome.DUPLICATE] * 12

    assert sorted(await _stored_ids(client, cfg.data_stream)) == sorted(d.id for d in documents)


@pytest.mark.real_es
async def test_mapping_error_is_dead_lettered_and_not_stored(
    docs: Any, client: AsyncElasticsearch, cfg: Elasticsearch, tmp_path: Path
) -> None:
    await setup(client, cfg)
    good = docs.requests(cfg.namespace, 4)
    bad = docs.make(cfg.namespace, docs.recent_minute(), {"requests": {"total": "not-a-number"}}, {"region": "x"})
    dead = tmp_path / "dead" / "letters.ndjson"
    outcomes = await _fast_sink(client, cfg, dead).write([*good[:2], bad, *good[2:]])

    assert outcomes == [Outcome.CREATED, Outcome.CREATED, Outcome.PERMANENT, Outcome.CREATED, Outcome.CREATED]
    assert bad.id not in await _stored_ids(client, cfg.data_stream)
    records = [orjson.loads(line) for line in dead.read_bytes().splitlines()]
    assert len(records) == 1
    record = records[0]
    assert set(record) == {"@timestamp", "reason", "status", "_id", "document"}
    assert record["_id"] == bad.id and record["status"] == 400
    assert record["document"] == bad.source
    assert record["reason"]["type"] in ("document_parsing_exception", "mapper_parsing_exception")


async def test_wrong_constant_keyword_is_permanent(
    docs: Any, server: ElasticsearchServer, namespace: str, tmp_path: Path
) -> None:
    cfg = Elasticsearch(hosts=[server.url], namespace=namespace)
    client = build_client(cfg)
    try:
        await setup(client, cfg)
        right = docs.requests(namespace, 1)
        wrong = docs.requests("other", 2)[1:]
        outcomes = await _fast_sink(client, cfg, tmp_path / "dl.ndjson").write(right + wrong)
    finally:
        await client.close()
    assert outcomes == [Outcome.CREATED, Outcome.PERMANENT]
    assert "constant_keyword" in (tmp_path / "dl.ndjson").read_text()


async def _write_with_faults(
    docs: Any,
    server: ElasticsearchServer,
    namespace: str,
    faults: Sequence[tuple[str, int]],
    **overrides: object,
) -> tuple[list[Outcome], list[Document], Elasticsearch]:
    cfg = Elasticsearch.model_validate({"hosts": [server.url], "namespace": namespace, "batch_size": 10, **overrides})
    client = build_client(cfg)
    try:
        await setup(client, cfg)
        for kind, times in faults:
            server.inject(kind, times=times, delay=0.6)
        documents = docs.requests(namespace, 25)
        outcomes = await _fast_sink(client, cfg).write(documents)
    finally:
        await client.close()
    return outcomes, documents, cfg


async def test_whole_request_and_item_429_bursts_end_with_everything_stored(
    docs: Any, server: ElasticsearchServer, namespace: str
) -> None:
    outcomes, documents, cfg = await _write_with_faults(
        docs, server, namespace, [("bulk_429", 3), ("item_429", 7), ("bulk_503", 1)], retry_attempts=8
    )
    assert all(o.stored for o in outcomes)
    assert server.pending_faults() == 0
    stored = server.documents(cfg.data_stream)
    assert sorted(d["_id"] for d in stored) == sorted(d.id for d in documents)
    assert server.requests["PUT _bulk"] + server.requests["POST _bulk"] >= 3 + 5  # 3 batches + retries


async def test_timeout_and_reset_are_retried_and_applied_once(
    docs: Any, server: ElasticsearchServer, namespace: str
) -> None:
    outcomes, documents, cfg = await _write_with_faults(
        docs, server, namespace, [("timeout", 1), ("reset", 1)], request_timeout=0.3
    )
    assert all(o.stored for o in outcomes)
    # The timed-out request was applied by the server; its retry found the documents there.
    assert Outcome.DUPLICATE in outcomes
    stored = server.documents(cfg.data_stream)
    assert len(stored) == len(documents) == len({d["_id"] for d in stored})


async def test_retries_exhausted_leave_documents_retryable(
    docs: Any, server: ElasticsearchServer, namespace: str
) -> None:
    outcomes, _, cfg = await _write_with_faults(docs, server, namespace, [("bulk_429", 100)], retry_attempts=2)
    assert outcomes == [Outcome.RETRYABLE] * 25
    assert server.documents(cfg.data_stream) == []


async def test_injected_item_400_goes_to_dead_letter_only(
    docs: Any, server: ElasticsearchServer, namespace: str, tmp_path: Path
) -> None:
    cfg = Elasticsearch(hosts=[server.url], namespace=namespace)
    client = build_client(cfg)
    documents = docs.requests(namespace, 6)
    server.inject("item_400", times=1, match=documents[3].id)
    try:
        await setup(client, cfg)
        outcomes = await _fast_sink(client, cfg, tmp_path / "dl.ndjson").write(documents)
    finally:
        await client.close()
    assert outcomes[3] is Outcome.PERMANENT
    assert [o for i, o in enumerate(outcomes) if i != 3] == [Outcome.CREATED] * 5
    assert documents[3].id not in {d["_id"] for d in server.documents(cfg.data_stream)}
    assert orjson.loads((tmp_path / "dl.ndjson").read_bytes())["_id"] == documents[3].id


async def test_batches_by_count_and_bytes_with_bounded_concurrency(
    docs: Any, server: ElasticsearchServer, namespace: str
) -> None:
    cfg = Elasticsearch(hosts=[server.url], namespace=namespace, batch_size=4, concurrency=2)
    client = build_client(cfg)
    documents = docs.requests(namespace, 21)
    server.inject("timeout", times=6, delay=0.1)  # slow answers, so batches overlap
    try:
        await setup(client, cfg)
        outcomes = await _fast_sink(client, cfg).write(documents)
        assert outcomes == [Outcome.CREATED] * 21
        assert server.requests["PUT _bulk"] == 6
        assert server.max_bulk_in_flight == 2

        by_bytes = cfg.model_copy(update={"batch_size": 1000, "batch_bytes": 2048, "namespace": namespace + "b"})
        more = docs.requests(by_bytes.namespace, 10)
        assert await _fast_sink(client, by_bytes).write(more) == [Outcome.CREATED] * 10
        assert server.requests["PUT _bulk"] > 6 + 2  # ~1 KB documents, at most two per request
    finally:
        await client.close()


async def test_pipeline_is_sent_per_request(docs: Any, server: ElasticsearchServer, namespace: str) -> None:
    cfg = Elasticsearch(hosts=[server.url], namespace=namespace, pipeline="my-pipeline")
    client = build_client(cfg)
    try:
        await client.ingest.put_pipeline(id="my-pipeline", processors=[])
        await setup(client, cfg)
        assert await _fast_sink(client, cfg).write(docs.requests(namespace, 2)) == [Outcome.CREATED] * 2
    finally:
        await client.close()
    bulk = [r for r in server.recent if r.path.endswith("/_bulk")]
    assert bulk and bulk[-1].query.get("pipeline") == "my-pipeline"


async def test_tsds_mode_lets_elasticsearch_derive_the_id(
    docs: Any, server: ElasticsearchServer, namespace: str, tmp_path: Path
) -> None:
    cfg = Elasticsearch(hosts=[server.url], namespace=namespace, tsds=True, look_back="1h")
    client = build_client(cfg)
    try:
        await setup(client, cfg)
        documents = docs.every_field(namespace, docs.recent_minute(5))
        sink = _fast_sink(client, cfg, tmp_path / "dl.ndjson")
        assert await sink.write(documents) == [Outcome.CREATED] * len(documents)
        assert await sink.write(documents) == [Outcome.DUPLICATE] * len(documents)

        stored = server.documents(cfg.data_stream)
        assert len(stored) == len(documents)
        assert not {d["_id"] for d in stored} & {d.id for d in documents}  # ES chose the ids
        stream = server.data_stream(cfg.data_stream)
        assert stream is not None and stream.write_index.time_series

        # Older than look_back: no writable backing index, so it is rejected for good.
        old = docs.every_field(namespace, docs.recent_minute(120))[:1]
        assert await sink.write(old) == [Outcome.PERMANENT]

        # A client `_id` in TSDS mode is refused unless it equals the derived one (contract §11).
        fresh = docs.every_field(namespace, docs.recent_minute(7))[0]
        body = [{"create": {"_id": fresh.id}}, dict(fresh.source)]
        response = await client.bulk(operations=body, index=cfg.data_stream)
        item = response["items"][0]["create"]
        assert item["status"] == 400 and "_id must be unset or set to" in item["error"]["reason"]
    finally:
        await client.close()


async def test_empty_write_sends_nothing(server: ElasticsearchServer, namespace: str) -> None:
    cfg = Elasticsearch(hosts=[server.url], namespace=namespace)
    client = build_client(cfg)
    try:
        assert await _fast_sink(client, cfg).write([]) == []
    finally:
        await client.close()
    assert server.requests["PUT _bulk"] == 0


async def test_permanent_failure_without_dead_letter_path_is_logged(
    docs: Any, server: ElasticsearchServer, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = Elasticsearch(hosts=[server.url], namespace=namespace)
    client = build_client(cfg)
    server.inject("item_400", times=1)
    try:
        with caplog.at_level(logging.WARNING):
            outcomes = await _fast_sink(client, cfg).write(docs.requests(namespace, 1))
    finally:
        await client.close()
    assert outcomes == [Outcome.PERMANENT]
    assert "no dead_letter_path" in caplog.text


def test_redact_hides_secrets_and_url_credentials() -> None:
    from metrics_poller.sinks.elasticsearch import redact

    text = redact("failed https://user:hunter22@es:9200 with key abc123secret", ["abc123secret"])
    assert "hunter22" not in text and "abc123secret" not in text
