"""``sidecar_app``: the sidecar-only routes serve the sidecar but stay out of the OpenAPI
document, whenever they are registered."""

from fastapi import FastAPI
from fastapi.testclient import TestClient
from inbox_common.subscriptions import DAPR_ROUTE_PREFIXES, sidecar_app, subscribe
from pydantic import BaseModel


class Ping(BaseModel):
    n: int


async def handle(_: Ping) -> None:
    return None


def test_sidecar_routes_are_hidden_but_served() -> None:
    app = FastAPI()

    @app.get("/api/things")
    async def things() -> list[str]:
        return []

    dapr = sidecar_app(app)
    subscribe(dapr, "messages.submitted", Ping, handle)

    @app.post("/events/added-later")  # registered after sidecar_app: hidden too
    async def later() -> dict[str, str]:
        return {}

    client = TestClient(app)
    documented = client.get("/openapi.json").json()["paths"]
    assert "/api/things" in documented
    assert not [p for p in documented if p.startswith(DAPR_ROUTE_PREFIXES)], documented
    assert client.get("/dapr/subscribe").json()[0]["route"] == "/events/messages.submitted"
    answer = client.post("/events/messages.submitted", json={"id": "1", "data": {"n": 1}})
    assert answer.json() == {"status": "SUCCESS"}
