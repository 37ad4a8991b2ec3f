"""A large inbox for tests and benchmarks: conversations written straight into PostgreSQL
(through the pipeline that would take minutes), the inbox's own order read back from it, and
pages of the inbox read and timed through the gateway."""

import statistics
import time
import uuid

import psycopg

from devstack.client import InboxClient, wait_for


def seed(database_url: str, conversations: int, word: str = "") -> None:
    """Write ``conversations`` conversations of one customer message each (ids ``md5('c' ||
    n)``, messages ``md5('m' || n)``, ``word`` in every body) straight into PostgreSQL, then
    ``VACUUM ANALYZE`` (as autovacuum would, in time).

    Raises:
        psycopg.Error: PostgreSQL refused or is unreachable.
    """
    with psycopg.connect(database_url, autocommit=True) as db:
        db.execute(
            "INSERT INTO conversations (conversation_id, customer_id, subject, message_count,"
            " version) SELECT md5('c' || n)::uuid, 'cust-bulk', NULL, 1, 1"
            " FROM generate_series(1, %(rows)s) n",
            {"rows": conversations},
        )
        db.execute(
            "INSERT INTO messages (message_id, conversation_id, seq, author_role, author_id,"
            " body, submitted_at) SELECT md5('m' || n)::uuid, md5('c' || n)::uuid, 1,"
            " 'customer', 'cust-bulk', 'my ' || %(word)s || ' card number ' || n ||"
            " ' was charged twice at the shop, please refund the duplicate payment', now()"
            " FROM generate_series(1, %(rows)s) n",
            {"rows": conversations, "word": word},
        )
        db.execute("VACUUM ANALYZE")


def inbox_order(database_url: str, offset: int, limit: int) -> list[str]:
    """Conversation ids of one page in the inbox's order, straight from PostgreSQL."""
    with psycopg.connect(database_url, autocommit=True) as db:
        rows = db.execute(
            "SELECT conversation_id FROM conversations WHERE message_count > 0"
            " ORDER BY last_activity_at DESC, conversation_id LIMIT %s OFFSET %s",
            (limit, offset),
        ).fetchall()
    return [str(row[0]) for row in rows]


def get_page(client: InboxClient, offset: int, limit: int = 50) -> dict:
    """``GET /api/v1/conversations`` as the client's operator.

    Raises:
        RuntimeError: the gateway did not answer 200.
    """
    response = client.http.get(
        "/api/v1/conversations", params={"offset": offset, "limit": limit}, headers=client.auth
    )
    if response.status_code != 200:
        raise RuntimeError(f"offset {offset}: HTTP {response.status_code} {response.text[:200]}")
    return response.json()


def page_latencies(
    client: InboxClient, offsets: list[int], limit: int, requests: int
) -> dict[int, dict[str, float]]:
    """``requests`` sequential page requests at each of ``offsets``.

    Returns:
        offset -> ``{"p50", "p95", "max"}`` in ms.

    Raises:
        RuntimeError: a request was not answered 200.
    """
    timings: dict[int, dict[str, float]] = {}
    for offset in offsets:
        took_ms = []
        for _ in range(requests):
            started = time.perf_counter()
            get_page(client, offset, limit)
            took_ms.append((time.perf_counter() - started) * 1000)
        took_ms.sort()
        timings[offset] = {
            "p50": statistics.median(took_ms),
            "p95": took_ms[min(len(took_ms) - 1, round(0.95 * (len(took_ms) - 1)))],
            "max": took_ms[-1],
        }
    return timings


def rebuilt_with(client: InboxClient, total: int, timeout_s: float = 60) -> None:
    """Send one customer message and wait until the inbox list counts ``total``.

    Raises:
        AssertionError: not within ``timeout_s``.
    """
    client.send_customer(f"where is my card {uuid.uuid4().hex[:8]}")
    wait_for(lambda: get_page(client, 0, 1)["total"] == total, timeout_s, f"an inbox of {total}")
