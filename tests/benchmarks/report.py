"""Render BENCHMARKS.md from the raw results (`.bench/results.json`)."""

from __future__ import annotations

from typing import Any

TARGET_WALL = 60.0
TARGET_RSS = 512.0
TARGET_DOCS = 100_000.0
TARGET_FLOOR_RATIO = 3.0

STATIC = """
## How the figures are made

- `make bench` = `python -m tests.benchmarks` (the package `tests/benchmarks/`, never collected by
  pytest: no file is named `test_*.py`). Options: `--only B1,B3`, `--runs N`, `--latency S`,
  `--sink es` (B2 into the Elasticsearch test server instead of NDJSON on `/dev/null`),
  `--b4-accounts-per-region N` (B4 estate per (subscription, region); default 84 = 1,008 accounts), `--quick` (a smoke run),
  `--render-only` (re-render this file from `.bench/results.json`).
- Every measurement is a fresh `python -m tests.benchmarks.worker` process; the Azure simulator (HTTPS,
  real SDKs on the poller side) runs in a `spawn`ed child of it, so CPU seconds and peak RSS
  (`ru_maxrss`) are the poller's own. The simulator's CPU is reported beside it.
- Estate: 3 subscriptions × 4 regions (eastus, westeurope, swedencentral, northeurope); the simulator's
  realistic cardinality: 1–4 deployments per account, status codes 200/429/400/500/401, streaming and
  non-streaming, PTU deployments, spill-over, RAI categories. "1,000 accounts" is 84 per
  (subscription, region) = 1,008 OpenAI/AIServices accounts (plus 12 other Cognitive Services accounts
  that discovery filters out); "10,000" is 834 per pair = 10,008.
- One cycle = the first cycle of a fresh poller (discovery and metric definitions included): one
  5-minute window of all 13 metric groups at PT1M, `azure.concurrency` 16 (the default).
- Figures are medians of the runs listed; raw per-run values are in `.bench/results.json`.
"""


