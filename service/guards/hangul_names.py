"""Names written in Hangul, by their Latin spelling, for the entities guard.

Korean text writes programming languages, tools, natural languages, countries and cities in
Hangul ("파이썬", "일본어", "부산"), where the Latin-script rules cannot see them. Mapping
each to its Latin name lets "자바" and "자바스크립트", "일본어로 번역" and "중국어로 번역",
"서울 날씨" and "부산 날씨" conflict, while "파이썬" still matches "Python". Closed lists:
a name not here is not recognised. Words that are also common nouns in Korean are left out
where the noun is the likelier reading (일어 "get up", 독어 "poison fish").
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from service.guards.text import table

TOOLS: Final = table(
    "자바스크립트=javascript 타입스크립트=typescript 자바=java 파이썬=python 코틀린=kotlin "
    "러스트=rust 스위프트=swift 루비=ruby 고랭=go 스칼라=scala 하스켈=haskell 씨샵=c# "
    "씨샾=c# 씨쁠쁠=c++ 펄=perl 루아=lua 다트=dart 엘릭서=elixir "
    "리액트=react 앵귤러=angular 스벨트=svelte 장고=django 플라스크=flask 판다스=pandas "
    "넘파이=numpy 파이토치=pytorch 텐서플로=tensorflow 텐서플로우=tensorflow 도커=docker "
    "쿠버네티스=kubernetes 우분투=ubuntu 리눅스=linux 윈도우=windows 맥오에스=macos "
    "안드로이드=android 아이폰=iphone 엑셀=excel 노션=notion 깃허브=github 깃랩=gitlab "
    "마이에스큐엘=mysql 포스트그레스=postgresql 몽고디비=mongodb 레디스=redis"
)
LANGUAGES: Final = table(
    "영어=english 한국어=korean 한국말=korean 일본어=japanese 중국어=chinese 불어=french "
    "프랑스어=french 독일어=german 스페인어=spanish 러시아어=russian 베트남어=vietnamese "
    "태국어=thai 아랍어=arabic 이탈리아어=italian 포르투갈어=portuguese 힌디어=hindi "
    "인도네시아어=indonesian 라틴어=latin 광둥어=cantonese 몽골어=mongolian 터키어=turkish "
    "튀르키예어=turkish 네덜란드어=dutch 그리스어=greek 히브리어=hebrew"
)
PLACES: Final = table(
    "한국=korea 대한민국=korea 남한=korea 북한=north_korea 일본=japan 중국=china 미국=usa "
    "영국=uk 프랑스=france 독일=germany 캐나다=canada 호주=australia 베트남=vietnam "
    "태국=thailand 인도=india 러시아=russia 이탈리아=italy 스페인=spain 멕시코=mexico "
    "브라질=brazil 대만=taiwan 홍콩=hong_kong 싱가포르=singapore 싱가폴=singapore "
    "필리핀=philippines 인도네시아=indonesia 말레이시아=malaysia 뉴질랜드=new_zealand "
    "스위스=switzerland 네덜란드=netherlands 튀르키예=turkey 터키=turkey 이집트=egypt "
    "서울=seoul 부산=busan 대구=daegu 인천=incheon 광주=gwangju 대전=daejeon 울산=ulsan "
    "세종=sejong 제주=jeju 제주도=jeju 수원=suwon 강릉=gangneung 경주=gyeongju 전주=jeonju "
    "경기도=gyeonggi 강원도=gangwon 도쿄=tokyo 오사카=osaka 교토=kyoto 후쿠오카=fukuoka "
    "삿포로=sapporo 베이징=beijing 북경=beijing 상하이=shanghai 상해=shanghai 뉴욕=new_york "
    "파리=paris 런던=london 베를린=berlin 로마=rome 시드니=sydney 방콕=bangkok 하노이=hanoi "
    "다낭=da_nang 로스앤젤레스=los_angeles 엘에이=los_angeles 샌프란시스코=san_francisco"
)
# "new_york" is written with "_" in the tables above and means "new york".
HANGUL_NAMES: Final[Mapping[str, str]] = MappingProxyType(
    {k: v.replace("_", " ") for names in (TOOLS, LANGUAGES, PLACES) for k, v in names.items()}
)
