"""Search and per-operator unread marks on the whole stack.

Search: ``GET /api/v1/conversations/search`` publishes ``search.requested``, messaging runs
PostgreSQL full-text search and writes the answer to the state store, where the gateway waits
for it. Unread: ``POST /api/v1/conversations/{id}/seen`` keeps the operator's seen versions in
the state store, so a mark made through one gateway replica (or browser) shows on the other.
"""

import re
import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx2 as httpx
import pytest
from devstack.browser import log_in, open_conversation
from devstack.client import E2E_TIMEOUT_S, wait_for
from playwright.sync_api import Page, expect

pytestmark = [pytest.mark.e2e, pytest.mark.one_broker]

TIMEOUT_MS = E2E_TIMEOUT_S * 1000
UNREAD = re.compile(r"\bunread\b")


def call(client: httpx.Client, method: str, path: str, **kwargs: object) -> httpx.Response:
    """One request; over the operator's rate limit (20/s, shared with the polling helpers)
    it waits ``Retry-After`` and tries again, as a well-behaved client does."""
    for _ in range(5):
        response = client.request(method, path, **kwargs)
        if response.status_code != 429:
            return response
        time.sleep(float(response.headers.get("Retry-After", "1")))
    return response


def word() -> str:
    """A made-up word no other test writes, so a search finds only this test's messages."""
    return "zq" + uuid.uuid4().hex[:8]


def conversation(inbox, conversation_id: str) -> dict | None:
    """The conversation read model through the API (``None`` until stored), patient with
    the rate limit, unlike ``inbox.conversation``."""
    response = call(
        inbox.http, "GET", f"/api/v1/conversations/{conversation_id}", headers=inbox.auth
    )
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return response.json()


def stored(inbox, body: str, **fields: object) -> dict:
    accepted = inbox.send_customer(body, **fields)
    wait_for(lambda: conversation(inbox, accepted["conversation_id"]), what="conversation stored")
    return accepted


def settled(inbox, body: str, **fields: object) -> dict:
    """A stored conversation whose insight is done, so its version stays put (an insight
    landing later would move it past a seen mark)."""
    accepted = stored(inbox, body, **fields)

    def insight_done() -> bool:
        messages = conversation(inbox, accepted["conversation_id"])["messages"]
        insight = messages[0].get("insight") or {}
        return insight.get("status") not in (None, "processing")

    wait_for(insight_done, what="the insight")
    return accepted


def search(client: httpx.Client, headers: dict, **params: object) -> httpx.Response:
    return call(client, "GET", "/api/v1/conversations/search", params=params, headers=headers)


@pytest.fixture(scope="module")
def replica_b(stack) -> httpx.Client:
    """The second gateway replica, for the same operator's token."""
    with httpx.Client(base_url=stack.services["gateway-2"].url, timeout=15) as client:
        yield client


def row(client: httpx.Client, headers: dict, conversation_id: str) -> dict:
    """The conversation's row in the inbox list (newest first), once it is there."""

    def find() -> dict | None:
        page = call(client, "GET", "/api/v1/conversations", params={"limit": 200}, headers=headers)
        items = page.json()["items"]
        return next((i for i in items if i["conversation_id"] == conversation_id), None)

    return wait_for(find, what=f"{conversation_id} in the inbox list")


# ---------------------------------------------------------------------------- search


def test_search_finds_a_conversation_by_a_word_of_a_customer_message(inbox) -> None:
    secret = word()
    accepted = stored(inbox, f"My card shows a payment to {secret} that I never made.")
    stored(inbox, "An unrelated question about exchange rates.")
    response = search(inbox.http, inbox.auth, q=f"  {secret}  ")
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["query"] == secret
    assert [i["conversation_id"] for i in page["items"]] == [accepted["conversation_id"]]
    hit = page["items"][0]
    assert hit["customer_id"] == "cust-test" and hit["unread"] is True
    assert [p["text"] for p in hit["headline"] if p["match"]] == [secret]
    assert page["took_ms"] >= page["search_ms"] > 0

    # English stemming and more words: "payments" finds "payment"
    both = search(inbox.http, inbox.auth, q=f"payments {secret}").json()
    assert [i["conversation_id"] for i in both["items"]] == [accepted["conversation_id"]]
    assert search(inbox.http, inbox.auth, q=word()).json()["items"] == []