ANALYSIS = """
## Profiles, changes made, and what limits the targets not met

Profiles are py-spy (`pip install py-spy`), sampling only threads that hold the GIL, i.e. Python CPU:

    py-spy record --gil -r 100 -f raw -o prof.txt -- .venv/bin/python -m tests.benchmarks.worker \\
        '{"kind":"cycle","subscriptions":3,"accounts_per_region":84,"latency":0}'
    .venv/bin/python -m tests.benchmarks.profile_summary prof.txt

**Cycle, before (HEAD):** `MetricsClient.query_resources` was 62 % of all samples: the SDK turns every
getBatch body into its typed models (`MetricResultsResponse` → `TimeSeriesElement` → `MetadataValue`,
plus `isodate` for every timestamp) and then into `MetricsQueryResult`s, which the poller never reads (it
parses the raw body with `azure_json`). On top, azure-core's `ContentDecodePolicy` decoded each body
with `json`, and `fetching._json_body` decoded it a second time.

**Changes (all in `metrics_poller/fetching.py`, behaviour identical, full test suite green apart from
unrelated work in progress):**

1. `query_resources_raw`: the same getBatch request (`build_metrics_query_resources_request`, the same
   URL, query, body, api-version, the same `HttpResponseError` subclasses via `map_error` for non-200)
   sent through the client's `send_request`, so no SDK result model is built.
2. The request is sent with `stream=True` and the body read explicitly, so azure-core's
   `ContentDecodePolicy` no longer JSON-decodes a body that `_json_body` decodes anyway; the
   `Capture` hook tolerates the not-yet-read body and is called again once it is read.

Measured effect, one cycle of 1,008 accounts at latency 0 into NDJSON on /dev/null, poller CPU seconds
(3 runs each, alternating, same machine; HEAD's path restored by patching `query_resources_raw` back to
`client.query_resources`):

| getBatch path | poller CPU s (runs) | wall s | documents |
|---|---|---|---|
| HEAD: `MetricsClient.query_resources` | 24.41, 23.97, 25.13 (median 24.4) | 24.1–25.2 | 106,7xx |
| after change 1 (`send_request`) | 7.0 (one profiled run) | 10.0 | 106,482 |
| after changes 1 + 2 (`stream=True`) | 5.62, 5.48, 5.78 (median 5.6) | 5.6–6.0 | 106,7xx |

That is 4.3× less poller CPU per cycle (≈ 230 → ≈ 53 µs per document).

Tried and dropped: orjson instead of `json` for the response body (with a fallback to keep `json`'s exact
results for >64-bit integers and NaN): on these bodies orjson is only ~15 % faster than `json`
(15 vs 18 ms per 2.8 MB: the cost is building the Python objects), and the guard regex cost more than
that.

**Cycle, after:** stdlib `json` decoding ~27 % of the poller's Python CPU, `azure_json` (~20 %),
`shaping` (~15 %), TLS/HTTP and asyncio the rest. The simulator's CPU is separate (its own process).

**B2 at 10,000 accounts (round 1: not met, ~96 s wall, ~620 MB; met after round 4, see the table
above and "Round 4" below).** In round 1 the cycle is CPU-bound in one Python thread
(one event loop): ~60 µs of poller CPU per document end to end (HTTPS, JSON, `azure_json`, `shaping`,
NDJSON encode), so the ~1.07 M documents of one 5-minute cycle cost ~67 s of CPU on one core by
themselves, whatever the latency or `azure.concurrency`. Wall is higher still because the simulator
(~27 s CPU, separate process) takes part of the second core and the 2,652 getBatch calls at 100 ms
with 16 in flight add ≥ 16 s of latency where the loop waits. Meeting 60 s needs either B3's per-document
cost halved or a second process (the poller already shards: `shard.count: 2` on one host would split the
accounts over both cores). Peak RSS grows from ~250 MB at 1,008 accounts to ~620 MB at 10,008, although
at most 16 units are in flight; where the growth comes from (cursor and account maps, per-unit tasks
created up front by `asyncio.gather`, allocator high-water) was not profiled in this round
(next step: `tracemalloc` snapshot at the end of the 10k cycle).

**B3 (not met: ~26 k docs/s/core, ~35× the floor).** Per-document cost ≈ 38 µs, split (GIL samples of
the pipeline): `json.loads` of the Azure body 37 %, `azure_json` 28 % (`_Reader.point` 15 %, dimensions
7 %), `shape` 22 %, ES `_encode` (two orjson.dumps per document) 6 %. The input is ~530 bytes of Azure JSON
per document; merely decoding it with any Python JSON parser that builds dicts costs ~14 µs per
document, i.e. about 14× the floor (orjson.dumps of the final document ≈ 1 µs) before any shaping.
A 3× ratio is not reachable with a parse → Python objects → shape design; it would need a decoder that
goes from bytes to the shaped values directly (e.g. `msgspec` typed structs, or a native extension),
which is a dependency and design decision for the lead, not a minimal change.

**B4.** The catch-up plans 24 one-hour windows per unit (`backfill_step` 3600 s) and its Azure calls
equal the floor exactly (24 × Σ ceil(n/50) × 13). Its time is the documents: 24 h of PT1M data is 288
cycles' worth (~31 M documents at 1,008 accounts). Measured at 108 accounts: 3.5 M documents, ~33 µs of
poller CPU per document (hour windows amortise per-call costs), 144 s wall. Scaled linearly to 1,008
accounts that is ~7,488 Azure calls (= floor), ~18 min CPU and ~22 min wall, too long for `make bench`,
which therefore runs B4 at 108 accounts; the 1,008-account run is
`python -m tests.benchmarks --only B4 --b4-accounts-per-region 84` (not run in this round).
Peak RSS grows with it (548 MB at 108 accounts): each unit
holds one hour-window of documents (50 accounts × 60 minutes ≈ 60 k documents) and 16 units run at once.

### Round 2 (issue 7): hot spots of B3 and B2

The paragraphs above describe round 1; the tables hold this round's medians (B4 was not re-run).
Measured first: with the cyclic GC off, the B3 pipeline cost ~26 µs/document instead of ~38: the
collector, triggered by the allocation bursts of decoding and parsing and rescanning the ever larger
heap (7 full collections ≈ 1.1 s of the 4 s), was the biggest single cost, and most of what the
round-1 profile booked to `json.loads` was collector time (`json.loads` itself: 3.4 µs/document with
the GC off, orjson 2.2 µs).

What changed (behaviour identical; golden NDJSON, property and runtime tests green):

1. `azure_json.loads` (used by `fetching._json_body`): orjson, with `json.loads` deciding whenever
   orjson refuses a body (NaN/Infinity, numbers beyond double range, lone surrogates, BOM, UTF-16/32)
   and up front for any body with a run of 19 digits (the only input orjson accepts but reads
   differently: integers beyond 64 bits become floats). The digit-run check is one `bytes.translate`
   plus a substring search (0.4 µs/document; a regex cost 5 µs). Tested against `json.loads` on
   every fixture, edge cases and generated numbers (`tests/shaping/test_shaping_loads.py`).
2. GC paused (`shaping.collector_paused`) around decoding, around the digest of each getBatch body in
   `Fetcher._batch` (no `await` inside), and around `parse_resource_metrics`; shaping already paused it.
3. `azure_json._Reader`: per-bucket work inlined, `type(x) is dict` fast paths before the ABC
   `isinstance(x, Mapping)`, error places formatted only on error, canonical dimension names cached
   per response (parse 5.5 → 3.6 µs/document, GC off).
4. `shaping`: per-series static part found by the dimensions' own order before sorting; the
   `azure.dimensions` block and fingerprint cached across calls (LRU 8,192); one shared
   `frozenset({group})`; `json_number` and `_finish_id` inlined; `Document` built by slot setters.
5. `ElasticsearchSink`: each document's two bulk lines encoded into one `bytes` (the action line
   assembled around `orjson.dumps(id)`, byte-identical), bulk body by one `b"".join`.

| | before | after |
|---|---|---|
| B3 µs CPU/document (docs/s/core) | 38.8 (25,788) | ~25.2 (~39,700) |
| B3 pipeline / floor | 35.4× | ~20× |
| B2 10,008 accounts: wall s / poller CPU s / µs CPU per document | 95.8 / 67.0 / 63 | 67.1 / 56.3 / 53 |
| B2 10,008 accounts: peak RSS MB | 621 | 843 (worse, see below) |

**Still missed.** B3 (≥ 100 k docs/s, ≤ 3× floor): after the changes the pipeline's samples split
into the collector's deferred work at the end of each pause (~16 % of the worker's samples, booked to
`_GeneratorContextManager.__exit__`), orjson decoding, `_Reader.series`, `_gather`/`_finish`, and
`encode`. What remains is the per-point object model (`Point` + values dict + `Series` per series,
then `_Pending` and the nested document dicts) and the collector scanning it: ~25 µs/document against
a floor of ~1.2 µs. 100 k docs/s needs ≤ 10 µs, i.e. building documents straight from the decoded
body without `Series`/`Point` (a change to the fetch → cycle → shape interface, which tests read) or a
compiled decoder (e.g. msgspec typed structs); 3× the floor is not reachable from Python objects at
all (orjson decoding alone is ~2 µs/document).
B2 wall (67 s against < 60 s) is still bound by one core (53 µs CPU/document: HTTPS, SDK pipeline,
asyncio and the above). Peak RSS rose from 621 to ~843 MB at 10,008 accounts (257 vs 248 MB at 1,008):
one run with the new GC pauses switched off measured 752 MB, 67 s CPU, 77 s wall, so the pauses cost
~90 MB (the collector runs less often, so cyclic garbage of the HTTP stack lives longer) and another
~130 MB comes from elsewhere in this round and is not yet explained. Next step: `tracemalloc`
snapshots against RSS at the 10k peak before choosing between fewer units in flight, an explicit
`gc.collect(0)` per unit, or dropping the `Fetcher._batch` pause.

### Round 3: what grows with the number of accounts (B2 peak RSS)

`tracemalloc` (one frame; snapshot at the highest traced total, sampled every second, and at the end
of the cycle) on B2 at 3,000 accounts (peak RSS 497 MB when run without it): of ~138 MB traced at the
peak, 67 MB were `asyncio/sslproto.py:275` in 538 blocks, the 128 KiB receive buffer of each
`SSLProtocol`, and 528 TLS connections were still alive at the end of the cycle although at most 16
calls are in flight. Cause, outside the poller's own code: when `connection_verify` is a path
(`azure.ca_bundle`, which B2 uses for the simulator's CA, as would a site behind a TLS-inspecting
proxy), azure-core's `AioHttpTransport._build_ssl_config` builds a new `ssl.SSLContext(cafile=...)`
for every request, and aiohttp keys pooled connections by that context, so no connection is ever
reused: every getBatch makes a fresh TLS handshake and leaves one more connection (Python buffers plus
OpenSSL state, which `tracemalloc` does not see) idle in the pool for the keep-alive time, or as
cyclic garbage waiting for the collector (the GC pauses of round 2 make that wait longer). Checked
with a temporary monkeypatch that caches the context per (cert, verify) (not committed; one run each):

| accounts | peak RSS MB | poller CPU s | wall s |
|---|---|---|---|
| 3,000, as is → context cached | 497 → 196 | 15.8 → 13.1 | 19.6 → 17.3 |
| 10,008, as is → context cached | 750 → 271 | 57.0 → 47.7 | 73.4 → 59.0 |

The fix belongs to `credentials.py`/`fetching.py` (not changed in this round): build one `SSLContext`
from `ca_bundle` per process and hand it to every SDK client's transport (e.g. an
`AioHttpTransport` over a session whose connector carries that context), so connections are pooled.
With the public Azure CAs (`ca_bundle` unset, `connection_verify=True`) aiohttp shares one context and
the problem does not arise.

What else grew with the accounts (end-of-cycle snapshot at 6,000 accounts, context cached):
`model.py:31` (`Account.key`, a new lower-cased id per read) 12.6 MB in 66,000 strings, i.e. 11 copies
per account, kept as the first element of the cursor keys (`cycle.py:224`, 4.1 MB of tuples; the
`changes`, `Poller.cursors` and `FileCursorStore._cursors` dicts share the tuples, 2.5 MB each). Changed:
`Poller._cycle` records one shared key string per account, and `FileCursorStore.load` one string per
distinct account key and group name (it split every entry into new strings); B2 at 10,008 accounts with
the context cached 271 → 246 MB (one run each). Bounded and left alone: the `_dimension_block` LRU
(8,192 entries, ~8 MB with the decoded strings it keeps), the `parse_timestamp` LRU, the NDJSON sink's
encoded bodies of the units in flight (~1.6 MB each, ~20 MB at the peak), discovery's accounts and
the SDK's resource models (~5 MB at 6,000 accounts, kept for `refresh_interval`). The table above
(812 MB at 10,008 accounts, runs 807–816, against 843 before this round's change; without the
context fix) was still dominated by the per-request TLS connections.

### Round 4: connections reused (B2 targets met)

`credentials.client_kwargs` now gives every SDK client an `AioHttpTransport` whose aiohttp connector
carries one `SSLContext` per CA bundle for the whole process, and passes `connection_verify=True` so
azure-core adds no per-request context. A test (`tests/azure/test_fetching.py`,
`test_connections_are_reused_with_a_custom_ca_bundle`) counts distinct client connections at the
simulator: 17 calls used 17 connections before, now at most 2 per region client. B2 at 10,008 accounts
(3 runs, medians in the table above): 68.4 → 54.5 s wall, 58.0 → 42.3 s poller CPU, 812 → 243 MB peak
RSS: **both targets met** (< 60 s, < 512 MB). B3 (the per-document CPU of parse → shape → encode) is
unchanged by this and still short of its targets for the reasons given above.
"""


