"""The one pure rendering function: a SupportInbox spec in, Kubernetes objects out.

No I/O and no clock: the same spec always gives the same objects, so server-side apply of the
result is a no-op when nothing changed. Dapr annotations follow
https://docs.dapr.io/reference/arguments-annotations-overview/; component metadata follows the
Dapr component reference pages of each broker.
"""

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from inbox_operator.pubsub_scopes import SCOPES
from inbox_operator.spec import GROUP, KIND, VERSION, Resources, SecretRef, SupportInboxSpec

MANAGER = "support-inbox-operator"
"""Field manager for server-side apply and the ``app.kubernetes.io/managed-by`` label."""
APP_PORT = 8000
APP_METRICS_PORT = 9464
"""The app container's Prometheus metrics (``METRICS_PORT``, port name ``metrics``)."""
DAPR_METRICS_PORT = 9090
"""The sidecar's Prometheus metrics (Dapr's default; the injector names the port
``dapr-metrics``)."""
PUBSUB = "inbox-pubsub"
BROADCAST = "inbox-broadcast"
STATE_STORE = "inbox-state"
CONFIGURATION = "inbox-config"
RESILIENCY = "inbox-resiliency"
SERVICES = ("gateway", "messaging", "ai-worker")
PRE_STOP_S = 5
"""Seconds a terminating app container keeps serving before it is sent SIGTERM."""
REDIS_POOL_SIZE = "64"
"""Connections per Redis pub/sub component and sidecar. Each subscribed stream holds one in a
blocking XREADGROUP; go-redis's default, 10 per GOMAXPROCS, follows the sidecar's CPU limit
(one core at 500m), and messaging's 20-odd streams then starve it ("connection pool
timeout" on a real node)."""
COMPONENTS_HASH = "supportinbox.io/components-hash"
"""Pod-template annotation: changes with the Dapr components, so a broker switch rolls pods."""
WIDGET_REVISION = "supportinbox.io/widget-channels-revision"
"""Gateway pod-template annotation: ``spec.widget.channelsRevision``. The gateway reads
``WIDGET_CHANNELS`` once at start, and a Secret's new content reaches a running pod's file
but not its settings, so a new revision rolls the gateway."""

Obj = dict[str, Any]


@dataclass(frozen=True)
class Owner:
    """The SupportInbox being rendered."""

    name: str
    namespace: str
    uid: str


def labels(owner: Owner, component: str | None = None) -> dict[str, str]:
    """Kubernetes recommended labels (https://kubernetes.io/docs/concepts/overview/working-with-objects/common-labels/)."""
    found = {
        "app.kubernetes.io/part-of": "support-inbox",
        "app.kubernetes.io/instance": owner.name,
        "app.kubernetes.io/managed-by": MANAGER,
    }
    if component:
        found["app.kubernetes.io/name"] = component
        found["app.kubernetes.io/component"] = component
    return found


