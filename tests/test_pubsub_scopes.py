"""The pub/sub scope table (``inbox_common.scopes``) against the services' code, and the files
generated from it (``dapr-components/pubsub/``, the operator's ``pubsub_scopes``)."""

import ast
from pathlib import Path

import pytest
import yaml
from ai_worker.subscriptions import register as register_ai_worker
from dapr.ext.fastapi import DaprApp
from devstack import scopes as generator
from fastapi import FastAPI
from gateway.subscriptions import register as register_gateway
from inbox_common import events
from inbox_common.scopes import (
    APPS,
    PUBLISHES,
    READS_DEAD_LETTERS,
    SUBSCRIBES,
    component_scopes,
    may_publish,
)
from inbox_operator.render import Owner, pubsub_component
from inbox_operator.spec import SupportInboxSpec
from messaging.subscriptions import register as register_messaging

REPO = Path(__file__).resolve().parents[1]
PACKAGES = {"gateway": "gateway", "messaging": "messaging", "ai-worker": "ai_worker"}


def registered(app: str) -> set[str]:
    """Topics the service's ``register`` subscribes its DaprApp to (collaborators unused)."""
    dapr_app = DaprApp(FastAPI())
    if app == "gateway":
        register_gateway(dapr_app, None, None, None)
    elif app == "messaging":
        register_messaging(dapr_app, None)
    else:
        register_ai_worker(dapr_app, None, None, 60, summariser=object())
    return {s["topic"] for s in dapr_app._subscriptions}  # noqa: SLF001 - no public accessor


@pytest.mark.parametrize("app", APPS)
def test_the_table_names_every_subscription_of_each_service(app: str) -> None:
    wanted = SUBSCRIBES[app] | {
        events.dead_letter_topic(t) for t in READS_DEAD_LETTERS.get(app, ())
    }
    assert registered(app) == wanted


def _published(app: str) -> set[str]:
    """``TOPIC_*`` constants passed to a ``publish``, ``enqueue`` or ``ask`` (a publish that
    waits for its answer) call in the service's code."""
    found = set()
    for path in (REPO / "services" / app / "src" / PACKAGES[app]).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "attr", None) or getattr(node.func, "id", "")
            if name not in ("publish", "enqueue", "ask"):
                continue
            for arg in node.args:
                if isinstance(arg, ast.Name) and arg.id.startswith("TOPIC_"):
                    found.add(getattr(events, arg.id))
    return found


@pytest.mark.parametrize("app", APPS)
def test_the_table_names_every_publish_of_each_service(app: str) -> None:
    assert _published(app) == PUBLISHES[app]


def test_scopes_are_deny_by_default_and_cover_dead_letters() -> None:
    work = component_scopes(events.PUBSUB)
    gateway = work["publishingScopes"].split(";")[0]
    assert gateway == (
        "gateway=conversation.changed,inbox.page.requested,insight.requested,intent.corrected,"
        "messages.submitted,"
        "search.requested"
    )
    # messaging's sidecar forwards what it drops to the dead-letter topic
    assert "messages.submitted.dead-letter" in may_publish("messaging")
    broadcast = component_scopes(events.BROADCAST_PUBSUB)
    assert broadcast["subscriptionScopes"] == (
        "gateway=conversation.updated,insight.delta;messaging=;ai-worker=intent.examples.changed"
    )
    protected = set(broadcast["protectedTopics"].split(","))
    assert protected == {
        "conversation.updated",
        "conversation.updated.dead-letter",
        "insight.delta",
        "insight.delta.dead-letter",
        "intent.examples.changed",
        "intent.examples.changed.dead-letter",
    }


def test_generated_files_are_current() -> None:
    assert generator.main(["--check"]) == 0, "run: PYTHONPATH=tools python -m devstack.scopes"


@pytest.mark.parametrize("path", sorted((REPO / "dapr-components/pubsub").glob("*/*.yaml")))
def test_every_local_component_carries_its_scopes(path: Path) -> None:
    component = yaml.safe_load(path.read_text())
    metadata = {m["name"]: m.get("value") for m in component["spec"]["metadata"]}
    for key, value in component_scopes(component["metadata"]["name"]).items():
        assert metadata.get(key) == value, f"{path.name}: {key}"


@pytest.mark.parametrize("broker", ["redis", "rabbitmq", "kafka", "jetstream"])
@pytest.mark.parametrize("broadcast", [False, True])
def test_operator_components_carry_the_same_scopes(broker: str, broadcast: bool) -> None:
    spec = SupportInboxSpec.model_validate(
        {
            "broker": {"type": broker, "host": "h:1", "secretRef": {"name": "b"}},
            "stateStore": {"type": "redis", "host": "redis:6379"},
            "database": {"secretRef": {"name": "db"}},
            "auth": {
                f"{k}SecretRef": {"name": "a"}
                for k in ("jwt", "operators", "channelApiKeys", "daprApiToken", "appApiToken")
            },
        }
    )
    component = pubsub_component(Owner("inbox", "ns", "uid"), spec, broadcast=broadcast)
    metadata = {m["name"]: m.get("value") for m in component["spec"]["metadata"]}
    for key, value in component_scopes(component["metadata"]["name"]).items():
        assert metadata.get(key) == value, key
