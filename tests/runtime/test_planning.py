"""Planning: batching by (subscription, region), families, pruning by definitions, sharding."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from metrics_poller.catalog import GROUPS, GROUPS_BY_NAME
from metrics_poller.cycle import owned
from metrics_poller.model import Account, MetricDefinition
from metrics_poller.planning import (
    BATCH_LIMIT,
    DefinitionsKey,
    Settings,
    definitions_key,
    families,
    plan,
    prune_group,
    shard_of,
)

NOW = datetime(2026, 3, 1, 12, 7, 30, tzinfo=UTC)
SETTINGS = Settings(
    grain=timedelta(minutes=1),
    latency=timedelta(minutes=4),
    lookback=timedelta(minutes=5),
    max_backfill=timedelta(hours=24),
    step=timedelta(hours=1),
    top=1000,
)


def account(sub: str, region: str, n: int, kind: str = "OpenAI") -> Account:
    rid = f"/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/{region}-{n}"
    return Account(rid, f"{region}-{n}", sub, "rg", region, kind)


def everything(accounts: list[Account]) -> dict[DefinitionsKey, None]:
    return {definitions_key(a): None for a in accounts}


def test_batches_never_mix_subscriptions_or_regions_and_hold_at_most_50() -> None:
    accounts = [
        account(s, r, n) for s in ("s1", "s2") for r in ("eastus", "westeurope", "swedencentral") for n in range(23)
    ]
    accounts += [account("s1", "eastus", 100 + n) for n in range(60)]  # 83 in s1/eastus
    work = plan(accounts, GROUPS, everything(accounts), {}, NOW, SETTINGS)
    seen = set()
    for unit in work.units:
        assert 1 <= len(unit.accounts) <= BATCH_LIMIT
        assert {(a.subscription_id, a.location) for a in unit.accounts} == {(unit.subscription_id, unit.region)}
        for group in unit.groups:
            for a in unit.accounts:
                seen.add((a.key, group.name))
    assert seen == {(a.key, g.name) for a in accounts for g in GROUPS}


def test_query_count_for_120_accounts_is_ceil_120_over_50_times_groups() -> None:
    accounts = [account("s1", "eastus", n) for n in range(120)]
    work = plan(accounts, GROUPS, everything(accounts), {}, NOW, SETTINGS)
    assert work.query_count == math.ceil(120 / 50) * len(GROUPS)


def test_groups_sharing_a_dimension_set_form_one_family() -> None:
    fams = families(GROUPS)
    names = [tuple(g.name for g in f) for f in fams]
    assert ("ptu_tokens_total", "ptu_tokens_stats") in names
    assert sum(len(f) for f in fams) == len(GROUPS)
    for fam in fams:
        assert len({frozenset(g.dimensions) for g in fam}) == 1


def test_family_members_share_one_window_from_the_oldest_cursor() -> None:
    a = account("s1", "eastus", 1)
    old = datetime(2026, 3, 1, 11, 0, tzinfo=UTC)
    newer = datetime(2026, 3, 1, 11, 30, tzinfo=UTC)
    cursors = {(a.key, "ptu_tokens_total"): newer, (a.key, "ptu_tokens_stats"): old}
    work = plan([a], GROUPS, everything([a]), cursors, NOW, SETTINGS)
    (unit,) = [u for u in work.units if {g.name for g in u.groups} == {"ptu_tokens_total", "ptu_tokens_stats"}]
    assert unit.windows[0].start == old
    assert unit.windows[-1].end == datetime(2026, 3, 1, 12, 3, tzinfo=UTC)


def test_pruning_drops_what_definitions_do_not_offer() -> None:
    group = GROUPS_BY_NAME["requests"]
    dims = tuple(d for d in group.dimensions if d != "IsSpillover")
    defs = {"AzureOpenAIRequests": MetricDefinition("AzureOpenAIRequests", dims, ("Total", "Count"), ("PT1M",))}
    pruned = prune_group(group, defs)
    assert pruned is not None and "IsSpillover" not in pruned.dimensions and pruned.aggregations == ("Total",)
    assert prune_group(GROUPS_BY_NAME["tokens"], defs) is None
    assert prune_group(group, None) == group


def test_region_without_definitions_is_left_out() -> None:
    a, b = account("s1", "eastus", 1), account("s1", "westus", 1)
    work = plan([a, b], GROUPS, {("s1", "eastus", "openai"): None}, {}, NOW, SETTINGS)
    assert {x.key for u in work.units for x in u.accounts} == {a.key}


def test_kinds_with_different_definitions_never_share_a_query() -> None:
    """Definitions are per (subscription, region, kind): an AIServices account without GeneratedTokens
    is asked only for what it offers, the OpenAI account next to it for everything."""
    tokens = GROUPS_BY_NAME["tokens"]

    def offered(names: tuple[str, ...]) -> dict[str, MetricDefinition]:
        return {n: MetricDefinition(n, tokens.dimensions, ("Total",), ("PT1M",)) for n in names}

    openai, aiservices = account("s1", "eastus", 1), account("s1", "eastus", 2, kind="AIServices")
    definitions = {
        definitions_key(openai): offered(tokens.metric_names),
        definitions_key(aiservices): offered(("ProcessedPromptTokens", "TokenTransaction")),
    }
    work = plan([openai, aiservices], [tokens], definitions, {}, NOW, SETTINGS)
    asked = {a.key: g.metric_names for u in work.units for a in u.accounts for g in u.groups}
    assert asked == {
        openai.key: tokens.metric_names,
        aiservices.key: ("ProcessedPromptTokens", "TokenTransaction"),
    }


def test_long_downtime_is_split_into_sub_windows_and_gap_reported() -> None:
    a = account("s1", "eastus", 1)
    cursors = {(a.key, g.name): NOW - timedelta(days=3) for g in GROUPS}
    work = plan([a], GROUPS, everything([a]), cursors, NOW, SETTINGS)
    assert work.gaps and all(g.account_key == a.key for g in work.gaps)
    for unit in work.units:
        assert len(unit.windows) in (24, 25)
        assert all(w.end - w.start <= SETTINGS.step for w in unit.windows)


@given(count=st.integers(min_value=1, max_value=16), n=st.integers(min_value=1, max_value=300))
def test_every_account_is_in_exactly_one_shard(count: int, n: int) -> None:
    accounts = [account("s1", "eastus", i) for i in range(n)]
    shards = [owned(accounts, index, count) for index in range(count)]
    assert sorted(a.key for s in shards for a in s) == sorted(a.key for a in accounts)
    for index, members in enumerate(shards):
        assert all(shard_of(a, count) == index for a in members)
