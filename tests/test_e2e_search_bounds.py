"""Search is bounded: with many conversations in PostgreSQL, a query that matches everything
(``-x``) or too much to rank in time is refused with a 4xx and its reason, within the
statement timeout, and every connection goes back to messaging's pool.

The stack is this module's own (one instance each, Redis) so that its statement timeout
(``SEARCH_STATEMENT_TIMEOUT_MS``) and pool size (``DB_POOL_MAX_SIZE``) are small enough to
meet with a few tens of thousands of rows.
"""

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from devstack.fixtures import Database, InboxClient, start_stack, wait_for

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
        db.execute(
            "INSERT INTO conversations (conversation_id, customer_id, subject, message_count,"
            " version) SELECT md5('c' || n)::uuid, 'cust-bulk', NULL, 1, 1"
            " FROM generate_series(1, %(rows)s) n",
            {"rows": ROWS},
        )
        db.execute(
            "INSERT INTO messages (message_id, conversation_id, seq, author_role, author_id,"
            " body, submitted_at) SELECT md5('m' || n)::uuid, md5('c' || n)::uuid, 1,"
            " 'customer', 'cust-bulk', 'my ' || %(word)s || ' card number ' || n ||"
            " ' was charged twice at the shop, please refund the duplicate payment', now()"
            " FROM generate_series(1, %(rows)s) n",
            {"rows": ROWS, "word": WORD},
        )
        db.execute("ANALYZE")
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