def test_search_latency(inbox) -> None:
    """Wall time of the route (publish, messaging's query, the poll of the state store) as a
    client sees it; printed for the README."""
    secret = word()
    for n in range(5):
        stored(inbox, f"Question {n} about the {secret} transfer fee.")
    samples, in_db = [], []
    for _ in range(30):
        time.sleep(0.1)  # 10 requests a second, well under the operator's rate limit
        started = time.perf_counter()
        response = search(inbox.http, inbox.auth, q=f"{secret} fee")
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200 and len(response.json()["items"]) == 5
        in_db.append(response.json()["search_ms"])
    samples.sort()
    print(
        f"\nsearch latency, 5 hits, 30 requests (ms): p50 {statistics.median(samples):.1f}, "
        f"p95 {samples[28]:.1f}, max {samples[-1]:.1f}; "
        f"in PostgreSQL p50 {statistics.median(in_db):.1f}"
    )
    assert statistics.median(samples) < 1000


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"q": ""}, "q: give 1 to 200 characters"),
        ({"q": "   "}, "q: give 1 to 200 characters"),
        ({"q": "x" * 201}, "q: give 1 to 200 characters"),
        ({"q": "card\x00"}, "control characters"),
        ({}, "q"),
        ({"q": "card", "limit": 0}, "limit"),
        ({"q": "card", "limit": 51}, "limit"),
    ],
)
def test_bad_searches_are_refused(inbox, params, says) -> None:
    response = search(inbox.http, inbox.auth, **params)
    assert response.status_code == 422, response.text
    assert says in response.json()["detail"]


def test_search_needs_a_token(inbox) -> None:
    assert search(inbox.http, {}, q="card").status_code == 401
    bad = {"Authorization": "Bearer not-a-token"}
    assert search(inbox.http, bad, q="card").status_code == 401


# ---------------------------------------------------------------------------- unread


def test_seen_on_one_replica_is_read_on_the_other(inbox, replica_b) -> None:
    accepted = settled(inbox, "Has my transfer to the landlord gone through?")
    conversation_id = accepted["conversation_id"]
    assert row(inbox.http, inbox.auth, conversation_id)["unread"] is True
    assert row(replica_b, inbox.auth, conversation_id)["unread"] is True

    version = conversation(inbox, conversation_id)["version"]
    seen = call(
        inbox.http,
        "POST",
        f"/api/v1/conversations/{conversation_id}/seen",
        json={"version": version},
        headers=inbox.auth,
    )
    assert seen.status_code == 204, seen.text
    on_b = row(replica_b, inbox.auth, conversation_id)
    assert (on_b["unread"], on_b["seen_version"]) == (False, version)

    # a lower version changes nothing; new activity makes it unread again, on both
    older = call(
        replica_b,
        "POST",
        f"/api/v1/conversations/{conversation_id}/seen",
        json={"version": 1},
        headers=inbox.auth,
    )
    assert older.status_code == 204
    assert row(inbox.http, inbox.auth, conversation_id)["seen_version"] == version
    inbox.send_customer("Any news?", conversation_id=conversation_id)
    wait_for(
        lambda: row(replica_b, inbox.auth, conversation_id)["unread"],
        what="unread again after a new message",
    )


def test_the_unread_count_covers_the_whole_inbox(inbox, replica_b) -> None:
    stored(inbox, "Why was I charged a fee for a top-up?")

    def consistent() -> bool:
        first = call(
            replica_b, "GET", "/api/v1/conversations", params={"limit": 200}, headers=inbox.auth
        )
        page = first.json()
        flags = [i["unread"] for i in page["items"]]
        offset = 200
        while offset < page["total"]:
            more = call(
                replica_b,
                "GET",
                "/api/v1/conversations",
                params={"limit": 200, "offset": offset},
                headers=inbox.auth,
            ).json()
            flags += [i["unread"] for i in more["items"]]
            offset += 200
        return page["unread_count"] == sum(flags) and page["unread_count"] >= 1

    wait_for(consistent, what="unread_count equal to the unread rows")


def test_marks_from_both_replicas_at_once_are_all_kept(inbox, replica_b) -> None:
    conversations = [settled(inbox, f"Parallel question {n}")["conversation_id"] for n in range(6)]
    versions = {c: conversation(inbox, c)["version"] for c in conversations}

    def mark(pair: tuple[int, str]) -> int:
        index, conversation_id = pair
        client = inbox.http if index % 2 else replica_b
        response = call(
            client,
            "POST",
            f"/api/v1/conversations/{conversation_id}/seen",
            json={"version": versions[conversation_id]},
            headers=inbox.auth,
        )
        return response.status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        assert list(pool.map(mark, enumerate(conversations))) == [204] * 6
    page = call(
        inbox.http, "GET", "/api/v1/conversations", params={"limit": 200}, headers=inbox.auth
    )
    seen = {i["conversation_id"]: i["seen_version"] for i in page.json()["items"]}
    assert all(seen[c] >= versions[c] for c in conversations), seen


