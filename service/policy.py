"""What counts as a hit: pure decisions over plain values, no I/O (DESIGN §4).

The orchestrator (`service.cache`) gathers facts — the cached entry's metadata, the
candidates the index found with their cosine similarities, the request's options and the
time — and asks this module. Every answer is a value with a reason, logged per request, so a
surprising hit or miss can always be explained. Nothing here knows about FAISS, disks or HTTP.

Precision first: when in doubt the answer is `Miss`. A semantic `Hit` needs, in order:
the same context fingerprint and namespace, a fresh entry, an answer that may be served
semantically at this `max_tokens`, a cosine similarity of at least `min_similarity` (or the
stricter floor set for a script the query uses; a cached prompt that is the new one up to
trailing punctuation and spacing counts as 1.0, unless one of them asks with "?" and the other
does not ask: no mark counts as asking only for a prompt whose words ask, such as "What is a
mutex"), every enabled guard passing and, when a
verifier is configured, a verification score of at least its `min_score`. Text in a script the
embedding model does not cover is not compared by meaning at all (`Bypass`), because such a
model maps unseen text to near-identical vectors and would serve false hits.

The defaults here are the shipped policy, chosen by `promptcache bench calibrate` on the dev
sets (docs/benchmarks.md has the numbers and the ablation behind each choice).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from service.guards import check_all
from service.guards.mood import asks_by_form
from service.scripts import scripts_of, uncovered_scripts
from service.verifier import Verifier, pair_features

# Guard names (see service.guards); all of them are on by default. The first eight each
# lowered the false-hit rate on qqp_dev by more than the hit rate; the five added in stop 17
# guard families the dev sets hardly contain, at a small cost in duplicates there
# (docs/benchmarks.md, "Ablation").
DEFAULT_GUARDS: tuple[str, ...] = (
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

DEFAULT_SCRIPT_FLOORS: tuple[tuple[str, float], ...] = (("Hangul", 0.98),)


@dataclass(frozen=True, slots=True)
class EntryFacts:
    """What the policy needs to know about one cached entry."""

    entry_id: int
    fingerprint: str
    namespace: str
    created: float
    expires: float
    text: str | None
    output_tokens: int | None = None
    max_tokens: int | None = None
    truncated: bool = False  # the cached answer was cut off by its max_tokens
    exact_only: bool = False  # e.g. answers with tool_use: only the identical request


@dataclass(frozen=True)
class Query:
    fingerprint: str
    namespace: str
    text: str | None
    max_tokens: int | None = None
    # False: the embedding model reads only part of `text` (Embedder.reads_whole).
    read_whole: bool = True


@dataclass(frozen=True)
class FallbackRoute:
    """Some text was embedded by a second model (embeddings/routed.py), whose cosines need a
    floor of their own. `takes` is the embedder's own routing rule, so the two cannot differ."""

    takes: Callable[[str], bool]
    min_similarity: float


@dataclass(frozen=True)
class LookupOptions:
    min_similarity: float
    max_age: float | None = None  # seconds; `cache-control: max-age=N`
    # Epoch seconds: older entries are not served (the period a prompt's "today" names).
    not_before: float | None = None
    guards: tuple[str, ...] = DEFAULT_GUARDS
    # Scripts the embedding model covers; None means every script.
    covered_scripts: frozenset[str] | None = None
    semantic: bool = True  # False: exact hits only (e.g. high temperature)
    semantic_off_reason: str = ""
    # A second check on each candidate that passed the cosine and the guards; None: off.
    verifier: Verifier | None = None
    # Stricter cosine floors for queries using a script: a model that covers a script may
    # still separate it less well. The stricter of the two wins. The default matches
    # `PolicySettings.script_min_similarity` (calibrated with multilingual-e5-small).
    script_min_similarity: tuple[tuple[str, float], ...] = DEFAULT_SCRIPT_FLOORS
    # Set when the embedder routes some text to a second model; its floor applies there.
    fallback: FallbackRoute | None = None

    def threshold_for(self, text: str | None) -> float:
        """The effective `min_similarity` for one query text."""
        return self.threshold_with_source(text)[0]

    def threshold_with_source(self, text: str | None) -> tuple[float, str]:
        """The effective `min_similarity` for one query text and the setting it comes from."""
        floors = [(self.min_similarity, "min_similarity")]
        if text is None:
            return floors[0]
        if self.fallback is not None and self.fallback.takes(text):
            floors.append((self.fallback.min_similarity, "fallback_min_similarity"))
        if self.script_min_similarity:
            used = scripts_of(text)
            floors += [(f, f"the {s} floor") for s, f in self.script_min_similarity if s in used]
        # The strictest wins; on a tie, the earlier (more general) setting is named.
        return max(floors, key=lambda floor: floor[0])


