"""Answers to prompts that name a relative date expire with the period they were asked in."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from embeddings.routed import RoutedEmbedder
from service.cache import SemanticCache
from service.guards.dates import relative_periods
from service.keys import CacheKeys, cache_keys
from service.policy import Hit, Miss
from service.relative_time import relative_expiry, relative_start
from tests.conftest import FakeClock, make_settings

SEOUL = ZoneInfo("Asia/Seoul")
TUESDAY_3PM = datetime(2026, 3, 10, 15, 0, tzinfo=SEOUL).timestamp()


def at(*fields: int, tz: ZoneInfo = SEOUL) -> float:
    return datetime(*fields, tzinfo=tz).timestamp()


def keys(text: str) -> CacheKeys:
    request = {"model": "m", "messages": [{"role": "user", "content": text}]}
    return cache_keys(request, tenant="t")


@pytest.mark.parametrize(
    ("text", "periods"),
    [
        ("What should I cook today?", {"day"}),
        ("What's today's special?", {"day"}),
        ("Will it rain tomorrow?", {"day"}),
        ("What did I schedule for tonight?", {"day"}),
        ("Plan my meetings for next week.", {"week"}),
        ("What's on Friday?", {"week"}),
        ("Summarize last month's sales.", {"month"}),
        ("What were this year's goals?", {"year"}),
        ("오늘 저녁 뭐 먹지?", {"day"}),
        ("내일 날씨 어때?", {"day"}),
        ("이번 주 회의 일정 알려줘", {"week"}),
        ("다음 달 예산은 얼마야?", {"month"}),
        ("작년 매출을 요약해줘", {"year"}),
        ("What should I do tomorrow and next month?", {"day", "month"}),
        ("금일 환율 알려줘", {"day"}),
        ("명일 회의 안건 정리해줘", {"day"}),
        ("What happened 3 days ago?", {"day"}),
        ("Remind me what is due in two weeks.", {"day"}),
        ("사흘 뒤에 뭐 하지?", {"day"}),
        ("2주 전에 주문한 물건 배송 조회", {"day"}),
        ("3일 동안 할 수 있는 운동", set()),  # a duration, not a date
        ("명일동 맛집 추천", set()),  # a district of Seoul
        # No relative date: the answer holds for the whole TTL.
        ("What is a mutex?", set()),
        ("Explain the difference between TCP and UDP.", set()),
        ("How did the weekend become a custom?", set()),  # "weekend" alone is no period
        ("오늘날 인공지능의 역할은?", set()),  # 오늘날 is "nowadays", not "today"
        ("What happened on July 4, 1776?", set()),  # an absolute date
    ],
)
def test_the_periods_a_prompts_dates_move_with(text: str, periods: set[str]) -> None:
    assert relative_periods(text) == periods


def test_an_answer_holds_until_the_end_of_the_shortest_period_named() -> None:
    tz = "Asia/Seoul"
    assert relative_expiry("What should I cook today?", TUESDAY_3PM, tz) == at(2026, 3, 11)
    assert relative_expiry("이번 주 회의 일정", TUESDAY_3PM, tz) == at(2026, 3, 16)  # Monday
    assert relative_expiry("다음 달 예산", TUESDAY_3PM, tz) == at(2026, 4, 1)
    assert relative_expiry("올해 목표", TUESDAY_3PM, tz) == at(2027, 1, 1)
    assert relative_expiry("Tomorrow, and next year?", TUESDAY_3PM, tz) == at(2026, 3, 11)
    assert relative_expiry("What is a mutex?", TUESDAY_3PM, tz) is None
    december = at(2026, 12, 31, 23, 30)
    assert relative_expiry("Budget for this month?", december, tz) == at(2027, 1, 1)
    # The zone decides where midnight is; across a DST change it is still wall-clock midnight.
    new_york = ZoneInfo("America/New_York")
    saturday = at(2026, 3, 7, 22, 0, tz=new_york)  # clocks go forward on Sunday 8 March
    week_end = relative_expiry("this week", saturday, "America/New_York")
    assert week_end == at(2026, 3, 9, tz=new_york)
    assert relative_expiry("today", saturday, "UTC") == at(2026, 3, 9, tz=ZoneInfo("UTC"))


def test_a_prompt_names_the_period_it_asks_about_from_its_start() -> None:
    tz = "Asia/Seoul"
    assert relative_start("What should I cook today?", TUESDAY_3PM, tz) == at(2026, 3, 10)
    assert relative_start("이번 주 회의 일정", TUESDAY_3PM, tz) == at(2026, 3, 9)  # Monday
    assert relative_start("다음 달 예산", TUESDAY_3PM, tz) == at(2026, 3, 1)
    assert relative_start("올해 목표", TUESDAY_3PM, tz) == at(2026, 1, 1)
    assert relative_start("What is a mutex?", TUESDAY_3PM, tz) is None


def test_a_prompt_about_today_is_not_served_an_older_answer_without_a_date(
    tmp_path: Path, routed: RoutedEmbedder
) -> None:
    """The dates guard lets "today" on one side pass (it usually means "now"), so an answer
    to the undated question, stored days ago, was served for "... today?"."""
    clock = FakeClock(TUESDAY_3PM - 3 * 86_400)
    settings = make_settings(tmp_path / "data", timezone="Asia/Seoul")
    cache = SemanticCache(settings, routed, clock=clock)
    options = cache.options()

    try:
        cache.store(keys("서울 날씨 알려줘"), "맑음")
        clock.now = TUESDAY_3PM
        stale = cache.lookup(keys("오늘 서울 날씨 알려줘"), options)
        assert isinstance(stale.decision, Miss)
        assert "before the period the prompt asks about" in stale.decision.reason
        assert isinstance(cache.lookup(keys("서울 날씨 알려줘"), options).decision, Hit)
        fresh = cache.store(keys("서울 날씨 알려줘"), "흐림")  # stored today: it may serve
        assert cache.lookup(keys("오늘 서울 날씨 알려줘"), options).entry == fresh
    finally:
        cache.close()


def test_a_cached_answer_about_today_is_not_served_tomorrow(
    tmp_path: Path, routed: RoutedEmbedder
) -> None:
    clock = FakeClock(TUESDAY_3PM)
    settings = make_settings(tmp_path / "data", timezone="Asia/Seoul")
    cache = SemanticCache(settings, routed, clock=clock)
    options = cache.options()

    try:
        today = cache.store(keys("What should I cook today?"), "Bibimbap.")
        korean = cache.store(keys("오늘 저녁 뭐 먹지?"), "김치찌개.")
        timeless = cache.store(keys("What is a mutex?"), "A lock.")
        chosen = cache.store(keys("What's on today?"), "x", ttl=3 * 86_400)
        assert today.expires == korean.expires == at(2026, 3, 11)
        assert timeless.expires == TUESDAY_3PM + settings.cache.default_ttl_seconds
        assert chosen.expires == TUESDAY_3PM + 3 * 86_400  # the caller's TTL is kept

        clock.now = at(2026, 3, 10, 23, 59)
        found = cache.lookup(keys("What should I cook today?"), options)
        assert isinstance(found.decision, Hit)
        clock.now = at(2026, 3, 11, 0, 1)  # the same words now ask about Wednesday
        for text in ("What should I cook today?", "오늘 저녁 뭐 먹지?"):
            gone = cache.lookup(keys(text), options)
            assert isinstance(gone.decision, Miss), text
        assert isinstance(cache.lookup(keys("What is a mutex?"), options).decision, Hit)
    finally:
        cache.close()

    off = make_settings(
        tmp_path / "off", timezone="Asia/Seoul", cache={"expire_relative_dates": False}
    )
    plain = SemanticCache(off, routed, clock=clock)
    try:
        entry = plain.store(keys("What should I cook today?"), "Bibimbap.")
        assert entry.expires == clock.now + off.cache.default_ttl_seconds
    finally:
        plain.close()
