"""The search headline: ``ts_headline`` output split into plain-text parts, no marker left."""

from messaging.search import START_SEL, STOP_SEL, headline_parts


def parts(text: str) -> list[tuple[str, bool]]:
    return [(p.text, p.match) for p in headline_parts(text)]


def test_matched_words_are_flagged() -> None:
    text = f"my {START_SEL}card{STOP_SEL} was {START_SEL}declined{STOP_SEL}"
    assert parts(text) == [("my ", False), ("card", True), (" was ", False), ("declined", True)]


def test_no_match_is_one_plain_part() -> None:
    assert parts("where is my card?") == [("where is my card?", False)]
    assert parts("") == []


def test_html_stays_text() -> None:
    text = f"<b>{START_SEL}card{STOP_SEL}</b> <script>x</script>"
    assert parts(text) == [("<b>", False), ("card", True), ("</b> <script>x</script>", False)]


def test_stray_markers_never_reach_the_page() -> None:
    text = f"a{STOP_SEL}b {START_SEL}c{START_SEL}d{STOP_SEL} {START_SEL}open"
    joined = "".join(t for t, _ in parts(text))
    assert START_SEL not in joined and STOP_SEL not in joined
    assert joined == "ab cd open"