@dataclass(frozen=True)
class Hit:
    entry_id: int
    kind: Literal["exact", "semantic"]
    similarity: float
    reason: str


@dataclass(frozen=True)
class Miss:
    reason: str
    best_similarity: float | None = None


@dataclass(frozen=True)
class Bypass:
    """Semantic lookup skipped on purpose; `code` lets callers react (the API maps codes)."""

    reason: str
    code: Literal[
        "not-text", "too-long", "uncovered-script", "disabled", "model-changed", "empty"
    ] = field(default="disabled")


Decision = Hit | Miss | Bypass


def _freshness_problem(facts: EntryFacts, options: LookupOptions, now: float) -> str | None:
    if facts.expires <= now:
        return "expired"
    if options.max_age is not None and now - facts.created > options.max_age:
        return f"older than max-age={options.max_age:g}s"
    if options.not_before is not None and facts.created < options.not_before:
        return "stored before the period the prompt asks about (its today, this week, ...)"
    return None


def _max_tokens_problem(facts: EntryFacts, query: Query) -> str | None:
    """A cached answer fits a request only if it would have come out the same."""
    if query.max_tokens is None:
        return None
    if facts.output_tokens is not None and query.max_tokens < facts.output_tokens:
        return f"cached answer has {facts.output_tokens} tokens > max_tokens {query.max_tokens}"
    if facts.truncated and facts.max_tokens is not None and query.max_tokens > facts.max_tokens:
        return f"cached answer was cut at max_tokens {facts.max_tokens}"
    return None


def decide_exact(facts: EntryFacts, query: Query, options: LookupOptions, now: float) -> Decision:
    if facts.fingerprint != query.fingerprint or facts.namespace != query.namespace:
        return Miss("exact key collision with another context")  # cannot happen with sha256
    problem = _freshness_problem(facts, options, now) or _max_tokens_problem(facts, query)
    if problem:
        return Miss(f"exact match not served: {problem}")
    return Hit(facts.entry_id, "exact", 1.0, "identical request")


def precheck_semantic(query: Query, options: LookupOptions) -> Bypass | None:
    """Reasons not to embed at all; checked before any embedding work."""
    if not options.semantic:
        return Bypass(options.semantic_off_reason or "semantic lookup disabled", "disabled")
    if query.text is None:
        return Bypass("last turn is not plain text: exact hits only", "not-text")
    if not query.read_whole:
        return Bypass(
            "last turn is longer than the embedding model reads at once (prompts that differ "
            "past that point would look the same): exact hits only",
            "too-long",
        )
    if options.covered_scripts is not None:
        uncovered = uncovered_scripts(query.text, options.covered_scripts)
        if uncovered:
            names = ", ".join(sorted(uncovered))
            return Bypass(
                f"text in {names}, which the embedding model does not cover: exact hits only",
                "uncovered-script",
            )
    return None


def decide_semantic(
    query: Query,
    candidates: Sequence[tuple[EntryFacts, float]],
    options: LookupOptions,
    now: float,
) -> Decision:
    """Pick the best candidate that passes every rule; candidates come best first."""
    bypass = precheck_semantic(query, options)
    if bypass is not None:
        return bypass
    if not candidates:
        return Miss("no cached prompt in this context")
    # Equal similarities (texts the model cannot tell apart, e.g. "AudioFolder" and
    # "audiofolder" for an uncased model) go to the lower id: the answer must not depend on
    # the order an index kind or a rebuild happens to return ties in.
    form = _form(query.text or "")
    lifted = [(f, _similarity(f.text, form, cosine), cosine) for f, cosine in candidates]
    ranked = sorted(lifted, key=lambda c: (-c[1], c[0].entry_id))
    best = ranked[0][1]
    threshold, source = options.threshold_with_source(query.text)
    refusals: list[str] = []
    for rank, (facts, similarity, cosine) in enumerate(ranked):
        if similarity < threshold:
            break
        if facts.fingerprint != query.fingerprint or facts.namespace != query.namespace:
            continue  # defence in depth: the index search is already restricted
        if facts.exact_only:
            refusals.append(f"entry {facts.entry_id} serves exact hits only")
            continue
        problem = _freshness_problem(facts, options, now) or _max_tokens_problem(facts, query)
        if problem:
            refusals.append(f"entry {facts.entry_id} {problem}")
            continue
        if facts.text is None:
            continue
        verdict = check_all(facts.text, query.text or "", options.guards)
        if not verdict.passed:
            refusals.append(f"guard {verdict.reason}")
            continue
        if similarity == cosine:
            reason = f"similarity {similarity:.4f}"
            if source != "min_similarity":
                reason += f" (>= {source} {threshold:g})"
        else:
            reason = f"same prompt up to trailing punctuation and spacing (cosine {cosine:.4f})"
        if options.verifier is not None:
            runner_up = max((s for i, (_, s, _) in enumerate(ranked) if i != rank), default=None)
            features = pair_features(facts.text, query.text or "", similarity, runner_up)
            score = options.verifier.score(features)
            if score < options.verifier.min_score:
                refusals.append(
                    f"entry {facts.entry_id} verifier {score:.3f} < {options.verifier.min_score:g}"
                )
                continue
            reason += f"; verifier {score:.3f}"
        return Hit(facts.entry_id, "semantic", similarity, reason)
    if refusals:
        return Miss("; ".join(refusals[:3]), best)
    return Miss(f"best similarity {best:.4f} below {source} {threshold:g}", best)


