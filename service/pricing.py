"""Prices: what one Messages API answer costs, in integer micro-dollars, from a versioned table.

The table ships as `service/data/prices.json` (list prices in USD per million tokens, which is
the same number as micro-dollars per token) and can be extended or corrected by a user file
whose models replace or add to the shipped ones. Everything that turns tokens into money goes
through `PriceTable`, so the proxy's response headers, the ledger, budgets and reports can never
disagree by a rounding rule.

Arithmetic and rounding: a row's cost is computed exactly (`fractions.Fraction`) over all its
token classes, the batch discount is applied to that sum, and the result is rounded once, half
up, to whole micro-dollars. Savings are differences of such rounded costs, so they add up to
`baseline - cost` exactly (see `PriceTable.charge`).

Model names resolve in this order (case and surrounding blanks ignored): a table id, an alias
listed for it, then the same two after removing a trailing snapshot date (`-20250929`, or
`@20250929` as Vertex writes it). So `claude-sonnet-4-5`, `claude-sonnet-4-5-20250929` and a
future `claude-sonnet-4-5-2026xxxx` snapshot all get the Sonnet 4.5 price. There is no looser
prefix matching on purpose: `claude-opus-4` must never pick up the price of `claude-opus-4-5`.
A name that does not resolve is *unknown*: its `Cost` says `priced=False` with zero micros,
and callers record that (the ledger's `priced` column) rather than pricing it at zero silently.

Not modelled: long-context surcharges (prompts over 200k tokens on some models), prompt-length
price bands (Claude Haiku 5.5, hence absent from the table), server tools such as web search,
data-residency multipliers and fast mode. Add a corrected entry in a user file if they matter.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from decimal import Decimal
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from service.errors import ConfigError, InvalidRequest
from service.request_checks import MAX_TOKEN_COUNT

CacheTtl = Literal["5m", "1h"]
HitKind = Literal["exact", "semantic"]

_MULTIPLIER_KEYS = ("cache_write_5m", "cache_write_1h", "cache_read", "batch")
_MODEL_KEYS = frozenset({"input", "output", "multipliers", "aliases", "note"})
_SNAPSHOT_DATE = re.compile(r"[-@]\d{8}$")
_HALF = Fraction(1, 2)
_OPTIONAL_COUNTS = frozenset({"cache_creation_5m_input_tokens", "cache_creation_1h_input_tokens"})


@dataclass(frozen=True)
class Multipliers:
    """Token-class prices as multiples of the model's input price (batch: of the whole bill)."""

    cache_write_5m: Fraction
    cache_write_1h: Fraction
    cache_read: Fraction
    batch: Fraction


