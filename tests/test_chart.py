"""The Helm chart: lint and render a matrix of profiles offline, validate every object, then
install, upgrade and uninstall it on a real kube-apiserver with the operator reconciling."""

import base64
import json
import re
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from devstack.client import wait_for
from devstack.fixtures import OPERATOR_NAMESPACE, OPERATOR_RELEASE, apply_operator_rbac, helm
from devstack.stack import REPO
from gateway.core.config import Settings as GatewaySettings
from inbox_common import metrics as inbox_metrics
from inbox_operator import render as operator_render
from inbox_operator.spec import SupportInboxSpec
from lightkube import codecs
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.apps_v1 import Deployment, StatefulSet
from lightkube.resources.core_v1 import ConfigMap, PersistentVolumeClaim, Secret, Service
from prometheus_client import REGISTRY

CHART = REPO / "charts/support-inbox"
PROFILES = sorted(p.stem.removesuffix("-values") for p in (CHART / "ci").glob("*-values.yaml"))
KUBERNETES_SCHEMA_VERSION = "1.37.0"
DAPR = ("--api-versions", "dapr.io/v1alpha1/Component")
PROMETHEUS_OPERATOR = ("--api-versions", "monitoring.coreos.com/v1/PodMonitor")
SupportInbox = create_namespaced_resource(
    "supportinbox.io", "v1alpha1", "SupportInbox", "supportinboxes"
)


