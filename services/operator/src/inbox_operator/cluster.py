"""Talking to the Kubernetes API: server-side apply, pruning, and what the status reads."""

import json
from typing import Any

import aiohttp
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


class NotOwned(Exception):
    """An object the SupportInbox renders exists but is someone else's, or another field
    manager holds a field of it. ``reason`` is ``ObjectNotOwned`` or ``FieldConflict``; the
    message names the object, the other manager(s) and, for a conflict, the fields."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _managers(found: Any) -> str:
    names = sorted({f.manager for f in found.metadata.managedFields or [] if f.manager})
    return ", ".join(names) or "unknown"


async def apply(client: AsyncClient, objects: list[Obj], owner_uid: str) -> None:
    """Server-side apply each object as field manager ``support-inbox-operator``, never forced.

    Every object is checked first: one that exists without this SupportInbox (``owner_uid``)
    as its controller is left alone, and nothing is applied. A field another manager took
    since (``kubectl scale``, an edit) makes the API server answer 409, and that object and
    the ones after it are not applied either. Unchanged objects are not written.

    Raises:
        NotOwned: naming the object and who manages it.
        lightkube.core.exceptions.ApiError: any other refusal.
    """
    resources = [codecs.from_dict(obj) for obj in objects]
    for resource in resources:
        meta = resource.metadata
        try:
            found: Any = await client.get(type(resource), meta.name, namespace=meta.namespace)
        except ApiError as exc:
            if exc.status.code == 404:
                continue
            raise
        owners = found.metadata.ownerReferences or []
        if not any(ref.uid == owner_uid and ref.controller for ref in owners):
            raise NotOwned(
                "ObjectNotOwned",
                f"{resource.kind}/{meta.name} exists and is not this SupportInbox's "
                f"(managed by: {_managers(found)}); delete or rename it, nothing was applied",
            )
    for resource in resources:
        try:
            await client.apply(resource, field_manager=MANAGER, force=False)
        except ApiError as exc:
            if exc.status.code != 409:
                raise
            raise NotOwned(
                "FieldConflict",
                f"{resource.kind}/{resource.metadata.name}: {exc.status.message}; "
                "not overwritten: hand the field back (or delete the object) to reconcile",
            ) from None


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


MODEL_PROBE_MAX_BYTES = 1 << 20
"""Largest ``/api/tags`` answer read, in bytes (a few thousand models' names)."""


async def model_served(url: str, model: str, timeout_s: float = 3.0) -> tuple[bool, str]:
    """Ask Ollama's ``GET {url}/api/tags`` whether ``model`` is pulled.

    The URL comes from a SupportInbox, so whatever answers it is held to a bound: ``timeout_s``
    seconds for the whole exchange (connect to last byte), at most
    :data:`MODEL_PROBE_MAX_BYTES` read, and no redirect followed (a redirect could send the
    operator's requests anywhere its network reaches).

    Returns:
        ``(served, message)``; any failure (refused, timeout, redirect, too large, not JSON)
        is ``(False, why)``, never an exception.
    """
    endpoint = f"{url.rstrip('/')}/api/tags"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session,
            session.get(endpoint, allow_redirects=False) as response,
        ):
            if response.status != 200:
                return False, f"Ollama at {url} answered HTTP {response.status} to /api/tags"
            body = bytearray()
            async for chunk in response.content.iter_chunked(64 * 1024):
                body += chunk
                if len(body) > MODEL_PROBE_MAX_BYTES:
                    return False, f"Ollama at {url} sent more than {MODEL_PROBE_MAX_BYTES} bytes"
        names = {m.get("name") for m in json.loads(body).get("models", [])}
    except (aiohttp.ClientError, TimeoutError, OSError, ValueError, AttributeError) as exc:
        return False, f"Ollama at {url} is unreachable: {exc!r}"
    if model in names or f"{model}:latest" in names:
        return True, f"{model} is available at {url}"
    return False, f"{model} is not pulled on {url} (has: {', '.join(sorted(names)) or 'none'})"


SupportInbox = create_namespaced_resource(
    "supportinbox.io", "v1alpha1", "SupportInbox", "supportinboxes"
)
