"""The operator against a real kube-apiserver: objects, annotations, owners, day-2, deletion.

The API server admits or rejects everything (CRD schema, CEL rules, RBAC); the operator runs
as its own ServiceAccount identity under the chart's RBAC (``templates/operator.yaml``,
cluster-wide here, because these tests use many namespaces), so a missing permission fails
these tests. With no kubelet, pods never start: Deployments stay unavailable.
"""

import base64
import copy

import pytest
from devstack.client import wait_for
from devstack.fixtures import start_operator
from lightkube import Client, KubeConfig, codecs
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.autoscaling_v2 import HorizontalPodAutoscaler
from lightkube.resources.core_v1 import Event, Namespace, Secret, Service
from lightkube.resources.policy_v1 import PodDisruptionBudget
from lightkube.types import PatchType

pytestmark = pytest.mark.integration

SupportInbox = create_namespaced_resource(
    "supportinbox.io", "v1alpha1", "SupportInbox", "supportinboxes"
)
Component = create_namespaced_resource("dapr.io", "v1alpha1", "Component", "components")
OPERATOR_LOG = "kube/operator.log"
Configuration = create_namespaced_resource("dapr.io", "v1alpha1", "Configuration", "configurations")
Resiliency = create_namespaced_resource("dapr.io", "v1alpha1", "Resiliency", "resiliencies")
OWNED = [
    (Component, "inbox-pubsub"),
    (Component, "inbox-state"),
    (Configuration, "inbox-config"),
    (Resiliency, "inbox-resiliency"),
    (Deployment, "gateway"),
    (Deployment, "messaging"),
    (Deployment, "ai-worker"),
    (Service, "gateway"),
    (PodDisruptionBudget, "gateway"),
    (PodDisruptionBudget, "messaging"),
    (PodDisruptionBudget, "ai-worker"),
    (HorizontalPodAutoscaler, "ai-worker"),
]


