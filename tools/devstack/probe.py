"""A test's view of one service: publish through its sidecar (Dapr's HTTP publish API), read
its state, and read what it published from the Redis streams behind ``inbox-pubsub``."""

import json

import httpx2 as httpx
import redis
from inbox_common.events import pubsub_for


class Probe:
    """Publish through a service's sidecar, read its state and the broker's streams."""

    def __init__(self, stack, service: str) -> None:
        self.stack = stack
        ports = stack.services[service].ports
        self.dapr = httpx.Client(
            base_url=f"http://127.0.0.1:{ports.http}/v1.0",
            timeout=10,
            headers={"dapr-api-token": stack.dapr_api_token},
        )
        self.redis = redis.Redis(port=stack.redis.port, password=stack.redis.password)

    def publish(self, topic: str, data: dict) -> None:
        response = self.dapr.post(f"/publish/{pubsub_for(topic)}/{topic}", json=data)
        assert response.status_code == 204, response.text

    def state(self, key: str) -> dict | None:
        response = self.dapr.get(f"/state/inbox-state/{key}")
        return response.json() if response.status_code == 200 else None

    def events(self, topic: str) -> list[dict]:
        """The ``data`` of every CloudEvent on ``topic``'s stream, oldest first."""
        found = []
        if not self.redis.exists(topic):
            return found
        for _, fields in self.redis.xrange(topic):
            data = json.loads(fields[b"data"])["data"]
            found.append(json.loads(data) if isinstance(data, str) else data)
        return found

    def acked(self, topic: str, group: str) -> bool:
        """Every entry of ``topic`` delivered to consumer group ``group`` and acknowledged."""
        info = {g["name"].decode(): g for g in self.redis.xinfo_groups(topic)}
        length = self.redis.xlen(topic)
        return (
            group in info
            and info[group]["pending"] == 0
            and info[group].get("entries-read", length) == length
        )
