"""Talking to the Kubernetes API: server-side apply, pruning, and what the status reads."""

import json
import urllib.error
import urllib.request
from typing import Any

from lightkube import AsyncClient, codecs
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.autoscaling_v2 import HorizontalPodAutoscaler
from lightkube.resources.core_v1 import Secret, Service
from lightkube.resources.policy_v1 import PodDisruptionBudget

from inbox_operator.render import MANAGER, Obj

Component = create_namespaced_resource("dapr.io", "v1alpha1", "Component", "components")
Configuration = create_namespaced_resource("dapr.io", "v1alpha1", "Configuration", "configurations")
Resiliency = create_namespaced_resource("dapr.io", "v1alpha1", "Resiliency", "resiliencies")
OWNED_KINDS = (
    Component,
    Configuration,
    Resiliency,
    Deployment,
    Service,
    PodDisruptionBudget,
    HorizontalPodAutoscaler,
)


async def apply(client: AsyncClient, objects: list[Obj]) -> None:
    """Server-side apply each object as field manager ``support-inbox-operator`` (forced, so
    a field another manager took is taken back). Unchanged objects are not written."""
    for obj in objects:
        await client.apply(codecs.from_dict(obj), field_manager=MANAGER, force=True)


async def prune(client: AsyncClient, namespace: str, instance: str, keep: list[Obj]) -> list[str]:
    """Delete objects this operator made for ``instance`` that ``keep`` no longer has.

    Returns ``"Kind/name"`` of each deleted object.
    """
    wanted = {(o["kind"], o["metadata"]["name"]) for o in keep}
    selector = {"app.kubernetes.io/instance": instance, "app.kubernetes.io/managed-by": MANAGER}
    deleted = []
    for kind in OWNED_KINDS:
        async for found in client.list(kind, namespace=namespace, labels=selector):
            key = (found.kind, found.metadata.name)
            if key not in wanted:
                await client.delete(kind, found.metadata.name, namespace=namespace)
                deleted.append(f"{found.kind}/{found.metadata.name}")
    return deleted


async def missing_secrets(
    client: AsyncClient, namespace: str, refs: list[tuple[str, str, str]]
) -> list[str]:
    """Which of ``(field, secret name, key)`` are absent; each as ``"field: secret/key"``."""
    missing = []
    for field, name, key in refs:
        try:
            secret = await client.get(Secret, name, namespace=namespace)
        except ApiError as exc:
            if exc.status.code != 404:
                raise
            missing.append(f"{field}: Secret {name} not found")
            continue
        if key not in (secret.data or {}) and key not in (secret.stringData or {}):
            missing.append(f"{field}: Secret {name} has no key {key}")
    return missing


async def deployment_availability(
    client: AsyncClient, namespace: str, names: tuple[str, ...]
) -> dict[str, tuple[int, int]]:
    """``name -> (available replicas, desired replicas)`` for each Deployment."""
    found: dict[str, tuple[int, int]] = {}
    for name in names:
        try:
            deployment: Any = await client.get(Deployment, name, namespace=namespace)
        except ApiError:
            found[name] = (0, 0)
            continue
        status = deployment.status
        found[name] = (
            (status.availableReplicas or 0) if status else 0,
            deployment.spec.replicas or 0,
        )
    return found


def model_served(url: str, model: str, timeout_s: float = 3.0) -> tuple[bool, str]:
    """Ask Ollama's ``GET /api/tags`` whether ``model`` is pulled. Blocking; run in a thread."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/api/tags", timeout=timeout_s) as r:  # noqa: S310 - http(s) enforced by the CRD
            names = {m.get("name") for m in json.loads(r.read()).get("models", [])}
    except (OSError, ValueError) as exc:
        return False, f"Ollama at {url} is unreachable: {exc}"
    if model in names or f"{model}:latest" in names:
        return True, f"{model} is available at {url}"
    return False, f"{model} is not pulled on {url} (has: {', '.join(sorted(names)) or 'none'})"


SupportInbox = create_namespaced_resource(
    "supportinbox.io", "v1alpha1", "SupportInbox", "supportinboxes"
)
