"""`bench hitrate`: hit rate and false-hit rate of the cache's own decisions on labelled pairs.

Every distinct `a` of a dataset is stored through `SemanticCache.store` and every `b` is looked
up through `SemanticCache.lookup`, with keys from `prompt_keys` and options from
`SemanticCache.options` — exactly what `POST /v1/cache/lookup` does — in a cache in a temporary
directory. That real lookup is timed (embedding, search, policy) and its decision recorded.

A sweep must not re-embed: the policy is pure, so for each `b` the benchmark keeps what the
lookup saw — the exact-key decision, or the query and its top-k candidates with their cosine
similarities (the same neighbours the index returns: searches restricted to a context are
exact) — and asks `decide_semantic` again for every policy and `min_similarity` of the sweep.
The decision at the configured setting is compared with the real lookup's for every pair and
the mismatches are reported, so a drift between the two paths cannot go unnoticed.

Counting (DESIGN §8, as `shared/data/BASELINE.md` counts): a hit on a duplicate is right only
when it returns the entry of its own `a` (otherwise it is a wrong-entry hit); any hit on a
non-duplicate is a false hit. That includes exact hits whose `b` is word for word another
pair's `a` (PAWS-X has 46 such `b`s): the answer served was stored for that very prompt, so no
cache can avoid them, and they are also counted apart as `identical_hits` to show that floor.
`false_other_entry_hits` says how many of the other (semantic) false hits served another pair's
`a` rather than the pair's own: on PAWS-X most do, and those are mostly paraphrases of `b` that
no label covers (docs/benchmarks.md); they stay false hits.
hit rate = right hits / duplicates; false-hit rate = false hits / non-duplicates;
precision = right hits / all hits.
"""

from __future__ import annotations

import itertools
import math
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from benchmarks.datasets import Dataset
from embeddings.base import Embedder, RoutingEmbedder, Vectors
from service.cache import SemanticCache, facts_of
from service.config import Settings
from service.keys import CacheKeys, prompt_keys
from service.policy import (
    Bypass,
    Decision,
    EntryFacts,
    Hit,
    LookupOptions,
    Query,
    decide_semantic,
)
from service.store import Entry
from service.verifier import Verifier, load_verifier

TENANT = "bench"
MODEL = "bench-model"
CLOCK_START = 1_800_000_000.0
_BATCH = 64


