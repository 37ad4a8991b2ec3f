"""kopf handlers for ``SupportInbox`` (``supportinbox.io/v1alpha1``).

Run with ``kopf run --standalone --namespace=NS -m inbox_operator.handlers`` (and
``WATCH_NAMESPACE=NS``), or ``--all-namespaces`` with a ClusterRole. Creating,
changing or resuming a SupportInbox reconciles it: validate everything first (spec, one per
namespace, referenced Secrets), then server-side apply every rendered object, prune what is no
longer rendered, and report conditions. A background task refreshes the conditions.
"""

import asyncio
import os
from typing import Any

import kopf
from lightkube import AsyncClient
from lightkube.types import PatchType
from pydantic import ValidationError

from inbox_operator import cluster
from inbox_operator.conditions import Condition, merge
from inbox_operator.render import SERVICES, Owner, render
from inbox_operator.spec import GROUP, PLURAL, VERSION, SupportInboxSpec

RESOURCE = (GROUP, VERSION, PLURAL)
REFRESH_INTERVAL_S = float(os.environ.get("STATUS_REFRESH_INTERVAL_S", "30"))
WATCH_NAMESPACE = os.environ.get("WATCH_NAMESPACE", "")
"""The one namespace served (``kopf run --namespace``, the chart's default); empty: all."""


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.level = 20  # INFO: reconcile outcomes become Kubernetes Events
    settings.watching.server_timeout = 60
    if WATCH_NAMESPACE:
        # Namespaced (the chart's default Role): no cluster-wide CRD or namespace watch. The
        # chart installs the CRD before the operator starts, so one scan at start-up finds it.
        settings.scanning.disabled = True


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    if os.environ.get("KUBECONFIG") or not os.environ.get("KUBERNETES_SERVICE_HOST"):
        return kopf.login_with_kubeconfig(**kwargs)
    return kopf.login_with_service_account(**kwargs)


def parse_spec(spec: dict[str, Any]) -> SupportInboxSpec:
    """The typed spec; ``kopf.PermanentError`` naming each bad field otherwise."""
    try:
        return SupportInboxSpec.model_validate(dict(spec))
    except ValidationError as exc:
        problems = "; ".join(
            f"spec.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
        )
        raise kopf.PermanentError(f"invalid spec: {problems}") from None


def secret_refs(spec: SupportInboxSpec) -> list[tuple[str, str, str]]:
    """Every Secret the spec names, as ``(field, name, key)``."""
    auth = spec.auth
    refs = [
        ("database.secretRef", spec.database.secret_ref),
        ("auth.jwtSecretRef", auth.jwt_secret_ref),
        ("auth.operatorsSecretRef", auth.operators_secret_ref),
        ("auth.channelApiKeysSecretRef", auth.channel_api_keys_secret_ref),
        ("auth.daprApiTokenSecretRef", auth.dapr_api_token_secret_ref),
        ("auth.appApiTokenSecretRef", auth.app_api_token_secret_ref),
        ("auth.adminPasswordSecretRef", auth.admin_password_secret_ref),
        ("broker.secretRef", spec.broker.secret_ref),
        ("stateStore.secretRef", spec.state_store.secret_ref),
        ("widget.channelsSecretRef", spec.widget.channels_secret_ref if spec.widget else None),
    ]
    return [(field, ref.name, ref.key or "") for field, ref in refs if ref is not None]


def _invalid(patch: kopf.Patch, status: dict, generation: int, reason: str, message: str) -> None:
    conditions = [
        Condition(t, "False", reason, message)
        for t in ("Ready", "BrokerReady", "DatabaseReady", "ModelReady")
    ]
    patch.status["conditions"] = merge(status.get("conditions"), conditions, generation)
    patch.status["observedGeneration"] = generation