@dataclass(frozen=True)
class ModelPrice:
    """List prices of one model in USD per million tokens (= micro-dollars per token)."""

    model_id: str
    input: Fraction
    output: Fraction
    multipliers: Multipliers
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Usage:
    """Token counts of one answer, as the API's `usage` object reports them.

    `cache_creation_input_tokens` is the total written to the prompt cache; the optional split
    (the API's `usage.cache_creation` object) says how many of those were 5-minute and 1-hour
    writes. Tokens of the total not covered by the split are priced at the caller's `cache_ttl`.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_5m_input_tokens: int | None = None
    cache_creation_1h_input_tokens: int | None = None

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if value is None and item.name in _OPTIONAL_COUNTS:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"Usage.{item.name} must be a non-negative int, got {value!r}")
        split = (self.cache_creation_5m_input_tokens or 0) + (
            self.cache_creation_1h_input_tokens or 0
        )
        if split > self.cache_creation_input_tokens:
            raise ValueError(
                f"cache creation split ({split}) exceeds cache_creation_input_tokens "
                f"({self.cache_creation_input_tokens})"
            )

    @property
    def prompt_tokens(self) -> int:
        """Every prompt token, cached or not."""
        return self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens

    def without_prompt_cache(self) -> Usage:
        """The same answer with prompt caching off: every prompt token billed as plain input."""
        return Usage(input_tokens=self.prompt_tokens, output_tokens=self.output_tokens)


@dataclass(frozen=True)
class Cost:
    """The price of one usage at one model. `priced=False` means the model is unknown."""

    model: str
    price_id: str | None
    micros: int
    priced: bool
    batch: bool
    price_version: str


@dataclass(frozen=True)
class Charge:
    """One ledger row's money: cost, baseline and the saving split by source.

    Field names equal the ledger's columns, so `LedgerRow(..., **dataclasses.asdict(charge))`
    works. Invariant: `baseline_micros - cost_micros == saved_micros` (sum of the five sources).
    """

    cost_micros: int
    baseline_micros: int
    saved_exact_micros: int
    saved_semantic_micros: int
    saved_routing_micros: int
    saved_prompt_cache_micros: int
    saved_batch_micros: int
    priced: bool
    price_version: str

    @property
    def saved_micros(self) -> int:
        return (
            self.saved_exact_micros
            + self.saved_semantic_micros
            + self.saved_routing_micros
            + self.saved_prompt_cache_micros
            + self.saved_batch_micros
        )


def _round_half_up(value: Fraction) -> int:
    return math.floor(value + _HALF)


class PriceTable:
    """A resolved, immutable price table. Build it with `load_prices`."""

    def __init__(self, version: str, updated: str, models: Mapping[str, ModelPrice]) -> None:
        self._version = version
        self._updated = updated
        self._models = dict(models)
        names: dict[str, str] = {}
        for model_id, price in self._models.items():
            for alias in price.aliases:
                names[alias.lower()] = model_id
        # Ids after aliases: an id always means itself, even if another entry lists it as alias.
        for model_id in self._models:
            names[model_id.lower()] = model_id
        self._names = names

    @property
    def version(self) -> str:
        return self._version

    @property
    def updated(self) -> str:
        return self._updated

    def model_ids(self) -> tuple[str, ...]:
        return tuple(sorted(self._models))

    def resolve(self, model: str) -> str | None:
        """The table id `model` prices as, or None (see the module docstring for the rules)."""
        name = model.strip().lower()
        found = self._names.get(name)
        if found is None:
            undated = _SNAPSHOT_DATE.sub("", name)
            if undated != name:
                found = self._names.get(undated)
        return found

    def get(self, model: str) -> ModelPrice | None:
        model_id = self.resolve(model)
        return None if model_id is None else self._models[model_id]

    def cost(
        self, model: str, usage: Usage, *, batch: bool = False, cache_ttl: CacheTtl = "5m"
    ) -> Cost:
        """Price `usage` at `model`; an unknown model gives `priced=False` and zero micros."""
        price = self.get(model)
        if price is None:
            return Cost(model, None, 0, False, batch, self._version)
        exact = _exact_micros(price, usage, cache_ttl)
        if batch:
            exact *= price.multipliers.batch
        return Cost(model, price.model_id, _round_half_up(exact), True, batch, self._version)

    def prompt_cache_saving(self, model: str, usage: Usage, *, cache_ttl: CacheTtl = "5m") -> int:
        """Read discount minus write premium of `usage` at `model`, in micros; may be negative.

        Computed as (cost with every prompt token billed as plain input) - (cost as billed),
        both rounded, so it telescopes with the other sources. Unknown model: 0.
        """
        plain = self.cost(model, usage.without_prompt_cache(), cache_ttl=cache_ttl)
        actual = self.cost(model, usage, cache_ttl=cache_ttl)
        if not (plain.priced and actual.priced):
            return 0
        return plain.micros - actual.micros

    def charge(
        self,
        usage: Usage | None,
        *,
        baseline_model: str,
        model_used: str,
        hit: HitKind | None = None,
        batch: bool = False,
        cache_ttl: CacheTtl = "5m",
    ) -> Charge:
        """Cost, baseline and savings of one answer, ready for the ledger.

        `baseline_model` is the model the request would have gone to without promptcache: the
        model it asked for, or the configured baseline model when it asked for a router alias.
        The baseline is that model's price for the answer's tokens with no prompt caching and
        no batch discount. For a hit (`hit="exact"|"semantic"`, `usage` = the stored answer's)
        the cost is 0 and the whole baseline is that hit's saving. For an upstream answer the
        chain baseline -> routed model -> prompt caching -> batch gives routing,
        prompt-cache and batch savings as differences of rounded costs (routing and prompt
        cache may be negative). `usage=None` (an error that consumed nothing) is all zeros.

        If a needed model is unknown the charge is `priced=False` and claims no saving:
        cost is what can be priced (0 if the used model is unknown) and baseline equals it.
        """
        version = self._version
        if usage is None:
            return Charge(0, 0, 0, 0, 0, 0, 0, True, version)
        plain = usage.without_prompt_cache()
        base = self.cost(baseline_model, plain, cache_ttl=cache_ttl)
        if hit is not None:
            if not base.priced:
                return Charge(0, 0, 0, 0, 0, 0, 0, False, version)
            exact = base.micros if hit == "exact" else 0
            semantic = base.micros if hit == "semantic" else 0
            return Charge(0, base.micros, exact, semantic, 0, 0, 0, True, version)
        used_plain = self.cost(model_used, plain, cache_ttl=cache_ttl)
        used = self.cost(model_used, usage, cache_ttl=cache_ttl)
        billed = self.cost(model_used, usage, batch=batch, cache_ttl=cache_ttl)
        if not billed.priced:
            return Charge(0, 0, 0, 0, 0, 0, 0, False, version)
        if not base.priced:
            return Charge(billed.micros, billed.micros, 0, 0, 0, 0, 0, False, version)
        return Charge(
            cost_micros=billed.micros,
            baseline_micros=base.micros,
            saved_exact_micros=0,
            saved_semantic_micros=0,
            saved_routing_micros=base.micros - used_plain.micros,
            saved_prompt_cache_micros=used_plain.micros - used.micros,
            saved_batch_micros=used.micros - billed.micros,
            priced=True,
            price_version=version,
        )


def _exact_micros(price: ModelPrice, usage: Usage, cache_ttl: CacheTtl) -> Fraction:
    mult = price.multipliers
    write_5m = usage.cache_creation_5m_input_tokens or 0
    write_1h = usage.cache_creation_1h_input_tokens or 0
    unsplit = usage.cache_creation_input_tokens - write_5m - write_1h
    unsplit_rate = mult.cache_write_5m if cache_ttl == "5m" else mult.cache_write_1h
    prompt_units = (
        usage.input_tokens
        + write_5m * mult.cache_write_5m
        + write_1h * mult.cache_write_1h
        + unsplit * unsplit_rate
        + usage.cache_read_input_tokens * mult.cache_read
    )
    return prompt_units * price.input + usage.output_tokens * price.output


def format_usd(micros: int, places: int = 6) -> str:
    """`1234567` -> `"1.234567"`; exact decimal text for headers, reports and JSON."""
    quantum = Decimal(1).scaleb(-places)
    return str((Decimal(micros) / Decimal(1_000_000)).quantize(quantum))


# --- loading -------------------------------------------------------------------------------


def _number(value: object, where: str) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise ConfigError(f"{where} must be a number, got {value!r}")
    number = Fraction(value)
    if number < 0:
        raise ConfigError(f"{where} must not be negative, got {value}")
    return number


def _multipliers(
    raw: object, base: Multipliers | None, where: str, *, partial: bool
) -> Multipliers:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be an object")
    unknown = set(raw) - set(_MULTIPLIER_KEYS)
    if unknown:
        raise ConfigError(f"{where} has unknown keys: {', '.join(sorted(unknown))}")
    if not partial:
        missing = [key for key in _MULTIPLIER_KEYS if key not in raw]
        if missing:
            raise ConfigError(f"{where} is missing: {', '.join(missing)}")
    values = {key: _number(value, f"{where}.{key}") for key, value in raw.items()}
    merged = replace(base, **values) if base is not None else Multipliers(**values)
    if not 0 < merged.batch <= 1:
        raise ConfigError(f"{where}.batch must be in (0, 1], got {float(merged.batch)}")
    return merged


def _model(model_id: str, raw: object, defaults: Multipliers, where: str) -> ModelPrice:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be an object")
    unknown = set(raw) - _MODEL_KEYS
    if unknown:
        raise ConfigError(f"{where} has unknown keys: {', '.join(sorted(unknown))}")
    for key in ("input", "output"):
        if key not in raw:
            raise ConfigError(f"{where} is missing {key!r}")
    mult = defaults
    if "multipliers" in raw:
        mult = _multipliers(raw["multipliers"], defaults, f"{where}.multipliers", partial=True)
    aliases = raw.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a for a in aliases):
        raise ConfigError(f"{where}.aliases must be a list of names")
    return ModelPrice(
        model_id=model_id,
        input=_number(raw["input"], f"{where}.input"),
        output=_number(raw["output"], f"{where}.output"),
        multipliers=mult,
        aliases=tuple(aliases),
    )


def _read(text: str, source: str) -> dict[str, Any]:
    try:
        data = json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"price file {source} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"price file {source} must hold a JSON object")
    models = data.get("models", {})
    if not isinstance(models, dict) or not all(isinstance(k, str) and k for k in models):
        raise ConfigError(f"price file {source}: 'models' must map model ids to prices")
    return data


def load_prices(user_file: Path | None = None) -> PriceTable:
    """The shipped price table, with `user_file`'s models replacing or adding to it.

    A user file has the shipped file's shape; every part is optional. Its models replace
    shipped entries of the same id whole (aliases included); its top-level `multipliers`, if
    any, change the defaults for every model without its own override; its `version` is
    appended to the shipped one (`2026-11-28.1+team-3`) so ledger rows say which prices they
    used. Raises `ConfigError` naming the file on any problem.
    """
    shipped_path = resources.files("service") / "data" / "prices.json"
    shipped = _read(shipped_path.read_text(encoding="utf-8"), "service/data/prices.json")
    version = str(shipped.get("version", "unversioned"))
    updated = str(shipped.get("updated", ""))
    raw_models: dict[str, Any] = dict(shipped["models"])
    raw_multipliers: Any = shipped.get("multipliers")
    source = "service/data/prices.json"
    if user_file is not None:
        source = str(user_file)
        try:
            user = _read(user_file.read_text(encoding="utf-8"), source)
        except OSError as exc:
            raise ConfigError(f"cannot read price file {user_file}: {exc.strerror}") from exc
        raw_models.update(user.get("models", {}))
        if "multipliers" in user:
            raw_multipliers = {**(raw_multipliers or {}), **user["multipliers"]}
        version = f"{version}+{user.get('version', 'user')}"
        updated = str(user.get("updated", updated))
    defaults = _multipliers(raw_multipliers, None, f"{source}: multipliers", partial=False)
    models = {
        model_id: _model(model_id, raw, defaults, f"{source}: models.{model_id}")
        for model_id, raw in raw_models.items()
    }
    return PriceTable(version, updated, models)


# --- usage from API objects ----------------------------------------------------------------


def _count(raw: Mapping[str, Any], key: str) -> int:
    value: object = raw.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOKEN_COUNT:
        raise InvalidRequest(
            f"usage.{key} must be a whole number from 0 to {MAX_TOKEN_COUNT:,}, got {value!r}"
        )
    return value


def usage_from_message(message: Mapping[str, Any]) -> Usage:
    """The `Usage` of an Anthropic message object (or of its bare `usage` object).

    Missing or null counts are 0; `usage.cache_creation` gives the 5m/1h split when present.
    Raises `InvalidRequest` when there is no usage object or a count is not a whole number.
    """
    raw = message.get("usage") if "usage" in message else message
    if not isinstance(raw, Mapping) or not ({"input_tokens", "output_tokens"} & set(raw)):
        raise InvalidRequest("message has no usage object with token counts")
    split_5m: int | None = None
    split_1h: int | None = None
    creation = raw.get("cache_creation")
    if isinstance(creation, Mapping):
        split_5m = _count(creation, "ephemeral_5m_input_tokens")
        split_1h = _count(creation, "ephemeral_1h_input_tokens")
    elif creation is not None:
        raise InvalidRequest("usage.cache_creation must be an object")
    total = max(_count(raw, "cache_creation_input_tokens"), (split_5m or 0) + (split_1h or 0))
    return Usage(
        input_tokens=_count(raw, "input_tokens"),
        output_tokens=_count(raw, "output_tokens"),
        cache_creation_input_tokens=total,
        cache_read_input_tokens=_count(raw, "cache_read_input_tokens"),
        cache_creation_5m_input_tokens=split_5m,
        cache_creation_1h_input_tokens=split_1h,
    )


def usage_counts(usage: Usage) -> dict[str, int]:
    """`usage` as the API's `usage` object spells its counts (`usage_from_message` reads it)."""
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_creation_input_tokens": usage.cache_creation_input_tokens,
        "cache_read_input_tokens": usage.cache_read_input_tokens,
    }