def _f(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def _i(value: float) -> str:
    return f"{round(value):,}"


def render(results: dict[str, Any]) -> str:
    out = ["# Benchmarks", ""]
    m = results.get("machine", {})
    out += [
        "## Machine",
        "",
        f"- `{m.get('uname', '?')}`",
        f"- CPU: {m.get('cpu', '?')}, {m.get('cores', '?')} cores; memory {_i(m.get('memory_mb', 0))} MB",
        f"- Python {m.get('python', '?')}",
        f"- 1-minute load average when the run started: {m.get('loadavg_at_start', 0):.2f} (other processes share "
        "the cores; re-run `make bench` on a quiet machine for clean figures)",
        "",
        "## Commands",
        "",
    ]
    for name, command in sorted(results.get("commands", {}).items()):
        out.append(f"- {name}: `{command}`")
    out.append(STATIC)

    if "B1" in results:
        r = results["B1"]
        out += [
            "## B1 API cost (one cycle, latency 0)",
            "",
            "| accounts | (subscription, region) pairs | metric groups | floor Σ ceil(n/50)×groups | getBatch calls "
            "| over floor | per-resource calls | ratio per-resource / getBatch |",
            "|---|---|---|---|---|---|---|---|",
            f"| {_i(r['accounts'])} | {r['pairs']} | {r['groups']} | {_i(r['floor'])} | {_i(r['batch_calls'])} "
            f"| {100 * r['over_floor']:+.1f} % | {_i(r['arm_calls'])} | **{_f(r['ratio'])}×** |",
            "",
            "Calls are metric calls only (HTTP attempts counted by the poller; retries: none happened). "
            f"Besides them both modes made the same discovery and definitions calls "
            f"(getBatch run: {_calls(r['batch']['runs'][0])}; per-resource run: {_calls(r['arm']['runs'][0])}). "
            f"Target: getBatch within 10 % of the floor — "
            f"{'met' if r['over_floor'] <= 0.10 else 'NOT met'}.",
            "",
        ]
    if "B2" in results:
        out += [
            "## B2 Cycle (100 ms simulated latency per Azure call)",
            "",
            "| accounts | documents | Azure calls | wall s | poller CPU s | peak RSS MB | simulator CPU s | runs |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for _, r in sorted(results["B2"].items(), key=lambda kv: int(kv[0]) if kv[0].isdigit() else 0):
            if not isinstance(r, dict) or "median" not in r:
                continue
            md = r["median"]
            out.append(
                f"| {_i(md['accounts'])} | {_i(md['documents'])} | {_i(md['azure_calls'])} | {_f(md['wall'])} "
                f"| {_f(md['cpu'])} | {_i(md['max_rss_mb'])} | {_f(md['sim_cpu'])} | {len(r['runs'])} |"
            )
        out += [
            "",
            f"Targets at 10,000 accounts: wall < {TARGET_WALL:.0f} s, peak RSS < {TARGET_RSS:.0f} MB.",
            "",
        ]
    if "B3" in results:
        md = results["B3"]["median"]
        out += [
            "## B3 Throughput (one core, CPU time; Azure response bytes → bulk request bytes)",
            "",
            "| documents | Azure bytes in | bulk bytes out | pipeline CPU s | docs/s/core | floor docs/s "
            "(orjson.dumps) | pipeline / floor |",
            "|---|---|---|---|---|---|---|",
            f"| {_i(md['documents'])} | {_i(md['input_bytes'])} | {_i(md['bulk_bytes'])} | {_f(md['pipeline_cpu'], 2)} "
            f"| **{_i(md['docs_per_cpu_second'])}** | {_i(md['floor_docs_per_cpu_second'])} "
            f"| **{_f(md['ratio_to_floor'])}×** |",
            "",
            f"Targets: ≥ {_i(TARGET_DOCS)} docs/s/core, ≤ {TARGET_FLOOR_RATIO:.0f}× the floor.",
            "",
        ]
    if "B4" in results:
        r = results["B4"]
        md = r["median"]
        out += [
            "## B4 Catch-up after a 24 h outage (100 ms latency, backfill_step 3600 s)",
            "",
            "| accounts | windows | Azure calls | floor | documents | wall s | poller CPU s | peak RSS MB | runs |",
            "|---|---|---|---|---|---|---|---|---|",
            f"| {_i(md['accounts'])} | 24 | {_i(md['azure_calls'])} | {_i(r['floor'])} | {_i(md['documents'])} "
            f"| {_f(md['wall'])} | {_f(md['cpu'])} | {_i(md['max_rss_mb'])} | {len(r['runs'])} |",
            "",
        ]
    out.append(ANALYSIS)
    return "\n".join(out) + "\n"


def _calls(run: dict[str, Any]) -> str:
    return ", ".join(f"{route} {n}" for route, n in sorted(run.get("calls_by_route", {}).items()))