@kopf.on.resume(*RESOURCE)
@kopf.on.create(*RESOURCE)
@kopf.on.update(*RESOURCE, field="spec")
async def reconcile(
    body: kopf.Body,
    spec: kopf.Spec,
    name: str,
    namespace: str,
    uid: str,
    meta: kopf.Meta,
    status: kopf.Status,
    patch: kopf.Patch,
    old: Any,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    """Bring the cluster in line with the SupportInbox, or change nothing and say why.

    Raises:
        kopf.PermanentError: the spec is invalid.
        kopf.TemporaryError: another SupportInbox owns the namespace (checked again every
            60 s, so this one takes over when that one goes), a referenced Secret is
            missing (retried every 30 s), or an object to apply is someone else's or has a
            field another manager took (never forced; retried every 60 s).
    """
    generation = meta.get("generation", 0)
    try:
        typed = parse_spec(spec)
    except kopf.PermanentError as exc:
        _invalid(patch, dict(status), generation, "InvalidSpec", str(exc))
        raise
    async with AsyncClient(field_manager="support-inbox-operator") as client:
        inboxes = sorted(
            [
                (o.metadata.creationTimestamp, o.metadata.name)
                async for o in client.list(cluster.SupportInbox, namespace=namespace)
            ]
        )
        if inboxes and inboxes[0][1] != name:
            message = (
                f"SupportInbox {inboxes[0][1]} already owns namespace {namespace}; "
                "Dapr component names are per namespace, so only one fits"
            )
            _invalid(patch, dict(status), generation, "DuplicateInNamespace", message)
            raise kopf.TemporaryError(message, delay=60)
        missing = await cluster.missing_secrets(client, namespace, secret_refs(typed))
        if missing:
            message = "waiting for Secrets: " + "; ".join(missing)
            _invalid(patch, dict(status), generation, "SecretMissing", message)
            raise kopf.TemporaryError(message, delay=30)

        objects = render(Owner(name, namespace, uid), typed)
        try:
            await cluster.apply(client, objects, uid)
        except cluster.NotOwned as exc:
            _invalid(patch, dict(status), generation, exc.reason, str(exc))
            raise kopf.TemporaryError(str(exc), delay=60) from None
        pruned = await cluster.prune(client, namespace, name, objects)
        conditions = await observe(client, typed, namespace, name)
    patch.status["conditions"] = merge(status.get("conditions"), conditions, generation)
    patch.status["observedGeneration"] = generation
    kopf.info(body, reason="Reconciled", message=_summary(typed, old, len(objects), pruned))
    logger.info(
        "reconciled %s/%s: %d objects applied, %d pruned",
        namespace,
        name,
        len(objects),
        len(pruned),
    )


def _summary(spec: SupportInboxSpec, old: Any, applied: int, pruned: list[str]) -> str:
    changes = []
    before = old  # with field="spec", kopf passes the old spec itself
    if isinstance(before, dict):
        old_broker = (before.get("broker") or {}).get("type", "redis")
        if old_broker != spec.broker.type:
            changes.append(
                f"broker {old_broker} -> {spec.broker.type}: inbox-pubsub swapped, "
                "gateway, messaging and ai-worker roll"
            )
        old_model = (before.get("ollama") or {}).get("model")
        if old_model and old_model != spec.ollama.model:
            changes.append(f"model {old_model} -> {spec.ollama.model}: ai-worker rolls")
        old_revision = (before.get("widget") or {}).get("channelsRevision")
        new_revision = spec.widget.channels_revision if spec.widget else None
        if old_revision != new_revision:
            changes.append("widget channels changed: gateway rolls")
    text = f"applied {applied} objects (broker {spec.broker.type}, model {spec.ollama.model})"
    if pruned:
        text += f", pruned {', '.join(pruned)}"
    return "; ".join([text, *changes])


async def observe(
    client: AsyncClient, spec: SupportInboxSpec, namespace: str, name: str
) -> list[Condition]:
    """Conditions from what the cluster shows now (Deployments, Ollama, the model Job of
    SupportInbox ``name``)."""
    availability = await cluster.deployment_availability(client, namespace, SERVICES)
    waiting = [
        f"{n} {a}/{d or '?'} available"
        for n, (a, d) in availability.items()
        if a == 0 or (d and a < d)
    ]
    component = f"inbox-pubsub is pubsub.{spec.broker.type}"
    if any(availability[n][0] == 0 for n in SERVICES):
        broker = Condition(
            "BrokerReady",
            "False",
            "WaitingForSidecars",
            f"{component}; no sidecar has reported it ready yet",
        )
    else:
        broker = Condition(
            "BrokerReady",
            "True",
            "SidecarsReady",
            f"{component}; every app's sidecar initialised it",
        )
    if availability["messaging"][0] == 0:
        database = Condition(
            "DatabaseReady",
            "False",
            "MessagingNotAvailable",
            "messaging (whose readiness checks PostgreSQL) has no available pod",
        )
    else:
        database = Condition(
            "DatabaseReady", "True", "MessagingAvailable", "messaging reaches PostgreSQL"
        )
    model = await model_condition(client, spec, namespace, name)
    if waiting:
        ready = Condition("Ready", "False", "DeploymentsProgressing", "; ".join(waiting))
    elif not all(c.status == "True" for c in (broker, database, model)):
        ready = Condition(
            "Ready",
            "False",
            "DependenciesNotReady",
            "; ".join(c.message for c in (broker, database, model) if c.status != "True"),
        )
    else:
        ready = Condition("Ready", "True", "AllAvailable", "every Deployment is available")
    return [ready, broker, database, model]


MODEL_JOB_REASONS = {
    "pending": "ModelJobPending",
    "running": "ModelJobRunning",
    "failed": "ModelJobFailed",
}
"""ModelReady's reason while the model is missing, per phase of its Job; else ModelUnavailable."""


async def model_condition(
    client: AsyncClient, spec: SupportInboxSpec, namespace: str, name: str
) -> Condition:
    """ModelReady: whether Ollama lists the model, how it gets there (pulled, or created from
    a GGUF file in an image or a volume) and, while it is missing, what its Job is doing.

    Reasons: ``ModelAvailable``; ``ModelJobPending``, ``ModelJobRunning`` or ``ModelJobFailed``
    (the message says what the pod waits for, or the last failed run's last log line); else
    ``ModelUnavailable`` (Ollama unreachable, no Job found, or a Job that completed yet the
    model is not listed).
    """
    ollama = spec.ollama
    served, probe = await cluster.model_served(ollama.url, ollama.model)
    origin = ollama.origin()
    if served:
        return Condition("ModelReady", "True", "ModelAvailable", f"{probe} ({origin})")
    job = await cluster.model_job(client, namespace, name, ollama.model_source, ollama.model)
    if job is None:
        where = "no Job for it is found (the chart's runs at each install and upgrade)"
    else:
        where = job.text
    reason = MODEL_JOB_REASONS.get(job.phase, "ModelUnavailable") if job else "ModelUnavailable"
    return Condition("ModelReady", "False", reason, f"{probe}; it is to be {origin}: {where}")


async def refresh_all(client: AsyncClient) -> int:
    """Refresh the conditions of every SupportInbox; returns how many were patched.

    Resources whose last reconcile refused them (invalid, duplicate, missing Secret) keep
    those conditions until a reconcile changes them.
    """
    patched = 0
    async for inbox in client.list(cluster.SupportInbox, namespace=WATCH_NAMESPACE or "*"):
        status = inbox.get("status") or {}
        ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
        if not ready or ready.get("reason") in {
            "InvalidSpec",
            "DuplicateInNamespace",
            "SecretMissing",
            "ObjectNotOwned",
            "FieldConflict",
        }:
            continue
        try:
            typed = SupportInboxSpec.model_validate(dict(inbox["spec"]))
        except ValidationError:
            continue
        conditions = await observe(
            client, typed, inbox.metadata.namespace, inbox.metadata.name or ""
        )
        merged = merge(status.get("conditions"), conditions, inbox.metadata.generation or 0)
        if merged != status.get("conditions"):
            await client.patch(
                cluster.SupportInbox.Status,
                inbox.metadata.name,
                {"status": {"conditions": merged}},
                namespace=inbox.metadata.namespace,
                patch_type=PatchType.MERGE,
            )
            patched += 1
    return patched


@kopf.on.startup()
async def start_status_refresh(memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """Refresh conditions every ``STATUS_REFRESH_INTERVAL_S`` seconds.

    A plain background task, not a kopf timer: timers make kopf put a finalizer on each
    resource, and a `helm uninstall` that removes the operator's RBAC together with the
    SupportInbox would then leave the resource stuck in deletion.
    """

    async def loop() -> None:
        async with AsyncClient() as client:
            while True:
                await asyncio.sleep(REFRESH_INTERVAL_S)
                try:
                    await refresh_all(client)
                except Exception as exc:  # noqa: BLE001 - keep refreshing after API errors
                    logger.warning("status refresh failed: %s", exc)

    memo.status_refresh = asyncio.create_task(loop(), name="status-refresh")


@kopf.on.cleanup()
async def stop_status_refresh(memo: kopf.Memo, **_: Any) -> None:
    task = memo.get("status_refresh")
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
