"""The settings tables of ``docs/configuration.md``, made from the services' own ``Settings``
classes (each field's name, default and ``description``), so the docs cannot drift from the
code: ``tests/test_config_docs.py`` fails when they differ.

Usage: ``uv run --frozen python -m devstack.config_docs [--write]``: prints the tables, or with
``--write`` replaces them in ``docs/configuration.md`` (between the two markers).
"""

import argparse
import json
import re
import sys
from pathlib import Path

from ai_worker.settings import Settings as AiWorkerSettings
from gateway.core.config import Settings as GatewaySettings
from inbox_common.settings import ServiceSettings
from messaging.settings import Settings as MessagingSettings
from pydantic import BaseModel, SecretStr
from pydantic_core import PydanticUndefined

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "configuration.md"
BEGIN = "<!-- settings: made by `python -m devstack.config_docs --write`; edit the Settings -->"
END = "<!-- end of settings -->"
SERVICES: list[tuple[str, type[BaseModel]]] = [
    ("every service", ServiceSettings),
    ("gateway", GatewaySettings),
    ("messaging", MessagingSettings),
    ("ai-worker", AiWorkerSettings),
]


def _default(field) -> str:  # noqa: ANN001 - a pydantic FieldInfo
    value = field.get_default(call_default_factory=True)
    if value is PydanticUndefined:
        return "required"
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, Path):
        return f"`{value.relative_to(REPO)}/`" if value.is_relative_to(REPO) else f"`{value}`"
    if isinstance(value, dict | list):
        return f"`{json.dumps(value)}`"
    return f"`{value}`"


def _meaning(name: str, description: str | None) -> str:
    text = re.sub(rf"^{name}:\s*", "", (description or "").strip())
    return text.replace("|", "\\|").replace("\n", " ")


def render() -> str:
    """The tables: one per service, each variable with its default and meaning."""
    out = []
    for service, settings in SERVICES:
        inherited = set(ServiceSettings.model_fields) if settings is not ServiceSettings else set()
        out += [f"### {service}", "", "| variable | default | meaning |", "|---|---|---|"]
        for key, field in settings.model_fields.items():
            if key in inherited:
                continue
            name = key.upper()
            out.append(f"| `{name}` | {_default(field)} | {_meaning(name, field.description)} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def current() -> str:
    """The tables as ``docs/configuration.md`` has them now."""
    text = DOC.read_text()
    return text[text.index(BEGIN) + len(BEGIN) : text.index(END)].strip("\n") + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="update docs/configuration.md")
    if not parser.parse_args().write:
        sys.stdout.write(render())
        return 0
    text = DOC.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    DOC.write_text(text[:start] + "\n\n" + render() + "\n" + text[end:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
