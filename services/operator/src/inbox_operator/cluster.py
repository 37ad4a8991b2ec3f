"""Talking to the Kubernetes API: server-side apply, pruning, and what the status reads."""

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
from lightkube import AsyncClient, codecs
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.autoscaling_v2 import HorizontalPodAutoscaler
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import Pod, Secret, Service
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
    return False, f"{model} is not available at {url} (has: {', '.join(sorted(names)) or 'none'})"


MODEL_ANNOTATION = "supportinbox.io/model"
"""The annotation naming the model a Job pulls or creates (the chart's model Jobs carry it)."""
JOB_COMPONENTS = {"pull": "ollama-pull", "file": "ollama-create"}
"""``app.kubernetes.io/component`` of the chart's model Job, per ``spec.ollama.modelSource``."""
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_TEXT_MAX = 300


@dataclass(frozen=True)
class JobState:
    """Where a model Job stands: ``phase`` and a sentence for ModelReady, e.g. ``Job
    inbox-ollama-create-2 running; last failure: create exited 1 (Error): Error: ...``."""

    phase: Literal["pending", "running", "failed", "complete", "unknown"]
    text: str


def _last_line(text: str | None) -> str:
    """The last non-empty line of a termination message (the CLI's progress spinner's escape
    codes removed), at most 300 characters."""
    lines = [line.strip() for line in _ANSI.sub("", text or "").replace("\r", "\n").splitlines()]
    last = next((line for line in reversed(lines) if line), "")
    return last if len(last) <= _TEXT_MAX else last[: _TEXT_MAX - 3] + "..."


def _statuses(pod: dict) -> list[dict]:
    status = pod.get("status") or {}
    return (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])


def last_failure(pods: list[dict]) -> str | None:
    """The latest failed container run among a Job's pods (``kubectl get pod -o json``
    shapes), as ``NAME exited CODE (REASON): LAST LOG LINE``; ``None`` when none failed."""
    failures = []
    for pod in pods:
        for container in _statuses(pod):
            for state in (container.get("state") or {}, container.get("lastState") or {}):
                done = state.get("terminated")
                if done and done.get("exitCode", 0) != 0:
                    failures.append((str(done.get("finishedAt") or ""), container["name"], done))
    if not failures:
        return None
    _, name, done = max(failures, key=lambda f: f[0])
    text = f"{name} exited {done.get('exitCode')} ({done.get('reason') or 'Error'})"
    message = _last_line(done.get("message"))
    return f"{text}: {message}" if message else text


def job_state(job: dict, pods: list[dict]) -> JobState:
    """Where ``job`` (a Job as JSON) stands, from its conditions and its ``pods``: failed (with
    the Job's reason), complete, running, or pending (with what the pod waits for: an image
    pull, a volume); each with the last failed container run, if any.
    """
    name = job["metadata"]["name"]
    status = job.get("status") or {}
    true = {c["type"]: c for c in status.get("conditions") or [] if c.get("status") == "True"}
    failure = last_failure(pods)
    tail = f"; last failure: {failure}" if failure else ""
    if "Failed" in true:
        condition = true["Failed"]
        why = ": ".join(filter(None, (condition.get("reason"), condition.get("message"))))
        return JobState("failed", f"Job {name} failed ({why or 'no reason given'}){tail}")
    if "Complete" in true:
        return JobState("complete", f"Job {name} completed")
    newest = max(
        pods, key=lambda p: str(p["metadata"].get("creationTimestamp") or ""), default=None
    )
    if newest is None:
        return JobState("pending", f"Job {name} pending (no pod yet){tail}")
    for container in _statuses(newest):
        waiting = (container.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason") not in (None, "PodInitializing"):
            reason = waiting["reason"]
            message = _last_line(waiting.get("message"))
            detail = f"{container['name']} {reason}" + (f": {message}" if message else "")
            # a container waiting to be restarted after a failure still counts as running
            phase = "running" if reason == "CrashLoopBackOff" else "pending"
            return JobState(phase, f"Job {name} {phase} ({detail}){tail}")
    if (newest.get("status") or {}).get("phase") == "Running":
        return JobState("running", f"Job {name} running{tail}")
    return JobState(
        "pending", f"Job {name} pending (pod {newest['status'].get('phase', 'Pending')}){tail}"
    )


def _with_tag(model: str) -> str:
    return model if ":" in model.rsplit("/", 1)[-1] else f"{model}:latest"


async def model_job(
    client: AsyncClient, namespace: str, instance: str, source: str, model: str
) -> JobState | None:
    """The newest model Job of ``instance`` for ``model`` (component :data:`JOB_COMPONENTS`
    of ``source``, annotation :data:`MODEL_ANNOTATION`) and where it stands.

    Returns:
        its :class:`JobState`; ``None`` when there is none (a Job is deleted an hour after it
        finishes); phase ``unknown`` when the API refuses to list Jobs or Pods (RBAC).
    """
    labels = {
        "app.kubernetes.io/instance": instance,
        "app.kubernetes.io/component": JOB_COMPONENTS[source],
    }
    try:
        jobs = [
            job
            async for job in client.list(Job, namespace=namespace, labels=labels)
            if _with_tag((job.metadata.annotations or {}).get(MODEL_ANNOTATION, ""))
            == _with_tag(model)
        ]
        if not jobs:
            return None
        job = max(jobs, key=lambda j: j.metadata.creationTimestamp)
        pods = [
            pod.to_dict()
            async for pod in client.list(
                Pod,
                namespace=namespace,
                labels={"batch.kubernetes.io/job-name": job.metadata.name},
            )
        ]
    except ApiError as exc:
        return JobState("unknown", f"its Job is unreadable: {exc.status.message}")
    return job_state(job.to_dict(), pods)


SupportInbox = create_namespaced_resource(
    "supportinbox.io", "v1alpha1", "SupportInbox", "supportinboxes"
)
