"""The pure inventory core: rate-limit arithmetic, limits by source, lifecycle dates, peaks, slots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from metrics_poller.headroom import (
    CatalogueEntry,
    CatalogueSku,
    Deployment,
    UsagePeaks,
    days_until,
    join,
    limits,
    parse_catalogue,
    parse_date,
    parse_deployments,
    per_minute,
    quota_key,
    retirement,
)
from metrics_poller.inventory_cycle import current_slot, due, slot_count, slot_of
from metrics_poller.model import Account, Point, Series

ACCOUNT = Account(
    id="/subscriptions/s/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/a",
    name="a",
    subscription_id="s",
    resource_group="rg",
    location="eastus",
    kind="OpenAI",
)


def deployment(**overrides: object) -> Deployment:
    values: dict[str, object] = {
        "id": ACCOUNT.id + "/deployments/d",
        "name": "d",
        "model_format": "OpenAI",
        "model_name": "gpt-4o",
        "model_version": "2024-11-20",
        "sku_name": "Standard",
        "capacity": 80,
        "rate_limits": {},
        "version_upgrade_option": None,
        "provisioning_state": "Succeeded",
        "dynamic_throttling": None,
    }
    values.update(overrides)
    return Deployment(**values)  # type: ignore[arg-type]


# -------------------------------------------------------------------------------------- rate limits


def test_rate_limits_are_count_times_sixty_over_the_renewal_period() -> None:
    # D-MODELS: capacity 80 → `request` 80 per 10 s = 480 RPM, `token` 80,000 per 60 s = 80 K TPM.
    rules = [
        {"key": "request", "renewalPeriod": 10, "count": 80},
        {"key": "token", "renewalPeriod": 60, "count": 80000},
    ]
    assert per_minute(rules) == {"request": 480.0, "token": 80000.0}
    # 2ND-DEP writes floats; a rule without a usable period or count is skipped, not guessed.
    assert per_minute([{"key": "token", "renewalPeriod": 60.0, "count": 1000.0}]) == {"token": 1000.0}
    assert per_minute([{"key": "token", "renewalPeriod": 0, "count": 5}, {"key": "request", "count": 1}]) == {}
    assert per_minute(None) == {}


@given(
    count=st.floats(min_value=0, max_value=1e9, allow_nan=False),
    period=st.floats(min_value=0.001, max_value=86400, allow_nan=False),
)
def test_rate_per_minute_is_proportional(count: float, period: float) -> None:
    rate = per_minute([{"key": "Token", "renewalPeriod": period, "count": count}])["token"]
    assert abs(rate - count * 60 / period) <= 1e-9 * max(1.0, rate)


def test_limits_prefer_the_deployment_then_the_catalogue_then_the_documented_ratio() -> None:
    sku = CatalogueSku("OpenAI.Standard.GPT4o", None, {"request": 6.0, "token": 1000.0})
    entry = CatalogueEntry("GenerallyAvailable", None, None, {"standard": sku})
    own = deployment(rate_limits={"token": 50000.0, "request": 300.0})
    assert (limits(own, entry).tokens_per_minute, limits(own, entry).source) == (50000.0, "deployment")
    from_catalogue = limits(deployment(), entry)
    assert (from_catalogue.tokens_per_minute, from_catalogue.requests_per_minute) == (80000.0, 480.0)
    assert from_catalogue.source == "catalogue"
    estimated = limits(deployment(), None)
    assert (estimated.tokens_per_minute, estimated.requests_per_minute, estimated.source) == (80000, 480, "estimated")


def test_unknown_types_and_missing_limits_stay_unknown() -> None:
    # A model neither the body, the catalogue nor the docs table covers: no limit at all.
    assert limits(deployment(model_name="gpt-4o-realtime-preview"), None).source is None
    # An undocumented deployment type gets only what its own body states, never a catalogue guess.
    odd = deployment(sku_name="FutureTier")
    assert odd.family == "unknown"
    assert limits(odd, None).tokens_per_minute is None
    assert limits(deployment(sku_name="FutureTier", rate_limits={"token": 1000.0}), None).source == "deployment"
    # Provisioned and batch types have no per-minute limit (§3.2), whatever `rateLimits` says.
    assert limits(deployment(sku_name="GlobalProvisionedManaged", rate_limits={"token": 1.0}), None).source is None
    assert limits(deployment(sku_name="GlobalBatch"), None).source is None


# ----------------------------------------------------------------------------------------- lifecycle


def test_dates_parse_with_z_or_an_offset_and_the_2099_placeholder_means_none() -> None:
    assert parse_date("2025-06-30T09:00:00+09:00") == datetime(2025, 6, 30, tzinfo=UTC)
    assert parse_date("2025-06-30T00:00:00Z") == datetime(2025, 6, 30, tzinfo=UTC)
    assert parse_date("2099-12-31T00:00:00Z") is None
    assert parse_date("not a date") is None and parse_date(None) is None


@given(st.integers(min_value=-400, max_value=400), st.integers(min_value=0, max_value=86399))
def test_days_to_retirement_are_floored_whole_days(days: int, second: int) -> None:
    now = datetime(2026, 3, 2, tzinfo=UTC) + timedelta(seconds=second)
    date = datetime(2026, 3, 2, tzinfo=UTC) + timedelta(days=days)
    assert days_until(date, now) == (days - 1 if second else days)


def test_the_sku_date_comes_before_the_model_date() -> None:
    # EX-LM gpt-35-turbo 0301: Standard 2025-02-13 while the model's inference date is 2025-04-30.
    pages = [
        {
            "value": [
                {
                    "kind": "OpenAI",
                    "model": {
                        "format": "OpenAI",
                        "name": "gpt-35-turbo",
                        "version": "0301",
                        "skus": [
                            {
                                "name": "Standard",
                                "usageName": "OpenAI.Standard.gpt-35-turbo",
                                "deprecationDate": "2025-02-13T00:00:00Z",
                            },
                            {"name": "Provisioned", "usageName": "OpenAI.Provisioned.gpt-35-turbo"},
                        ],
                        "deprecation": {"inference": "2025-04-30T00:00:00Z", "deprecationStatus": "Planned"},
                        "lifecycleStatus": "Deprecated",
                    },
                }
            ]
        }
    ]
    catalogue = parse_catalogue(pages)
    entry = catalogue[("openai", "gpt-35-turbo", "0301")]
    standard = deployment(model_name="gpt-35-turbo", model_version="0301")
    provisioned = deployment(model_name="gpt-35-turbo", model_version="0301", sku_name="provisioned")
    assert retirement(standard, entry) == datetime(2025, 2, 13, tzinfo=UTC)
    assert retirement(provisioned, entry) == datetime(2025, 4, 30, tzinfo=UTC)
    assert quota_key(provisioned, entry) == ("OpenAI.Provisioned.gpt-35-turbo", False)
    # Without a catalogue entry the quota key follows the naming convention and says it is guessed.
    assert quota_key(standard, None) == ("OpenAI.Standard.gpt-35-turbo", True)


def test_deployments_parse_the_spec_example_and_keep_unknown_values_unknown() -> None:
    # EX-LD (ListDeployments.json): no rateLimits, no versionUpgradeOption.
    body = {
        "value": [
            {
                "id": "/subscriptions/subscriptionId/resourceGroups/resourceGroupName/providers/"
                "Microsoft.CognitiveServices/accounts/accountName/deployments/deploymentName",
                "name": "deploymentName",
                "type": "Microsoft.CognitiveServices/accounts/deployments",
                "sku": {"name": "Standard", "capacity": 1},
                "properties": {
                    "model": {"format": "OpenAI", "name": "ada", "version": "1"},
                    "provisioningState": "Succeeded",
                },
            }
        ]
    }
    (parsed,) = parse_deployments([body])
    assert (parsed.name, parsed.sku_name, parsed.capacity, parsed.model_name) == (
        "deploymentName",
        "Standard",
        1,
        "ada",
    )
    assert parsed.rate_limits == {} and parsed.version_upgrade_option is None
    (record,) = join(ACCOUNT, [parsed], {}, {}, datetime(2026, 1, 1, tzinfo=UTC))
    assert record.limits.source is None and record.tokens_pct is None and record.retirement is None


# --------------------------------------------------------------------------------------------- peaks


def _series(deployment_name: str, metric: str, points: dict[int, float], status: str = "200", api: str = "a") -> Series:
    return Series(
        account=ACCOUNT,
        group="g",
        metric=metric,
        timegrain="PT1M",
        dimensions={"ModelDeploymentName": deployment_name, "StatusCode": status, "ApiName": api},
        points=[Point(timestamp=f"2026-03-02T12:{m:02d}:00Z", total=v) for m, v in sorted(points.items())],
    )


minute_values = st.dictionaries(st.integers(0, 59), st.integers(0, 10_000).map(float), max_size=20)


@given(
    splits=st.lists(
        st.tuples(st.sampled_from(["a", "b", "c"]), st.sampled_from(["200", "429"]), minute_values), max_size=6
    ),
    windows=st.integers(1, 4),
)
def test_peaks_folded_window_by_window_equal_the_peak_of_per_minute_sums(
    splits: list[tuple[str, str, dict[int, float]]], windows: int
) -> None:
    """Series split by other dimensions add up per minute; windows fold into a running maximum."""
    peaks = UsagePeaks()
    for w in range(windows):  # each window covers a disjoint range of minutes, as the planner's do
        chosen = [
            (api, status, {m: v for m, v in values.items() if m % windows == w}) for api, status, values in splits
        ]
        peaks.observe(_series("dep", "AzureOpenAIRequests", v, s, api) for api, s, v in chosen)
    sums: dict[int, float] = {}
    throttled = 0.0
    for _api, status, values in splits:
        for minute, value in values.items():
            sums[minute] = sums.get(minute, 0.0) + value
            throttled += value if status == "429" else 0.0
    peak = peaks.take(ACCOUNT.key).get("dep")
    if not any(values for _a, _s, values in splits):
        return
    assert peak is not None
    assert peak.per_minute["AzureOpenAIRequests"] == max(sums.values())
    assert peak.throttled["AzureOpenAIRequests"] == throttled
    assert peaks.take(ACCOUNT.key) == {}  # taken: the next document covers the next window


def test_azure_openai_metrics_win_over_foundry_ones_for_the_same_deployment() -> None:
    peaks = UsagePeaks()
    peaks.observe([_series("Dep", "TotalTokens", {1: 900.0}), _series("dep", "TokenTransaction", {1: 500.0})])
    (record,) = join(ACCOUNT, [deployment(name="dep")], {}, peaks.peek(ACCOUNT.key), datetime(2026, 1, 1, tzinfo=UTC))
    assert record.tokens_per_minute_max == 500.0  # never both added up: they count the same tokens


# --------------------------------------------------------------------------------------------- slots


@given(st.lists(st.text(min_size=1, max_size=20), unique=True, max_size=60), st.sampled_from([300, 600, 900, 3600]))
def test_each_account_is_read_exactly_once_per_interval(keys: list[str], interval: int) -> None:
    period = 300
    slots = slot_count(interval, period)
    accounts = [
        Account(id=f"/x/{k}", name=k, subscription_id="s", resource_group="g", location="l", kind="OpenAI")
        for k in keys
    ]
    start = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    seen: list[str] = []
    regions = []
    for cycle in range(slots):
        now = start + timedelta(seconds=period * cycle + 17)
        share, quota_regions = due(accounts, current_slot(now, period, slots), slots, set())
        seen += [a.key for a in share]
        regions += quota_regions
    assert sorted(seen) == sorted(a.key for a in accounts)
    assert len(regions) == (1 if accounts else 0)  # the one (subscription, region) once per interval
    assert all(0 <= slot_of(k, slots) < slots for k in keys)


def test_accounts_whose_inventory_failed_are_read_again_next_cycle() -> None:
    accounts = [
        Account(id=f"/x/{i}", name=str(i), subscription_id="s", resource_group="g", location="l", kind="OpenAI")
        for i in range(40)
    ]
    slot = 0
    share, _ = due(accounts, slot, 12, {accounts[0].key})
    assert accounts[0] in share
    assert len(share) < len(accounts)