def make_namespace(admin: Client, name: str, secrets_too: bool = True) -> None:
    admin.apply(
        codecs.from_dict({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
        force=True,
    )
    if not secrets_too:
        return
    for secret_name, data in {
        "db": {"url": "postgresql://inbox:pw@postgres:5432/inbox"},
        "redis": {"password": "redis-pw"},
        "auth": {"secret": "s" * 40, "operators.json": "{}", "keys.json": "[]"},
        "tokens": {"token": "t" * 32},
    }.items():
        admin.apply(
            codecs.from_dict(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": secret_name, "namespace": name},
                    "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
                }
            ),
            force=True,
        )


def inbox_manifest(namespace: str, name: str = "inbox", **spec: object) -> dict:
    body = {
        "broker": {"type": "redis", "host": "redis:6379", "secretRef": {"name": "redis"}},
        "stateStore": {"type": "redis", "host": "redis:6379", "secretRef": {"name": "redis"}},
        "database": {"secretRef": {"name": "db"}},
        "ollama": {"url": "http://127.0.0.1:9", "model": "llama3.2:3b"},
        "auth": {
            "jwtSecretRef": {"name": "auth"},
            "operatorsSecretRef": {"name": "auth"},
            "channelApiKeysSecretRef": {"name": "auth"},
            "daprApiTokenSecretRef": {"name": "tokens"},
            "appApiTokenSecretRef": {"name": "tokens"},
        },
    }
    body.update(spec)
    return {
        "apiVersion": "supportinbox.io/v1alpha1",
        "kind": "SupportInbox",
        "metadata": {"name": name, "namespace": namespace},
        "spec": body,
    }


def create(admin: Client, manifest: dict):
    return admin.create(codecs.from_dict(copy.deepcopy(manifest)))


def conditions(admin: Client, namespace: str, name: str = "inbox") -> dict[str, dict]:
    found = admin.get(SupportInbox, name, namespace=namespace)
    return {c["type"]: c for c in (found.get("status") or {}).get("conditions") or []}


def owned(admin: Client, namespace: str) -> dict[tuple[str, str], object]:
    found = {}
    for kind, name in OWNED:
        try:
            found[(kind.__name__, name)] = admin.get(kind, name, namespace=namespace)
        except ApiError as exc:
            if exc.status.code != 404:
                raise
    return found


def all_owned(admin: Client, namespace: str) -> dict | None:
    found = owned(admin, namespace)
    return found if len(found) == len(OWNED) else None


def test_create_renders_every_object(admin, operator) -> None:
    make_namespace(admin, "support")
    inbox = create(admin, inbox_manifest("support"))
    objects = wait_for(lambda: all_owned(admin, "support"), 60, "owned objects")
    for key, obj in objects.items():
        (ref,) = obj.metadata.ownerReferences
        assert (ref.kind, ref.uid, ref.controller) == ("SupportInbox", inbox.metadata.uid, True), (
            key
        )
        assert obj.metadata.labels["app.kubernetes.io/managed-by"] == "support-inbox-operator"
        assert obj.metadata.labels["app.kubernetes.io/instance"] == "inbox"
    gateway = objects[("Deployment", "gateway")]
    annotations = gateway.spec.template.metadata.annotations
    assert annotations["dapr.io/enabled"] == "true"
    assert annotations["dapr.io/app-id"] == "gateway"
    assert annotations["dapr.io/api-token-secret"] == "tokens"
    assert annotations["dapr.io/config"] == "inbox-config"
    pubsub = objects[("Component", "inbox-pubsub")]
    assert pubsub["spec"]["type"] == "pubsub.redis"
    assert pubsub["scopes"] == ["gateway", "messaging", "ai-worker"]

    status = wait_for(
        lambda: (lambda c: c if "Ready" in c else None)(conditions(admin, "support")),
        60,
        "conditions",
    )
    assert status["Ready"]["status"] == "False"
    assert status["Ready"]["reason"] == "DeploymentsProgressing"  # no kubelet here
    assert status["ModelReady"]["reason"] == "ModelUnavailable"
    assert "unreachable" in status["ModelReady"]["message"]
    found = admin.get(SupportInbox, "inbox", namespace="support")
    assert found["status"]["observedGeneration"] == found.metadata.generation
    events = wait_for(
        lambda: [e for e in admin.list(Event, namespace="support") if e.reason == "Reconciled"],
        30,
        "Reconciled event",
    )
    assert "applied 13 objects" in events[0].message


def test_reconciling_again_changes_nothing(kube, admin, operator, output_dir) -> None:
    wait_for(lambda: all_owned(admin, "support"), 60, "owned objects")
    before = {key: obj.metadata.resourceVersion for key, obj in owned(admin, "support").items()}
    operator.stop()
    log = output_dir / "kube" / "operator.log"
    resumed_at = log.read_text().count("reconciled support/inbox")
    restarted = start_operator(kube, output_dir)
    try:
        wait_for(
            lambda: log.read_text().count("reconciled support/inbox") > resumed_at,
            60,
            "reconcile on resume",
        )
        after = {key: obj.metadata.resourceVersion for key, obj in owned(admin, "support").items()}
    finally:
        restarted.stop()
    operator.start()
    assert after == before


def test_broker_switch_swaps_components_and_rolls(admin, operator) -> None:
    before = {
        n: admin.get(Deployment, n, namespace="support")
        for n in ("gateway", "messaging", "ai-worker")
    }
    admin.patch(
        SupportInbox,
        "inbox",
        namespace="support",
        patch_type=PatchType.MERGE,
        obj={"spec": {"broker": {"type": "kafka", "host": "kafka:9092", "secretRef": None}}},
    )
    pubsub = wait_for(
        lambda: (lambda c: c if c["spec"]["type"] == "pubsub.kafka" else None)(
            admin.get(Component, "inbox-pubsub", namespace="support")
        ),
        60,
        "kafka component",
    )
    values = {m["name"]: m.get("value") for m in pubsub["spec"]["metadata"]}
    assert values["brokers"] == "kafka:9092"
    assert "redisHost" not in values
    key = "supportinbox.io/components-hash"

    def rolled() -> dict | None:
        # Components are applied before Deployments: wait for the whole apply.
        now = {n: admin.get(Deployment, n, namespace="support") for n in before}
        done = all(now[n].metadata.generation > before[n].metadata.generation for n in before)
        return now if done else None

    after = wait_for(rolled, 60, "every Deployment rolled")
    for name, old in before.items():
        new_hash = after[name].spec.template.metadata.annotations[key]
        assert new_hash != old.spec.template.metadata.annotations[key], name
    events = wait_for(
        lambda: [
            e
            for e in admin.list(Event, namespace="support")
            if "broker redis -> kafka" in (e.message or "")
        ],
        30,
        "event",
    )
    assert "roll" in events[0].message


def test_model_change_rolls_only_the_ai_worker(admin, operator) -> None:
    before = {
        n: admin.get(Deployment, n, namespace="support").metadata.generation
        for n in ("gateway", "messaging", "ai-worker")
    }
    admin.patch(
        SupportInbox,
        "inbox",
        namespace="support",
        patch_type=PatchType.MERGE,
        obj={"spec": {"ollama": {"model": "qwen2.5:7b"}}},
    )

    def rolled() -> bool:
        worker = admin.get(Deployment, "ai-worker", namespace="support")
        env = {e.name: e.value for e in worker.spec.template.spec.containers[0].env}
        return env.get("OLLAMA_MODEL") == "qwen2.5:7b"

    wait_for(rolled, 60, "ai-worker with the new model")
    after = {
        n: admin.get(Deployment, n, namespace="support").metadata.generation
        for n in ("gateway", "messaging", "ai-worker")
    }
    assert after["ai-worker"] == before["ai-worker"] + 1
    assert after["gateway"] == before["gateway"] and after["messaging"] == before["messaging"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"broker": {"type": "mqtt", "host": "x"}}, 'Unsupported value: "mqtt"'),
        ({"broker": {"type": "rabbitmq"}}, "broker.secretRef is required for rabbitmq"),
        ({"broker": {"type": "kafka"}}, "broker.host is required"),
        (
            {"aiWorker": {"minReplicas": 5, "maxReplicas": 2}},
            "aiWorker.minReplicas must not exceed aiWorker.maxReplicas",
        ),
        ({"ollama": {"url": "ftp://x"}}, "spec.ollama.url"),
        ({"database": {}}, "spec.database.secretRef: Required value"),
        (
            {"widget": {"channelsSecretRef": {"name": "widget"}, "customerRateLimit": "lots"}},
            "spec.widget.customerRateLimit",
        ),
        ({"widget": {"customerRateLimit": "5/second"}}, "spec.widget.channelsSecretRef: Required"),
    ],
    ids=[
        "unknown-broker",
        "rabbitmq-without-secret",
        "kafka-without-host",
        "replicas",
        "ollama-url",
        "database",
        "widget-rate-limit",
        "widget-without-secret",
    ],
)
def test_invalid_specs_are_rejected_by_the_api_server(admin, spec, message) -> None:
    make_namespace(admin, "invalid", secrets_too=False)
    with pytest.raises(ApiError) as rejected:
        create(admin, inbox_manifest("invalid", **spec))
    assert rejected.value.status.code == 422
    assert message in rejected.value.status.message