class MemoEmbedder:
    """The real embedder behind a text -> row memo: texts embedded in bulk up front (the
    stored prompts) are not embedded again when `store` asks for them one by one, and every
    text the cache embeds is remembered so a sweep can reuse the query's vector."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self._rows: dict[str, Vectors] = {}
        self._lock = threading.Lock()
        if isinstance(inner, RoutingEmbedder):
            # The cache applies the second model's floor to the texts it embeds, and keeps
            # one index per model.
            self.uses_fallback = inner.uses_fallback
            self.blocks = inner.blocks

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    @property
    def dim(self) -> int:
        return self.inner.dim

    @property
    def covered_scripts(self) -> frozenset[str] | None:
        return self.inner.covered_scripts

    def reads_whole(self, text: str) -> bool:
        return self.inner.reads_whole(text)

    def embed(self, texts: Sequence[str]) -> Vectors:
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._rows))
        if missing:
            fresh = self.inner.embed(missing)
            with self._lock:
                for text, row in zip(missing, fresh, strict=True):
                    self._rows[text] = row
        with self._lock:
            return np.stack([self._rows[t] for t in texts]).astype(np.float32, copy=False)

    def seed(self, texts: Sequence[str], rows: Vectors) -> None:
        """Remember given rows for texts (synthetic fillers in the perf benchmark)."""
        with self._lock:
            self._rows.update(zip(texts, rows, strict=True))

    def known(self, text: str) -> Vectors | None:
        with self._lock:
            return self._rows.get(text)

    def prefill(self, texts: Sequence[str], *, desc: str = "embed") -> None:
        for start in tqdm(range(0, len(texts), _BATCH), desc=desc, unit="batch", disable=None):
            self.embed(texts[start : start + _BATCH])


@dataclass(frozen=True)
class Policy:
    """One way of deciding, evaluated at every value of a sweep.

    The sweep moves `min_similarity`, or with `sweeps_fallback` the floor of the text the
    routed embedder sends to its second model (`cache.fallback_min_similarity`), with the
    per-script floors lifted so that they do not mask it: how that floor is calibrated.
    """

    name: str
    description: str
    guards: tuple[str, ...]
    verifier: Verifier | None
    top_k: int
    script_min_similarity: tuple[tuple[str, float], ...] = ()
    respect_scripts: bool = True  # False: compare every script (the plain-cosine reference)
    sweeps_fallback: bool = False

    @property
    def setting(self) -> str:
        """The config key the sweep moves."""
        return "fallback_min_similarity" if self.sweeps_fallback else "min_similarity"

    def configured_value(self, base: LookupOptions) -> float:
        if self.sweeps_fallback and base.fallback is not None:
            return base.fallback.min_similarity
        return base.min_similarity

    def options(self, base: LookupOptions, value: float) -> LookupOptions:
        if self.sweeps_fallback and base.fallback is not None and self.respect_scripts:
            return replace(
                self._options(base, base.min_similarity),
                fallback=replace(base.fallback, min_similarity=value),
                script_min_similarity=(),
            )
        return self._options(base, value)

    def _options(self, base: LookupOptions, min_similarity: float) -> LookupOptions:
        return replace(
            base,
            min_similarity=min_similarity,
            guards=self.guards,
            verifier=self.verifier,
            script_min_similarity=self.script_min_similarity,
            covered_scripts=base.covered_scripts if self.respect_scripts else None,
            fallback=base.fallback if self.respect_scripts else None,
        )


def with_policy_settings(base: LookupOptions, settings: Settings) -> LookupOptions:
    """`base` with `settings.policy` applied, as `SemanticCache.options` builds them once the
    policy settings are wired there; applying them again is harmless."""
    policy = settings.policy
    return replace(
        base,
        guards=tuple(policy.guards),
        verifier=load_verifier(policy.verifier, min_score=policy.verifier_min_score),
        script_min_similarity=tuple(sorted(policy.script_min_similarity.items())),
    )


def configured_policy(settings: Settings, base: LookupOptions, name: str = "shipped") -> Policy:
    """The policy the server applies with these settings."""
    return Policy(
        name=name,
        description="configured guards, verifier and script floors; top-k candidates",
        guards=base.guards,
        verifier=base.verifier,
        top_k=settings.cache.top_k,
        script_min_similarity=base.script_min_similarity,
    )


def plain_cosine_policy() -> Policy:
    return Policy(
        name="plain-cosine",
        description="cosine threshold only: top-1, no guards, no verifier, every script",
        guards=(),
        verifier=None,
        top_k=1,
        respect_scripts=False,
    )


@dataclass(frozen=True)
class Probe:
    """What one lookup of `b` saw, enough to decide again under other options."""

    pair_index: int
    own_entry: int
    duplicate: bool
    query: Query
    exact: Decision | None  # an exact-key decision, which no threshold changes
    candidates: tuple[tuple[EntryFacts, float], ...]
    real: Decision  # what SemanticCache.lookup answered at the configured options
    latency_ms: float


@dataclass(frozen=True)
class ProbeSet:
    dataset: Dataset
    model_id: str
    base: LookupOptions
    now: float
    probes: tuple[Probe, ...]
    store_seconds: float
    lookup_seconds: float


def keys_for(prompt: str) -> CacheKeys:
    return prompt_keys([{"role": "user", "content": prompt}], model=MODEL, tenant=TENANT)


def collect_probes(
    settings: Settings,
    embedder: Embedder,
    dataset: Dataset,
    *,
    work_dir: Path | None = None,
) -> ProbeSet:
    """Store every distinct `a` and look up every `b` through a real `SemanticCache`."""
    memo = MemoEmbedder(embedder)
    with tempfile.TemporaryDirectory(prefix="promptcache-bench-", dir=work_dir) as tmp:
        bench_settings = settings.model_copy(update={"data_dir": Path(tmp)})
        now = CLOCK_START
        # Ids in storing order: a tie between equally similar prompts goes to the lower id,
        # so random ids made a few decisions differ from run to run.
        ids = itertools.count(1)
        cache = SemanticCache(bench_settings, memo, clock=lambda: now, id_source=ids.__next__)
        try:
            return _probe(cache, memo, dataset, now)
        finally:
            cache.close()


def _probe(cache: SemanticCache, memo: MemoEmbedder, dataset: Dataset, now: float) -> ProbeSet:
    cached = dataset.distinct_cached
    memo.prefill(cached, desc="embed cached prompts")
    started = time.perf_counter()
    entries: dict[str, Entry] = {}
    for i, text in enumerate(tqdm(cached, desc="store", unit="prompt", disable=None)):
        entries[text] = cache.store(keys_for(text), f"answer {i}")
    store_seconds = time.perf_counter() - started
    facts = [facts_of(entries[t]) for t in cached]
    matrix = np.stack([memo.embed([t])[0] for t in cached])
    base = with_policy_settings(cache.options(), cache.settings)
    top_k = cache.settings.cache.top_k
    pending: list[tuple[int, CacheKeys, Decision, float]] = []
    started = time.perf_counter()
    for index, pair in enumerate(tqdm(dataset.pairs, desc="lookup", unit="pair", disable=None)):
        keys = keys_for(pair.b)
        t0 = time.perf_counter()
        result = cache.lookup(keys, base)
        pending.append((index, keys, result.decision, (time.perf_counter() - t0) * 1000))
    lookup_seconds = time.perf_counter() - started
    # Queries the real path did not embed (bypassed scripts) are embedded now, in bulk, so
    # that policies comparing every script can still be measured.
    memo.prefill([dataset.pairs[i].b for i, *_ in pending], desc="embed bypassed queries")
    probes: list[Probe] = []
    for index, keys, decision, latency in pending:
        pair = dataset.pairs[index]
        query = Query(keys.fingerprint, keys.namespace, keys.semantic_text, keys.max_tokens)
        exact = decision if isinstance(decision, Hit) and decision.kind == "exact" else None
        candidates: tuple[tuple[EntryFacts, float], ...] = ()
        if exact is None:
            vector = memo.known(pair.b)
            if vector is not None:
                scores = matrix @ vector
                order = np.argsort(-scores, kind="stable")[:top_k]
                candidates = tuple((facts[j], float(scores[j])) for j in order)
        probes.append(
            Probe(
                pair_index=index,
                own_entry=entries[pair.a].id,
                duplicate=pair.duplicate,
                query=query,
                exact=exact,
                candidates=candidates,
                real=decision,
                latency_ms=latency,
            )
        )
    return ProbeSet(dataset, memo.model_id, base, now, tuple(probes), store_seconds, lookup_seconds)


def decide(probe: Probe, options: LookupOptions, top_k: int, now: float) -> Decision:
    """The decision the cache makes for this probe's lookup under `options`."""
    if probe.exact is not None:
        return probe.exact
    return decide_semantic(probe.query, probe.candidates[:top_k], options, now)


