"""Prices: hand-computed costs, name resolution, unknown models, user overrides, properties."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.config import RouterSettings
from service.errors import ConfigError, InvalidRequest
from service.ledger import LedgerRow
from service.pricing import (
    Charge,
    PriceTable,
    Usage,
    format_usd,
    load_prices,
    usage_from_message,
)

TABLE = load_prices()
MODELS = TABLE.model_ids()
MIXED = Usage(
    input_tokens=1000,
    output_tokens=500,
    cache_creation_input_tokens=2000,
    cache_read_input_tokens=3000,
)


# --- the shipped table ----------------------------------------------------------------------


def test_shipped_table_is_versioned_and_has_the_families_the_service_uses() -> None:
    assert TABLE.version and TABLE.updated
    router = RouterSettings()
    for model in (
        router.cheap_model,
        router.standard_model,
        router.strong_model,
        router.baseline_model,
        "claude-haiku-4-5",
        "claude-sonnet-4-5",
        "claude-opus-4-5",
        "claude-opus-4-1",
        "claude-sonnet-4-0",
        "claude-3-5-haiku",
    ):
        assert TABLE.get(model) is not None, model


@pytest.mark.parametrize(
    ("name", "model_id"),
    [
        ("claude-sonnet-4-5", "claude-sonnet-4-5"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("  Claude-Sonnet-4-5 ", "claude-sonnet-4-5"),
        ("claude-sonnet-4-5@20250929", "claude-sonnet-4-5"),
        ("claude-haiku-4-5-20251001", "claude-haiku-4-5"),
        ("claude-opus-4-5-20251101", "claude-opus-4-5"),
        ("claude-opus-4-1-20250805", "claude-opus-4-1"),
        ("claude-sonnet-4-20250514", "claude-sonnet-4-0"),
        ("claude-sonnet-4", "claude-sonnet-4-0"),
        ("claude-opus-4-20250514", "claude-opus-4-0"),
        ("claude-3-5-haiku-20241022", "claude-3-5-haiku"),
        ("claude-3-5-haiku-latest", "claude-3-5-haiku"),
        # A snapshot the table has not heard of yet keeps its family's price.
        ("claude-opus-4-5-20991231", "claude-opus-4-5"),
    ],
)
def test_aliases_and_dated_ids_resolve_to_one_price(name: str, model_id: str) -> None:
    assert TABLE.resolve(name) == model_id
    assert TABLE.cost(name, MIXED).micros == TABLE.cost(model_id, MIXED).micros


@pytest.mark.parametrize(
    "name",
    [
        "claude-opus",
        "claude-sonnet-4-5-extra",
        "claude-sonnet-4-5-abcdefgh",
        "gpt-4o",
        "",
        "claude-opus-4-5-2025",
    ],
)
def test_no_loose_prefix_matching(name: str) -> None:
    assert TABLE.resolve(name) is None


def test_opus_4_does_not_take_the_price_of_opus_4_5() -> None:
    assert TABLE.resolve("claude-opus-4") == "claude-opus-4-0"
    assert (
        TABLE.cost("claude-opus-4", MIXED).micros == 3 * TABLE.cost("claude-opus-4-5", MIXED).micros
    )


# --- hand-computed costs ----------------------------------------------------------------------


def test_sonnet_mixed_usage_5m_1h_and_batch() -> None:
    # $3 in, $15 out: 1000*3 + 500*15 + 2000*3.75 (5m write) + 3000*0.30 (read) = 18,900 micros.
    cost = TABLE.cost("claude-sonnet-4-5", MIXED)
    assert (cost.micros, cost.priced, cost.price_id) == (18_900, True, "claude-sonnet-4-5")
    # 1h writes cost 2x input: 2000*6 instead of 2000*3.75.
    assert TABLE.cost("claude-sonnet-4-5", MIXED, cache_ttl="1h").micros == 23_400
    # Batch halves everything, cache classes included.
    batch = TABLE.cost("claude-sonnet-4-5", MIXED, batch=True)
    assert (batch.micros, batch.batch) == (9_450, True)


def test_cache_creation_split_from_the_api_wins_over_cache_ttl() -> None:
    # Opus 4.5, $5/$25: 100*5 + 10*25 + 100*6.25 (5m) + 200*10 (1h) = 3,375.
    split = Usage(
        input_tokens=100,
        output_tokens=10,
        cache_creation_input_tokens=300,
        cache_creation_5m_input_tokens=100,
        cache_creation_1h_input_tokens=200,
    )
    assert TABLE.cost("claude-opus-4-5", split).micros == 3_375
    assert TABLE.cost("claude-opus-4-5", split, cache_ttl="1h").micros == 3_375
    # 100 written tokens the split does not cover are priced at the caller's TTL.
    partial = Usage(
        input_tokens=100,
        output_tokens=10,
        cache_creation_input_tokens=400,
        cache_creation_5m_input_tokens=100,
        cache_creation_1h_input_tokens=200,
    )
    assert TABLE.cost("claude-opus-4-5", partial).micros == 3_375 + 625
    assert TABLE.cost("claude-opus-4-5", partial, cache_ttl="1h").micros == 3_375 + 1_000


def test_per_model_multiplier_overrides() -> None:
    # Claude Haiku 3: 5m writes 1.2x ($0.30), reads 0.12x ($0.03), 1h writes the default 2x.
    writes = Usage(cache_creation_input_tokens=1000)
    assert TABLE.cost("claude-3-haiku", writes).micros == 300
    assert TABLE.cost("claude-3-haiku", writes, cache_ttl="1h").micros == 500
    assert TABLE.cost("claude-3-haiku", Usage(cache_read_input_tokens=1000)).micros == 30
    # Claude Opus 5.5 reads at 0.05x of $4.
    assert TABLE.cost("claude-opus-5-5", Usage(cache_read_input_tokens=1000)).micros == 200


def test_rounding_is_half_up_once_per_row() -> None:
    # Haiku 3 input is 0.25 micro/token: 2 tokens = 0.5 -> 1; 1 token = 0.25 -> 0.
    assert TABLE.cost("claude-3-haiku", Usage(input_tokens=2)).micros == 1
    assert TABLE.cost("claude-3-haiku", Usage(input_tokens=1)).micros == 0
    # 0.25 (input) + 10 * 0.03 (reads) = 0.55 -> 1; rounding each class first would give 0.
    row = Usage(input_tokens=1, cache_read_input_tokens=10)
    assert TABLE.cost("claude-3-haiku", row).micros == 1
    # Batch: 3 * 0.25 * 0.5 = 0.375 -> 0; 4 * 0.25 * 0.5 = 0.5 -> 1.
    assert TABLE.cost("claude-3-haiku", Usage(input_tokens=3), batch=True).micros == 0
    assert TABLE.cost("claude-3-haiku", Usage(input_tokens=4), batch=True).micros == 1


def test_format_usd_is_exact() -> None:
    assert format_usd(1_234_567) == "1.234567"
    assert format_usd(5) == "0.000005"
    assert format_usd(0) == "0.000000"
    assert format_usd(-2_500_000) == "-2.500000"


# --- unknown models -----------------------------------------------------------------------


def test_unknown_model_is_flagged_not_free() -> None:
    cost = TABLE.cost("claude-mystery-9", MIXED)
    assert (cost.priced, cost.micros, cost.price_id) == (False, 0, None)
    assert TABLE.get("claude-mystery-9") is None
    assert TABLE.prompt_cache_saving("claude-mystery-9", MIXED) == 0


def test_charge_with_unknown_models_claims_no_saving() -> None:
    used_unknown = TABLE.charge(MIXED, baseline_model="claude-sonnet-4-5", model_used="mystery")
    assert not used_unknown.priced
    assert (used_unknown.cost_micros, used_unknown.baseline_micros, used_unknown.saved_micros) == (
        0,
        0,
        0,
    )
    baseline_unknown = TABLE.charge(MIXED, baseline_model="mystery", model_used="claude-sonnet-4-5")
    assert not baseline_unknown.priced
    assert baseline_unknown.cost_micros == 18_900
    assert baseline_unknown.baseline_micros == 18_900
    assert baseline_unknown.saved_micros == 0
    hit_unknown = TABLE.charge(MIXED, baseline_model="mystery", model_used="mystery", hit="exact")
    assert (hit_unknown.priced, hit_unknown.baseline_micros) == (False, 0)


# --- charges: where the saving came from --------------------------------------------------


def test_charge_of_a_routed_cached_batched_miss() -> None:
    usage = Usage(
        input_tokens=1000,
        output_tokens=200,
        cache_creation_input_tokens=2000,
        cache_read_input_tokens=3000,
    )
    charge = TABLE.charge(
        usage, baseline_model="claude-sonnet-4-5", model_used="claude-haiku-4-5", batch=True
    )
    # Baseline: Sonnet 4.5, all 6000 prompt tokens plain: 6000*3 + 200*15 = 21,000.
    # Haiku plain: 6000*1 + 200*5 = 7,000 -> routing saved 14,000.
    # Haiku as billed: 1000 + 1000 + 2000*1.25 + 3000*0.1 = 4,800 -> prompt cache saved 2,200.
    # Batch: 2,400 -> batch saved 2,400.
    assert charge == Charge(
        cost_micros=2_400,
        baseline_micros=21_000,
        saved_exact_micros=0,
        saved_semantic_micros=0,
        saved_routing_micros=14_000,
        saved_prompt_cache_micros=2_200,
        saved_batch_micros=2_400,
        priced=True,
        price_version=TABLE.version,
    )


def test_routing_up_and_unread_cache_writes_are_negative_savings() -> None:
    usage = Usage(input_tokens=100, output_tokens=100, cache_creation_input_tokens=1000)
    charge = TABLE.charge(usage, baseline_model="claude-haiku-4-5", model_used="claude-opus-4-5")
    assert charge.saved_routing_micros < 0
    assert charge.saved_prompt_cache_micros < 0
    assert charge.baseline_micros - charge.cost_micros == charge.saved_micros


def test_charge_of_hits_credits_the_whole_baseline_to_the_hit_kind() -> None:
    stored = Usage(input_tokens=1200, output_tokens=300, cache_read_input_tokens=800)
    # Baseline at Sonnet 4.5: 2000*3 + 300*15 = 10,500; the hit itself costs nothing.
    exact = TABLE.charge(
        stored, baseline_model="claude-sonnet-4-5", model_used="claude-haiku-4-5", hit="exact"
    )
    assert (exact.cost_micros, exact.baseline_micros, exact.saved_exact_micros) == (
        0,
        10_500,
        10_500,
    )
    semantic = TABLE.charge(
        stored, baseline_model="claude-sonnet-4-5", model_used="claude-sonnet-4-5", hit="semantic"
    )
    assert (semantic.saved_semantic_micros, semantic.saved_exact_micros) == (10_500, 0)


def test_charge_without_usage_is_zero() -> None:
    charge = TABLE.charge(None, baseline_model="claude-sonnet-4-5", model_used="claude-sonnet-4-5")
    assert (charge.cost_micros, charge.baseline_micros, charge.saved_micros, charge.priced) == (
        0,
        0,
        0,
        True,
    )


# --- usage from API messages --------------------------------------------------------------


def test_usage_from_message_reads_the_split_and_nulls() -> None:
    message = {
        "id": "msg_1",
        "type": "message",
        "usage": {
            "input_tokens": 12,
            "output_tokens": 34,
            "cache_creation_input_tokens": 300,
            "cache_read_input_tokens": None,
            "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 200},
            "service_tier": "standard",
        },
    }
    assert usage_from_message(message) == Usage(
        input_tokens=12,
        output_tokens=34,
        cache_creation_input_tokens=300,
        cache_read_input_tokens=0,
        cache_creation_5m_input_tokens=100,
        cache_creation_1h_input_tokens=200,
    )
    bare = usage_from_message({"input_tokens": 5, "output_tokens": 6})
    assert bare == Usage(input_tokens=5, output_tokens=6)
    # A split without the total (some SDK versions) still counts every written token.
    split_only = usage_from_message(
        {"input_tokens": 1, "output_tokens": 1, "cache_creation": {"ephemeral_1h_input_tokens": 7}}
    )
    assert split_only.cache_creation_input_tokens == 7


@pytest.mark.parametrize(
    "message",
    [
        {"id": "msg_1"},
        {"usage": None},
        {"usage": {"input_tokens": -1, "output_tokens": 0}},
        {"usage": {"input_tokens": "12", "output_tokens": 0}},
        {"usage": {"input_tokens": 1.5, "output_tokens": 0}},
        {"usage": {"input_tokens": True, "output_tokens": 0}},
        {"usage": {"input_tokens": 1, "output_tokens": 0, "cache_creation": 5}},
    ],
)
def test_usage_from_message_rejects_bad_usage(message: dict[str, object]) -> None:
    with pytest.raises(InvalidRequest):
        usage_from_message(message)


def test_usage_rejects_an_inconsistent_split() -> None:
    with pytest.raises(ValueError, match="split"):
        Usage(cache_creation_input_tokens=10, cache_creation_5m_input_tokens=11)
    with pytest.raises(ValueError, match="non-negative"):
        Usage(input_tokens=-3)


# --- user override file -------------------------------------------------------------------


def _write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_user_file_replaces_and_adds_models(tmp_path: Path) -> None:
    user = _write(
        tmp_path / "prices.json",
        {
            "version": "team-1",
            "models": {
                "claude-haiku-4-5": {"input": 2, "output": 10},
                "acme-model": {
                    "input": 1.5,
                    "output": 3,
                    "aliases": ["acme"],
                    "multipliers": {"cache_read": 0.5},
                },
            },
        },
    )
    table = load_prices(user)
    assert table.version == f"{TABLE.version}+team-1"
    assert table.cost("claude-haiku-4-5", Usage(input_tokens=1000)).micros == 2_000
    # The replaced entry keeps none of the shipped aliases: it was replaced whole.
    assert table.resolve("claude-haiku-4-5-20251001") == "claude-haiku-4-5"  # via date stripping
    assert table.cost("acme", Usage(cache_read_input_tokens=1000, output_tokens=10)).micros == 780
    # Untouched models keep their shipped price.
    assert table.cost("claude-sonnet-4-5", MIXED).micros == 18_900


def test_user_file_default_multipliers_apply_to_models_without_their_own(tmp_path: Path) -> None:
    table = load_prices(_write(tmp_path / "p.json", {"multipliers": {"cache_read": 0.2}}))
    reads = Usage(cache_read_input_tokens=1000)
    assert table.cost("claude-sonnet-4-5", reads).micros == 600
    assert table.cost("claude-3-haiku", reads).micros == 30  # its own 0.12x override stands
    assert table.version == f"{TABLE.version}+user"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"models": {"m": {"input": 1}}}', "missing 'output'"),
        ('{"models": {"m": {"input": 1, "ouput": 2, "output": 2}}}', "unknown keys: ouput"),
        ('{"models": {"m": {"input": -1, "output": 2}}}', "must not be negative"),
        ('{"models": {"m": {"input": "1", "output": 2}}}', "must be a number"),
        ('{"multipliers": {"batch": 0}}', "batch must be in"),
        ('{"multipliers": {"cache_raed": 0.1}}', "unknown keys: cache_raed"),
        ('{"models": {"m": {"input": 1, "output": 2, "aliases": "m2"}}}', "aliases"),
        ('{"models": []}', "'models' must map"),
    ],
)
def test_bad_user_files_fail_with_the_file_named(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=message) as info:
        load_prices(path)
    assert str(path) in str(info.value) or "bad.json" in str(info.value)


def test_missing_user_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read price file"):
        load_prices(tmp_path / "nope.json")


def test_an_id_always_means_itself_even_if_listed_as_another_models_alias() -> None:
    from service.pricing import ModelPrice, Multipliers

    one = Fraction(1)
    mult = Multipliers(one, one, one, Fraction(1, 2))
    table = PriceTable(
        "v",
        "",
        {
            "a": ModelPrice("a", Fraction(1), one, mult, aliases=("b",)),
            "b": ModelPrice("b", Fraction(7), one, mult),
        },
    )
    assert table.resolve("b") == "b"


# --- properties -----------------------------------------------------------------------------

COUNT = st.integers(min_value=0, max_value=2_000_000)


@st.composite
def usages(draw: st.DrawFn) -> Usage:
    write_5m = draw(st.none() | COUNT)
    write_1h = draw(st.none() | COUNT)
    unsplit = draw(COUNT)
    return Usage(
        input_tokens=draw(COUNT),
        output_tokens=draw(COUNT),
        cache_creation_input_tokens=(write_5m or 0) + (write_1h or 0) + unsplit,
        cache_read_input_tokens=draw(COUNT),
        cache_creation_5m_input_tokens=write_5m,
        cache_creation_1h_input_tokens=write_1h,
    )


TTLS = st.sampled_from(["5m", "1h"])


def _bump(usage: Usage, field: str, extra: int) -> Usage:
    values = {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_creation_input_tokens": usage.cache_creation_input_tokens,
        "cache_read_input_tokens": usage.cache_read_input_tokens,
        "cache_creation_5m_input_tokens": usage.cache_creation_5m_input_tokens,
        "cache_creation_1h_input_tokens": usage.cache_creation_1h_input_tokens,
    }
    values[field] = (values[field] or 0) + extra
    if field.startswith("cache_creation_") and field != "cache_creation_input_tokens":
        values["cache_creation_input_tokens"] = usage.cache_creation_input_tokens + extra
    return Usage(**values)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(
    model=st.sampled_from(MODELS),
    usage=usages(),
    field=st.sampled_from(
        [
            "input_tokens",
            "output_tokens",
            "cache_creation_input_tokens",
            "cache_read_input_tokens",
            "cache_creation_5m_input_tokens",
            "cache_creation_1h_input_tokens",
        ]
    ),
    extra=st.integers(min_value=0, max_value=1_000_000),
    batch=st.booleans(),
    ttl=TTLS,
)
def test_cost_is_monotone_in_every_token_count(
    model: str, usage: Usage, field: str, extra: int, batch: bool, ttl: str
) -> None:
    before = TABLE.cost(model, usage, batch=batch, cache_ttl=ttl)  # type: ignore[arg-type]
    after = TABLE.cost(model, _bump(usage, field, extra), batch=batch, cache_ttl=ttl)  # type: ignore[arg-type]
    assert after.micros >= before.micros


@settings(max_examples=200, deadline=None)
@given(model=st.sampled_from(MODELS), usage=usages(), ttl=TTLS)
def test_batch_never_costs_more(model: str, usage: Usage, ttl: str) -> None:
    normal = TABLE.cost(model, usage, cache_ttl=ttl)  # type: ignore[arg-type]
    batch = TABLE.cost(model, usage, batch=True, cache_ttl=ttl)  # type: ignore[arg-type]
    assert batch.micros <= normal.micros
    # And it is the batch multiplier of the exact cost, up to the one rounding of each.
    assert abs(batch.micros - normal.micros / 2) <= 1


@settings(max_examples=200, deadline=None)
@given(model=st.sampled_from(MODELS), usage=usages(), ttl=TTLS)
def test_prompt_cache_saving_is_read_discount_minus_write_premium(
    model: str, usage: Usage, ttl: str
) -> None:
    price = TABLE.get(model)
    assert price is not None
    mult = price.multipliers
    write_5m = usage.cache_creation_5m_input_tokens or 0
    write_1h = usage.cache_creation_1h_input_tokens or 0
    unsplit = usage.cache_creation_input_tokens - write_5m - write_1h
    unsplit_rate = mult.cache_write_5m if ttl == "5m" else mult.cache_write_1h
    exact = price.input * (
        usage.cache_read_input_tokens * (1 - mult.cache_read)
        - write_5m * (mult.cache_write_5m - 1)
        - write_1h * (mult.cache_write_1h - 1)
        - unsplit * (unsplit_rate - 1)
    )
    saving = TABLE.prompt_cache_saving(model, usage, cache_ttl=ttl)  # type: ignore[arg-type]
    assert abs(saving - exact) <= 1
    if usage.cache_creation_input_tokens == 0:
        assert saving >= 0


@settings(max_examples=300, deadline=None)
@given(
    usage=st.none() | usages(),
    baseline=st.sampled_from([*MODELS, "unknown-model"]),
    used=st.sampled_from([*MODELS, "unknown-model"]),
    hit=st.sampled_from([None, "exact", "semantic"]),
    batch=st.booleans(),
    ttl=TTLS,
)
def test_charges_always_balance_and_fit_a_ledger_row(
    usage: Usage | None, baseline: str, used: str, hit: str | None, batch: bool, ttl: str
) -> None:
    charge = TABLE.charge(
        usage,
        baseline_model=baseline,
        model_used=used,
        hit=hit,  # type: ignore[arg-type]
        batch=batch,
        cache_ttl=ttl,  # type: ignore[arg-type]
    )
    assert charge.baseline_micros - charge.cost_micros == charge.saved_micros
    assert min(charge.cost_micros, charge.saved_exact_micros, charge.saved_batch_micros) >= 0
    if hit is not None:
        assert charge.cost_micros == 0
    if not charge.priced:
        assert charge.saved_micros == 0
    # The ledger accepts it as is (its own balance check runs in LedgerRow.__post_init__).
    kind = {"exact": "hit-exact", "semantic": "hit-semantic"}.get(hit or "", "miss")
    from dataclasses import asdict

    LedgerRow(
        ts=1.0,
        request_id="r",
        tenant="t",
        namespace="n",
        feature=None,
        kind=kind,  # type: ignore[arg-type]
        model_requested=baseline,
        model_used=used,
        route_tier=None,
        route_reasons=None,
        input_tokens=0,
        output_tokens=0,
        cache_creation_tokens=0,
        cache_read_tokens=0,
        similarity=None,
        latency_ms=1.0,
        entry_id=None,
        status=200,
        **asdict(charge),
    )


def test_token_counts_past_any_request_are_refused() -> None:
    """Priced, a count near 2**63 overflowed the ledger's integers (a 500, a lost row)."""
    assert usage_from_message({"usage": {"input_tokens": 10_000_000, "output_tokens": 0}})
    for count in (10_000_001, 2**63, -1):
        with pytest.raises(InvalidRequest, match="input_tokens"):
            usage_from_message({"usage": {"input_tokens": count, "output_tokens": 1}})
