"""The public OpenAPI documents of the running stack: the routes only a sidecar calls
(``/dapr/*``, ``/events/*``) are not in them, on the gateway nor on messaging and the ai-worker,
while those routes still serve their sidecars (the pipeline tests deliver through them)."""

import httpx2 as httpx
import pytest
from inbox_common.subscriptions import DAPR_ROUTE_PREFIXES

pytestmark = [pytest.mark.e2e, pytest.mark.one_broker]


def paths(url: str) -> dict[str, dict]:
    response = httpx.get(f"{url}/openapi.json", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["paths"]


def test_sidecar_routes_are_not_in_any_public_openapi_document(stack) -> None:
    for name, service in stack.services.items():
        documented = paths(service.url)
        leaked = sorted(p for p in documented if p.startswith(DAPR_ROUTE_PREFIXES))
        assert leaked == [], f"{name} documents sidecar-only routes: {leaked}"
        # and no tag of theirs is left behind
        tags = {t for operation in documented.values() for o in operation.values()
                for t in o.get("tags", [])}
        assert "PubSub" not in tags, name

    gateway = paths(stack.gateway_url)
    assert "/api/v1/auth/login" in gateway
    assert "/api/v1/conversations/search" in gateway


def test_sidecar_routes_still_answer_the_sidecar(stack) -> None:
    """Hidden from the document, not removed: ``/dapr/subscribe`` lists every subscription to
    a caller with the app token, and refuses one without it."""
    for name, service in stack.services.items():
        url = f"{service.url}/dapr/subscribe"
        answer = httpx.get(url, headers={"dapr-api-token": stack.app_api_token}, timeout=10)
        assert answer.status_code == 200, (name, answer.text)
        routes = {s["route"] for s in answer.json()}
        assert routes and all(r.startswith("/events/") for r in routes), (name, routes)
        assert httpx.get(url, timeout=10).status_code == 401, name
