"""The amounts guard: money in different currencies or different sums ("$5" vs "€5").

A currency mention (symbol, word or Korean unit) is paired with the number beside it, read by
the numbers guard, so "$5", "5 dollars" and "5달러" are one amount.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Final

from service.guards.numbers import number_mentions
from service.guards.text import GuardVerdict, accept, normalize, refuse, table

_CURRENCY_SYMBOLS: Final = table(
    "US$=USD C$=CAD A$=AUD HK$=HKD $=USD €=EUR £=GBP ¥=JPY 円=JPY ₩=KRW ₹=INR ₽=RUB ₺=TRY "
    "₫=VND ₱=PHP ฿=THB ₿=BTC 元=CNY"
)
_CURRENCY_WORDS: Final = table(
    "dollar=USD dollars=USD buck=USD bucks=USD usd=USD euro=EUR euros=EUR eur=EUR sterling=GBP "
    "quid=GBP gbp=GBP pence=GBX yen=JPY jpy=JPY yuan=CNY renminbi=CNY rmb=CNY cny=CNY krw=KRW "
    "rupee=INR rupees=INR inr=INR rs=INR ruble=RUB rubles=RUB rouble=RUB roubles=RUB cad=CAD "
    "aud=AUD chf=CHF franc=CHF francs=CHF hkd=HKD sgd=SGD btc=BTC bitcoin=BTC bitcoins=BTC "
    "peso=MXN pesos=MXN cent=cent cents=cent 달러=USD 유로=EUR 파운드=GBP 엔화=JPY 위안=CNY "
    "위안화=CNY 원화=KRW 루피=INR 센트=cent 비트코인=BTC"
)
# Currencies only right after a number: "won" (verb), "원" (want), "엔" ("에는"), "불" (fire).
_CURRENCY_AFTER_NUMBER: Final = table("won=KRW 원=KRW 엔=JPY 불=USD")
_CURRENCY: Final = re.compile(
    r"(?P<sym>US\$|C\$|A\$|HK\$|[$€£¥円₩₹₽₺₫₱฿₿元])"
    r"|(?<![A-Za-z])(?P<word>"
    + "|".join(sorted(_CURRENCY_WORDS, key=len, reverse=True))
    + r")(?![A-Za-z])"
    r"|(?P<after>(?<![A-Za-z])won(?![A-Za-z])|원|엔|불)",
    re.IGNORECASE,
)
_PER_CENT: Final = re.compile(r"per\s$", re.IGNORECASE)


def _amounts(text: str) -> tuple[frozenset[str], Counter[str]]:
    """(currencies mentioned, "CODE amount" for each currency with a number beside it)."""
    numbers = number_mentions(text)
    by_end = {n.end: n for n in numbers}
    by_start = {n.start: n for n in numbers}
    currencies: set[str] = set()
    amounts: Counter[str] = Counter()
    for m in _CURRENCY.finditer(text):
        start, end = m.span()
        word = (m["word"] or "").lower()
        if word.startswith("cent") and _PER_CENT.search(text, max(0, start - 4), start):
            continue  # "per cent"
        # A number right before ("5 dollars", "5만 원") or right after ("$5", "USD 5", "Rs.5").
        before = by_end.get(start) or (
            by_end.get(start - 1) if text[start - 1 : start] == " " else None
        )
        after = next(
            (
                by_start[i]
                for i in range(end, end + 3)
                if i in by_start and text[end:i].strip(" .") == ""
            ),
            None,
        )
        if m["after"]:
            if before is None:
                continue
            code = _CURRENCY_AFTER_NUMBER[m["after"].lower()]
        elif m["sym"]:
            code = _CURRENCY_SYMBOLS[m["sym"].upper()]
        else:
            code = _CURRENCY_WORDS[word]
        currencies.add(code)
        number = after if m["sym"] and after is not None else before or after
        if number is not None:
            amounts[f"{code} {number.key.lstrip('#')}"] += 1
    return frozenset(currencies), amounts


def check_amounts(cached: str, new: str) -> GuardVerdict:
    """Refuse when both sides name money and the currencies or amounts differ ("$5" vs "€5",
    "$5" vs "$50", "5달러" vs "5유로"); "$5" == "5 dollars" == "5달러" == "USD 5", "5만 원" ==
    "₩50,000". A currency on one side only passes: "under 15k" vs "under INR 15k" asks the same,
    and the bare number is the numbers guard's business.

    Limits: "pound(s)" is not read as money (it is as often a weight); "¥" is read as yen.
    """
    a_cur, a_amt = _amounts(normalize(cached))
    b_cur, b_amt = _amounts(normalize(new))
    if not a_cur or not b_cur:
        return accept("amounts")
    if a_cur != b_cur:
        return refuse("amounts", "currencies", a_cur - b_cur, b_cur - a_cur)
    if a_amt != b_amt:
        return refuse("amounts", "amounts", (a_amt - b_amt).elements(), (b_amt - a_amt).elements())
    return accept("amounts")