def selector(owner: Owner, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/instance": owner.name, "app.kubernetes.io/name": component}


def _meta(owner: Owner, name: str, component: str | None = None) -> Obj:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels(owner, component),
        "ownerReferences": [
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": KIND,
                "name": owner.name,
                "uid": owner.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }


SECRETS_DIR = "/run/secrets"
"""Where the app containers find their secrets, one file per variable (``SECRETS_DIR`` of
``inbox_common.settings``): files, not environment variables, which leak into crash dumps,
``/proc/<pid>/environ`` of child processes and ``kubectl describe``."""


def _secret_files(spec: SupportInboxSpec, service: str) -> list[tuple[str, SecretRef]]:
    """``(file name, Secret key)`` of every secret ``service`` reads."""
    auth = spec.auth
    files = [
        ("APP_API_TOKEN", auth.app_api_token_secret_ref),
        ("DAPR_API_TOKEN", auth.dapr_api_token_secret_ref),
    ]
    if service == "gateway":
        files += [
            ("JWT_SECRET", auth.jwt_secret_ref),
            ("OPERATORS", auth.operators_secret_ref),
            ("CHANNEL_API_KEYS", auth.channel_api_keys_secret_ref),
        ]
        if auth.admin_password_secret_ref:
            files.append(("ADMIN_PASSWORD", auth.admin_password_secret_ref))
        if spec.widget:  # identity secrets inside: a file, never env or a ConfigMap
            files.append(("WIDGET_CHANNELS", spec.widget.channels_secret_ref))
    elif service == "messaging":
        files.append(("DATABASE_URL", spec.database.secret_ref))
    return files


def _secrets_volume(files: list[tuple[str, SecretRef]]) -> Obj:
    return {
        "name": "secrets",
        "projected": {
            "defaultMode": 0o440,  # read by the pod's group (fsGroup), nobody else
            "sources": [
                {"secret": {"name": ref.name, "items": [{"key": ref.key, "path": name}]}}
                for name, ref in files
            ],
        },
    }


_SECRETS_MOUNT = {"name": "secrets", "mountPath": SECRETS_DIR, "readOnly": True}
KNOWLEDGE_DIR = "/etc/inbox/knowledge"
"""Where every service reads ``spec.knowledge`` (``KNOWLEDGE_DIR``)."""
INTENT_EXAMPLES_DIR = "/etc/inbox/intent-examples"
INTENT_EXAMPLES_FILE = f"{INTENT_EXAMPLES_DIR}/examples.jsonl"
"""Where the ai-worker reads ``aiWorker.intentExamples`` (``AI_INTENT_EXAMPLES``)."""


def _resources(resources: Resources) -> Obj:
    return {
        k: {n: str(v) for n, v in q.items()}
        for k, q in (("requests", resources.requests), ("limits", resources.limits))
        if q
    }


def render(owner: Owner, spec: SupportInboxSpec) -> list[Obj]:
    """Every object a SupportInbox owns, in apply order (Dapr resources before Deployments).

    Returns:
        Dicts ready for server-side apply: Dapr ``Component`` x3, ``Configuration``,
        ``Resiliency``, three ``Deployment``, the gateway ``Service``, three
        ``PodDisruptionBudget`` and the ai-worker ``HorizontalPodAutoscaler``. Each is owned by
        the SupportInbox (``ownerReferences``, controller) and carries the recommended labels.
    """
    dapr = [
        pubsub_component(owner, spec),
        pubsub_component(owner, spec, broadcast=True),
        state_component(owner, spec),
        configuration(owner, spec),
        resiliency(owner),
    ]
    components_hash = hashlib.sha256(
        json.dumps([o["spec"] for o in dapr], sort_keys=True).encode()
    ).hexdigest()[:16]
    objects = list(dapr)
    for service in SERVICES:
        objects.append(deployment(owner, spec, service, components_hash))
    objects.append(gateway_service(owner))
    objects.extend(pdb(owner, service) for service in SERVICES)
    objects.append(hpa(owner, spec))
    return objects


def _component(owner: Owner, name: str, type_: str, metadata: list[Obj]) -> Obj:
    return {
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Component",
        "metadata": _meta(owner, name),
        "spec": {"type": type_, "version": "v1", "metadata": metadata},
        "scopes": list(SERVICES),
    }


def _value(name: str, value: str) -> Obj:
    return {"name": name, "value": value}


def _secret(name: str, ref: SecretRef) -> Obj:
    return {"name": name, "secretKeyRef": {"name": ref.name, "key": ref.key}}


def pubsub_component(owner: Owner, spec: SupportInboxSpec, broadcast: bool = False) -> Obj:
    """``inbox-pubsub`` (work: one consumer group per app-id) or, with ``broadcast``,
    ``inbox-broadcast`` (fan-out: each sidecar its own group) for the chosen broker.

    The same settings as ``dapr-components/pubsub/<broker>/``, where each is explained.
    """
    broker = spec.broker
    own_group = [_value("consumerID", "{podName}")] if broadcast else []
    slowest = f"{spec.ollama.timeout_seconds * 3}s"  # above the slowest LLM call + queueing
    if broker.type == "redis":
        metadata = [
            _value("redisHost", broker.host or ""),
            *own_group,
            _value("processingTimeout", "30s" if broadcast else slowest),
            _value("redeliverInterval", "10s"),
            _value("maxLenApprox", "10000" if broadcast else "100000"),
            *([] if broadcast else [_value("concurrency", "20")]),
            _value("poolSize", REDIS_POOL_SIZE),
        ]
        if broker.secret_ref:
            metadata.append(_secret("redisPassword", broker.secret_ref))
        kind = "pubsub.redis"
    elif broker.type == "rabbitmq":
        assert broker.secret_ref is not None  # checked by Broker's validator and the CRD
        durable = [
            _value("durable", "true"),
            _value("deletedWhenUnused", "false"),
            _value("deliveryMode", "2"),
            _value("publisherConfirm", "true"),
            _value("requeueInFailure", "true"),
            _value("prefetchCount", "20"),
        ]
        transient = [
            _value("durable", "false"),
            _value("deletedWhenUnused", "true"),
            _value("deliveryMode", "1"),
            _value("prefetchCount", "50"),
        ]
        metadata = [
            _secret("connectionString", broker.secret_ref),
            *own_group,
            *(transient if broadcast else durable),
            _value("concurrencyMode", "parallel"),
            _value("reconnectWaitSeconds", "2"),
        ]
        kind = "pubsub.rabbitmq"
    elif broker.type == "kafka":
        if broker.secret_ref:  # SASL: the Secret's username and password keys
            auth = [
                _value("authType", "password"),
                _secret("saslUsername", SecretRef(name=broker.secret_ref.name, key="username")),
                _secret("saslPassword", broker.secret_ref),
                _value("saslMechanism", broker.sasl_mechanism),
            ]
        else:
            auth = [_value("authType", "none")]
        metadata = [
            _value("brokers", broker.host or ""),
            *auth,
            _value("version", "4.0.0"),
            *own_group,
            _value("initialOffset", "newest" if broadcast else "oldest"),
            _value("consumeRetryEnabled", "false"),
            _value("maxMessageBytes", "4194304"),
        ]
        if not broadcast:
            metadata.append(_value("producerRequiredAcks", "all"))
        kind = "pubsub.kafka"
    else:
        shared = [
            _value("durableName", "{appID}"),
            _value("queueGroupName", "{appID}"),
            _value("deliverPolicy", "all"),
            _value("ackPolicy", "explicit"),
            _value("ackWait", slowest),
            _value("maxAckPending", "100"),
        ]
        metadata = [
            _value("natsURL", broker.host or ""),
            *([_secret("token", broker.secret_ref)] if broker.secret_ref else []),
            *([_value("deliverPolicy", "new"), _value("ackWait", "30s")] if broadcast else shared),
            # the NATS client acks when the callback returns: parallel would ack on receipt
            _value("concurrencyMode", "parallel" if broadcast else "single"),
        ]
        kind = "pubsub.jetstream"
    name = BROADCAST if broadcast else PUBSUB
    # Each app publishes and subscribes only its own topics (and its dead letters).
    metadata += [_value(key, value) for key, value in sorted(SCOPES[name].items())]
    return _component(owner, name, kind, metadata)


def state_component(owner: Owner, spec: SupportInboxSpec) -> Obj:
    """``inbox-state``; keys are shared by all apps (``keyPrefix: name``)."""
    store = spec.state_store
    if store.type == "postgresql":
        assert store.secret_ref is not None  # checked by StateStore's validator and the CRD
        return _component(
            owner,
            STATE_STORE,
            "state.postgresql",
            [
                _secret("connectionString", store.secret_ref),
                _value("keyPrefix", "name"),
                _value("tableName", "dapr_state"),
            ],
        )
    metadata = [_value("redisHost", store.host or ""), _value("keyPrefix", "name")]
    if store.secret_ref:
        metadata.append(_secret("redisPassword", store.secret_ref))
    return _component(owner, STATE_STORE, "state.redis", metadata)


def configuration(owner: Owner, spec: SupportInboxSpec) -> Obj:
    tracing: Obj = {"samplingRate": spec.tracing.sampling_rate if spec.tracing.enabled else "0"}
    if spec.tracing.enabled:
        tracing["otel"] = {
            "endpointAddress": spec.tracing.endpoint,
            "isSecure": False,
            "protocol": "http",
        }
    return {
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Configuration",
        "metadata": _meta(owner, CONFIGURATION),
        "spec": {"tracing": tracing, "metric": {"enabled": True}},
    }


def resiliency(owner: Owner) -> Obj:
    return {
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Resiliency",
        "metadata": _meta(owner, RESILIENCY),
        "scopes": list(SERVICES),
        "spec": {
            "policies": {
                "timeouts": {"delivery": "120s", "sidecar": "10s"},
                "retries": {
                    # Dapr's exponential policy starts at 500 ms; only the cap is configurable.
                    "delivery": {"policy": "exponential", "maxInterval": "15s", "maxRetries": 20},
                    "publish": {"policy": "exponential", "maxInterval": "5s", "maxRetries": 10},
                },
            },
            "targets": {
                "components": {
                    **{
                        name: {
                            "inbound": {"timeout": "delivery", "retry": "delivery"},
                            "outbound": {"timeout": "sidecar", "retry": "publish"},
                        }
                        for name in (PUBSUB, BROADCAST)
                    },
                    # no retry: see dapr-components/base/resiliency.yaml
                    STATE_STORE: {"outbound": {"timeout": "sidecar"}},
                }
            },
        },
    }


def _container_env(spec: SupportInboxSpec, service: str) -> list[Obj]:
    env: list[Obj] = [
        {"name": "ENVIRONMENT", "value": "production"},
        {"name": "OTEL_SERVICE_NAME", "value": service},
        {"name": "METRICS_PORT", "value": str(APP_METRICS_PORT)},
    ]
    if spec.knowledge:
        env.append({"name": "KNOWLEDGE_DIR", "value": KNOWLEDGE_DIR})
    if spec.tracing.enabled:
        env += [
            {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": f"http://{spec.tracing.endpoint}"},
            # the sidecars' samplingRate, for the traces a service starts too (the gateway's
            # requests); a trace that arrives sampled or not stays so (OpenTelemetry SDK spec)
            {"name": "OTEL_TRACES_SAMPLER", "value": "parentbased_traceidratio"},
            {"name": "OTEL_TRACES_SAMPLER_ARG", "value": spec.tracing.sampling_rate},
        ]
    if service == "gateway":
        if spec.gateway.trusted_proxies:
            env.append(
                {"name": "FORWARDED_ALLOW_IPS", "value": ",".join(spec.gateway.trusted_proxies)}
            )
        if spec.tracing.enabled and spec.tracing.browser_traces_url:
            env.append({"name": "BROWSER_TRACES_URL", "value": spec.tracing.browser_traces_url})
        if spec.tracing.trace_ui_url:
            env.append({"name": "TRACE_UI_URL", "value": spec.tracing.trace_ui_url})
        if widget := spec.widget:
            env += [
                {"name": "CUSTOMER_RATE_LIMIT", "value": widget.customer_rate_limit},
                {"name": "WIDGET_CHANNEL_RATE_LIMIT", "value": widget.channel_rate_limit},
                {"name": "WIDGET_SESSION_RATE_LIMIT", "value": widget.session_rate_limit},
                {
                    "name": "WIDGET_CHANNEL_SESSION_RATE_LIMIT",
                    "value": widget.channel_session_rate_limit,
                },
                {"name": "CUSTOMER_READ_RATE_LIMIT", "value": widget.customer_read_rate_limit},
                {"name": "CUSTOMER_TOKEN_TTL_S", "value": str(widget.customer_token_ttl_seconds)},
                {
                    "name": "CUSTOMER_SESSION_TTL_S",
                    "value": str(widget.customer_session_ttl_seconds),
                },
            ]
    elif service == "ai-worker":
        env += [
            {"name": "OLLAMA_URL", "value": spec.ollama.url},
            {"name": "OLLAMA_MODEL", "value": spec.ollama.model},
            {"name": "OLLAMA_TIMEOUT_S", "value": str(spec.ollama.timeout_seconds)},
            {"name": "AI_MAX_CONCURRENCY", "value": str(spec.ai_worker.max_concurrency)},
            {"name": "AI_COMPANY", "value": spec.ai_worker.voice.company},
            {"name": "AI_TONE", "value": spec.ai_worker.voice.tone},
            {"name": "AI_LANGUAGES", "value": ",".join(spec.ai_worker.voice.languages)},
            {"name": "AI_NEVER_PROMISE", "value": spec.ai_worker.voice.never_promise},
        ]
        if spec.ai_worker.intent_examples:
            env.append({"name": "AI_INTENT_EXAMPLES", "value": INTENT_EXAMPLES_FILE})
    return env


GATEWAY_EDGE_ARGS = (
    "--http",
    "gateway.edge:BoundedHttpToolsProtocol",
    "--ws",
    "gateway.edge:DenyingWebSocketProtocol",
)
"""The public gateway's uvicorn protocols: request heads bounded in size and time
(``MAX_HEADER_BYTES``, ``HEADER_TIMEOUT_S``), WebSocket denials without an error log."""

_SECURE_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
}


def deployment(owner: Owner, spec: SupportInboxSpec, service: str, components_hash: str) -> Obj:
    """One app Deployment with its Dapr sidecar annotations.

    The app container serves HTTP on port ``http`` (8000) and its Prometheus metrics on port
    ``metrics`` (9464, ``METRICS_PORT``); the sidecar serves its own on 9090, which the Dapr
    injector names ``dapr-metrics``. A PodMonitor selects both by name.
    """
    module = service.replace("-", "_")
    image = {
        "gateway": spec.images.gateway,
        "messaging": spec.images.messaging,
        "ai-worker": spec.images.ai_worker,
    }[service]
    resources = {
        "gateway": spec.gateway.resources,
        "messaging": spec.messaging.resources,
        "ai-worker": spec.ai_worker.resources,
    }[service]
    annotations = {
        "dapr.io/enabled": "true",
        "dapr.io/app-id": service,
        "dapr.io/app-port": str(APP_PORT),
        "dapr.io/app-protocol": "http",
        "dapr.io/config": CONFIGURATION,
        "dapr.io/api-token-secret": spec.auth.dapr_api_token_secret_ref.name,
        "dapr.io/app-token-secret": spec.auth.app_api_token_secret_ref.name,
        "dapr.io/log-as-json": "true",
        "dapr.io/enable-metrics": "true",
        "dapr.io/metrics-port": str(DAPR_METRICS_PORT),
        "dapr.io/sidecar-cpu-request": spec.sidecar.cpu_request,
        "dapr.io/sidecar-memory-request": spec.sidecar.memory_request,
        "dapr.io/sidecar-cpu-limit": spec.sidecar.cpu_limit,
        "dapr.io/sidecar-memory-limit": spec.sidecar.memory_limit,
        # The pods mount no ServiceAccount token, so the sidecar's built-in Kubernetes secret
        # store cannot start ("stat /.kube/config" on a real node); the apps never call the
        # secrets API, and Dapr's operator resolves the components' secretKeyRefs itself.
        "dapr.io/disable-builtin-k8s-secret-store": "true",
        COMPONENTS_HASH: components_hash,
    }
    if service == "gateway" and spec.widget and spec.widget.channels_revision:
        annotations[WIDGET_REVISION] = spec.widget.channels_revision
    if service == "ai-worker":
        annotations["dapr.io/app-max-concurrency"] = str(spec.ai_worker.max_concurrency)
    container: Obj = {
        "name": service,
        "image": image,
        "imagePullPolicy": spec.images.pull_policy,
        "args": [
            "uvicorn",
            "--factory",
            f"{module}.main:create_app",
            "--host",
            "0.0.0.0",
            "--port",
            str(APP_PORT),
            "--no-access-log",
            # compressing each push once per socket costs more CPU (and a zlib context of
            # memory per socket) than the bytes it saves inside a cluster
            "--ws-per-message-deflate",
            "false",
            *(GATEWAY_EDGE_ARGS if service == "gateway" else ()),
        ],
        "ports": [
            {"name": "http", "containerPort": APP_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": APP_METRICS_PORT, "protocol": "TCP"},
        ],
        "env": _container_env(spec, service),
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 5},
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "http"},
            "periodSeconds": 10,
            "failureThreshold": 6,
        },
        "securityContext": _SECURE_CONTAINER,
        # A terminating pod stays in the Service's endpoints until kube-proxy hears of it:
        # keep serving meanwhile, or a rolling update refuses connections (seen on a node).
        "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_S}}},
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - an emptyDir mount, not a shared /tmp
            _SECRETS_MOUNT,
        ],
    }
    if res := _resources(resources):
        container["resources"] = res
    examples = spec.ai_worker.intent_examples if service == "ai-worker" else None
    pod: Obj = {
        "serviceAccountName": "default",
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "fsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [
            {"name": "tmp", "emptyDir": {}},
            _secrets_volume(_secret_files(spec, service)),
        ],
    }
    if spec.knowledge:
        pod["volumes"].append(
            {"name": "knowledge", "configMap": {"name": spec.knowledge.config_map}}
        )
        container["volumeMounts"].append(
            {"name": "knowledge", "mountPath": KNOWLEDGE_DIR, "readOnly": True}
        )
    if examples:
        pod["volumes"].append(
            {
                "name": "intent-examples",
                "configMap": {
                    "name": examples.name,
                    "items": [{"key": examples.key, "path": "examples.jsonl"}],
                },
            }
        )
        container["volumeMounts"].append(
            {"name": "intent-examples", "mountPath": INTENT_EXAMPLES_DIR, "readOnly": True}
        )
    if service == "messaging":
        pod["initContainers"] = [
            {
                "name": "migrate",
                "image": image,
                "imagePullPolicy": spec.images.pull_policy,
                "args": ["python", "-m", "messaging.prestart"],
                "env": [{"name": "ENVIRONMENT", "value": "production"}],
                "volumeMounts": [_SECRETS_MOUNT],
                "securityContext": _SECURE_CONTAINER,
            }
        ]
    body: Obj = {
        "selector": {"matchLabels": selector(owner, service)},
        "template": {
            "metadata": {"labels": labels(owner, service), "annotations": annotations},
            "spec": pod,
        },
    }
    if service != "ai-worker":  # the HPA owns ai-worker's replica count
        body["replicas"] = (spec.gateway if service == "gateway" else spec.messaging).replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(owner, service, service),
        "spec": body,
    }


def gateway_service(owner: Owner) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(owner, "gateway", "gateway"),
        "spec": {
            "selector": selector(owner, "gateway"),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def pdb(owner: Owner, service: str) -> Obj:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(owner, service, service),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(owner, service)}},
    }


def hpa(owner: Owner, spec: SupportInboxSpec) -> Obj:
    worker = spec.ai_worker
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(owner, "ai-worker", "ai-worker"),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ai-worker"},
            "minReplicas": worker.min_replicas,
            "maxReplicas": worker.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": worker.target_cpu_utilization_percentage,
                        },
                    },
                }
            ],
        },
    }