def test_missing_secret_applies_nothing_until_it_exists(admin, operator) -> None:
    make_namespace(admin, "waiting", secrets_too=False)
    create(admin, inbox_manifest("waiting"))
    status = wait_for(
        lambda: (lambda c: c if c.get("Ready", {}).get("reason") == "SecretMissing" else None)(
            conditions(admin, "waiting")
        ),
        60,
        "SecretMissing",
    )
    assert "database.secretRef: Secret db not found" in status["Ready"]["message"]
    assert owned(admin, "waiting") == {}  # never half-applied


def test_widget_channels_are_a_gateway_file_and_a_new_revision_rolls_it(admin, operator) -> None:
    """The WIDGET_CHANNELS Secret is waited for like every referenced Secret, then mounted into
    the gateway's projected volume; the limits are its environment, with the CRD's defaults;
    a new channelsRevision rolls the gateway alone."""
    make_namespace(admin, "widget")
    create(
        admin,
        inbox_manifest(
            "widget",
            widget={
                "channelsSecretRef": {"name": "widget"},
                "channelsRevision": "1111111111111111",
                "customerRateLimit": "30/minute",
            },
        ),
    )
    status = _refused(admin, "widget", "SecretMissing")
    assert "widget.channelsSecretRef: Secret widget not found" in status["Ready"]["message"]
    channels = '{"shop": {"name": "Shop", "allowed_origins": ["https://shop.example"]}}'
    admin.apply(
        codecs.from_dict(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "widget", "namespace": "widget"},
                "stringData": {"channels.json": channels},
            }
        ),
        field_manager="test",
    )
    objects = wait_for(lambda: all_owned(admin, "widget"), 90, "owned objects")  # retried in 30 s
    gateway = objects[("Deployment", "gateway")]
    pod = gateway.spec.template.spec
    (files,) = [v for v in pod.volumes if v.name == "secrets"]
    mounted = {
        item.path: (source.secret.name, item.key)
        for source in files.projected.sources
        for item in source.secret.items
    }
    assert mounted["WIDGET_CHANNELS"] == ("widget", "channels.json")
    env = {e.name: e for e in pod.containers[0].env}
    assert not [e for e in env.values() if e.valueFrom]
    assert {k: env[k].value for k in (
        "CUSTOMER_RATE_LIMIT", "WIDGET_CHANNEL_RATE_LIMIT", "CUSTOMER_TOKEN_TTL_S",
        "CUSTOMER_SESSION_TTL_S")} == {
        "CUSTOMER_RATE_LIMIT": "30/minute",
        "WIDGET_CHANNEL_RATE_LIMIT": "600/minute",
        "CUSTOMER_TOKEN_TTL_S": "900",
        "CUSTOMER_SESSION_TTL_S": "2592000",
    }  # fmt: skip
    messaging = objects[("Deployment", "messaging")]
    assert "WIDGET_CHANNELS" not in {
        item.path
        for v in messaging.spec.template.spec.volumes
        if v.name == "secrets"
        for source in v.projected.sources
        for item in source.secret.items
    }

    before = {
        n: admin.get(Deployment, n, namespace="widget").metadata.generation
        for n in ("gateway", "messaging", "ai-worker")
    }
    admin.patch(
        SupportInbox,
        "inbox",
        namespace="widget",
        patch_type=PatchType.MERGE,
        obj={"spec": {"widget": {"channelsRevision": "2222222222222222"}}},
    )

    def rolled() -> bool:
        gateway = admin.get(Deployment, "gateway", namespace="widget")
        annotations = gateway.spec.template.metadata.annotations
        return annotations.get("supportinbox.io/widget-channels-revision") == "2222222222222222"

    wait_for(rolled, 60, "gateway rolled to the new channels")
    after = {
        n: admin.get(Deployment, n, namespace="widget").metadata.generation
        for n in ("gateway", "messaging", "ai-worker")
    }
    assert after["gateway"] == before["gateway"] + 1
    assert after["messaging"] == before["messaging"] and after["ai-worker"] == before["ai-worker"]
    wait_for(
        lambda: [
            e
            for e in admin.list(Event, namespace="widget")
            if "widget channels changed: gateway rolls" in (e.message or "")
        ],
        30,
        "event",
    )
    admin.delete(SupportInbox, "inbox", namespace="widget")


