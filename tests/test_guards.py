"""Guards refuse the known false-hit families and let true paraphrases through.

Every pair here was written for this project (none comes from a public dataset). Each guard has
pairs it must refuse (the detail that changes the answer) and paraphrases it must pass; a
combined list of realistic paraphrases must pass all guards together.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from service.guards import GUARDS, GuardVerdict, check_all, normalize

Pair = tuple[str, str]

# A long shared text, for the shared_context guard (written for this project).
NOTICE = (
    "The library closes for renovation from the first of March. Returned books go in the "
    "box by the side door, study rooms move to the community centre across the street, and "
    "the printers stay available in the lobby on weekdays until six. "
)
NOTICE_KO = (
    "다음 달 1일부터 도서관이 리모델링으로 휴관합니다. 반납 도서는 옆문 반납함에 넣어 주시고, "
    "스터디룸은 길 건너 주민센터로 옮깁니다. 프린터는 평일 오후 6시까지 로비에서 계속 이용할 수 "
    "있습니다. "
)

REFUSE: dict[str, list[Pair]] = {
    "numbers": [
        ("What is 15% of 200?", "What is 25% of 200?"),
        ("Convert 1,000 meters to feet", "Convert 1,500 meters to feet"),
        ("How long does it take to boil two eggs?", "How long does it take to boil three eggs?"),
        ("Who won the 2nd round?", "Who won the 3rd round?"),
        ("What is -5 squared?", "What is 5 squared?"),
        ("Is 5kg of flour enough for 3x the recipe?", "Is 8kg of flour enough for 3x the recipe?"),
        ("사과 세 개는 몇 칼로리인가요?", "사과 네 개는 몇 칼로리인가요?"),
        ("3명이 먹을 파스타 레시피", "5명이 먹을 파스타 레시피"),
        ("첫 번째 장의 요약을 해줘", "두 번째 장의 요약을 해줘"),
        ("이 글을 한 문장으로 요약해 줘", "이 글을 세 문장으로 요약해 줘"),  # a counter it lacked
        ("인구가 천만 명이 넘는 도시", "인구가 백만 명이 넘는 도시"),
        # 반 (half) after a count, and "and a half".
        ("4시에 출발하는 버스", "4시 반에 출발하는 버스"),
        ("두 시간 걷기 코스", "두 시간 반 걷기 코스"),
        ("2년반 만에 이직해도 될까", "2년 만에 이직해도 될까"),
        ("Plan a hike of three hours", "Plan a hike of three and a half hours"),
    ],
    "dates": [
        ("What's the weather in Seoul tomorrow?", "What was the weather in Seoul yesterday?"),
        ("Who won the World Cup in 2018?", "Who won the World Cup in 2022?"),
        ("Plan a trip for March with my family", "Plan a trip for April with my family"),
        ("What meetings do I have on Monday?", "What meetings do I have on Tuesday?"),
        ("Schedule a call at 9am", "Schedule a call at 9pm"),
        ("What happened last week in the markets?", "What happened this week in the markets?"),
        ("월요일에 문을 여는 식당", "화요일에 문을 여는 식당"),
        ("1월에 가기 좋은 여행지", "2월에 가기 좋은 여행지"),
        ("내일 서울 날씨 어때?", "오늘 서울 날씨 어때?"),
        ("작년 매출 보고서를 요약해줘", "올해 매출 보고서를 요약해줘"),
    ],
    "amounts": [
        ("Is $5 enough for lunch in Tokyo?", "Is €5 enough for lunch in Tokyo?"),
        ("How should I invest $10,000?", "How should I invest $100,000?"),
        ("Convert 100 dollars to yen", "Convert 100 euros to yen"),
        ("Is a ₩50,000 gift too much?", "Is a $50 gift too much?"),
        ("What can I buy for 20 bucks?", "What can I buy for 20 pounds sterling?"),
        ("5달러짜리 선물 추천", "5유로짜리 선물 추천"),
        ("만 원으로 살 수 있는 것", "천 원으로 살 수 있는 것"),
        ("10만원 이하 이어폰 추천", "20만원 이하 이어폰 추천"),
    ],
    "negation": [
        ("Is coffee good for your health?", "Is coffee not good for your health?"),
        ("Apps that work with internet access", "Apps that work without internet access"),
        ("I always get emails from them", "I never get emails from them"),
        ("Why can I delete my account?", "Why can't I delete my account?"),
        ("Can I call the API with a key?", "Can I call the API with no key?"),
        ("이 약은 임산부가 먹어도 되나요?", "이 약은 임산부가 먹으면 안 되나요?"),
        ("파이썬으로 할 수 있는 것", "파이썬으로 할 수 없는 것"),
        ("매운 음식을 좋아해요", "매운 음식을 좋아하지 않아요"),
        ("이 버튼을 누르세요", "이 버튼을 누르지 마세요"),
        ("설탕을 넣은 케이크 레시피", "설탕 없이 만드는 케이크 레시피"),
        # 안/못 glued to the verb, in front or after a noun.
        ("고양이한테 참치 먹여도 돼?", "고양이한테 참치 안먹여도 돼?"),
        ("프린터 연결돼요", "프린터 연결안돼요"),
        ("마감까지 보고서 끝냈어요", "마감까지 보고서 못끝냈어요"),
    ],
    "entities": [
        ("What is the capital of France?", "What is the capital of Germany?"),
        ("Best time of year to visit Paris", "Best time of year to visit London"),
        ("How do I use pandas.merge()?", "How do I use pandas.concat()?"),
        ("What does the user_id field mean?", "What does the account_id field mean?"),
        ("How do I parse config.yaml?", "How do I parse config.json?"),
        ("Is Python 3.11 faster?", "Is Python 3.12 faster?"),
        ("What's new in Python 3.1?", "What's new in Python 3.10?"),
        ("Send a message to john@example.com", "Send a message to jane@example.com"),
        ("Compare REST with GraphQL", "Compare REST with gRPC"),
        ("React에서 useState 사용법", "React에서 useEffect 사용법"),
        ("numpy 배열을 정렬하는 방법", "pandas 배열을 정렬하는 방법"),
        # Programming languages and tools written in Hangul.
        ("자바로 이진 트리 순회 구현", "자바스크립트로 이진 트리 순회 구현"),
        ("타입스크립트 제네릭 설명해줘", "코틀린 제네릭 설명해줘"),
        ("파이썬에서 JSON 파싱하기", "러스트에서 JSON 파싱하기"),
        ("Python으로 CSV 읽기", "루비로 CSV 읽기"),
        ("`git rebase` 사용법", "`git merge` 사용법"),
        # Natural languages, countries and cities written in Hangul.
        ("이 메일을 영어로 번역해 줘", "이 메일을 독일어로 번역해 줘"),
        ("대전에서 가볼 만한 카페", "울산에서 가볼 만한 카페"),
        ("베트남 여행 준비물", "태국 여행 준비물"),
        ("도쿄 숙소 추천해줘", "Osaka 숙소 추천해줘"),
    ],
    "comparatives": [
        ("Is Python better than Java for beginners?", "Is Python worse than Java for beginners?"),
        ("Why did sales increase in Q3?", "Why did sales decrease in Q3?"),
        ("What should I eat before a workout?", "What should I eat after a workout?"),
        ("Find the largest element in a list", "Find the smallest element in a list"),
        ("How to upload files to S3", "How to download files from S3"),
        ("Sort the table in ascending order", "Sort the table in descending order"),
        ("물가가 증가한 이유", "물가가 감소한 이유"),
        ("운동 전에 먹으면 좋은 음식", "운동 후에 먹으면 좋은 음식"),
        ("배열에서 최대값 찾기", "배열에서 최소값 찾기"),
        ("더 빠른 정렬 알고리즘", "더 느린 정렬 알고리즘"),
        # Korean opposites said as phrases, standalone 전/후, 초과/미만, and tense.
        ("식사 전 혈당 정상 범위", "식사 후 혈당 정상 범위"),
        ("만 65세 초과 시니어 할인", "만 65세 미만 시니어 할인"),
        ("윈도우에서 폴더를 압축하는 법", "윈도우에서 폴더 압축 해제하는 법"),
        ("우유를 포함한 아침 메뉴", "우유를 빼고 아침 메뉴 짜줘"),
        ("어제 받은 택배 조회", "어제 보낸 택배 조회"),
        ("앱에서 로그인하는 방법", "앱에서 로그아웃하는 방법"),
        ("화면 확대 단축키", "화면 축소 단축키"),
        ("그 가게는 무엇을 팔았어?", "그 가게는 무엇을 팔 거야?"),
        ("이 팀은 어떤 기능을 출시했나요?", "이 팀은 어떤 기능을 출시할 건가요?"),
        # 더/덜, 오르/내리, 이상이면, over/under, and -ㄹ까 as a future.
        ("설탕을 더 넣으면 맛이 어때?", "설탕을 덜 넣으면 맛이 어때?"),
        ("주가가 오른 이유가 뭐야?", "주가가 내린 이유가 뭐야?"),
        (
            "월 소득이 300만원 이상이면 받을 수 있는 혜택",
            "월 소득이 300만원 이하면 받을 수 있는 혜택",
        ),
        ("Laptops that weigh over 2 kg", "Laptops that weigh under 2 kg"),
        ("택배가 오늘 도착했을까?", "택배가 오늘 도착할까?"),
        ("그 회사가 신제품을 공개했나요?", "그 회사가 신제품을 공개할까요?"),
        # Comparison operators outside backticks, and a term one side repeats.
        ("Delete rows where price > 20 in SQL", "Delete rows where price < 20 in SQL"),
        ("Is j <= n the right bound for this loop?", "Is j < n the right bound for this loop?"),
        ("Filter users with role = 'admin'", "Filter users with role != 'admin'"),
        ("Keep the values greater than 5", "Keep the values less than 5"),
        ("Which months are warmer than May in Oslo?", "Which months are colder than May in Oslo?"),
        (
            "Brush teeth before or after breakfast? I brush before.",
            "Brush teeth before or after breakfast? I brush after.",
        ),
        (
            "Exit left or right at the junction? I say left.",
            "Exit left or right at the junction? I say right.",
        ),
        ("성능 좋고 비싼 키보드 추천", "성능 좋고 싼 키보드 추천"),
        ("Foods that are good for the liver", "Foods that are bad for the liver"),
        ("Why are rents rising in Lisbon?", "Why are rents falling in Lisbon?"),
        ("Align the icons vertically in CSS grid", "Align the icons horizontally in CSS grid"),
        ("nginx 서비스 시작하는 명령어", "nginx 서비스 중지하는 명령어"),
        ("MySQL에서 인덱스 생성하는 법", "MySQL에서 인덱스 삭제하는 법"),
        ("환율이 오르면 수출은 어떻게 돼?", "환율이 떨어지면 수출은 어떻게 돼?"),
        # Tense inside a word another pair also reads (받았 received, 올랐 rose).
        ("동생이 내 택배를 받았을까?", "동생이 내 택배를 받을까?"),
        ("비트코인 가격이 올랐을까요?", "비트코인 가격이 오를까요?"),
    ],
    "swapped_roles": [
        ("How do I convert PDF to Word?", "How do I convert Word to PDF?"),
        ("Translate English to Korean", "Translate Korean to English"),
        ("Cheap flights from Seoul to Tokyo", "Cheap flights from Tokyo to Seoul"),
        ("Is Python faster than Java?", "Is Java faster than Python?"),
        ("Why did Google acquire YouTube?", "Why did YouTube acquire Google?"),
        (
            "How do I migrate from MySQL to PostgreSQL?",
            "How do I migrate from PostgreSQL to MySQL?",
        ),
        ("서울에서 부산으로 가는 기차", "부산에서 서울로 가는 기차"),
        ("엑셀을 PDF로 변환하는 방법", "PDF를 엑셀로 변환하는 방법"),
        ("고양이가 강아지를 쫓는 이유", "강아지가 고양이를 쫓는 이유"),
        # A phrase, not one word, trades places around "into" / "onto".
        (
            "How do I merge develop into my release branch?",
            "How do I merge my release branch into develop?",
        ),
        ("Rebase my topic branch onto master", "Rebase master onto my topic branch"),
        ("Shipping costs from the US to Japan", "Shipping costs from Japan to the US"),
        ("한국어보다 영어가 어려운가요?", "영어보다 한국어가 어려운가요?"),
    ],
    "spelling": [
        ("Draw a 🍎", "Draw a 🚗"),
        ("Reply with 👍 if it builds", "Reply with 👎 if it builds"),
        ("Prove that ∀x P(x) holds", "Prove that ∃x P(x) holds"),
        ("Translate pêcheur into English", "Translate pécheur into English"),
        ("¿Cuántos años tienes?", "¿Cuántos añós tienes?"),
        ("Is the WHO behind this?", "Is who behind this?"),
        ("Is the US safe for travel?", "Is it safe for us to travel?"),
        ("How do I get into IT?", "How do I get into it?"),
        ("Price in € please", "Price in £ please"),
        ("ㅇㅇ 그 파일 지워줘", "ㄴㄴ 그 파일 지워줘"),
        ("ㅇㅋ 회의는 3시로 잡아줘", "ㄴㄴ 회의는 3시로 잡아줘"),
    ],
    "mood": [
        ("Delete the branch?", "Delete the branch."),
        ("Merge it now?", "Merge it now!"),
        ("You can restart the server?", "You can restart the server."),
        ("The tests pass?", "The tests pass."),
        ("Push to main?", "push to main!"),
        ("브랜치를 삭제해?", "브랜치를 삭제해."),
        ("서버를 재시작할까?", "서버를 재시작할까."),
        ("It is safe to drop the table？", "It is safe to drop the table。"),
        # No final mark is a statement unless the words ask; Korean -해/-어 endings never do.
        ("Merge the pull request", "Merge the pull request?"),
        ("Rename the config file?", "rename the config file"),
        ("이 커밋 되돌려", "이 커밋 되돌려?"),
        ("회의 취소했어?", "회의 취소했어"),
        ("배포 끝났어요", "배포 끝났어요?"),
        ("What changed? Revert it", "What changed? Revert it?"),
    ],
    "shared_context": [
        (NOTICE + "Summarize this notice.", NOTICE + "Translate this notice into French."),
        (NOTICE + "Write a reply agreeing with it.", NOTICE + "Write a reply objecting to it."),
        (NOTICE + "What moves?", NOTICE + "What stays?"),
        ("Summarize this notice: " + NOTICE, "Criticize this notice: " + NOTICE),
        (NOTICE + "Which room moves to the centre?", NOTICE + "Which room moves from the centre?"),
        (NOTICE_KO + "위 공지를 요약해 줘.", NOTICE_KO + "위 공지를 영어로 번역해 줘."),
        (NOTICE_KO + "한 문장으로 정리해 줘.", NOTICE_KO + "세 문장으로 정리해 줘."),
        (NOTICE_KO + "존댓말로 다시 써 줘.", NOTICE_KO + "반말로 다시 써 줘."),
        (NOTICE + "Reply in English.", NOTICE.replace("six", "eight") + "Reply in English."),
    ],
    "opposites": [
        ("Write a short poem about rain", "Write a long poem about rain"),
        (
            "How long do I boil an egg for a soft yolk?",
            "How long do I boil an egg for a hard yolk?",
        ),
        ("Explain TCP briefly", "Explain TCP in detail"),
        ("When is sunrise in Busan?", "When is sunset in Busan?"),
        ("Sort the list in ascending order", "Sort the list in descending order"),
        ("How do I enable two-factor login?", "How do I disable two-factor login?"),
        ("Write a formal reply to my landlord", "Write an informal reply to my landlord"),
        ("목록을 오름차순으로 정렬해 줘", "목록을 내림차순으로 정렬해 줘"),
        ("이 글을 존댓말로 바꿔 줘", "이 글을 반말로 바꿔 줘"),
        ("저장소를 공개로 바꾸는 방법", "저장소를 비공개로 바꾸는 방법"),
        ("블록체인을 간단하게 설명해 줘", "블록체인을 자세하게 설명해 줘"),
        ("회의록을 간략히 정리해줘", "회의록을 상세히 정리해줘"),
    ],
    "swapped_words": [
        ("How far is 5 miles in kilometers?", "How far is 5 kilometers in miles?"),
        (
            "Best way to learn Rust as a Python developer?",
            "Best way to learn Python as a Rust developer?",
        ),
        ("Convert 3 cups to grams of flour", "Convert 3 grams to cups of flour"),
        ("Is a tomato a fruit for a chef?", "Is a chef a fruit for a tomato?"),
        (
            "Write a letter from a manager to a teacher",
            "Write a letter from a teacher to a manager",
        ),
        ("Explain Kotlin to a Java programmer", "Explain Java to a Kotlin programmer"),
        ("Can a cat eat dog food?", "Can a dog eat cat food?"),
        ("서울 사람이 부산 사투리를 배우는 법", "부산 사람이 서울 사투리를 배우는 법"),
        # Units glued to particles and copulas.
        ("3파운드는 몇 킬로그램이에요?", "3킬로그램은 몇 파운드예요?"),
        ("20 갤런은 몇 리터야", "20 리터는 몇 갤런이야"),
        ("섭씨 30도를 화씨로 바꿔줘", "화씨 30도를 섭씨로 바꿔줘"),
        ("What is 90 km/h in mph?", "What is 90 mph in km/h?"),
        (
            "Why does my laptop charge my phone slowly?",
            "Why does my phone charge my laptop slowly?",
        ),
    ],
    "word_order": [
        (
            "2019년에 김민수가 회장이고 이지은이 부회장이었다",
            "2019년에 이지은이 회장이고 김민수가 부회장이었다",
        ),
        ("그는 런던에서 태어나 파리에서 사망했다", "그는 파리에서 태어나 런던에서 사망했다"),
        ("아버지는 의사이고 어머니는 교사입니다", "아버지는 교사이고 어머니는 의사입니다"),
        ("1층은 카페, 2층은 서점입니다", "1층은 서점, 2층은 카페입니다"),
        (
            "React로 프런트엔드를, Django로 백엔드를 만들었어요",
            "Django로 프런트엔드를, React로 백엔드를 만들었어요",
        ),
        (
            "Python 팀장은 민지이고 Java 팀장은 준호입니다",
            "Python 팀장은 준호이고 Java 팀장은 민지입니다",
        ),
        (
            "첫 경기는 한국이 이겼고 두 번째 경기는 일본이 이겼다",
            "첫 경기는 일본이 이겼고 두 번째 경기는 한국이 이겼다",
        ),
        ("Anna Berg가 편집장이며 Tom Kole가 감독이다", "Tom Kole가 편집장이며 Anna Berg가 감독"),
    ],
}

PASS: dict[str, list[Pair]] = {
    "numbers": [
        ("What is 15% of 200?", "what's 15 percent of 200"),
        ("Convert 1,000 meters to feet", "How many feet are in 1000 meters?"),
        ("How long should I boil five eggs?", "How many minutes do 5 eggs need to boil?"),
        ("Give me the 2nd largest element", "Return the second largest element"),
        ("How does one learn 2 languages at once?", "How can I learn two languages at once?"),
        ("It costs 3 million dollars", "It costs $3,000,000"),
        ("Ｗｈａｔ ｉｓ １５％ ｏｆ ２００？", "What is 15% of 200?"),
        ("사과 3개는 몇 칼로리?", "사과 세 개의 칼로리는?"),
        ("5만 원으로 살 수 있는 선물", "50,000원으로 살 수 있는 선물"),
        ("첫 번째 장을 요약해 주세요", "1번째 장 요약 부탁해요"),
        ("4시 반에 출발하는 버스", "4시반 출발 버스"),
        ("3학년 2반 시간표", "3학년 2반의 시간표 알려줘"),  # "2반" is class 2
        ("피자 2판 반값 쿠폰", "반값 쿠폰으로 피자 2판"),
    ],
    "dates": [
        ("What's the weather in Seoul tomorrow?", "Tomorrow's weather in Seoul?"),
        ("Who won the World Cup in 2018?", "2018 World Cup winner?"),
        ("Plan a trip for March", "I need a plan for a trip in March"),
        ("meetings on monday", "What meetings do I have on Monday?"),
        ("Events on March 5", "What events are there on 5 March?"),
        ("What is the best phone today?", "What is the best phone?"),
        ("May I ask how to bake bread?", "How do I bake bread?"),
        ("내일 서울 날씨 어때?", "서울 내일 날씨는?"),
        ("3월 5일에 열리는 행사", "행사가 3월 5일에 열리나요?"),
        ("주말에 갈 만한 곳", "이번 주말에 가볼 만한 곳"),
    ],
    "amounts": [
        ("Is $5 enough for lunch?", "Is 5 dollars enough for lunch?"),
        ("How should I invest $10,000?", "Ways to invest 10,000 USD"),
        ("It costs 3 million dollars", "It costs $3,000,000"),
        ("Best phone under 300 dollars", "best phone under $300?"),
        ("Did he win the lottery?", "He won the lottery, right?"),
        ("Can I pay in yen at the airport?", "At the airport, can I pay with yen?"),
        ("5달러짜리 선물 추천", "$5짜리 선물 추천해줘"),
        ("5만 원 이하 선물", "₩50,000 이하의 선물"),
    ],
    "negation": [
        ("Why can't I log in?", "Why am I unable to log in?"),
        ("Why doesn't my code compile?", "Why does my code not compile?"),
        ("Do you know what time it is now?", "What time is it now, do you know?"),
        ("Is it safe or not?", "Is it safe?"),
        ("Not only fast but also cheap: which laptop?", "Which laptop is fast and cheap?"),
        ("Nothing works after the update", "After the update, nothing works"),
        ("로그인이 안 돼요", "로그인을 할 수 없어요"),
        ("설탕 없이 만드는 케이크", "설탕이 없는 케이크 레시피"),
        ("안녕하세요, 안드로이드 설정 방법", "안드로이드 설정은 어떻게 하나요?"),
        ("잘못된 입력을 고치는 법", "잘못된 입력 수정 방법"),
        # Words that hold 안 or 못 without negating, and 안 spaced or glued alike.
        ("전 재산을 안전하게 옮기는 법", "재산을 안전하게 옮기는 방법"),
        ("상자에 넣어 보관하는 법", "상자안에 넣어 보관하는 법"),
        ("집 청소 순서", "집안 청소 순서"),
        ("연 날리기 좋은 곳", "연못 근처 연 날리기 좋은 곳"),
        ("이 버튼이 안 돼요", "이 버튼이 안돼요"),
    ],
    "entities": [
        ("What is the capital of France?", "what is france's capital"),
        ("How do I install Python on Windows?", "Installing python on windows: how?"),
        ("How do I use pandas.merge()?", "Usage of pandas.merge() please"),
        ("Explain the user_id field", "What does the user_id field mean?"),
        ("What is pandas.DataFrame?", "What is a pandas DataFrame?"),
        ("It crashes.Then what?", "It crashes. Then what?"),
        ("How to read config.yaml in Python", "In Python, how do I read config.yaml?"),
        ("What Is The Best Way To Learn Java?", "best way to learn java"),
        ("HOW DO I RESET MY PASSWORD", "How do I reset my password?"),
        ("Who is Barack Obama?", "Who is Obama?"),
        ("React에서 useState 사용법", "useState를 React에서 쓰는 법"),
        ("numpy 배열 정렬 방법", "numpy로 배열을 정렬하는 방법"),
        ("파이썬으로 CSV 읽기", "Python으로 CSV 파일 읽는 법"),
        ("자바와 코틀린의 차이", "코틀린이랑 자바 차이점"),
        ("자바섬 여행 코스", "자바섬 여행 일정"),
        ("부산 여행 코스 짜줘", "부산에서 여행할 코스 추천"),
        ("일본어로 번역해 줘: 감사합니다", "감사합니다를 일본어로 번역해 줘"),
        # A place spelled in Hangul on one side and in Latin letters on the other.
        ("엘에이 숙소 가격 어때?", "LA 숙소 가격은 어때?"),
        ("브루클린 맛집 알려줘", "Brooklyn 맛집 알려줘"),
        ("Tax rules for freelancers in the US", "Tax rules for freelancers in the U.S.A."),
    ],
    "comparatives": [
        ("Is Python better than Java?", "Is Python a better choice than Java?"),
        ("What should I eat before a run?", "Before running, what should I eat?"),
        ("Is ice more or less dense than water?", "Why is ice less dense than water?"),
        ("Find the largest number in the list", "Get the biggest number in the list"),
        ("How do I turn on dark mode?", "Turning on dark mode, how?"),
        ("How to increase my credit score", "Ways to increase a credit score fast"),
        ("운동 전에 뭘 먹어야 해?", "운동하기 전에 먹을 음식"),
        ("배열의 최대값 구하기", "배열에서 가장 큰 값(최대값) 찾기"),
        ("압축 해제하는 방법", "압축을 푸는 방법"),
        ("전 세계 인구 순위", "세계 인구 순위 알려줘"),
        ("주말에 할 만한 것", "주말에 할 거리 추천"),
        ("대회에서 우승을 거둔 팀", "대회 우승을 거둔 팀 알려줘"),
        ("그 영화 어땠어?", "그 영화 봤는데 어땠어?"),
        ("내일 뭐 할 거야?", "내일 뭐 할 건지 알려줘"),
        ("이 코드가 왜 안 될까요?", "이 코드 왜 안 될까?"),
        ("몸에 이상이 있으면 병원에 가야 할까?", "몸에 이상이 생기면 병원 가야 할까?"),
        ("오른쪽 버튼을 누르면 어떻게 돼?", "오른쪽 버튼 누르면 뭐가 돼?"),
        ("Is it over?", "Is it over now?"),
        ("Select rows where age > 30", "SQL: select the rows where age > 30"),
        ("Is x >= 0 here?", "Is x greater than or equal to 0 here?"),
        ("Difference between != and !== in JS", "In JS, how does !== differ from !=?"),
        ("Map each item -> its price", "Map every item -> its price"),
        ("Is ice more or less dense than water?", "Is ice more dense or less dense than water?"),
        ("비싼 노트북이 좋을까?", "비싼 노트북이 더 좋을까?"),
    ],
    "swapped_roles": [
        ("How do I convert PDF to Word?", "Converting a PDF file to Word: how?"),
        ("Cheap flights from Seoul to Tokyo", "Cheap flights to Tokyo from Seoul"),
        ("Which is better, Python or Java?", "Java or Python: which is better?"),
        ("Difference between TCP and UDP", "Difference between UDP and TCP"),
        ("Python vs Java for web development", "Java vs Python for web development"),
        ("Is it safe to travel to Egypt?", "Is travel to Egypt safe?"),
        ("서울에서 부산까지 가는 방법", "부산까지 서울에서 가는 방법"),
        ("고양이가 강아지를 쫓는 이유", "강아지를 고양이가 쫓는 이유"),
        ("엑셀을 PDF로 변환하는 방법", "PDF로 엑셀 파일을 변환하려면?"),
        ("How do I merge develop into main?", "Merging develop into main: how?"),
    ],
    "spelling": [
        ("How do I reset my password?", "how do i reset my password"),
        ("What is a good café in Paris?", "Recommend a café in Paris"),
        ("Explain the CAP theorem", "What is the CAP theorem?"),
        ("Rate this idea 👍", "Rate this idea please 👍"),
        ("How hot is 30°C?", "How hot is 30 degrees C?"),
        ("Catch a pokemon", "Catch a Pokémon"),
        ("Is JAVA hard to learn?", "Is Java hard to learn?"),
        ("Is 5 ≤ 7?", "Is 5 ≤ 7 true?"),
        ("HOW DO I EXIT VIM", "How do I exit vim?"),
        ("what is sql injection", "Explain SQL injection"),
        ("파이썬에서 리스트를 정렬하는 방법", "파이썬 리스트 정렬은 어떻게 하나요?"),
        ("Can you help us plan a trip?", "Could you help us plan a trip?"),
        ("ㅇㅋ 그 파일 지워줘", "그 파일 지워줘"),
        ("ㅇㅋ 그 파일 지워줘", "ㅇㅋ 그 파일 지워 줘"),
    ],
    "mood": [
        ("What is a mutex?", "What is a mutex"),
        ("Delete the branch.", "Delete the branch"),
        ("Delete the branch?", "Should I delete the branch?"),
        ("Summarize this article.", "Summarize this article!"),
        ("Is it safe?", "is it safe??"),
        ("오늘 날씨 어때?", "오늘 날씨 어때"),
        ("Explain recursion.", "Explain recursion…"),
        ("Why is the sky blue?", "What makes the sky look blue?"),
        # Questions by their words, with or without "?".
        ("How do I rename a file", "How do I rename a file?"),
        ("Do you know a good pasta recipe?", "do you know a good pasta recipe"),
        ("Rename the file.", "Rename the file"),
        ("이 함수 어떻게 써", "이 함수 어떻게 써?"),
        ("서버를 재부팅해야 하나요?", "서버를 재부팅해야 하나요"),
        ("이 설정이 맞는지", "이 설정이 맞는지?"),
        ("회의실 예약할까", "회의실 예약할까?"),
        (NOTICE + "Which room moves", NOTICE + "Which room moves?"),  # the last sentence asks
    ],
    "shared_context": [
        (NOTICE + "Summarize this notice.", NOTICE + "summarize this notice"),
        (NOTICE + "Summarize it!", "  " + NOTICE + "SUMMARIZE IT"),
        ("How do I learn Python?", "How can I learn Python?"),
        ("Summarize this notice.", "Translate this notice."),  # short: the cosine judges
        (
            "What is the fastest way to get from the airport to the city centre late at night "
            "when the trains have stopped running?",
            "What is the quickest way to get from the airport to the city centre late at "
            "night once the trains have stopped?",
        ),
        (NOTICE_KO + "요약해 줘.", NOTICE_KO + "요약해 줘"),
        ("파이썬 리스트 정렬 방법", "파이썬에서 리스트를 정렬하는 방법"),
        ("Summarize: " + NOTICE, "Give me a short summary of this: The museum opens late."),
    ],
    "opposites": [
        ("Write a short poem about rain", "Write a brief short poem on rain"),
        ("Pros and cons of remote work", "What are the pros and cons of working remotely?"),
        ("How long does it take to fly to Tokyo?", "How long is the flight to Tokyo?"),
        ("Is it hard to learn Go?", "Is Go hard to learn?"),
        ("What is the best way to learn piano?", "Best way to learn the piano?"),
        ("목록을 오름차순으로 정렬해 줘", "목록을 오름차순 정렬하는 방법"),
        ("저장소를 비공개로 바꾸는 방법", "저장소 비공개 전환 방법"),
        ("논문을 간단하게 요약해줘", "논문을 간단히 요약해 줘"),
        ("How do I export a table to CSV?", "Export a table as CSV"),
    ],
    "swapped_words": [
        ("Difference between TCP and UDP", "Difference between UDP and TCP"),
        ("Python vs Java for web apps", "Java vs Python for web apps"),
        ("Cheap flights from Seoul to Tokyo", "Cheap flights to Tokyo from Seoul"),
        ("salt, pepper and garlic in soup", "pepper, salt and garlic in soup"),
        ("Difference between TCP/UDP", "Difference between UDP/TCP"),
        ("How do I learn Rust?", "How can I learn Rust?"),
        ("Is it safe to travel to Egypt?", "Is travel to Egypt safe?"),
        ("사과와 배 중 어느 것이 더 달아?", "배와 사과 중 어느 것이 더 달아?"),
        ("3파운드는 몇 킬로그램이에요?", "3파운드가 몇 킬로그램인가요?"),
        ("커피랑 녹차 중 카페인이 많은 것", "녹차랑 커피 중 카페인이 많은 것"),
        ("What is the capital of France?", "What's the capital of France?"),
    ],
    "word_order": [
        ("커피를 하루에 몇 잔까지 마셔도 괜찮나요?", "하루에 커피 몇 잔까지 마셔도 돼요?"),
        ("주말에 서울에서 할 만한 것", "서울에서 주말에 할 거리 추천"),
        ("부산 해운대 근처 맛집 추천해 줘", "부산 해운대 근처에 있는 맛집 알려줘"),
        ("파이썬에서 리스트를 정렬하는 방법", "파이썬 리스트는 어떻게 정렬하나요?"),
        ("이메일을 정중하게 거절하는 방법", "정중하게 이메일 거절하는 법"),
        ("오늘 서울 날씨 알려줘", "서울 오늘 날씨 알려줘"),
        ("고양이에게 우유를 줘도 되나요?", "고양이한테 우유 줘도 돼요?"),
        ("Cheap flights from Seoul to Tokyo", "Cheap flights to Tokyo from Seoul"),
        ("Difference between TCP and UDP", "Difference between UDP and TCP"),
        # Each word keeps its own particle as it moves: Korean word order is free.
        ("일본어로 '건배'를 어떻게 말해?", "'건배'를 일본어로 어떻게 말해?"),
        ("회의실에서 팀장에게 보고서를 냈어", "보고서를 회의실에서 팀장에게 냈어"),
    ],
}

# Realistic prompt pairs that mean the same thing; every guard must let (nearly) all through.
PARAPHRASES: list[Pair] = [
    ("How do I reset my password?", "What's the way to reset my password?"),
    ("What is the capital of Australia?", "Tell me the capital city of Australia."),
    ("How can I make my website load faster?", "Ways to speed up my website's loading time?"),
    ("Explain recursion with a simple example", "Can you give a simple example of recursion?"),
    ("What are the benefits of drinking green tea?", "Green tea: what are its benefits?"),
    ("How do I center a div in CSS?", "CSS: how to center a div"),
    ("Write a haiku about autumn", "Compose a haiku on the topic of autumn"),
    (
        "What's the difference between a list and a tuple in Python?",
        "In Python, how does a tuple differ from a list?",
    ),
    ("How many calories are in a banana?", "Banana calorie count?"),
    ("Recommend a good book on machine learning", "What is a good machine learning book?"),
    (
        "How to fix permission denied when running a script?",
        "Running a script gives permission denied, how do I fix it?",
    ),
    ("Summarize the plot of Hamlet", "Give me a summary of Hamlet's plot"),
    ("What time zone is New York in?", "Which time zone does New York use?"),
    ("How do I undo the last git commit?", "Undo the last commit in git?"),
    ("Why is the sky blue?", "What makes the sky look blue?"),
    (
        "How to cook rice in a pot without a rice cooker",
        "Cooking rice in a pot when you don't have a rice cooker",
    ),
    ("I can't connect to Wi-Fi on my laptop", "My laptop won't connect to Wi-Fi"),
    ("What are some tips for a job interview?", "Give me tips for job interviews"),
    ("How do I convert a string to an integer in Java?", "Java: turning a string into an integer"),
    (
        "What's a healthy breakfast I can make in 10 minutes?",
        "Healthy breakfast ideas that take 10 minutes to make",
    ),
    (
        "How do I remove duplicates from a list in Python?",
        "Python: removing duplicate items from a list",
    ),
    ("Is it safe to eat raw eggs?", "Can you safely eat eggs raw?"),
    ("파이썬에서 리스트를 정렬하는 방법", "파이썬 리스트 정렬은 어떻게 하나요?"),
    ("서울에서 가볼 만한 곳 추천해줘", "서울 여행지 추천 부탁해요"),
    ("비밀번호를 잊어버렸어요. 어떻게 재설정하나요?", "비밀번호 재설정 방법을 알려주세요"),
    ("엑셀에서 중복 값을 제거하는 방법", "엑셀 중복값 제거 어떻게 해요?"),
    ("김치찌개 맛있게 끓이는 법", "김치찌개를 맛있게 만드는 방법은?"),
    ("영어 회화 실력을 늘리는 방법", "영어 회화를 잘하려면 어떻게 해야 하나요?"),
    ("잠이 안 올 때 어떻게 해야 하나요?", "잠이 오지 않을 때 해결 방법"),
    ("자바스크립트에서 배열을 복사하는 방법", "자바스크립트 배열 복사는 어떻게 하나요?"),
    ("다이어트에 좋은 음식 추천", "살 빼는 데 도움이 되는 음식 추천해 주세요"),
    ("리액트에서 상태 관리하는 방법", "React 상태 관리는 어떻게 해요?"),
    ("주말에 서울에서 할 만한 것", "서울에서 주말에 할 거리 추천"),
    ("노트북이 너무 느려요. 빠르게 하는 방법이 있을까요?", "느린 노트북을 빠르게 만드는 방법"),
    ("오늘 날씨 어때?", "오늘 날씨 알려줘"),
    ("이메일을 정중하게 거절하는 방법", "정중하게 거절하는 이메일 쓰는 법"),
    ("3일 동안 제주도 여행 일정 짜줘", "제주도 3일 여행 일정을 만들어 주세요"),
    ("How do I split a string by comma in Python?", "Python: split string on commas?"),
]


def _cases(table: dict[str, list[Pair]]) -> list[tuple[str, str, str]]:
    return [(name, a, b) for name, pairs in table.items() for a, b in pairs]


def test_every_guard_has_enough_cases() -> None:
    assert set(REFUSE) == set(PASS) == set(GUARDS)
    for name in GUARDS:
        assert len(REFUSE[name]) >= 8, name
        assert len(PASS[name]) >= 8, name
    assert len(PARAPHRASES) >= 30


@pytest.mark.parametrize(("name", "cached", "new"), _cases(REFUSE))
def test_guard_refuses_false_hit(name: str, cached: str, new: str) -> None:
    verdict = GUARDS[name](cached, new)
    assert not verdict.passed, (cached, new)
    assert verdict.guard == name
    assert verdict.reason and verdict.reason != "ok"
    # The refusal does not depend on which side was cached.
    assert not GUARDS[name](new, cached).passed


@pytest.mark.parametrize(("name", "cached", "new"), _cases(PASS))
def test_guard_passes_paraphrase(name: str, cached: str, new: str) -> None:
    verdict = GUARDS[name](cached, new)
    assert verdict.passed, verdict.reason
    assert GUARDS[name](new, cached).passed


@pytest.mark.parametrize(("name", "cached", "new"), _cases(PASS))
def test_case_punctuation_and_spacing_do_not_matter(name: str, cached: str, new: str) -> None:
    shouted = "  " + new.upper().replace(" ", "   ") + "!!"
    assert GUARDS[name](cached, new.lower().rstrip("?.!")).passed
    # ALL-CAPS text turns off the capital-letter rules, and "!!" is a mood, by design.
    if name not in ("entities", "mood"):
        assert GUARDS[name](cached, shouted).passed


# Paraphrases the word-order guard refuses, by design (see its docstring): a phrase moved
# over more than one word. Listed so that the cost stays visible; docs/benchmarks.md measures it.
WORD_ORDER_COSTS: list[Pair] = [
    ("3일 동안 제주도 여행 일정 짜줘", "제주도 3일 여행 일정을 만들어 주세요"),
    ("이 약은 임산부가 먹어도 되나요?", "임산부가 이 약을 복용해도 괜찮나요?"),
    ("부산 해운대 근처 맛집 추천해 줘", "해운대 근처 부산 맛집 알려줘"),
]


@pytest.mark.parametrize(("cached", "new"), WORD_ORDER_COSTS)
def test_word_order_refuses_a_phrase_moved_over_two_words(cached: str, new: str) -> None:
    assert not GUARDS["word_order"](cached, new).passed


def test_combined_paraphrases_pass_all_guards() -> None:
    failures = [
        (a, b, verdict.reason)
        for a, b in PARAPHRASES
        if not (verdict := check_all(a, b, GUARDS)).passed
    ]
    rate = 1 - len(failures) / len(PARAPHRASES)
    print(f"\nparaphrase pass rate with all guards: {rate:.1%} of {len(PARAPHRASES)}")
    for failure in failures:
        print("  refused:", failure)
    assert rate >= 0.9, failures


def test_reasons_name_the_difference() -> None:
    assert GUARDS["numbers"]("What is 15% of 200?", "What is 25% of 200?").reason == (
        "numbers differ: {15%} vs {25%}"
    )
    assert GUARDS["numbers"]("the 2nd item", "the 3rd item").reason == (
        "numbers differ: {2nd} vs {3rd}"
    )
    assert GUARDS["dates"]("in 2024", "in 2025").reason == "dates differ: {2024} vs {2025}"
    assert GUARDS["dates"]("내일 날씨", "tomorrow's weather").passed
    assert GUARDS["amounts"]("$5 gift", "€5 gift").reason == "currencies differ: {USD} vs {EUR}"
    assert GUARDS["amounts"]("$5 gift", "$7 gift").reason == "amounts differ: {USD 5} vs {USD 7}"
    assert GUARDS["entities"]("visit Paris", "visit London").reason == (
        "entities differ: {paris} vs {london}"
    )
    assert "'better' vs 'worse'" in GUARDS["comparatives"]("a better one", "a worse one").reason
    assert "negation differs: 1 vs 0" in GUARDS["negation"]("I can't go", "I can go").reason


def test_normalize_folds_width_quotes_and_spaces() -> None:
    assert normalize("  Ｐｙｔｈｏｎ’s   １０％\n") == "Python's 10%"


def test_check_all_reports_first_refusal_and_rejects_unknown_names() -> None:
    verdict = check_all("Is $5 enough in Paris?", "Is $6 enough in London?", GUARDS)
    assert not verdict.passed and verdict.guard == "numbers"
    only_entities = check_all("Is $5 enough in Paris?", "Is $6 enough in London?", ["entities"])
    assert only_entities.guard == "entities" and not only_entities.passed
    assert check_all("Is $5 enough in Paris?", "Is $6 enough in London?", []).passed
    with pytest.raises(KeyError, match="nonsense"):
        check_all("a", "b", ["numbers", "nonsense"])


def test_registry_and_verdict_are_immutable() -> None:
    with pytest.raises(TypeError):
        GUARDS["numbers"] = GUARDS["dates"]  # type: ignore[index]
    verdict = GuardVerdict(True, "numbers", "ok")
    with pytest.raises(dataclasses.FrozenInstanceError):
        verdict.passed = False  # type: ignore[misc]


def test_long_prompts_give_one_line_reasons() -> None:
    words = [w for pair in PARAPHRASES + REFUSE["numbers"] for text in pair for w in text.split()]
    cached = " ".join(words[i % len(words)] for i in range(12_000))
    new = " ".join(words[(i * 7) % len(words)] for i in range(12_000))
    assert len(cached) > 50_000
    for name, guard in GUARDS.items():
        verdict = guard(cached, new)
        assert len(verdict.reason) < 400, name  # reasons stay one readable line


# Words that exercise every guard, so that generated texts hit the rules and not only noise.
VOCAB = [
    "15%",
    "1,000",
    "two",
    "3rd",
    "first",
    "세",
    "개",
    "두 번째",
    "3천",
    "만",
    "원",
    "$5",
    "€",
    "5달러",
    "2024",
    "March",
    "Monday",
    "tomorrow",
    "내일",
    "월요일",
    "1월",
    "not",
    "never",
    "can't",
    "안",
    "않",
    "없이",
    "아니",
    "Paris",
    "London",
    "user_id",
    "config.yaml",
    "`x`",
    "Python 3.11",
    "API",
    "better",
    "worse",
    "증가",
    "감소",
    "before",
    "after",
    "convert",
    "to",
    "from",
    "than",
    "서울에서",
    "부산으로",
    "고양이가",
    "강아지를",
    "the",
    "is",
    "how",
    "?",
    ",",
]
texts = st.one_of(
    st.text(max_size=60),
    st.lists(st.sampled_from(VOCAB), max_size=12).map(" ".join),
)
guard_sets = st.sets(st.sampled_from(sorted(GUARDS)))


@settings(max_examples=150, deadline=None)
@given(text=texts)
def test_every_guard_passes_identical_texts(text: str) -> None:
    for name, guard in GUARDS.items():
        verdict = guard(text, text)
        assert verdict.passed, (name, text, verdict.reason)


@settings(max_examples=150, deadline=None)
@given(cached=texts, new=texts, subset=guard_sets, extra=guard_sets)
def test_more_guards_never_pass_what_fewer_refused(
    cached: str, new: str, subset: set[str], extra: set[str]
) -> None:
    if not check_all(cached, new, subset).passed:
        assert not check_all(cached, new, subset | extra).passed


@settings(max_examples=100, deadline=None)
@given(cached=texts, new=texts)
# word_order once let two shared words through as "neighbours" when they were neighbours in
# one prompt only (another word sat between them in the other).
@example(cached="가00000", new="00000:0가")
def test_guards_are_symmetric(cached: str, new: str) -> None:
    for name, guard in GUARDS.items():
        assert guard(cached, new).passed == guard(new, cached).passed, name