# Sentence-final marks a prompt may end in or not with the same meaning ("What is a mutex"
# and "What is a mutex?"), in Latin, CJK and full-width forms.
_FINAL_MARKS = ".?!。？！…"
_QUESTION_MARKS = frozenset("?？")


def _form(text: str) -> tuple[str, bool | None]:
    """`text` without its trailing sentence marks and with runs of spacing made one space,
    and whether those marks ask a question (None: it has none)."""
    spaced = " ".join(text.split())
    bare = spaced.rstrip(_FINAL_MARKS).rstrip()
    marks = spaced[len(bare) :].strip()
    return bare, (bool(_QUESTION_MARKS & set(marks)) if marks else None)


def similarity_to(cached: str | None, new: str, cosine: float) -> float:
    """The similarity `decide_semantic` compares with the threshold for this pair."""
    return _similarity(cached, _form(new), cosine)


def _similarity(cached: str | None, new: tuple[str, bool | None], cosine: float) -> float:
    """1.0 for the same prompt up to trailing punctuation and spacing, else the cosine.

    MiniLM scores "Summarize this article." against "Summarize this article" at 0.92 and
    "What's the capital of France?" against its form without "?" at 0.93, below
    `min_similarity`, while other such pairs score 0.99 and hit: the embedding's view of a
    final mark is noise, not meaning. Except between a question and a statement ("Delete
    the branch?" asks whether to, "Delete the branch." says to): then the model decides, and
    the `mood` guard refuses. A prompt with no final mark is a statement here unless its words
    make it a question (`asks_by_form`: "What is a mutex" is one; "Delete the branch" and the
    Korean "이 파일 삭제해", whose ending is the same in a command and a question, are not).
    """
    bare_new, asks = new
    if cached is None or not bare_new:
        return cosine
    bare_cached, cached_asks = _form(cached)
    if bare_new != bare_cached:
        return cosine
    if not (asks or cached_asks) or asks == cached_asks:
        return 1.0  # the same kind of mark, or "." / "!" against none
    if asks is None or cached_asks is None:
        return 1.0 if asks_by_form(bare_new) else cosine  # "?" against none
    return cosine


@dataclass(frozen=True)
class Storability:
    storable: bool
    exact_only: bool
    truncated: bool
    reason: str


_TOOL_BLOCKS = frozenset({"tool_use", "server_tool_use"})


def cacheability(message: Mapping[str, Any]) -> Storability:
    """Which upstream answers may be stored, and how they may be served later.

    Finished answers are stored. An answer cut off by `max_tokens` is stored but serves only
    requests with the same `max_tokens`. An answer that calls a tool depends on the exact
    request, so it serves exact hits only. Refusals, paused turns and anything unknown are
    not stored, and so is a message not shaped as the API documents (`content` a list of
    typed blocks): replayed later, it would break the client's SDK on every hit.
    """
    stop = message.get("stop_reason")
    content = message.get("content")
    blocks = content if isinstance(content, list) else []
    typed = [b for b in blocks if isinstance(b, Mapping) and isinstance(b.get("type"), str)]
    if not isinstance(content, list) or len(typed) != len(blocks):
        return Storability(False, False, False, "not stored: content is not a list of blocks")
    calls_tool = any(isinstance(b, Mapping) and b.get("type") in _TOOL_BLOCKS for b in blocks)
    if stop in ("end_turn", "stop_sequence"):
        return Storability(True, calls_tool, False, "stored")
    if stop == "max_tokens":
        return Storability(True, calls_tool, True, "stored; cut off at max_tokens")
    if stop == "tool_use":
        return Storability(True, True, False, "stored for exact hits only (tool use)")
    return Storability(False, False, False, f"not stored: stop_reason {stop!r}")
