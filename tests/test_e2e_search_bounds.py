"""A large inbox. Search is bounded: with many conversations in PostgreSQL, a query that
matches everything (``-x``) or too much to rank in time is refused with a 4xx and its reason,
within the statement timeout, and every connection goes back to messaging's pool. The inbox
pages through all of them, past the newest ``INBOX_MAX_ITEMS`` its list read model holds, and
counts the unread ones among all of them.

The stack is this module's own (one instance each, Redis) so that its statement timeout
(``SEARCH_STATEMENT_TIMEOUT_MS``) and pool size (``DB_POOL_MAX_SIZE``) are small enough to
meet with a few tens of thousands of rows.
"""

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from devstack.client import Database, InboxClient, wait_for
from devstack.fixtures import start_stack
from devstack.large_inbox import get_page, inbox_order, page_latencies, rebuilt_with, seed
from inbox_common.events import INBOX_MAX_ITEMS

pytestmark = pytest.mark.e2e

TIMEOUT_MS = 200
POOL = 3
ROWS = 150_000
WORD = "quokkafrass"
"""In every inserted message, so a search for it matches all of them."""


@pytest.fixture(scope="module")
def bounded(output_dir, fake_ollama):
    stack = start_stack(
        output_dir,
        "e2e-search-bounds",
        fake_ollama,
        env={"SEARCH_STATEMENT_TIMEOUT_MS": str(TIMEOUT_MS), "DB_POOL_MAX_SIZE": str(POOL)},
    )
    db = Database(stack.postgres.url)
    client = None
    try:
        # Many conversations, written straight into the system of record (not through the
        # pipeline: that would take minutes), one customer message each.
        seed(stack.postgres.url, ROWS, WORD)
        client = InboxClient(stack)
        yield client, db
    finally:
        if client:
            client.http.close()
        db.close()
        stack.stop()


def search(client: InboxClient, q: str):
    started = time.monotonic()
    response = client.http.get(
        "/api/v1/conversations/search", params={"q": q}, headers=client.auth
    )
    return response, time.monotonic() - started


def searches_in_flight(db: Database) -> list[str]:
    return [
        row[0]
        for row in db.execute(
            "SELECT query FROM pg_stat_activity WHERE state = 'active'"
            " AND query LIKE '%%websearch_to_tsquery%%' AND pid <> pg_backend_pid()"
        ).fetchall()
    ]


def test_a_query_of_excluded_words_only_is_refused_without_a_scan(bounded) -> None:
    client, db = bounded
    for q in ("-x", f"-{WORD}", "-card -refund", f"{WORD} or -card"):
        response, took_s = search(client, q)
        assert response.status_code == 422, (q, response.text[:300])
        assert "excluded" in response.json()["detail"], response.text
        assert took_s < 3, (q, took_s)
    assert searches_in_flight(db) == []


def test_a_query_matching_too_much_is_cut_at_the_statement_timeout(bounded) -> None:
    client, db = bounded
    response, took_s = search(client, f"{WORD} card")
    assert response.status_code == 422, response.text[:300]
    detail = response.json()["detail"]
    assert f"{TIMEOUT_MS} ms" in detail and "narrow" in detail, detail
    assert took_s < 4, took_s  # the gateway's own wait is 5 s
    assert searches_in_flight(db) == []


def test_refused_searches_give_their_connections_back(bounded) -> None:
    """Three times as many refused searches as the pool has connections, at once, then a
    narrow one: it still answers, so none of them kept a connection."""
    client, db = bounded
    queries = [f"{WORD} refund", "-x"] * (POOL * 3 // 2 + 1)
    with ThreadPoolExecutor(len(queries)) as pool:
        answers = list(pool.map(lambda q: search(client, q)[0], queries))
    assert {a.status_code for a in answers} == {422}, [a.text[:200] for a in answers]

    marker = f"narrow{uuid.uuid4().hex[:10]}"
    db.execute(
        "UPDATE messages SET body = body || ' ' || %(marker)s"
        " WHERE message_id = md5('m' || 7)::uuid",
        {"marker": marker},
    )
    response, _ = search(client, f"{WORD} {marker}")
    assert response.status_code == 200, response.text
    assert [i["conversation_id"] for i in response.json()["items"]] == [
        str(uuid.UUID(db.execute("SELECT md5('c' || 7)::uuid").fetchone()[0].hex))
    ]
    wait_for(lambda: searches_in_flight(db) == [], 5, "no search left running")
    idle = db.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = 'inbox'"
        " AND state = 'idle in transaction'"
    ).fetchone()[0]
    assert idle == 0


def test_the_inbox_pages_through_every_conversation(bounded) -> None:
    client, db = bounded
    total = db.execute("SELECT count(*) FROM conversations WHERE message_count > 0").fetchone()[0]
    rebuilt_with(client, total + 1)
    total += 1
    # inside the list read model, across its end, deep in PostgreSQL, and the last page
    for offset, limit in ((0, 50), (INBOX_MAX_ITEMS - 20, 50), (75_000, 200), (total - 7, 50)):
        page = get_page(client, offset, limit)
        assert page["total"] == total
        assert [i["conversation_id"] for i in page["items"]] == inbox_order(db.url, offset, limit)
    # the benchmark's own timing (make bench-inbox), run small
    timings = page_latencies(client, [0, 75_000], 50, 3)
    assert all(0 < t["p50"] <= t["max"] for t in timings.values()), timings
    assert len(get_page(client, total - 7)["items"]) == 7
    assert get_page(client, total)["items"] == []
    refused = client.http.get(
        "/api/v1/conversations", params={"offset": 1_000_001}, headers=client.auth
    )
    assert refused.status_code == 422, refused.text[:300]


def test_the_unread_count_covers_conversations_older_than_the_list(bounded) -> None:
    client, db = bounded
    sent = client.send_customer(f"my card is blocked {uuid.uuid4().hex[:8]}")
    conversation_id = sent["conversation_id"]
    stored = wait_for(lambda: client.conversation(conversation_id), what="the conversation")
    marked = client.http.post(
        f"/api/v1/conversations/{conversation_id}/seen",
        json={"version": stored["version"]},
        headers=client.auth,
    )
    assert marked.status_code == 204, marked.text
    # the conversation seen falls behind the whole inbox, out of the list read model
    db.execute(
        "UPDATE conversations SET last_activity_at = '2001-01-01T00:00:00Z'"
        " WHERE conversation_id = %s",
        (conversation_id,),
    )
    total = db.execute("SELECT count(*) FROM conversations WHERE message_count > 0").fetchone()[0]
    rebuilt_with(client, total + 1)
    total += 1
    last = get_page(client, total - 1)
    assert [(i["conversation_id"], i["unread"]) for i in last["items"]] == [
        (conversation_id, False)
    ]
    # nothing else was ever seen by this operator
    assert last["unread_count"] == total - 1