def test_second_inbox_in_a_namespace_is_refused(admin, operator) -> None:
    create(admin, inbox_manifest("support", name="second"))
    status = wait_for(
        lambda: (lambda c: c if "Ready" in c else None)(conditions(admin, "support", "second")),
        60,
        "conditions",
    )
    assert status["Ready"]["reason"] == "DuplicateInNamespace"
    admin.delete(SupportInbox, "second", namespace="support")


def _refused(admin: Client, namespace: str, reason: str) -> dict:
    return wait_for(
        lambda: (lambda c: c if c.get("Ready", {}).get("reason") == reason else None)(
            conditions(admin, namespace)
        ),
        60,
        reason,
    )


def test_an_object_someone_else_made_is_never_taken_over(admin, operator) -> None:
    """A Deployment named like one the inbox renders, made by another manager, stays as it
    is: the operator applies nothing and names the object and its manager."""
    make_namespace(admin, "occupied")
    theirs = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "gateway", "namespace": "occupied"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "theirs"}},
            "template": {
                "metadata": {"labels": {"app": "theirs"}},
                "spec": {"containers": [{"name": "web", "image": "example/theirs:1"}]},
            },
        },
    }
    admin.apply(codecs.from_dict(theirs), field_manager="someone-else")
    create(admin, inbox_manifest("occupied"))
    status = _refused(admin, "occupied", "ObjectNotOwned")
    assert "Deployment/gateway" in status["Ready"]["message"]
    assert "someone-else" in status["Ready"]["message"]
    gateway = admin.get(Deployment, "gateway", namespace="occupied")
    assert not gateway.metadata.ownerReferences
    assert gateway.spec.template.spec.containers[0].image == "example/theirs:1"
    assert ("Deployment", "messaging") not in owned(admin, "occupied")  # nothing half-applied
    admin.delete(SupportInbox, "inbox", namespace="occupied")


