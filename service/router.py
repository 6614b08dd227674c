"""The model router: a request sent to an alias (`auto`) gets the cheapest tier that can do it.

A miss costs what the upstream model costs, and most traffic (translate this, classify that)
does not need the strongest model. The router scores a request's difficulty from features a
person can check — length, code, what the prompt asks for (debug, design, prove, compare; 분석,
설계, 원인), how hard its subject is (race conditions, replication; 동시성, 정합성), simple-task
cues, questions, turns, tools, extended thinking, attachments and the `x-promptcache-task` hint —
adds them up with the named weights below, and maps the sum to a tier with two thresholds. Each
feature that moved the score leaves a short reason for the ledger. A request that names a model
explicitly is never changed. Pure: no I/O, no state.

Cues are read from the prose a person wrote (system prompt and user turns), not from fenced code,
inline code or quoted text: those are the material the request works on, not the request.

Task hints, decided here and relied on by callers:
- `classification`, `summary`, `translation` lean cheap: they subtract `HINT_CHEAP_WEIGHT`, so
  only a request with strong evidence of difficulty (a long, code-heavy debugging prompt) rises.
- `code_review` is at least standard and otherwise scored as usual (a review can be strong).
- `code_generation` is at least standard and adds `HINT_CODE_GENERATION_WEIGHT`, so generation
  with any real difficulty signal goes strong.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from service.config import RouterSettings

Tier = Literal["cheap", "standard", "strong"]

# --- thresholds -------------------------------------------------------------------------------
# Where every score starts. With no evidence either way a request is standard: sending a hard
# prompt to the cheap tier costs a wrong answer, sending an easy one to standard costs cents.
# Cheap needs evidence of a simple task (a simple-task cue, a very short prompt); strong needs
# evidence of a hard one (what is asked, its subject, its scale, code).
BASE_SCORE = 1.0
# A score at or above this is at least "standard"; below it, "cheap".
STANDARD_THRESHOLD = 1.0
# A score at or above this is "strong".
STRONG_THRESHOLD = 3.0

# --- length (estimated tokens over system, all turns and tool definitions) --------------------
# (minimum tokens, weight, label); the first band reached applies, not their sum. A very short
# prompt leans cheap (a lookup, a one-liner); a long one adds a little, never strong on its own:
# a long system prompt does not make a question hard.
LENGTH_BANDS: tuple[tuple[int, float, str], ...] = (
    (5000, 1.5, "very long prompt"),
    (1500, 1.0, "long prompt"),
    (400, 0.75, "long prompt"),
    (120, 0.5, "medium prompt"),
    (30, 0.0, "prompt"),
    (0, -0.75, "short prompt"),
)
# Latin-script characters per token; Hangul, kana and CJK count one token per character.
# Images and documents are left out of the length: they have their own weights below.
CHARS_PER_TOKEN = 4

# --- code -------------------------------------------------------------------------------------
# Any fenced code block: the answer has to read code, which the cheap tier does poorly.
CODE_BLOCK_WEIGHT = 0.75
# Fenced code lines at or above this count as a large amount of code.
LARGE_CODE_LINES = 25
LARGE_CODE_WEIGHT = 0.5
# Unfenced code-like content (pasted without a fence): at least this many code-looking lines.
CODE_LIKE_MIN_LINES = 3
CODE_LIKE_WEIGHT = 0.75

# --- cues -------------------------------------------------------------------------------------
# Each distinct demand cue (the prompt asks to debug, design, prove, compare, 분석, 설계) adds
# this, up to the cap: two of them make a request strong on their own.
DEMAND_CUE_WEIGHT = 1.25
DEMAND_CUE_CAP = 3.75
# Each distinct hard-subject cue (race condition, replication, 동시성, 정합성) adds this, up to
# the cap: a hard subject alone ("what is a race condition?") is not a hard request.
TOPIC_CUE_WEIGHT = 0.75
TOPIC_CUE_CAP = 2.25
# Each distinct ordinary-work cue (write, explain, review, 작성, 설명) adds this, up to the cap.
TASK_CUE_WEIGHT = 0.5
TASK_CUE_CAP = 1.0
# A simple-task cue (translate, one line, classify, 번역, 요약) subtracts this once, and only
# when there is no demand cue: "summarize why the race condition happens" is not simple.
SIMPLE_CUE_WEIGHT = -1.5

# --- scale -----------------------------------------------------------------------------------
# Figures that state a scale or a service level (3 TB, 300M rows, 5ms, 35%, 초당 2천 건, 10만 개):
# a prompt that quotes several describes a system to reason about, not a lookup.
SCALE_FIGURES_MIN = 3
SCALE_WEIGHT = 0.5
SCALE_FIGURES_MANY = 6
SCALE_MANY_WEIGHT = 1.0

# --- shape of the conversation ---------------------------------------------------------------
# Questions beyond the first each add this, up to the cap (multi-part asks need more care).
EXTRA_QUESTION_WEIGHT = 0.5
QUESTION_CAP = 1.5
# User turns at or above this count: a long conversation carries context to keep straight.
MANY_TURNS = 4
MANY_TURNS_WEIGHT = 0.5
# Tool definitions: the model has to plan calls and read results.
TOOLS_WEIGHT = 0.5
# The client asked for extended thinking: it expects reasoning.
THINKING_WEIGHT = 1.5
# Attachments: images to interpret, documents to read.
IMAGE_WEIGHT = 0.5
DOCUMENT_WEIGHT = 1.0

# --- task hints (x-promptcache-task) -----------------------------------------------------------
# Hints that lean cheap: each adds HINT_CHEAP_WEIGHT.
CHEAP_HINTS = frozenset({"classification", "summary", "translation"})
HINT_CHEAP_WEIGHT = -2.0
# Hints whose tier is at least standard, whatever the score.
STANDARD_FLOOR_HINTS = frozenset({"code_review", "code_generation"})
# Added for code_generation on top of its floor: generation with any difficulty signal goes strong.
HINT_CODE_GENERATION_WEIGHT = 0.5
TASK_HINTS = CHEAP_HINTS | STANDARD_FLOOR_HINTS

_TIER_ORDER: tuple[Tier, ...] = ("cheap", "standard", "strong")


@dataclass(frozen=True)
class RouteDecision:
    """Which model a request goes to, and why. An explicit model comes back as it was, with
    `routed=False`, `tier=None`, score 0 and no reasons; a routed request always has reasons."""

    routed: bool
    tier: Tier | None
    model: str
    score: float
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class _Cue:
    """One cue: the reason's prefix and a regex run on lower-cased prose. Each regex starts with
    a literal so the scan is fast; English cues check the character before a match in code,
    since a leading look-behind makes `re` try every position (20 ms for 2,000 characters)."""

    kind: str
    regex: re.Pattern[str]
    word_start: bool


# Word ends for English terms are ASCII-only: in Korean text a particle follows the term
# directly ("race condition이", "debug를"), and `\b` would see no boundary there. A hyphen
# binds: "last-write-wins" is not a request to write.
_LATIN = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")
_NOT_LATIN_AFTER = r"(?![a-z0-9_-])"
# A stem can match a long run of letters; the ledger gets at most this much of it.
_MAX_CUE_WORDS = 40


def _en(kind: str, *terms: str) -> tuple[_Cue, ...]:
    """English cues, bounded by non-Latin characters. A trailing `*` makes the term a stem
    (`refactor*` matches refactoring); a space or hyphen inside a term matches a space, a
    hyphen or nothing (`trade-off` matches "tradeoff", "trade off")."""
    cues = []
    for term in terms:
        word = term.rstrip("*").lower()
        body = r"[\s-]?".join(re.escape(part) for part in re.split(r"[ -]", word))
        tail = r"[a-z]*" if term.endswith("*") else _NOT_LATIN_AFTER
        cues.append(_Cue(kind, re.compile(body + tail), word_start=True))
    return tuple(cues)


def _ko(kind: str, *stems: str) -> tuple[_Cue, ...]:
    """Korean cues match stems anywhere: particles and endings attach to them (분석 -> 분석해,
    분석하고, 분석을), so list the stem, not a whole word."""
    return tuple(
        _Cue(f"korean {kind}", re.compile(re.escape(stem)), word_start=False) for stem in stems
    )


# What the prompt asks for: reasoning, diagnosis, design, proof, weighing options.
_DEMAND_CUES: tuple[_Cue, ...] = (
    *_en(
        "debugging cue",
        "debug*",
        "root cause",
        "cause",
        "causes",
        "diagnos*",
        "troubleshoot*",
        "figure out",
        "why does",
        "why do",
        "why is",
        "why are",
        "why would",
        "why did",
        "what could",
        "what went wrong",
        "what is wrong",
        "what's wrong",
    ),
    *_en(
        "design cue",
        "architect*",
        "design a",
        "design an",
        "design the",
        "system design",
        "trade-off*",
        "migration plan",
        "rollout plan",
    ),
    *_en(
        "analysis cue",
        "analyz*",
        "analys*",
        "compare",
        "comparison",
        "pros and cons",
        "evaluate",
        "assess*",
        "justify",
        "in order of likelihood",
        "recommend*",
        "strateg*",
        "estimat*",
        "risk",
        "risks",
    ),
    *_en("proof cue", "prove", "proof", "derive", "formally", "lower bound"),
    *_en("optimization cue", "optimiz*", "optimis*"),
    *_en("security cue", "audit*", "threat model*"),
    *_en("method cue", "refactor*", "step by step", "walk through", "walk me through"),
    *_ko("debugging cue", "디버그", "디버깅", "원인", "진단", "무엇이 문제", "뭐가 문제", "재발"),
    # 왜 ("why") on its own, not inside 왜곡 ("distortion") or 왜소 ("small").
    _Cue("korean debugging cue", re.compile(r"왜(?![곡소])"), word_start=False),
    *_ko("design cue", "설계", "아키텍처", "트레이드오프", "구조를 잡", "전환 계획"),
    *_ko("analysis cue", "분석", "비교", "검토", "평가", "근거", "추정", "전략", "리스크"),
    *_ko("analysis cue", "장단점", "따져"),
    *_ko("proof cue", "증명"),
    *_ko("optimization cue", "최적화"),
    *_ko("security cue", "보안 감사"),
    *_ko("method cue", "리팩터링", "리팩토링", "단계별"),
)

# What the prompt is about: subjects where a weak answer is plausible-looking and wrong.
_TOPIC_CUES: tuple[_Cue, ...] = (
    *_en(
        "hard subject",
        "race condition*",
        "data race*",
        "deadlock*",
        "livelock*",
        "memory leak*",
        "leaks",
        "leaking",
        "segfault*",
        "segmentation fault",
        "core dump*",
        "intermittent*",
        "sometimes",
        "occasionally",
        "flaky",
        "only happens",
        "OOM*",
        "concurren*",
        "lock-free",
        "thread-safe*",
        "mutex*",
        "distributed",
        "consistency",
        "consensus",
        "replication",
        "shard*",
        "failover",
        "idempoten*",
        "exactly-once",
        "zero-downtime",
        "high availability",
        "fault-toleran*",
        "scalab*",
        "throughput",
        "latency",
        "p95",
        "p99",
        "bottleneck*",
        "profil*",
        "garbage collect*",
        "security",
        "vulnerab*",
        "exploit*",
        "injection",
        "linearizab*",
        "linearisab*",
        "invariant*",
        "amortized",
        "amortised",
    ),
    *_ko("hard subject", "경쟁 상태", "레이스 컨디션", "데드락", "교착", "메모리 누수", "누수"),
    *_ko("hard subject", "세그폴트", "간헐적", "가끔", "재현이 안", "동시성", "동시에"),
    *_ko("hard subject", "멀티스레드", "분산", "정합성", "일관성", "합의", "복제", "샤딩"),
    *_ko("hard subject", "페일오버", "멱등", "무중단", "가용성", "확장성", "처리량", "병목"),
    *_ko("hard subject", "지연 시간", "프로파일링", "성능", "보안", "취약점", "인젝션"),
    *_ko("hard subject", "시간 복잡도", "분할 상환"),
)

# Ordinary work: producing or explaining something, more than the cheap tier does well.
_TASK_CUES: tuple[_Cue, ...] = (
    *_en(
        "task cue",
        "write",
        "implement*",
        "explain*",
        "review",
        "convert",
        "test",
        "tests",
        "script",
        "query",
        "function",
        "example*",
        "draft",
        "how do I",
        "how can I",
        "how to",
        "set up",
        "configur*",
    ),
    *_ko("task cue", "작성", "구현", "설명", "리뷰", "테스트", "스크립트", "쿼리", "함수"),
    *_ko("task cue", "예시", "예제", "짜줘", "짜 줘", "만들어", "바꿔", "초안"),
    *_ko("task cue", "방법", "설정"),
)

# Simple tasks: transforming or labelling given text, which the cheap tier does well.
_SIMPLE_CUES: tuple[_Cue, ...] = (
    *_en(
        "simple-task cue",
        "translat*",
        "summar*",
        "tldr",
        "classify",
        "categoriz*",
        "sentiment",
        "one line",
        "one sentence",
        "one word",
        "yes or no",
        "label only",
        "nothing else",
        "just the",
        "how do you say",
        "word for",
        "grammar",
        "spelling",
        "typo*",
        "title",
        "proofread*",
        "rephrase",
        "reword",
        "paraphrase",
        "tone",
        "polite*",
        "extract*",
        "pull out",
        "rename",
        "into JSON",
        "alphabetic*",
        "snake_case",
        "camelCase",
        "PascalCase",
        "kebab-case",
    ),
    *_ko("simple-task cue", "번역", "요약", "분류", "맞춤법", "띄어쓰기", "추출", "뽑아"),
    *_ko("simple-task cue", "한 줄", "한 문장", "만 답", "라벨만", "정렬해", "영어로", "뜻이"),
    *_ko("simple-task cue", "다듬어", "공손하게", "존댓말", "반말", "말투", "뭐라고"),
    *_ko("simple-task cue", "오타", "오탈자", "문법", "제목", "긍정"),
)

_FENCE_OPEN = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
# Material the prompt quotes or marks as code, on one line: read for length, not for cues.
# A single quote only opens after a non-letter and closes before one, so "don't" never opens.
_QUOTED = re.compile(
    r"`[^`\n]*`|\"[^\"\n]*\"|“[^”\n]*”|‘[^’\n]*’|「[^」\n]*」|(?<![A-Za-z])'[^'\n]*'(?![A-Za-z])"
)
_CODE_LINE = re.compile(
    r"^\s*(?:def |class |import |from \S+ import |function |const |let |var |return\b|"
    r"public |private |#include|SELECT\b|INSERT\b|UPDATE\b|CREATE TABLE|if \(|for \()"
    r"|[{};]\s*$|=>|\)\s*\{\s*$",
)
_SCALE_FIGURE = re.compile(
    r"\d[\d,.]*\s?(?:[kKMB](?![A-Za-z])|%|ms(?![A-Za-z])|x(?![A-Za-z])|[KMGTP]B(?![A-Za-z])"
    r"|(?:QPS|RPS|qps|rps|rows?|events?|requests?|users?|connections?|instances?|servers?"
    r"|nodes?|shards?|regions?|pods?|calls?|messages?|tenants?|accounts?|customers?|seats?"
    r"|records?|documents?|writes?|reads?|inserts?)(?![A-Za-z]))"
    r"|\d[\d,.]*\s?[만억천]|\d+\s?(?:건|명|개|대|배)"
)
_WIDE_CHARS = re.compile(
    "[\u1100-\u11ff\u3040-\u30ff\u3130-\u318f\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7a3]"
)
_QUESTION = re.compile(r"[?？]+")


@dataclass(frozen=True)
class _Features:
    tokens: int
    code_blocks: int
    code_lines: int
    code_like_lines: int
    scale_figures: int
    demand_cues: tuple[str, ...]
    topic_cues: tuple[str, ...]
    task_cues: tuple[str, ...]
    simple_cues: tuple[str, ...]
    questions: int
    user_turns: int
    tools: int
    thinking: bool
    images: int
    documents: int


@dataclass(frozen=True)
class _Split:
    """A text split into prose and fenced code, the way a Markdown renderer would show it."""

    prose: str
    code_blocks: int
    code_lines: int


class Router:
    """Picks the model for requests sent to an alias; see the module docstring for the rules."""

    def __init__(self, settings: RouterSettings) -> None:
        self._settings = settings
        self._aliases = frozenset(settings.aliases)

    def route(self, request: Mapping[str, Any], task_hint: str | None = None) -> RouteDecision:
        """Decide the model for `request`; never raises, whatever the message shapes.

        A request without a model string is routed (the service's default model is `auto`)."""
        model = request.get("model")
        if isinstance(model, str) and model not in self._aliases:
            return RouteDecision(routed=False, tier=None, model=model, score=0.0, reasons=())
        score, reasons, floor = _score(_extract(request), task_hint)
        tier = _tier_for(score, floor)
        if not isinstance(model, str):
            reasons = ("no model given", *reasons)
        return RouteDecision(
            routed=True,
            tier=tier,
            model=self.model_for(tier),
            score=round(score, 3),
            reasons=reasons,
        )

    def model_for(self, tier: Tier) -> str:
        """The configured model id of a tier."""
        if tier == "cheap":
            return self._settings.cheap_model
        if tier == "standard":
            return self._settings.standard_model
        return self._settings.strong_model


def _tier_for(score: float, floor: Tier) -> Tier:
    if score >= STRONG_THRESHOLD:
        tier: Tier = "strong"
    elif score >= STANDARD_THRESHOLD:
        tier = "standard"
    else:
        tier = "cheap"
    return max(tier, floor, key=_TIER_ORDER.index)


def _score(features: _Features, task_hint: str | None) -> tuple[float, tuple[str, ...], Tier]:
    """Add up the weights; every term that applies leaves its reason."""
    score = BASE_SCORE
    reasons: list[str] = []

    for minimum, weight, label in LENGTH_BANDS:
        if features.tokens >= minimum:
            score += weight
            unit = "token" if features.tokens == 1 else "tokens"
            reasons.append(f"{label} ({features.tokens:,} {unit} est.)")
            break

    if features.code_blocks:
        score += CODE_BLOCK_WEIGHT
        reasons.append(_counted(features.code_blocks, "code block"))
    if features.code_lines >= LARGE_CODE_LINES:
        score += LARGE_CODE_WEIGHT
        reasons.append(f"large code ({features.code_lines} lines)")
    if features.code_like_lines >= CODE_LIKE_MIN_LINES:
        score += CODE_LIKE_WEIGHT
        reasons.append("code-like content")

    if features.scale_figures >= SCALE_FIGURES_MANY:
        score += SCALE_MANY_WEIGHT
        reasons.append(f"{features.scale_figures} scale figures")
    elif features.scale_figures >= SCALE_FIGURES_MIN:
        score += SCALE_WEIGHT
        reasons.append(f"{features.scale_figures} scale figures")

    for cues, weight, cap in (
        (features.demand_cues, DEMAND_CUE_WEIGHT, DEMAND_CUE_CAP),
        (features.topic_cues, TOPIC_CUE_WEIGHT, TOPIC_CUE_CAP),
        (features.task_cues, TASK_CUE_WEIGHT, TASK_CUE_CAP),
    ):
        if cues:
            score += min(weight * len(cues), cap)
            reasons.extend(cues)
    if features.simple_cues and not features.demand_cues:
        score += SIMPLE_CUE_WEIGHT
        reasons.extend(features.simple_cues)

    if features.questions >= 2:
        score += min(EXTRA_QUESTION_WEIGHT * (features.questions - 1), QUESTION_CAP)
        reasons.append(f"{features.questions} questions")
    if features.user_turns >= MANY_TURNS:
        score += MANY_TURNS_WEIGHT
        reasons.append(f"{features.user_turns} turns")
    if features.tools:
        score += TOOLS_WEIGHT
        reasons.append(_counted(features.tools, "tool"))
    if features.thinking:
        score += THINKING_WEIGHT
        reasons.append("extended thinking")
    if features.images:
        score += IMAGE_WEIGHT
        reasons.append(_counted(features.images, "image"))
    if features.documents:
        score += DOCUMENT_WEIGHT
        reasons.append(_counted(features.documents, "document"))

    floor: Tier = "cheap"
    hint = task_hint.strip().lower().replace("-", "_") if isinstance(task_hint, str) else ""
    if hint in CHEAP_HINTS:
        score += HINT_CHEAP_WEIGHT
        reasons.append(f"task hint: {hint}")
    elif hint in STANDARD_FLOOR_HINTS:
        floor = "standard"
        if hint == "code_generation":
            score += HINT_CODE_GENERATION_WEIGHT
        reasons.append(f"task hint: {hint}")
    elif hint:
        reasons.append(f"task hint ignored: {hint[:40]}")
    return score, tuple(reasons), floor


def _counted(count: int, noun: str) -> str:
    return noun if count == 1 else f"{count:,} {noun}s"


# --- feature extraction -----------------------------------------------------------------------


def _extract(request: Mapping[str, Any]) -> _Features:
    """Read the features; tolerant of any shape, since validation is not the router's job."""
    authored: list[str] = []  # what a person wrote: system and user text (cues are read here)
    other_tokens = 0  # assistant turns, tool traffic, tool definitions: length only
    images = documents = user_turns = 0

    authored.extend(_system_texts(request.get("system")))
    messages = request.get("messages")
    if not isinstance(messages, Sequence) or isinstance(messages, str | bytes):
        messages = ()
    for message in messages:
        if not isinstance(message, Mapping):
            continue
        is_user = message.get("role") == "user"
        user_turns += is_user
        content = message.get("content")
        blocks: Iterable[Any] = (
            [content] if isinstance(content, str) else content if isinstance(content, list) else ()
        )
        for block in blocks:
            if isinstance(block, str):
                text = block
            elif isinstance(block, Mapping):
                kind = block.get("type")
                if kind == "image":
                    images += 1
                    continue
                if kind == "document":
                    documents += 1
                    continue
                if kind != "text":  # tool_use, tool_result, unknown: length only
                    other_tokens += _estimate_tokens(_dump(block))
                    continue
                raw = block.get("text")
                text = raw if isinstance(raw, str) else ""
            else:
                continue
            if is_user:
                authored.append(text)
            else:
                other_tokens += _estimate_tokens(text)

    tools = request.get("tools")
    tool_count = len(tools) if isinstance(tools, list) else 0
    if tool_count:
        other_tokens += _estimate_tokens(_dump(tools))

    thinking = request.get("thinking")
    thinking_on = isinstance(thinking, Mapping) and thinking.get("type") in ("enabled", "adaptive")

    splits = [_split(text) for text in authored]
    prose = "\n\n".join(split.prose for split in splits)
    asked = _QUOTED.sub(" ", prose)
    lowered = asked.lower()
    return _Features(
        tokens=sum(_estimate_tokens(text) for text in authored) + other_tokens,
        code_blocks=sum(split.code_blocks for split in splits),
        code_lines=sum(split.code_lines for split in splits),
        code_like_lines=sum(1 for line in prose.splitlines() if _CODE_LINE.search(line)),
        scale_figures=len(_SCALE_FIGURE.findall(asked)),
        demand_cues=_matches(_DEMAND_CUES, lowered),
        topic_cues=_matches(_TOPIC_CUES, lowered),
        task_cues=_matches(_TASK_CUES, lowered),
        simple_cues=_matches(_SIMPLE_CUES, lowered),
        questions=len(_QUESTION.findall(asked)),
        user_turns=user_turns,
        tools=tool_count,
        thinking=thinking_on,
        images=images,
        documents=documents,
    )


def _system_texts(value: Any) -> list[str]:
    """The text of a `system` value: a string or a list of text blocks."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [
            block["text"]
            for block in value
            if isinstance(block, Mapping) and isinstance(block.get("text"), str)
        ]
    return []


def _split(text: str) -> _Split:
    """Separate fenced code from prose. An unclosed fence runs to the end, as in CommonMark, so
    appending a fenced block with an info string to any text can only add code, never turn
    code into prose (the router relies on this to never lower a tier when code is added)."""
    prose: list[str] = []
    blocks = code_lines = 0
    fence: tuple[str, int] | None = None
    for line in text.splitlines():
        if fence is None:
            opened = _FENCE_OPEN.match(line)
            if opened and not (opened.group(1)[0] == "`" and "`" in opened.group(2)):
                fence = (opened.group(1)[0], len(opened.group(1)))
                blocks += 1
            else:
                prose.append(line)
            continue
        mark, length = fence
        stripped = line.strip()
        if len(stripped) >= length and stripped == mark * len(stripped):
            fence = None
        else:
            code_lines += 1
    return _Split(prose="\n".join(prose), code_blocks=blocks, code_lines=code_lines)


def _matches(cues: tuple[_Cue, ...], text: str) -> tuple[str, ...]:
    """One reason per distinct cue that occurs, labelled with the words it first matched.

    A cue's matches are blanked once counted, so a cue listed earlier ("root cause", "memory
    leak") keeps a shorter one inside it ("cause", "leaks") from counting the same words."""
    found: dict[str, None] = {}
    for cue in cues:

        def counts(match: re.Match[str], cue: _Cue = cue) -> bool:
            start = match.start()
            return not cue.word_start or start == 0 or match.string[start - 1] not in _LATIN

        hit = next((match for match in cue.regex.finditer(text) if counts(match)), None)
        if hit is None:
            continue
        words = " ".join(hit.group(0).split())[:_MAX_CUE_WORDS]
        found.setdefault(f"{cue.kind}: {words}")
        text = cue.regex.sub(lambda m: " " * len(m.group(0)) if counts(m) else m.group(0), text)
    return tuple(found)


def _estimate_tokens(text: str) -> int:
    """Rough token count: one per Hangul/kana/CJK character, CHARS_PER_TOKEN per other char.

    Good enough to rank prompts by length; a dedicated estimator replaces it later."""
    wide = _WIDE_CHARS.subn("", text)[1]
    return wide + math.ceil((len(text) - wide) / CHARS_PER_TOKEN)


def _dump(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):  # circular structures, NaN keys and the like
        return ""