def test_bad_seen_marks_are_refused(inbox) -> None:
    accepted = stored(inbox, "Where is my new PIN?")
    conversation_id = accepted["conversation_id"]
    version = conversation(inbox, conversation_id)["version"]

    def post(cid: str, body: object, headers: dict | None = None) -> httpx.Response:
        return call(
            inbox.http,
            "POST",
            f"/api/v1/conversations/{cid}/seen",
            json=body,
            headers=inbox.auth if headers is None else headers,
        )

    ahead = post(conversation_id, {"version": version + 100})
    assert ahead.status_code == 422 and "newer than the conversation's" in ahead.json()["detail"]
    assert post(conversation_id, {"version": 0}).status_code == 422
    assert post(conversation_id, {}).status_code == 422
    assert post(conversation_id, {"version": 1, "extra": 1}).status_code == 422
    assert post(str(uuid.uuid4()), {"version": 1}).status_code == 404
    assert post(conversation_id, {"version": 1}, headers={}).status_code == 401


# ---------------------------------------------------------------------------- browser


def test_the_search_box(page: Page, stack, inbox, output_dir) -> None:
    secret = word()
    first = stored(inbox, f"The {secret} app keeps logging me out.")
    second = stored(inbox, f"Can I pay {secret} invoices by card?")
    log_in(page, stack)
    search_input = page.locator("#search-input")
    summary = page.locator("#search-summary")
    results = page.locator("#search-results .conv-item")

    search_input.fill(secret)  # typing pauses: the debounce searches
    expect(summary).to_have_text(f"2 results for “{secret}”", timeout=TIMEOUT_MS)
    expect(page.locator("#conversation-list")).to_be_hidden()
    expect(results).to_have_count(2)
    ids = {first["conversation_id"], second["conversation_id"]}
    assert set(results.evaluate_all("els => els.map(e => e.dataset.conversationId)")) == ids
    expect(results.first.locator("mark.conv-match")).to_have_text(secret)
    page.screenshot(path=output_dir / "test_the_search_box_results.png")

    search_input.fill(f"{secret} invoices")
    search_input.press("Enter")
    expect(summary).to_have_text(f"1 result for “{secret} invoices”", timeout=TIMEOUT_MS)
    result = page.locator(
        f'#search-results .conv-item[data-conversation-id="{second["conversation_id"]}"]'
    )
    result.click()
    expect(page.locator("#view-content")).to_be_visible()
    expect(page.locator("#messages")).to_contain_text(f"Can I pay {secret} invoices by card?")
    expect(result).to_have_attribute("aria-selected", "true")

    # markup in a query or a message stays text
    search_input.fill("<img src=x onerror=alert(1)>")
    search_input.press("Enter")
    expect(summary).to_contain_text("for “<img src=x onerror=alert(1)>”", timeout=TIMEOUT_MS)
    expect(page.locator("#search-status img")).to_have_count(0)

    search_input.press("Escape")
    expect(search_input).to_have_value("")
    expect(page.locator("#search-status")).to_be_hidden()
    expect(page.locator("#conversation-list")).to_be_visible()

    search_input.fill(secret)
    expect(summary).to_have_text(f"2 results for “{secret}”", timeout=TIMEOUT_MS)
    page.click("#search-clear")
    expect(page.locator("#search-results")).to_be_hidden()
    expect(page.locator("#conversation-list")).to_be_visible()


def unread_count(inbox) -> int:
    return call(inbox.http, "GET", "/api/v1/conversations", headers=inbox.auth).json()[
        "unread_count"
    ]


def title_count(page: Page) -> int:
    title = page.title()
    return int(title[1 : title.index(")")]) if title.startswith("(") else 0


def test_unread_marks_follow_the_operator_to_another_browser(
    page: Page, browser, stack, inbox, output_dir
) -> None:
    log_in(page, stack)
    expect(page.locator("#live-status")).to_have_attribute("data-mode", "websocket")
    accepted = settled(inbox, "My virtual card does not show in the app.")
    conversation_id = accepted["conversation_id"]
    item = page.locator(f'.conv-item[data-conversation-id="{conversation_id}"]')
    expect(item).to_have_class(UNREAD, timeout=TIMEOUT_MS)
    # the title shows the server's count over the whole inbox (once the stack is quiet)
    wait_for(lambda: title_count(page) == unread_count(inbox) > 0, what="title = unread_count")

    open_conversation(page, conversation_id)
    expect(item).not_to_have_class(UNREAD)
    # the page's mark reached the server: the API, for the same operator, agrees
    wait_for(
        lambda: row(inbox.http, inbox.auth, conversation_id)["unread"] is False,
        what="seen on the server",
    )

    # another browser (no shared storage) on the other gateway replica
    other = browser.new_context(
        base_url=stack.services["gateway-2"].url, viewport={"width": 1360, "height": 860}
    )
    try:
        second = other.new_page()
        second.set_default_timeout(TIMEOUT_MS)
        log_in(second, stack)
        elsewhere = second.locator(f'.conv-item[data-conversation-id="{conversation_id}"]')
        expect(elsewhere).to_be_visible()
        expect(elsewhere).not_to_have_class(UNREAD)
        wait_for(
            lambda: title_count(second) == unread_count(inbox), what="second title = unread_count"
        )
        second.screenshot(path=output_dir / "test_unread_second_browser.png")
    finally:
        other.close()