def test_a_field_another_manager_took_is_not_forced_back(admin, operator) -> None:
    """``kubectl scale`` of an owned Deployment: the next reconcile leaves the replicas as the
    other manager set them and says which field conflicts with whom."""
    make_namespace(admin, "scaled")
    create(admin, inbox_manifest("scaled"))
    wait_for(lambda: all_owned(admin, "scaled"), 60, "owned objects")
    admin.patch(
        Deployment,
        "messaging",
        {"spec": {"replicas": 5}},
        namespace="scaled",
        patch_type=PatchType.MERGE,
        field_manager="kubectl-scale",
    )
    admin.patch(  # any spec change reconciles
        SupportInbox,
        "inbox",
        {"spec": {"ollama": {"model": "qwen2.5:0.5b"}}},
        namespace="scaled",
        patch_type=PatchType.MERGE,
    )
    status = _refused(admin, "scaled", "FieldConflict")
    message = status["Ready"]["message"]
    assert "Deployment/messaging" in message and "kubectl-scale" in message, message
    assert ".spec.replicas" in message
    assert admin.get(Deployment, "messaging", namespace="scaled").spec.replicas == 5
    admin.delete(SupportInbox, "inbox", namespace="scaled")


def test_operator_identity_is_least_privilege(kube) -> None:
    operator_client = Client(config=KubeConfig.from_file(kube.operator_kubeconfig))
    with pytest.raises(ApiError) as denied:
        list(operator_client.list(Secret, namespace="support"))
    assert denied.value.status.code == 403
    with pytest.raises(ApiError):
        operator_client.delete(Namespace, "support")


def test_deleting_the_inbox_collects_its_objects(admin, operator) -> None:
    wait_for(lambda: all_owned(admin, "support"), 60, "owned objects")
    admin.delete(SupportInbox, "inbox", namespace="support")
    wait_for(lambda: owned(admin, "support") == {}, 90, "garbage collection")
