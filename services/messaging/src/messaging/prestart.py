"""Pre-start step: apply pending schema migrations, then exit (run before the app serves).

Usage: ``python -m messaging.prestart``. Migrations are versioned SQL files in
``messaging/migrations`` applied by yoyo-migrations, which records them in its own tables and
holds a lock so two replicas starting at once do not both migrate.
"""

import logging
import sys
from importlib.resources import files

from inbox_common.telemetry import setup_telemetry
from yoyo import get_backend, read_migrations

from messaging.settings import get_settings

log = logging.getLogger("messaging.prestart")


def yoyo_url(database_url: str) -> str:
    """Turn a libpq URL into yoyo's psycopg 3 backend URL (``postgresql+psycopg://``)."""
    scheme, sep, rest = database_url.partition("://")
    if not sep or scheme not in {"postgres", "postgresql", "postgresql+psycopg"}:
        raise ValueError("DATABASE_URL must start with postgresql://")
    return f"postgresql+psycopg://{rest}"


def migrate(database_url: str) -> int:
    """Apply every pending migration; returns how many were applied."""
    backend = get_backend(yoyo_url(database_url))
    migrations = read_migrations(str(files("messaging") / "migrations"))
    with backend.lock():
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    return len(pending)


def main() -> int:
    settings = get_settings()
    setup_telemetry("messaging", settings.log_level)
    applied = migrate(settings.database_url.get_secret_value())
    log.info("schema up to date", extra={"migrations_applied": applied})
    return 0


if __name__ == "__main__":
    sys.exit(main())
