"""The store layer: messaging's writes against a real PostgreSQL with the real migrations,
nothing else running (no sidecar, no broker)."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from devstack.infra import Postgres
from messaging.prestart import migrate


@pytest.fixture(scope="session")
def database_url(output_dir: Path) -> Iterator[str]:
    """A throwaway PostgreSQL, migrated to the newest schema."""
    server = Postgres(output_dir / "store" / "logs").start()
    try:
        migrate(server.url)
        yield server.url
    finally:
        server.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(item.path).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.store)