def render(profile: str, *extra: str) -> list[dict]:
    out = helm(
        "template",
        "inbox",
        str(CHART),
        "-n",
        "support",
        "-f",
        str(CHART / "ci" / f"{profile}-values.yaml"),
        *DAPR,
        *PROMETHEUS_OPERATOR,
        *extra,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def crd_schema() -> dict:
    crd = yaml.safe_load((CHART / "crds/supportinboxes.supportinbox.io.yaml").read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_profiles_cover_the_matrix() -> None:
    assert set(PROFILES) == {
        "default",
        "gpu",
        "external-db",
        "broker-rabbitmq",
        "broker-kafka",
        "broker-jetstream",
        "ingress",
        "tracing-off",
        "metrics",
        "model-file",
        "widget",
    }


@pytest.mark.parametrize("profile", PROFILES)
def test_lint(profile: str) -> None:
    helm("lint", "--strict", str(CHART), "-f", str(CHART / "ci" / f"{profile}-values.yaml"))


@pytest.mark.parametrize("profile", PROFILES)
def test_every_rendered_object_is_valid_and_hardened(profile: str) -> None:
    objects = render(profile)
    assert objects
    for obj in objects:
        if obj["kind"] == "SupportInbox":
            jsonschema.validate(obj, crd_schema())
            continue
        if obj["apiVersion"] == "monitoring.coreos.com/v1":
            # no offline schema of the Prometheus Operator's CRDs: checked field by field in
            # test_metrics_profile_scrapes_every_inbox_pod_and_ships_the_dashboard
            assert obj["kind"] == "PodMonitor"
            assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "support-inbox"
            continue
        kubernetes_validate.validate(obj, KUBERNETES_SCHEMA_VERSION, strict=True)
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "support-inbox"
        pod = (obj.get("spec", {}).get("template") or {}).get("spec")
        if pod:
            assert pod["securityContext"]["runAsNonRoot"] is True, obj["metadata"]["name"]
            assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
            for container in pod["containers"]:
                security = container["securityContext"]
                assert security["capabilities"] == {"drop": ["ALL"]}
                assert security["allowPrivilegeEscalation"] is False
    secrets = [o for o in objects if o["kind"] == "Secret"]
    for secret in secrets:  # generated, never plaintext defaults from values
        assert all(
            len(v) >= 20
            for k, v in secret["stringData"].items()
            if k in {"password", "token", "jwt-secret", "admin-password"}
        )


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def inbox_spec(objects: list[dict]) -> dict:
    (inbox,) = by_kind(objects, "SupportInbox")
    return inbox["spec"]


def test_gpu_profile_schedules_ollama_on_a_gpu_node() -> None:
    (ollama,) = [
        d for d in by_kind(render("gpu"), "Deployment") if d["metadata"]["name"].endswith("-ollama")
    ]
    pod = ollama["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    assert pod["runtimeClassName"] == "nvidia"
    (cpu,) = [
        d
        for d in by_kind(render("default"), "Deployment")
        if d["metadata"]["name"].endswith("-ollama")
    ]
    assert "nvidia.com/gpu" not in cpu["spec"]["template"]["spec"]["containers"][0][
        "resources"
    ].get("limits", {})
    assert "nodeSelector" not in cpu["spec"]["template"]["spec"]


def _model_job(objects: list[dict]) -> dict:
    (job,) = by_kind(objects, "Job")
    return job


def test_the_default_model_is_pulled_by_a_job_the_operator_can_find() -> None:
    objects = render("default")
    job = _model_job(objects)
    assert job["metadata"]["name"] == "inbox-ollama-pull-1"
    assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "ollama-pull"
    assert job["metadata"]["annotations"] == {"supportinbox.io/model": "llama3.2:3b"}
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["pull", "llama3.2:3b"]
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    spec = inbox_spec(objects)["ollama"]
    assert spec["modelSource"] == "pull" and "modelFile" not in spec
    assert SupportInboxSpec.model_validate(inbox_spec(objects)).ollama.origin() == "pulled"


def test_a_model_file_in_an_image_is_copied_out_and_created_never_pulled() -> None:
    objects = render("model-file")
    job = _model_job(objects)
    assert job["metadata"]["name"] == "inbox-ollama-create-1"
    assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "ollama-create"
    assert job["metadata"]["annotations"] == {"supportinbox.io/model": "inbox-tiny"}
    pod = job["spec"]["template"]["spec"]
    (copy,) = pod["initContainers"]
    assert copy["image"] == "registry.internal.example/models/inbox-tiny:0.1.0"
    assert copy["command"] == ["cp", "-R", "/model/.", "/model-file/"]
    assert copy["securityContext"]["readOnlyRootFilesystem"] is True
    assert copy["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    (create,) = pod["containers"]
    assert create["image"] == "docker.io/ollama/ollama:0.12.3"
    script = create["args"][0]
    assert 'exec ollama create "$MODEL" -f "$MODEL_DIR/Modelfile"' in script
    assert "pull" not in script
    env = {e["name"]: e["value"] for e in create["env"]}
    assert {k: env[k] for k in ("OLLAMA_HOST", "MODEL", "MODEL_DIR")} == {
        "OLLAMA_HOST": "http://inbox-ollama:11434",
        "MODEL": "inbox-tiny",
        "MODEL_DIR": "/model-file",
    }
    assert set(env) == {"OLLAMA_HOST", "HOME", "MODEL", "MODEL_DIR"}  # HOME: the tmp emptyDir
    assert create["workingDir"] == "/model-file"
    mounts = {m["name"]: m for m in create["volumeMounts"]}
    assert mounts["model-file"]["readOnly"] is True
    assert {"name": "model-file", "emptyDir": {}} in pod["volumes"]
    # the Job reaches Ollama through its NetworkPolicy
    policy = next(p for p in by_kind(objects, "NetworkPolicy") if p["metadata"]["name"]
                  == "inbox-ollama")
    allowed = {f["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
               for f in policy["spec"]["ingress"][0]["from"]}
    assert allowed == {"ai-worker", "ollama-create", "operator"}
    assert job["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] in allowed
    # the SupportInbox carries the source, for ModelReady
    spec = SupportInboxSpec.model_validate(inbox_spec(objects))
    assert spec.ollama.origin() == (
        "created from the GGUF file in image registry.internal.example/models/inbox-tiny:0.1.0"
    )


def test_a_model_file_on_a_volume_is_mounted_read_only_where_path_says() -> None:
    objects = render(
        "model-file",
        "--set", "ollama.modelFile.image=",
        "--set-json", 'ollama.modelFile.volume={"persistentVolumeClaim":{"claimName":"gguf"}}',
        "--set", "ollama.modelFile.path=/inbox-tiny/",
    )
    pod = _model_job(objects)["spec"]["template"]["spec"]
    assert "initContainers" not in pod
    assert {"name": "model-file", "persistentVolumeClaim": {"claimName": "gguf"}} in pod[
        "volumes"]
    (create,) = pod["containers"]
    env = {e["name"]: e["value"] for e in create["env"]}
    assert env["MODEL_DIR"] == "/model-file/inbox-tiny"
    assert create["workingDir"] == "/model-file/inbox-tiny"
    ollama = inbox_spec(objects)["ollama"]
    assert ollama["modelFile"] == {
        "volume": {"persistentVolumeClaim": {"claimName": "gguf"}},
        "path": "/inbox-tiny/",
    }
    (inbox,) = by_kind(objects, "SupportInbox")
    jsonschema.validate(inbox, crd_schema())
    assert SupportInboxSpec.model_validate(inbox["spec"]).ollama.origin() == (
        "created from the GGUF file in volume persistentVolumeClaim gguf at /inbox-tiny/"
    )


def test_local_values_run_the_real_ollama_with_the_model_image() -> None:
    objects = render("default", "-f", str(CHART.parents[1] / "k8s" / "local-values.yaml"))
    images = {
        c["image"]
        for o in objects
        for c in ((o.get("spec", {}).get("template") or {}).get("spec") or {}).get(
            "initContainers", []) + ((o.get("spec", {}).get("template") or {}).get("spec")
                                     or {}).get("containers", [])
    }
    assert "localhost/support-inbox/ollama:0.17.4" in images
    assert "localhost/support-inbox/model-inbox-tiny:0.1.0" in images
    assert not [i for i in images if "standin" in i]
    assert _model_job(objects)["metadata"]["name"] == "inbox-ollama-create-1"
    for obj in objects:
        if obj["kind"] != "SupportInbox":
            kubernetes_validate.validate(obj, KUBERNETES_SCHEMA_VERSION, strict=True)


def test_external_database_profile() -> None:
    objects = render("external-db")
    assert not [o for o in objects if o["metadata"]["name"].endswith("-postgresql")]
    assert inbox_spec(objects)["database"]["secretRef"] == {"name": "my-database", "key": "url"}


@pytest.mark.parametrize(
    ("profile", "broker"),
    [
        ("default", "redis"),
        ("broker-rabbitmq", "rabbitmq"),
        ("broker-kafka", "kafka"),
        ("broker-jetstream", "jetstream"),
    ],
)
def test_broker_profiles(profile: str, broker: str) -> None:
    spec = inbox_spec(render(profile))
    assert spec["broker"]["type"] == broker


def _pubsub_metadata(profile: str) -> dict[str, dict]:
    """The operator's ``inbox-pubsub`` for the SupportInbox ``helm template`` renders."""
    spec = SupportInboxSpec.model_validate(inbox_spec(render(profile)))
    owner = operator_render.Owner("inbox", "support", "uid")
    component = operator_render.pubsub_component(owner, spec)
    return {m["name"]: m for m in component["spec"]["metadata"]}


@pytest.mark.parametrize(
    ("profile", "credentials"),
    [
        ("default", {"redisPassword": ("inbox-redis", "password")}),
        ("broker-rabbitmq", {"connectionString": ("rabbitmq-connection", "connectionString")}),
        (
            "broker-kafka",
            {
                "saslUsername": ("kafka-auth", "username"),
                "saslPassword": ("kafka-auth", "password"),
            },
        ),
        ("broker-jetstream", {"token": ("nats-auth", "token")}),
    ],
)
def test_every_broker_is_authenticated_from_a_secret(profile: str, credentials: dict) -> None:
    metadata = _pubsub_metadata(profile)
    for name, (secret, key) in credentials.items():
        assert metadata[name]["secretKeyRef"] == {"name": secret, "key": key}, name
        assert "value" not in metadata[name]
    if profile == "broker-kafka":
        assert metadata["authType"]["value"] == "password"
        assert metadata["saslMechanism"]["value"] == "SHA-512"


@pytest.mark.parametrize("broker", ["kafka", "jetstream"])
def test_an_external_broker_without_credentials_is_refused(broker: str) -> None:
    done = helm(
        "template", "inbox", str(CHART), *DAPR, "--set", f"broker.type={broker}",
        "--set", "broker.host=x:1", check=False,
    )
    assert done.returncode != 0
    assert f"broker.existingSecret is required for {broker}" in done.stderr


def test_the_operator_watches_its_namespace_unless_told_cluster_wide() -> None:
    objects = render("default")
    kinds = {o["kind"] for o in objects}
    assert {"Role", "RoleBinding"} <= kinds
    assert not {"ClusterRole", "ClusterRoleBinding"} & kinds
    (role,) = by_kind(objects, "Role")
    assert role["metadata"]["namespace"] == "support"
    resources = {r for rule in role["rules"] for r in rule["resources"]}
    assert not {"namespaces", "customresourcedefinitions"} & resources
    (operator,) = [d for d in by_kind(objects, "Deployment") if d["metadata"]["name"].endswith(
        "-operator")]
    args = operator["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=support" in args and "--all-namespaces" not in args

    wide = render("default", "--set", "operator.clusterWide=true")
    assert {"ClusterRole", "ClusterRoleBinding"} <= {o["kind"] for o in wide}
    assert not {"Role", "RoleBinding"} & {o["kind"] for o in wide}
    (operator,) = [d for d in by_kind(wide, "Deployment") if d["metadata"]["name"].endswith(
        "-operator")]
    assert "--all-namespaces" in operator["spec"]["template"]["spec"]["containers"][0]["args"]


def test_ingress_and_tracing_profiles() -> None:
    behind_ingress = render("ingress")
    (ingress,) = by_kind(behind_ingress, "Ingress")
    assert ingress["spec"]["rules"][0]["host"] == "inbox.example.com"
    assert ingress["spec"]["tls"][0]["secretName"] == "inbox-tls"
    # behind the Ingress the client address is the controller's X-Forwarded-For: the
    # per-address limits count visitors, not the controller
    (container,) = _gateway(behind_ingress)["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["FORWARDED_ALLOW_IPS"] == "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16"
    assert "gateway.edge:BoundedHttpToolsProtocol" in container["args"]
    (direct,) = _gateway(render("default"))["spec"]["template"]["spec"]["containers"]
    assert "FORWARDED_ALLOW_IPS" not in {e["name"] for e in direct["env"]}
    off = render("tracing-off")
    assert inbox_spec(off)["tracing"]["enabled"] is False
    assert not [o for o in off if "otel-collector" in o["metadata"]["name"]]
    assert not by_kind(off, "NetworkPolicy")
    on = render("default")
    config = next(
        o for o in on if o["kind"] == "ConfigMap" and "otel-collector" in o["metadata"]["name"]
    )
    assert "cors" in config["data"]["config.yaml"]


def test_kind_values_let_the_browser_trace() -> None:
    objects = render("default", "-f", str(CHART.parents[1] / "k8s" / "kind-values.yaml"))
    (inbox,) = by_kind(objects, "SupportInbox")
    jsonschema.validate(inbox, crd_schema())
    tracing = inbox["spec"]["tracing"]
    assert tracing["browserTracesUrl"] == "http://localhost:4318/v1/traces"
    assert tracing["traceUiUrl"] == "http://localhost:16686/trace/{trace_id}"
    assert tracing["endpoint"] == "inbox-otel-collector:4318"
    assert "browserTracesUrl" not in inbox_spec(render("default"))["tracing"]


def test_network_policies_fence_database_and_model() -> None:
    policies = {p["metadata"]["name"]: p for p in by_kind(render("default"), "NetworkPolicy")}
    database = policies["inbox-postgresql"]["spec"]["ingress"][0]["from"]
    assert [f["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for f in database] == [
        "messaging"
    ]
    model = policies["inbox-ollama"]["spec"]["ingress"][0]["from"]
    assert {f["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for f in model} == {
        "ai-worker",
        "ollama-pull",
        "operator",
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "brokr.type=redis"], "additional properties 'brokr' not allowed"),
        (["--set", "broker.type=mqtt"], "at '/broker/type': value must be one of"),
        (["--set", "ollama.externalUrl=ftp://x"], "at '/ollama/externalUrl'"),
        (
            ["--set", "inbox.aiWorker.minReplicas=9"],
            "inbox.aiWorker.minReplicas must not exceed inbox.aiWorker.maxReplicas",
        ),
        (["--set", "broker.type=kafka"], "broker.host is required for broker.type=kafka"),
        (["--set", "postgresql.enabled=false"], "postgresql.enabled=false needs"),
        (
            ["--set", "metrics.podMonitor.enabled=true"],
            "metrics.podMonitor.enabled needs the Prometheus Operator CRDs",
        ),
        (["--set", "metrics.podMonitor.interval=often"], "at '/metrics/podMonitor/interval'"),
        (["--set", "metrics.serviceMonitor.enabled=true"], "'serviceMonitor' not allowed"),
        (["--set", "ollama.modelSource=git"], "at '/ollama/modelSource': value must be one of"),
        (
            ["--set", "ollama.modelSource=file"],
            "ollama.modelSource=file needs ollama.modelFile.image (an image holding the "
            "Modelfile and the GGUF file at ollama.modelFile.path, /model) or "
            "ollama.modelFile.volume",
        ),
        (
            ["--set", "ollama.modelSource=file", "--set", "ollama.modelFile.image=m:1",
             "--set-json", 'ollama.modelFile.volume={"hostPath":{"path":"/srv"}}'],
            "ollama.modelFile.image and ollama.modelFile.volume are exclusive",
        ),
        (
            ["--set", "ollama.modelFile.image=m:1"],
            "ollama.modelFile is read only with ollama.modelSource=file (it is pull)",
        ),
        (
            ["--set", "ollama.modelSource=file", "--set", "ollama.modelFile.image=m:1",
             "--set", "ollama.enabled=false", "--set", "ollama.externalUrl=http://o:11434"],
            "ollama.modelSource=file creates the model in the chart's Ollama",
        ),
        (
            ["--set", "ollama.modelSource=file", "--set-json",
             'ollama.modelFile.volume={"name":"x","hostPath":{"path":"/srv"}}'],
            "at '/ollama/modelFile/volume'",
        ),
        (
            ["--set", "ollama.modelSource=file", "--set", "ollama.modelFile.image=m:1",
             "--set", "ollama.modelFile.path=model"],
            "at '/ollama/modelFile/path'",
        ),
    ],
)
def test_bad_values_fail_with_a_clear_message(args: list[str], message: str) -> None:
    done = helm("template", "inbox", str(CHART), *DAPR, *args, check=False)
    assert done.returncode != 0
    assert message in done.stderr


def _gateway(objects: list[dict]) -> dict:
    """The gateway Deployment the operator renders from the chart's SupportInbox."""
    spec = SupportInboxSpec.model_validate(inbox_spec(objects))
    made = operator_render.render(operator_render.Owner("inbox", "support", "uid"), spec)
    (gateway,) = [o for o in by_kind(made, "Deployment") if o["metadata"]["name"] == "gateway"]
    return gateway


def _secret_files(deployment: dict) -> dict[str, tuple[str, str]]:
    """File name under /run/secrets -> (Secret, key), from the pod's ``secrets`` volume."""
    (volume,) = [v for v in deployment["spec"]["template"]["spec"]["volumes"]
                 if v["name"] == "secrets"]
    return {
        item["path"]: (source["secret"]["name"], item["key"])
        for source in volume["projected"]["sources"]
        for item in source["secret"]["items"]
    }


def test_widget_channels_reach_the_gateway_as_a_secret_file() -> None:
    objects = render("widget")
    (secret,) = [o for o in by_kind(objects, "Secret") if o["metadata"]["name"] == "inbox-widget"]
    channels = json.loads(secret["stringData"]["channels.json"])
    assert channels == {
        "shop": {
            "name": "Example shop",
            "allowed_origins": ["https://shop.example", "https://www.shop.example"],
            "assistant": "suggest",
        },
        "help-centre": {
            "name": "Example Bank help centre",
            "allowed_origins": ["https://help.example-bank.test:8443"],
            "assistant": "answer",
            "identity_secret": "test-only-identity-secret-0123456789abcdef",
        },
    }
    widget = inbox_spec(objects)["widget"]
    assert widget["channelsSecretRef"] == {"name": "inbox-widget", "key": "channels.json"}
    assert re.fullmatch(r"[0-9a-f]{16}", widget["channelsRevision"])
    # the identity secret is in that Secret only: no ConfigMap, no spec, no env
    for obj in objects:
        if obj is not secret:
            assert "test-only-identity-secret" not in json.dumps(obj), obj["metadata"]["name"]

    gateway = _gateway(objects)
    assert _secret_files(gateway)["WIDGET_CHANNELS"] == ("inbox-widget", "channels.json")
    (container,) = gateway["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert "WIDGET_CHANNELS" not in env
    assert gateway["spec"]["template"]["metadata"]["annotations"][
        operator_render.WIDGET_REVISION] == widget["channelsRevision"]
    # what the gateway itself makes of the file and the environment
    settings = GatewaySettings(
        environment="test",
        jwt_secret="j" * 40,
        widget_channels=channels,
        **{k.lower(): env[k] for k in ("CUSTOMER_RATE_LIMIT", "WIDGET_CHANNEL_RATE_LIMIT",
                                       "WIDGET_SESSION_RATE_LIMIT",
                                       "WIDGET_CHANNEL_SESSION_RATE_LIMIT",
                                       "CUSTOMER_READ_RATE_LIMIT",
                                       "CUSTOMER_TOKEN_TTL_S", "CUSTOMER_SESSION_TTL_S")},
    )
    assert (settings.widget_session_rate_limit, settings.customer_read_rate_limit) == (
        "30/minute", "120/minute")
    assert settings.widget_channels["help-centre"].assistant == "answer"
    assert settings.widget_channels["shop"].identity_secret is None
    assert (settings.customer_rate_limit, settings.widget_channel_rate_limit) == (
        "30/minute", "600/minute")
    assert (settings.customer_token_ttl_s, settings.customer_session_ttl_s) == (900, 2_592_000)


def test_a_changed_channel_rolls_the_gateway_and_no_channel_renders_no_widget() -> None:
    revision = inbox_spec(render("widget"))["widget"]["channelsRevision"]
    assert inbox_spec(render("widget"))["widget"]["channelsRevision"] == revision  # stable
    changed = render("widget", "--set-json",
                     'widget.channels.shop.allowedOrigins=["https://shop.example"]')
    assert inbox_spec(changed)["widget"]["channelsRevision"] != revision
    default = render("default")
    assert "widget" not in inbox_spec(default)
    assert not [o for o in default if o["metadata"]["name"] == "inbox-widget"]
    assert "WIDGET_CHANNELS" not in _secret_files(_gateway(default))


def test_an_existing_widget_secret_is_referenced_not_generated() -> None:
    objects = render("default", "--set", "widget.existingSecret=shop-widget")
    assert not [o for o in objects if o["metadata"]["name"] == "inbox-widget"]
    widget = inbox_spec(objects)["widget"]
    assert widget["channelsSecretRef"] == {"name": "shop-widget", "key": "channels.json"}
    assert "channelsRevision" not in widget  # helm template cannot read the Secret to hash it
    assert _secret_files(_gateway(objects))["WIDGET_CHANNELS"] == ("shop-widget", "channels.json")


def test_the_ingress_sends_the_widget_to_the_gateway() -> None:
    (ingress,) = by_kind(render("widget"), "Ingress")
    (rule,) = ingress["spec"]["rules"]

    def backend(path: str) -> str:
        """The Service of the longest Prefix match, as an Ingress controller picks it."""
        matches = [p for p in rule["http"]["paths"] if p["pathType"] == "Prefix"
                   and (path + "/").startswith(p["path"].rstrip("/") + "/")]
        best = max(matches, key=lambda p: len(p["path"]))
        return best["backend"]["service"]["name"]

    for path in ("/widget/loader.js", "/widget/frame", "/api/v1/widget/sessions",
                 "/api/v1/widget/ws"):
        assert backend(path) == "gateway", path


WIDGET = ("--set", "widget.channels.shop.name=Shop")
ORIGIN = ("--set-json", 'widget.channels.shop.allowedOrigins=["https://shop.example"]')


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--set", "widget.channels.Shop.name=Shop", "--set-json",
             'widget.channels.Shop.allowedOrigins=["https://shop.example"]'],
            "at '/widget/channels': additional properties 'Shop' not allowed",
        ),
        (
            ["--set", f"widget.channels.{'x' * 41}.name=Shop", "--set-json",
             f'widget.channels.{"x" * 41}.allowedOrigins=["https://shop.example"]'],
            f"additional properties '{'x' * 41}' not allowed",
        ),
        (
            [*WIDGET, "--set-json", 'widget.channels.shop.allowedOrigins=["https://shop.example/"]'],
            "at '/widget/channels/shop/allowedOrigins/0'",
        ),
        (
            [*WIDGET, "--set-json", 'widget.channels.shop.allowedOrigins=["shop.example"]'],
            "at '/widget/channels/shop/allowedOrigins/0'",
        ),
        ([*WIDGET, "--set-json", "widget.channels.shop.allowedOrigins=[]"],
         "at '/widget/channels/shop/allowedOrigins'"),
        ([*WIDGET], "at '/widget/channels/shop': missing property 'allowedOrigins'"),
        ([*WIDGET, *ORIGIN, "--set", "widget.channels.shop.assistant=auto"],
         "at '/widget/channels/shop/assistant': value must be one of 'off', 'suggest', 'answer'"),
        ([*WIDGET, *ORIGIN, "--set", "widget.channels.shop.identitySecret=short"],
         "at '/widget/channels/shop/identitySecret'"),
        ([*WIDGET, *ORIGIN, "--set", "widget.channels.shop.allowedOrigin=x"],
         "additional properties 'allowedOrigin' not allowed"),
        (
            [*WIDGET, *ORIGIN, "--set", f"widget.channels.shop.identitySecret={'s' * 32}",
             "--set", "widget.channels.shop.identitySecretRef.name=shop-identity",
             "--set", "widget.channels.shop.identitySecretRef.key=secret"],
            "widget.channels.shop: identitySecret and identitySecretRef are exclusive",
        ),
        (
            [*WIDGET, *ORIGIN, "--set", "widget.channels.shop.identitySecretRef.name=shop-identity",
             "--set", "widget.channels.shop.identitySecretRef.key=secret"],
            "widget.channels.shop.identitySecretRef: Secret shop-identity not found in namespace "
            "default: create it before installing (helm template and a client-side --dry-run "
            "cannot read Secrets; render offline with widget.existingSecret instead)",
        ),
        (
            [*WIDGET, *ORIGIN, "--set", "widget.channels.shop.identitySecretRef.name=x"],
            "at '/widget/channels/shop/identitySecretRef': missing property 'key'",
        ),
        ([*WIDGET, *ORIGIN, "--set", "widget.existingSecret=mine"],
         "widget.channels and widget.existingSecret are exclusive"),
        (["--set", "widget.customerRateLimit=lots"], "at '/widget/customerRateLimit'"),
        (["--set", "widget.customerTokenTtlSeconds=5"], "at '/widget/customerTokenTtlSeconds'"),
    ],
)
def test_bad_widget_values_fail_with_a_clear_message(args: list[str], message: str) -> None:
    done = helm("template", "inbox", str(CHART), *DAPR, *args, check=False)
    assert done.returncode != 0
    assert message in done.stderr, done.stderr


def test_metrics_profile_scrapes_every_inbox_pod_and_ships_the_dashboard() -> None:
    objects = render("metrics")
    (monitor,) = by_kind(objects, "PodMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    spec = monitor["spec"]
    assert set(spec) == {"selector", "namespaceSelector", "podMetricsEndpoints"}
    assert spec["namespaceSelector"] == {"matchNames": ["support"]}
    endpoints = {e["port"]: e for e in spec["podMetricsEndpoints"]}
    assert set(endpoints) == {"metrics", "dapr-metrics"}  # app, and Dapr's injected port
    for endpoint in endpoints.values():
        assert set(endpoint) == {"port", "path", "interval", "relabelings"}
        assert (endpoint["path"], endpoint["interval"]) == ("/metrics", "15s")
        (relabel,) = endpoint["relabelings"]
        assert relabel == {
            "sourceLabels": ["__meta_kubernetes_pod_label_app_kubernetes_io_name"],
            "targetLabel": "service",
        }
    # the selector picks exactly the operator's three Deployments of this SupportInbox, and
    # each of their app containers has the `metrics` port
    (inbox,) = by_kind(objects, "SupportInbox")
    operator_made = operator_render.render(
        operator_render.Owner(inbox["metadata"]["name"], "support", "uid"),
        SupportInboxSpec.model_validate(inbox["spec"]),
    )
    selected = [
        d["metadata"]["name"]
        for d in by_kind(operator_made, "Deployment")
        if spec["selector"]["matchLabels"].items()
        <= d["spec"]["template"]["metadata"]["labels"].items()
        and "metrics"
        in {p["name"] for p in d["spec"]["template"]["spec"]["containers"][0]["ports"]}
    ]
    assert sorted(selected) == ["ai-worker", "gateway", "messaging"]
    chart_made = [o for o in by_kind(objects, "Deployment") + by_kind(objects, "StatefulSet")]
    assert not [
        o["metadata"]["name"]
        for o in chart_made
        if spec["selector"]["matchLabels"].items()
        <= o["spec"]["template"]["metadata"]["labels"].items()
    ]

    (dashboard_map,) = [
        o
        for o in by_kind(objects, "ConfigMap")
        if o["metadata"]["name"] == "inbox-grafana-dashboard"
    ]
    assert dashboard_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard_map["metadata"]["annotations"] == {"grafana_folder": "Support Inbox"}
    text = dashboard_map["data"]["support-inbox.json"]
    assert json.loads(text) == json.loads((CHART / "dashboards/support-inbox.json").read_text())
    dashboard = json.loads(text)
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    exprs = " ".join(t["expr"] for p in panels for t in p["targets"])
    assert inbox_metrics.HTTP_REQUESTS  # the inbox_* metrics are registered
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
    known = {
        f.name + suffix
        for f in REGISTRY.collect()
        if f.name.startswith("inbox_")
        for suffix in suffixes[f.type]
    }
    used = set(re.findall(r"\binbox_[a-z_]+", exprs))
    assert used <= known, used - known
    for needed in (
        "inbox_http_request_duration_seconds_bucket",
        "inbox_websocket_open_connections",
        "inbox_messages_received_total",
        "inbox_messages_stored_total",
        "inbox_messages_analysed_total",
        "inbox_ai_analysis_duration_seconds_bucket",
        "inbox_outbox_unpublished_rows",
        "inbox_outbox_oldest_unpublished_age_seconds",
        "inbox_subscription_deliveries_total",
        "inbox_rate_limit_rejections_total",
        "dapr_component_pubsub_ingress_count",
        "dapr_component_pubsub_ingress_bulk_event_count",
        "dapr_component_pubsub_egress_count",
    ):
        assert needed in exprs, needed
    for quantile in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({quantile}, sum by (service, le)" in exprs
    assert all(p["datasource"]["uid"] == "${datasource}" for p in panels)
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])

    default = render("default")
    assert not by_kind(default, "PodMonitor")
    assert not [o for o in default if "grafana_dashboard" in o["metadata"]["labels"]]


def test_missing_dapr_is_reported() -> None:
    done = helm("template", "inbox", str(CHART), check=False)
    assert done.returncode != 0
    assert "the Dapr CRDs are not installed" in done.stderr


# ------------------------------------------------------------------ on a real API server


@pytest.mark.integration
def test_install_upgrade_uninstall_on_a_real_api_server(
    kube, admin, operator, output_dir: Path
) -> None:
    namespace, release = OPERATOR_NAMESPACE, OPERATOR_RELEASE
    cfg = kube.admin_kubeconfig
    # a site's identity secret, read by the chart (`lookup`) into WIDGET_CHANNELS
    identity = "i" * 40
    admin.apply(
        codecs.from_dict(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "shop-identity", "namespace": namespace},
                "stringData": {"secret": identity},
            }
        ),
        field_manager="test",
    )
    widget = (
        "--set-json",
        'widget.channels={"shop": {"name": "Shop", "allowedOrigins": ["https://shop.example"], '
        '"identitySecretRef": {"name": "shop-identity", "key": "secret"}}}',
    )
    helm(
        "install",
        release,
        str(CHART),
        "-n",
        namespace,
        "--kubeconfig",
        str(cfg),
        "--wait=false",
        "--set",
        "ollama.model=llama3.2:1b",
        "--set",  # the operator fixture serves every namespace with this release's identity
        "operator.clusterWide=true",
        *widget,
    )
    manifest = helm("get", "manifest", release, "-n", namespace, "--kubeconfig", str(cfg)).stdout
    kinds = sorted({d["kind"] for d in yaml.safe_load_all(manifest) if d})
    assert {
        "Deployment",
        "StatefulSet",
        "Secret",
        "Service",
        "SupportInbox",
        "NetworkPolicy",
        "Job",
        "ClusterRole",
        "ConfigMap",
        "PersistentVolumeClaim",
    } <= set(kinds)
    status = helm("status", release, "-n", namespace, "--kubeconfig", str(cfg)).stdout
    assert "port-forward svc/gateway" in status and "admin-password" in status

    # the operator, running as the chart's ServiceAccount, reconciles the chart's SupportInbox
    deployments = wait_for(
        lambda: (lambda d: d if len(d) == 3 else None)(
            {d.metadata.name for d in admin.list(Deployment, namespace=namespace)}
            & {"gateway", "messaging", "ai-worker"}
        ),
        90,
        "operator-made Deployments",
    )
    assert deployments == {"gateway", "messaging", "ai-worker"}
    worker = admin.get(Deployment, "ai-worker", namespace=namespace)
    env = {e.name: e for e in worker.spec.template.spec.containers[0].env}
    assert env["OLLAMA_MODEL"].value == "llama3.2:1b"
    assert env["OLLAMA_URL"].value == f"http://{release}-ollama:11434"
    gateway = admin.get(Deployment, "gateway", namespace=namespace)
    assert not [e for e in gateway.spec.template.spec.containers[0].env if e.valueFrom]
    (files,) = [v for v in gateway.spec.template.spec.volumes if v.name == "secrets"]
    password = [
        (source.secret.name, item.key)
        for source in files.projected.sources
        for item in source.secret.items
        if item.path == "ADMIN_PASSWORD"
    ]
    assert password == [(f"{release}-auth", "admin-password")]
    channels = [
        (source.secret.name, item.key)
        for source in files.projected.sources
        for item in source.secret.items
        if item.path == "WIDGET_CHANNELS"
    ]
    assert channels == [(f"{release}-widget", "channels.json")]
    made = admin.get(Secret, f"{release}-widget", namespace=namespace)
    assert json.loads(base64.b64decode(made.data["channels.json"])) == {
        "shop": {
            "name": "Shop",
            "allowed_origins": ["https://shop.example"],
            "assistant": "suggest",
            "identity_secret": identity,
        }
    }
    revision = admin.get(SupportInbox, release, namespace=namespace)["spec"]["widget"][
        "channelsRevision"]

    auth = admin.get(Secret, f"{release}-auth", namespace=namespace)
    helm(
        "upgrade",
        release,
        str(CHART),
        "-n",
        namespace,
        "--kubeconfig",
        str(cfg),
        "--wait=false",
        "--set",
        "ollama.model=qwen2.5:3b",
        "--set",
        "operator.clusterWide=true",
        *widget,
    )
    assert admin.get(Secret, f"{release}-auth", namespace=namespace).data == auth.data  # kept
    # the same channels, the same revision: the upgrade does not roll the gateway for them
    assert admin.get(SupportInbox, release, namespace=namespace)["spec"]["widget"][
        "channelsRevision"] == revision

    def upgraded() -> bool:
        worker = admin.get(Deployment, "ai-worker", namespace=namespace)
        env = {e.name: e.value for e in worker.spec.template.spec.containers[0].env}
        return env.get("OLLAMA_MODEL") == "qwen2.5:3b"

    wait_for(upgraded, 90, "ai-worker rolled to the new model")
    admin_password = base64.b64decode(auth.data["admin-password"]).decode()
    assert len(admin_password) == 20

    helm("uninstall", release, "-n", namespace, "--kubeconfig", str(cfg))

    def leftovers() -> list[str]:
        """Objects of the release (chart-made, labelled) or of its SupportInbox (all of the
        namespace's Deployments are operator-made) still present."""
        found = [
            f"Deployment/{o.metadata.name}" for o in admin.list(Deployment, namespace=namespace)
        ]
        labelled = {"app.kubernetes.io/instance": release}
        for kind in (StatefulSet, Secret, Service, ConfigMap, PersistentVolumeClaim):
            found += [
                f"{kind.__name__}/{o.metadata.name}"
                for o in admin.list(kind, namespace=namespace, labels=labelled)
            ]
        found += [
            f"SupportInbox/{o.metadata.name}" for o in admin.list(SupportInbox, namespace=namespace)
        ]
        return found

    try:
        wait_for(lambda: not leftovers(), 90, "nothing left after uninstall")
    finally:
        apply_operator_rbac(admin)  # the uninstall took the operator's RBAC with it
        admin.delete(Secret, "shop-identity", namespace=namespace)
    (output_dir / "helm-manifest.json").write_text(json.dumps(kinds))
