"""The rendering function alone: shapes, Dapr annotations, day-2 differences, and offline
validation against pinned Kubernetes JSON schemas and Dapr's own CRD schemas."""

import copy
import os
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from inbox_operator.handlers import parse_spec, secret_refs
from inbox_operator.render import COMPONENTS_HASH, SERVICES, WIDGET_REVISION, Owner, render
from inbox_operator.spec import SupportInboxSpec

REPO = Path(__file__).resolve().parents[3]
KUBERNETES_SCHEMA_VERSION = "1.37.0"
"""Kubernetes JSON schemas the rendered objects must satisfy (kubernetes-validate, strict)."""
DAPR_CRDS = (
    Path(os.environ.get("INBOX_TOOLS_DIR", Path.home() / ".cache" / "support-inbox"))
    / "src"
    / "dapr-v1.18.2"
    / "charts"
    / "dapr"
    / "crds"
)
OWNER = Owner("inbox", "support", "0b6f0a44-7d55-4b43-9a56-1f7f1e6b52a8")


def spec_with(**overrides: object) -> SupportInboxSpec:
    base = {
        "database": {"secretRef": {"name": "db"}},
        "broker": {"type": "redis", "host": "redis:6379", "secretRef": {"name": "redis"}},
        "stateStore": {"type": "redis", "host": "redis:6379"},
        "auth": {
            k: {"name": k.removesuffix("SecretRef").lower()}
            for k in (
                "jwtSecretRef",
                "operatorsSecretRef",
                "channelApiKeysSecretRef",
                "daprApiTokenSecretRef",
                "appApiTokenSecretRef",
            )
        },
    }
    base.update(overrides)
    return parse_spec(base)


