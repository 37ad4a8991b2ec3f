"""Secrets mounted as files (``SECRETS_DIR``, one file per variable), as the chart's pods get
them: every service reads them, and the Dapr SDK gets its API token from there too."""

from pathlib import Path

import pytest
from dapr.conf import settings as dapr_settings
from inbox_common.settings import ServiceSettings
from messaging.settings import Settings as MessagingSettings


@pytest.fixture
def secrets_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("APP_API_TOKEN", "DAPR_API_TOKEN", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(dapr_settings, "DAPR_API_TOKEN", None)
    (tmp_path / "APP_API_TOKEN").write_text("app-token-from-file")
    (tmp_path / "DAPR_API_TOKEN").write_text("dapr-token-from-file")
    (tmp_path / "DATABASE_URL").write_text("postgresql://inbox:pw@db:5432/inbox")
    return tmp_path


def test_secret_files_are_read(secrets_dir: Path) -> None:
    settings = MessagingSettings(_secrets_dir=secrets_dir)
    assert settings.app_api_token.get_secret_value() == "app-token-from-file"
    assert settings.database_url.get_secret_value().endswith("@db:5432/inbox")


def test_the_dapr_api_token_file_reaches_the_sdk(secrets_dir: Path) -> None:
    ServiceSettings(_secrets_dir=secrets_dir)
    assert dapr_settings.DAPR_API_TOKEN == "dapr-token-from-file"


def test_the_environment_still_wins(secrets_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_API_TOKEN", "from-env")
    monkeypatch.setattr(dapr_settings, "DAPR_API_TOKEN", "sdk-env-token")
    settings = ServiceSettings(_secrets_dir=secrets_dir)
    assert settings.app_api_token.get_secret_value() == "from-env"
    assert dapr_settings.DAPR_API_TOKEN == "sdk-env-token"
