"""``docs/configuration.md`` lists every setting of every service as its ``Settings`` says."""

from devstack import config_docs


def test_the_settings_tables_match_the_settings() -> None:
    assert config_docs.current() == config_docs.render(), (
        "docs/configuration.md is out of step with the Settings classes: run "
        "`PYTHONPATH=tools uv run --frozen python -m devstack.config_docs --write`"
    )


def test_every_setting_says_what_it_means() -> None:
    for service, settings in config_docs.SERVICES:
        for name, field in settings.model_fields.items():
            assert field.description, f"{service}: {name.upper()} has no description"