def by_kind(objects: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def test_every_object_is_owned_and_labelled() -> None:
    objects = render(OWNER, spec_with())
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in objects)
    assert kinds == sorted(
        [
            ("Component", "inbox-pubsub"),
            ("Component", "inbox-broadcast"),
            ("Component", "inbox-state"),
            ("Configuration", "inbox-config"),
            ("Resiliency", "inbox-resiliency"),
            *[("Deployment", s) for s in SERVICES],
            ("Service", "gateway"),
            *[("PodDisruptionBudget", s) for s in SERVICES],
            ("HorizontalPodAutoscaler", "ai-worker"),
        ]
    )
    for obj in objects:
        meta = obj["metadata"]
        assert meta["namespace"] == "support"
        (owner,) = meta["ownerReferences"]
        assert owner == {
            "apiVersion": "supportinbox.io/v1alpha1",
            "kind": "SupportInbox",
            "name": "inbox",
            "uid": OWNER.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
        assert meta["labels"]["app.kubernetes.io/part-of"] == "support-inbox"
        assert meta["labels"]["app.kubernetes.io/instance"] == "inbox"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "support-inbox-operator"


def test_deployments_carry_dapr_annotations() -> None:
    deployments = by_kind(render(OWNER, spec_with()), "Deployment")
    for service, deployment in deployments.items():
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["dapr.io/enabled"] == "true"
        assert annotations["dapr.io/app-id"] == service
        assert annotations["dapr.io/app-port"] == "8000"
        assert annotations["dapr.io/config"] == "inbox-config"
        assert annotations["dapr.io/api-token-secret"] == "daprapitoken"
        assert annotations["dapr.io/app-token-secret"] == "appapitoken"
        assert annotations["dapr.io/log-as-json"] == "true"
        assert annotations["dapr.io/enable-metrics"] == "true"
        assert annotations["dapr.io/sidecar-memory-limit"] == "256Mi"
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    assert (
        deployments["ai-worker"]["spec"]["template"]["metadata"]["annotations"][
            "dapr.io/app-max-concurrency"
        ]
        == "2"
    )
    assert "replicas" not in deployments["ai-worker"]["spec"]  # the HPA owns it
    assert deployments["messaging"]["spec"]["template"]["spec"]["initContainers"][0]["args"] == [
        "python",
        "-m",
        "messaging.prestart",
    ]


def test_every_app_container_serves_metrics_on_a_named_port() -> None:
    for service, deployment in by_kind(render(OWNER, spec_with()), "Deployment").items():
        template = deployment["spec"]["template"]
        (container,) = template["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"http": 8000, "metrics": 9464}, service
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["METRICS_PORT"] == "9464"
        # the sidecar keeps Dapr's default metrics port, which its injector names dapr-metrics
        assert template["metadata"]["annotations"]["dapr.io/enable-metrics"] == "true"
        assert template["metadata"]["annotations"]["dapr.io/metrics-port"] == "9090"
        assert template["metadata"]["labels"]["app.kubernetes.io/part-of"] == "support-inbox"
    (config,) = by_kind(render(OWNER, spec_with()), "Configuration").values()
    assert config["spec"]["metric"] == {"enabled": True}


@pytest.mark.parametrize(
    ("broker", "component_type", "expected"),
    [
        ({"type": "redis", "host": "r:6379"}, "pubsub.redis", {"redisHost": "r:6379"}),
        (
            {"type": "rabbitmq", "secretRef": {"name": "amqp"}},
            "pubsub.rabbitmq",
            {
                "durable": "true",
                "deliveryMode": "2",
                "publisherConfirm": "true",
                "requeueInFailure": "true",
            },
        ),
        (
            {"type": "kafka", "host": "k1:9092,k2:9092"},
            "pubsub.kafka",
            {"brokers": "k1:9092,k2:9092", "initialOffset": "oldest"},
        ),
        (
            {"type": "jetstream", "host": "nats://n:4222"},
            "pubsub.jetstream",
            {"natsURL": "nats://n:4222"},
        ),
    ],
)
def test_each_broker_renders_its_component(broker, component_type, expected) -> None:
    pubsub = by_kind(render(OWNER, spec_with(broker=broker)), "Component")["inbox-pubsub"]
    assert pubsub["spec"]["type"] == component_type
    values = {m["name"]: m.get("value") for m in pubsub["spec"]["metadata"]}
    assert expected.items() <= values.items()
    assert pubsub["scopes"] == list(SERVICES)


def test_broker_switch_rolls_every_deployment() -> None:
    before = by_kind(render(OWNER, spec_with()), "Deployment")
    after = by_kind(
        render(OWNER, spec_with(broker={"type": "kafka", "host": "k:9092"})), "Deployment"
    )
    for service in SERVICES:
        old = before[service]["spec"]["template"]["metadata"]["annotations"][COMPONENTS_HASH]
        new = after[service]["spec"]["template"]["metadata"]["annotations"][COMPONENTS_HASH]
        assert old != new


def test_model_change_rolls_only_the_ai_worker() -> None:
    before = by_kind(render(OWNER, spec_with()), "Deployment")
    after = by_kind(render(OWNER, spec_with(ollama={"model": "qwen2.5:7b"})), "Deployment")
    changed = {s for s in SERVICES if before[s]["spec"]["template"] != after[s]["spec"]["template"]}
    assert changed == {"ai-worker"}
    env = {
        e["name"]: e.get("value")
        for e in after["ai-worker"]["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["OLLAMA_MODEL"] == "qwen2.5:7b"


def test_the_voice_reaches_only_the_ai_worker_as_its_settings() -> None:
    voice = {
        "company": "Acme Cloud",
        "tone": "warm",
        "languages": ["English", "German"],
        "neverPromise": "credits",
    }
    before = by_kind(render(OWNER, spec_with()), "Deployment")
    after = by_kind(render(OWNER, spec_with(aiWorker={"voice": voice})), "Deployment")
    changed = {s for s in SERVICES if before[s]["spec"]["template"] != after[s]["spec"]["template"]}
    assert changed == {"ai-worker"}
    env = _env(after["ai-worker"])
    assert (env["AI_COMPANY"], env["AI_TONE"], env["AI_LANGUAGES"], env["AI_NEVER_PROMISE"]) == (
        "Acme Cloud",
        "warm",
        "English,German",
        "credits",
    )
    assert _env(before["ai-worker"])["AI_COMPANY"] == "a bank"


def test_rendering_is_pure() -> None:
    spec = spec_with()
    assert render(OWNER, spec) == render(OWNER, copy.deepcopy(spec))


def test_invalid_spec_names_the_field() -> None:
    with pytest.raises(Exception, match=r"spec\.broker\.type"):
        spec_with(broker={"type": "mqtt"})


def strict(schema: object) -> object:
    """Refuse fields a structural schema does not declare, as server-side apply does."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    found = {k: strict(v) for k, v in schema.items()}
    if (
        "properties" in found
        and "additionalProperties" not in found
        and not found.get("x-kubernetes-preserve-unknown-fields")
    ):
        found["additionalProperties"] = False
    return found


def test_strict_dapr_schema_refuses_unknown_fields() -> None:
    schema = strict({"type": "object", "properties": {"a": {"type": "string"}}})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"a": "x", "typo": 1}, schema)


@pytest.mark.parametrize(
    "broker",
    [
        {"type": "redis", "host": "r:6379"},
        {"type": "rabbitmq", "secretRef": {"name": "amqp"}},
        {"type": "kafka", "host": "k:9092"},
        {"type": "jetstream", "host": "nats://n:4222"},
    ],
)
@pytest.mark.parametrize("tracing", [True, False])
def test_rendered_objects_pass_offline_schemas(broker, tracing) -> None:
    dapr_schemas = {}
    for path in DAPR_CRDS.glob("*.yaml"):
        for crd in yaml.safe_load_all(path.read_text()):
            if crd and crd.get("kind") == "CustomResourceDefinition":
                version = crd["spec"]["versions"][0]
                dapr_schemas[crd["spec"]["names"]["kind"]] = strict(
                    version["schema"]["openAPIV3Schema"]
                )
    assert {"Component", "Configuration", "Resiliency"} <= dapr_schemas.keys()
    for obj in render(OWNER, spec_with(broker=broker, tracing={"enabled": tracing})):
        if obj["apiVersion"].startswith("dapr.io/"):
            jsonschema.validate(obj, dapr_schemas[obj["kind"]])
        else:
            kubernetes_validate.validate(obj, KUBERNETES_SCHEMA_VERSION, strict=True)


def test_crd_and_typed_spec_agree() -> None:
    crd = yaml.safe_load((REPO / "k8s/crds/supportinboxes.supportinbox.io.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]

    def walk(model: type, props: dict, path: str) -> None:
        fields = {f.alias or n: f for n, f in model.model_fields.items()}
        assert set(fields) == set(props), path
        for alias, field in fields.items():
            sub = props[alias]
            annotation = field.annotation
            inner = getattr(annotation, "__args__", (annotation,))[0]
            if isinstance(inner, type) and hasattr(inner, "model_fields") and "properties" in sub:
                walk(inner, sub["properties"], f"{path}.{alias}")

    walk(SupportInboxSpec, schema["properties"], "spec")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"broker": {"type": "rabbitmq"}}, "broker.secretRef is required for rabbitmq"),
        ({"broker": {"type": "kafka"}}, "broker.host is required for kafka"),
        ({"stateStore": {"type": "postgresql"}}, "stateStore.secretRef is required"),
    ],
)
def test_connection_rules_hold_without_the_api_server(override, message) -> None:
    with pytest.raises(Exception, match=message):
        spec_with(**override)


def _secret_files(deployment: dict) -> dict[str, tuple[str, str]]:
    """File name under /run/secrets -> (Secret, key), from the pod's ``secrets`` volume."""
    pod = deployment["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "secrets"]
    return {
        item["path"]: (source["secret"]["name"], item["key"])
        for source in volume["projected"]["sources"]
        for item in source["secret"]["items"]
    }


def test_secrets_reach_the_pods_as_files_never_as_environment() -> None:
    auth = spec_with().auth.model_dump(by_alias=True, exclude_none=True)
    spec = spec_with(auth={**auth, "adminPasswordSecretRef": {"name": "inbox-auth"}})
    deployments = by_kind(render(OWNER, spec), "Deployment")
    for service, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        for container in pod["containers"] + pod.get("initContainers", []):
            assert not [e for e in container.get("env", []) if "valueFrom" in e], service
            mounts = {m["name"]: m for m in container["volumeMounts"]}
            assert mounts["secrets"]["mountPath"] == "/run/secrets"
            assert mounts["secrets"]["readOnly"] is True
        files = _secret_files(deployment)
        assert {"APP_API_TOKEN", "DAPR_API_TOKEN"} <= set(files), service
        assert ("ADMIN_PASSWORD" in files) == (service == "gateway"), service
        assert ("DATABASE_URL" in files) == (service == "messaging"), service
    assert _secret_files(deployments["gateway"])["ADMIN_PASSWORD"] == ("inbox-auth", "password")
    assert _secret_files(deployments["gateway"])["JWT_SECRET"] == ("jwt", "secret")


WIDGET = {
    "channelsSecretRef": {"name": "inbox-widget"},
    "channelsRevision": "a0e570c3573352cf",
    "customerRateLimit": "30/minute",
    "customerSessionTtlSeconds": 7 * 86_400,
}
WIDGET_ENV = ("CUSTOMER_RATE_LIMIT", "WIDGET_CHANNEL_RATE_LIMIT", "CUSTOMER_TOKEN_TTL_S",
              "CUSTOMER_SESSION_TTL_S")  # fmt: skip


def _env(deployment: dict) -> dict[str, str | None]:
    return {
        e["name"]: e.get("value")
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }


def test_widget_channels_reach_only_the_gateway_as_a_file_and_limits_as_env() -> None:
    spec = spec_with(widget=WIDGET)
    objects = render(OWNER, spec)
    deployments = by_kind(objects, "Deployment")
    gateway = deployments["gateway"]
    # the JSON holds the sites' identity secrets: a file of the projected volume, no env
    assert _secret_files(gateway)["WIDGET_CHANNELS"] == ("inbox-widget", "channels.json")
    assert not [
        e
        for e in gateway["spec"]["template"]["spec"]["containers"][0]["env"]
        if "valueFrom" in e or e["name"] == "WIDGET_CHANNELS"
    ]
    assert {k: _env(gateway)[k] for k in WIDGET_ENV} == {
        "CUSTOMER_RATE_LIMIT": "30/minute",
        "WIDGET_CHANNEL_RATE_LIMIT": "600/minute",  # the gateway's defaults, from the CRD's
        "CUSTOMER_TOKEN_TTL_S": "900",
        "CUSTOMER_SESSION_TTL_S": "604800",
    }
    annotations = gateway["spec"]["template"]["metadata"]["annotations"]
    assert annotations[WIDGET_REVISION] == "a0e570c3573352cf"
    for service in ("messaging", "ai-worker"):
        assert "WIDGET_CHANNELS" not in _secret_files(deployments[service]), service
        assert not set(WIDGET_ENV) & set(_env(deployments[service])), service
        assert (
            WIDGET_REVISION
            not in deployments[service]["spec"]["template"]["metadata"]["annotations"]
        )
    # the operator waits for the Secret like every other one it references
    assert ("widget.channelsSecretRef", "inbox-widget", "channels.json") in secret_refs(spec)
    for obj in objects:
        if not obj["apiVersion"].startswith("dapr.io/"):
            kubernetes_validate.validate(obj, KUBERNETES_SCHEMA_VERSION, strict=True)


def test_without_a_widget_section_the_gateway_has_no_channels() -> None:
    gateway = by_kind(render(OWNER, spec_with()), "Deployment")["gateway"]
    assert "WIDGET_CHANNELS" not in _secret_files(gateway)
    assert not set(WIDGET_ENV) & set(_env(gateway))
    assert WIDGET_REVISION not in gateway["spec"]["template"]["metadata"]["annotations"]
    assert not [r for r in secret_refs(spec_with()) if r[0].startswith("widget.")]


def test_a_new_channels_revision_rolls_only_the_gateway() -> None:
    before = by_kind(render(OWNER, spec_with(widget=WIDGET)), "Deployment")
    after = by_kind(
        render(OWNER, spec_with(widget={**WIDGET, "channelsRevision": "0123456789abcdef"})),
        "Deployment",
    )
    changed = {s for s in SERVICES if before[s]["spec"]["template"] != after[s]["spec"]["template"]}
    assert changed == {"gateway"}


@pytest.mark.parametrize(
    ("widget", "field"),
    [
        ({"customerRateLimit": "lots"}, "spec.widget.customerRateLimit"),
        ({"channelRateLimit": "10/fortnight"}, "spec.widget.channelRateLimit"),
        ({"customerTokenTtlSeconds": 5}, "spec.widget.customerTokenTtlSeconds"),
        ({"customerSessionTtlSeconds": 400 * 86_400}, "spec.widget.customerSessionTtlSeconds"),
        ({"channelsSecretRef": None}, "spec.widget.channelsSecretRef"),
        ({"channels": {}}, "spec.widget.channels"),  # a typo of the CRD's fields
    ],
)
def test_invalid_widget_names_the_field(widget: dict, field: str) -> None:
    with pytest.raises(Exception, match=field.replace(".", r"\.")):
        spec_with(widget={**WIDGET, **widget})


def test_tracing_points_apps_sidecars_and_browsers_at_the_collector() -> None:
    spec = spec_with(
        tracing={
            "enabled": True,
            "endpoint": "otel:4318",
            "browserTracesUrl": "https://otel.example.com/v1/traces",
            "traceUiUrl": "https://jaeger.example.com/trace/{trace_id}",
        }
    )
    objects = render(OWNER, spec)
    (config,) = [o for o in objects if o["kind"] == "Configuration"]
    assert config["spec"]["tracing"]["otel"] == {
        "endpointAddress": "otel:4318",
        "isSecure": False,
        "protocol": "http",  # the same OTLP/HTTP receiver the apps' exporter uses
    }
    for service, deployment in by_kind(objects, "Deployment").items():
        env = {
            e["name"]: e.get("value")
            for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel:4318"
        # the services sample their own root spans as the sidecars do
        assert env["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"
        assert env["OTEL_TRACES_SAMPLER_ARG"] == config["spec"]["tracing"]["samplingRate"]
        browser = {k: env[k] for k in ("BROWSER_TRACES_URL", "TRACE_UI_URL") if k in env}
        assert browser == (
            {
                "BROWSER_TRACES_URL": "https://otel.example.com/v1/traces",
                "TRACE_UI_URL": "https://jaeger.example.com/trace/{trace_id}",
            }
            if service == "gateway"
            else {}
        ), service


COMPONENT_DIR = Path(__file__).resolve().parents[3] / "dapr-components" / "pubsub"
PER_ENVIRONMENT = {
    # connection settings come from the spec (cluster) or the environment (local)
    "redisHost", "redisPassword", "connectionString", "brokers", "natsURL", "token",
    # {podName} in a cluster (a restarted container keeps its group), {uuid} locally
    "consumerID",
    # derived from spec.ollama.timeoutSeconds in a cluster
    "processingTimeout", "ackWait",
    # cluster only: the largest event a broker accepts
    "maxMessageBytes",
}  # fmt: skip


@pytest.mark.parametrize(
    "broker",
    [
        {"type": "redis", "host": "r:6379"},
        {"type": "rabbitmq", "secretRef": {"name": "amqp"}},
        {"type": "kafka", "host": "k:9092"},
        {"type": "jetstream", "host": "nats://n:4222"},
    ],
)
@pytest.mark.parametrize("role", ["pubsub", "broadcast"])
def test_cluster_components_match_the_local_ones(broker, role) -> None:
    """The operator renders the settings of ``dapr-components/pubsub/<broker>/``."""
    name = "inbox-broadcast" if role == "broadcast" else "inbox-pubsub"
    rendered = by_kind(render(OWNER, spec_with(broker=broker)), "Component")[name]
    local = yaml.safe_load((COMPONENT_DIR / broker["type"] / f"{role}.yaml").read_text())

    def settings(component: dict) -> dict:
        return {
            m["name"]: m.get("value")
            for m in component["spec"]["metadata"]
            if m["name"] not in PER_ENVIRONMENT
        }

    assert rendered["spec"]["type"] == local["spec"]["type"]
    assert settings(rendered) == settings(local)
    has_own_group = any(m["name"] == "consumerID" for m in rendered["spec"]["metadata"])
    assert has_own_group == (role == "broadcast" and broker["type"] != "jetstream")


def test_intent_examples_reach_the_ai_worker_as_a_read_only_file() -> None:
    plain = by_kind(render(OWNER, spec_with()), "Deployment")["ai-worker"]
    assert "AI_INTENT_EXAMPLES" not in _env(plain)
    spec = spec_with(aiWorker={"intentExamples": {"name": "inbox-intents"}})
    worker = by_kind(render(OWNER, spec), "Deployment")["ai-worker"]
    pod = worker["spec"]["template"]["spec"]
    assert {
        "name": "intent-examples",
        "mountPath": "/etc/inbox/intent-examples",
        "readOnly": True,
    } in (pod["containers"][0]["volumeMounts"])
    volume = next(v for v in pod["volumes"] if v["name"] == "intent-examples")
    assert volume["configMap"] == {
        "name": "inbox-intents",
        "items": [{"key": "examples.jsonl", "path": "examples.jsonl"}],
    }
    assert _env(worker)["AI_INTENT_EXAMPLES"] == "/etc/inbox/intent-examples/examples.jsonl"


def test_a_knowledge_config_map_reaches_every_service_as_its_folder() -> None:
    plain = by_kind(render(OWNER, spec_with()), "Deployment")
    assert all("KNOWLEDGE_DIR" not in _env(plain[s]) for s in SERVICES)
    deployments = by_kind(render(OWNER, spec_with(knowledge={"configMap": "kb"})), "Deployment")
    for service in SERVICES:
        pod = deployments[service]["spec"]["template"]["spec"]
        assert {"name": "knowledge", "configMap": {"name": "kb"}} in pod["volumes"]
        assert {"name": "knowledge", "mountPath": "/etc/inbox/knowledge", "readOnly": True} in (
            pod["containers"][0]["volumeMounts"]
        )
        assert _env(deployments[service])["KNOWLEDGE_DIR"] == "/etc/inbox/knowledge"