def same_decision(a: Decision, b: Decision) -> bool:
    if isinstance(a, Hit) and isinstance(b, Hit):
        return a.entry_id == b.entry_id and a.kind == b.kind
    if isinstance(a, Bypass) and isinstance(b, Bypass):
        return a.code == b.code
    return type(a) is type(b)


@dataclass
class Tally:
    """Counts for one (policy, min_similarity) over a probe set."""

    min_similarity: float
    duplicates: int = 0
    non_duplicates: int = 0
    right_hits: int = 0
    wrong_entry_hits: int = 0
    false_hits: int = 0
    # Of false_hits, the exact ones: the cached prompt is word for word the new one (another
    # pair's `a`), so no cache that serves repeats can avoid them.
    identical_hits: int = 0
    # Of the other false hits, those that served another pair's `a` rather than this pair's
    # own: the dataset labels only (a, b), so these are false by the metric, not by any label.
    false_other_entry_hits: int = 0
    exact_hits: int = 0
    bypasses: int = 0
    policy_us: list[float] = field(default_factory=list)

    def add(self, probe: Probe, decision: Decision, micros: float) -> None:
        self.policy_us.append(micros)
        if probe.duplicate:
            self.duplicates += 1
        else:
            self.non_duplicates += 1
        if isinstance(decision, Bypass):
            self.bypasses += 1
        if not isinstance(decision, Hit):
            return
        if decision.kind == "exact":
            self.exact_hits += 1
        if not probe.duplicate:
            self.false_hits += 1
            if decision.kind == "exact":
                self.identical_hits += 1
            else:
                self.false_other_entry_hits += decision.entry_id != probe.own_entry
        elif decision.entry_id == probe.own_entry:
            self.right_hits += 1
        else:
            self.wrong_entry_hits += 1

    @property
    def hits(self) -> int:
        return self.right_hits + self.wrong_entry_hits + self.false_hits

    @property
    def hit_rate(self) -> float | None:
        return self.right_hits / self.duplicates if self.duplicates else None

    @property
    def false_hit_rate(self) -> float | None:
        return self.false_hits / self.non_duplicates if self.non_duplicates else None

    @property
    def false_hit_upper(self) -> float | None:
        """Wilson 95% upper bound of the false-hit rate."""
        if not self.non_duplicates:
            return None
        return wilson_upper(self.false_hits, self.non_duplicates)

    @property
    def precision(self) -> float | None:
        return self.right_hits / self.hits if self.hits else None

    def row(self) -> dict[str, float | int | None]:
        us = np.array(self.policy_us) if self.policy_us else np.zeros(1)
        return {
            "min_similarity": self.min_similarity,
            "hit_rate": self.hit_rate,
            "false_hit_rate": self.false_hit_rate,
            "false_hit_rate_upper95": self.false_hit_upper,
            "precision": self.precision,
            "right_hits": self.right_hits,
            "wrong_entry_hits": self.wrong_entry_hits,
            "false_hits": self.false_hits,
            "identical_hits": self.identical_hits,
            "false_other_entry_hits": self.false_other_entry_hits,
            "exact_hits": self.exact_hits,
            "bypasses": self.bypasses,
            "duplicates": self.duplicates,
            "non_duplicates": self.non_duplicates,
            "policy_us_p50": float(np.percentile(us, 50)),
            "policy_us_p99": float(np.percentile(us, 99)),
        }


def wilson_upper(successes: int, trials: int, z: float = 1.959964) -> float:
    """Upper end of the Wilson score interval: a rate we are 97.5% sure is not exceeded."""
    if trials <= 0:
        return 1.0
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = p + z * z / (2 * trials)
    spread = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    return min(1.0, (centre + spread) / denominator)


def evaluate(
    probes: ProbeSet,
    policy: Policy,
    min_similarity: float,
    *,
    on_decision: Callable[[Probe, Decision], None] | None = None,
) -> Tally:
    options = policy.options(probes.base, min_similarity)
    tally = Tally(min_similarity)
    for probe in probes.probes:
        t0 = time.perf_counter()
        decision = decide(probe, options, policy.top_k, probes.now)
        tally.add(probe, decision, (time.perf_counter() - t0) * 1e6)
        if on_decision is not None:
            on_decision(probe, decision)
    return tally


def sweep(
    probes: ProbeSet, policies: Iterable[Policy], thresholds: Sequence[float]
) -> dict[str, list[Tally]]:
    return {policy.name: [evaluate(probes, policy, t) for t in thresholds] for policy in policies}


def consistency(probes: ProbeSet, policy: Policy) -> dict[str, int]:
    """How many sweep decisions at the configured options differ from the real lookups."""
    options = policy.options(probes.base, policy.configured_value(probes.base))
    mismatches = sum(
        not same_decision(decide(p, options, policy.top_k, probes.now), p.real)
        for p in probes.probes
    )
    return {"checked": len(probes.probes), "mismatches": mismatches}


def latency_summary(probes: ProbeSet) -> dict[str, float]:
    values = np.array([p.latency_ms for p in probes.probes])
    return {
        "n": float(len(values)),
        "p50": float(np.percentile(values, 50)),
        "p95": float(np.percentile(values, 95)),
        "p99": float(np.percentile(values, 99)),
    }


def ablation_policies(shipped: Policy, verifier: Verifier | None) -> list[Policy]:
    """The shipped policy's parts switched on one at a time, for the docs' ablation table."""
    from service.guards import GUARDS

    policies = [
        replace(
            shipped, name="cosine top-k", description="top-k, no guards", guards=(), verifier=None
        ),
    ]
    for name in GUARDS:
        policies.append(
            replace(
                shipped,
                name=f"+{name}",
                description=f"top-k with the {name} guard only",
                guards=(name,),
                verifier=None,
            )
        )
    policies.append(
        replace(
            shipped,
            name="all guards",
            description="top-k, every guard",
            guards=tuple(GUARDS),
            verifier=None,
        )
    )
    if verifier is not None:
        policies.append(
            replace(
                shipped,
                name="all guards + verifier",
                description="top-k, every guard, the bundled verifier",
                guards=tuple(GUARDS),
                verifier=verifier,
            )
        )
    return policies


def hitrate_result(
    probes: ProbeSet,
    policies: Sequence[Policy],
    thresholds: Sequence[float],
    environment: dict[str, object],
) -> dict[str, object]:
    """The JSON record of one `bench hitrate` run."""
    dataset = probes.dataset
    curves = sweep(probes, policies, thresholds)
    shipped = policies[0]
    return {
        "environment": environment,
        "dataset": {
            "name": dataset.name,
            "path": dataset.path,
            "sha256": dataset.sha256,
            "pairs": len(dataset.pairs),
            "duplicates": dataset.duplicates,
            "non_duplicates": len(dataset.pairs) - dataset.duplicates,
            "cached_prompts": len(dataset.distinct_cached),
        },
        "model": probes.model_id,
        "configured": {
            "min_similarity": probes.base.min_similarity,
            "fallback_min_similarity": None
            if probes.base.fallback is None
            else probes.base.fallback.min_similarity,
            "sweep": shipped.setting,
            "guards": list(probes.base.guards),
            "verifier": None if probes.base.verifier is None else probes.base.verifier.to_json(),
            "script_min_similarity": dict(probes.base.script_min_similarity),
            "top_k": shipped.top_k,
            "covered_scripts": None
            if probes.base.covered_scripts is None
            else sorted(probes.base.covered_scripts),
        },
        "consistency": consistency(probes, shipped),
        "latency_ms": latency_summary(probes),
        "seconds": {"store": probes.store_seconds, "lookup": probes.lookup_seconds},
        "policies": [
            {
                "name": policy.name,
                "description": policy.description,
                "rows": [tally.row() for tally in curves[policy.name]],
            }
            for policy in policies
        ],
    }
