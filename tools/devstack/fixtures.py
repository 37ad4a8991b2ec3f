"""pytest fixtures: real components on loopback, stopped even when a test fails.

Time limits come from the environment: ``E2E_TIMEOUT_S`` bounds every wait for something to
arrive (default 60 s). ``BROKERS`` (comma-separated, default all of :data:`MATRIX`) picks the
brokers the end-to-end suite runs on.
"""

import json
import os
import shutil
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from devstack.client import E2E_TIMEOUT_S, Database, InboxClient, wait_for
from devstack.fake_ollama import MODEL, start_server
from devstack.jaeger import Jaeger
from devstack.ollama import OllamaServer
from devstack.procs import DEVSTACK_ENV, Process, free_port
from devstack.stack import REPO, MemberDied, Stack, running_stacks

MATRIX = {
    "redis": "redis",
    "rabbitmq": "postgresql",
    "kafka": "redis",
    "jetstream": "postgresql",
}
"""Broker -> the state store it is paired with, so each state store meets two brokers."""
REDELIVERY_OVERRIDES = {
    "inbox-pubsub": {"processingTimeout": "20s", "redeliverInterval": "2s", "ackWait": "20s"},
}
"""Shorter redelivery of unacknowledged deliveries than in production (still above the tests'
5 s LLM timeout), so a killed worker's messages come back within a test's patience. Only the
keys a broker's component knows are applied."""
OUTPUT_DIR = Path(os.environ.get("TEST_OUTPUT_DIR") or REPO / "test-output")
"""Logs, screenshots and each stack's run directory; ``TEST_OUTPUT_DIR`` moves them, so two
test runs in one checkout do not wipe each other's stacks."""


@dataclass
class FakeOllama:
    url: str
    model: str

    def stats(self) -> dict:
        with urllib.request.urlopen(f"{self.url}/__fake__/stats", timeout=5) as r:  # noqa: S310
            return json.loads(r.read())

    def requests(self) -> list[dict]:
        """The ``/api/chat`` request bodies the stand-in received (the latest 1000), oldest
        first."""
        with urllib.request.urlopen(f"{self.url}/__fake__/requests", timeout=5) as r:  # noqa: S310
            return json.loads(r.read())["requests"]

    def chats_with(self, text: str) -> list[list[dict]]:
        """The ``messages`` of every ``/api/chat`` request received that has a message
        containing ``text`` (requests without messages, such as a bad request, are skipped)."""
        return [
            r["messages"]
            for r in self.requests()
            if any(text in (m.get("content") or "") for m in r.get("messages") or [])
        ]


def running_stacks_alive() -> None:
    """Fail the current test at once when a process of a running stack died (named, with the
    last lines of its log), rather than let it meet "connection refused" later."""
    for stack in running_stacks():
        try:
            stack.check()
        except MemberDied as exc:
            pytest.fail(str(exc), pytrace=False)


@pytest.fixture(autouse=True)
def _stacks_alive() -> Iterator[None]:
    """:func:`running_stacks_alive` before every test (after the stacks it uses started), and
    after it, so a death during the test is charged to it."""
    running_stacks_alive()
    yield
    running_stacks_alive()


@pytest.fixture(scope="session")
def output_dir() -> Path:
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    return OUTPUT_DIR


@pytest.fixture(scope="session")
def fake_ollama(output_dir: Path) -> Iterator[FakeOllama]:
    process, url = start_server(output_dir / "fake-ollama.log", slow_s=30)
    try:
        yield FakeOllama(url, MODEL)
    finally:
        process.stop()


@dataclass
class RealOllama:
    """The real ``ollama serve`` (``make tools``) with the test model created in it."""

    url: str
    model: str
    server: OllamaServer


def start_real_ollama(run_dir: Path, env: dict[str, str] | None = None) -> RealOllama:
    """``ollama serve`` in ``run_dir`` (emptied first; ``env``: more ``OLLAMA_*`` settings)
    with the test model ``inbox-tiny`` created from its GGUF file. Stop its ``server``."""
    shutil.rmtree(run_dir, ignore_errors=True)
    server = OllamaServer(run_dir, env).start()
    try:
        return RealOllama(server.url, server.create(), server)
    except BaseException:
        server.stop()
        raise


@pytest.fixture(scope="session")
def real_ollama(output_dir: Path) -> Iterator[RealOllama]:
    """One real Ollama server with ``inbox-tiny`` for the session (shared: tests that kill,
    fill or slow a server start their own with :func:`start_real_ollama`)."""
    real = start_real_ollama(output_dir / "ollama-real")
    try:
        yield real
    finally:
        real.server.stop()


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def chromium():
    """Debian's headless Chromium, driven by Playwright. Playwright's sync API keeps an event
    loop running in this thread while it is open, so ``asyncio.run`` fails meanwhile."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def browser():
    """:func:`chromium` for the tests of one module."""
    with chromium() as browser:
        yield browser


@pytest.fixture
def page(browser, stack: Stack, output_dir: Path, request: pytest.FixtureRequest):
    """A fresh page on the first gateway. The test fails on any page error or CSP refusal;
    a screenshot of the end state goes to ``test-output/<test name>.png``."""
    context = browser.new_context(
        base_url=stack.gateway_url, viewport={"width": 1360, "height": 860}
    )
    page = context.new_page()
    page.set_default_timeout(E2E_TIMEOUT_S * 1000)
    # what a page shows after a click has crossed the broker twice (JetStream delivers one
    # at a time): the same bound as every other wait, not Playwright's 5 s
    from playwright.sync_api import expect

    expect.set_options(timeout=E2E_TIMEOUT_S * 1000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda m: (
            m.type == "error" and "Content Security Policy" in m.text and errors.append(m.text)
        ),
    )
    yield page
    page.screenshot(path=output_dir / f"{request.node.name}.png")
    context.close()
    assert errors == [], errors


@pytest.fixture(scope="module")
def worker_without_ollama(output_dir: Path, fake_ollama: FakeOllama):
    """The ai-worker alone (a :class:`~devstack.probe.Probe` on it), its Ollama unreachable."""
    from devstack.probe import Probe

    stack = start_stack(
        output_dir,
        "int-ai-worker-no-ollama",
        fake_ollama,
        services=("ai-worker",),
        env={"OLLAMA_URL": f"http://127.0.0.1:{free_port()}"},
    )
    try:
        yield Probe(stack, "ai-worker")
    finally:
        stack.stop()


def start_stack(
    output_dir: Path, name: str, fake: "FakeOllama | RealOllama", **kwargs: object
) -> Stack:
    run_dir = output_dir / name
    shutil.rmtree(run_dir, ignore_errors=True)
    env = {
        "OLLAMA_TIMEOUT_S": "5",
        # every test client signs in, and opens widget sessions, from 127.0.0.1
        "LOGIN_ADDRESS_RATE_LIMIT": "600/minute",
        "WIDGET_SESSION_RATE_LIMIT": "6000/minute",
        # the tests' API client and their browser pages are one operator, "demo", and together
        # pass 20 requests a second (tests/test_e2e_ratelimits.py checks the limit itself)
        "OPERATOR_RATE_LIMIT": "200/second",
        **kwargs.pop("env", {}),  # type: ignore[dict-item]
    }
    return Stack(run_dir, fake.url, fake.model, env=env, **kwargs).start()  # type: ignore[arg-type]


def _brokers() -> list[str]:
    chosen = [b.strip() for b in os.environ.get("BROKERS", ",".join(MATRIX)).split(",")]
    unknown = set(chosen) - set(MATRIX)
    if unknown:
        raise pytest.UsageError(f"BROKERS: unknown {sorted(unknown)}; known: {list(MATRIX)}")
    return chosen


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run a ``one_broker`` test on the first broker of ``BROKERS`` only: what it proves does
    not change with the broker (the edge, the state store, the browser), and each broker's
    stack costs minutes. The pipeline, failure, scale-out and scope tests stay per broker."""
    first = _brokers()[0]
    dropped = [
        item
        for item in items
        if item.get_closest_marker("one_broker")
        and getattr(item, "callspec", None) is not None
        and item.callspec.params.get("broker", first) != first  # type: ignore[attr-defined]
    ]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        gone = set(dropped)
        items[:] = [item for item in items if item not in gone]


@pytest.fixture(scope="session", params=_brokers())
def broker(request: pytest.FixtureRequest) -> str:
    """The broker of this run of the end-to-end suite (one of :data:`MATRIX`)."""
    return request.param


@pytest.fixture(scope="session")
def stack(output_dir: Path, fake_ollama: FakeOllama, broker: str) -> Iterator[Stack]:
    """The whole inbox on ``broker``: two replicas of each service, each beside its own
    daprd, PostgreSQL, the broker, and Redis where the broker or state store is Redis."""
    running = start_matrix_stack(output_dir, f"e2e-{broker}", fake_ollama, broker)
    try:
        yield running
    finally:
        running.stop()


def own_jaeger(name: str):  # noqa: ANN201 - a pytest fixture
    """A module-scoped ``jaeger`` fixture: a Jaeger of the module's own in
    ``<output_dir>/<name>``, emptied first, stopped after the module."""

    @pytest.fixture(scope="module", name="jaeger")
    def _jaeger(output_dir: Path) -> Iterator[Jaeger]:
        run_dir = output_dir / name
        shutil.rmtree(run_dir, ignore_errors=True)
        server = Jaeger(run_dir).start()
        try:
            yield server
        finally:
            server.stop()

    return _jaeger


def own_stack(name: str, env: dict[str, str] | None = None):  # noqa: ANN201 - three fixtures
    """Module-scoped ``stack``, ``inbox`` and ``db`` fixtures on a stack of the module's own per
    broker (``<name>-<broker>``), so what its tests leave behind (killed members, hostile
    rows) reaches no other test; ``env`` adds to the services' environment. Use as
    ``stack, inbox, db = own_stack("failures")``."""

    @pytest.fixture(scope="module", name="stack")
    def _stack(output_dir: Path, fake_ollama: FakeOllama, broker: str) -> Iterator[Stack]:
        running = start_matrix_stack(
            output_dir, f"{name}-{broker}", fake_ollama, broker, env=dict(env or {})
        )
        try:
            yield running
        finally:
            running.stop()

    @pytest.fixture(scope="module", name="inbox")
    def _inbox(stack: Stack) -> Iterator[InboxClient]:
        client = InboxClient(stack)
        yield client
        client.http.close()

    @pytest.fixture(scope="module", name="db")
    def _db(stack: Stack) -> Iterator[Database]:
        database = Database(stack.postgres.url)
        yield database
        database.close()

    return _stack, _inbox, _db


def start_matrix_stack(
    output_dir: Path, name: str, fake: "FakeOllama | RealOllama", broker: str, **kwargs: object
) -> Stack:
    """Two replicas of each service (``replicas=`` in ``kwargs`` says otherwise; the rest go
    to :class:`Stack`) on ``broker`` and its paired state store."""
    options = {
        "replicas": 2,
        "component_overrides": _known_overrides(broker),
        "broker_options": BROKER_OPTIONS.get(broker),
        **kwargs,
    }
    return start_stack(output_dir, name, fake, broker=broker, state_store=MATRIX[broker], **options)


def _known_overrides(broker: str) -> dict[str, dict[str, str]]:
    import yaml

    known = {
        item["name"]
        for item in yaml.safe_load(
            (REPO / "dapr-components/pubsub" / broker / "pubsub.yaml").read_text()
        )["spec"]["metadata"]
    }
    return {
        name: {k: v for k, v in values.items() if k in known}
        for name, values in REDELIVERY_OVERRIDES.items()
    }


@pytest.fixture(scope="session")
def inbox(stack: Stack) -> Iterator[InboxClient]:
    client = InboxClient(stack)
    yield client
    client.http.close()


BROKER_OPTIONS = {"rabbitmq": {"consumer_timeout_s": 45}}
"""RabbitMQ returns deliveries stuck on a consumer left behind by a broker restart after its
consumer timeout (see :class:`~devstack.brokers.RabbitMQ`); 45 s is above the tests' longest
prefetch wait plus LLM call (20 prefetched / 4 concurrent x 5 s)."""


@pytest.fixture(scope="session")
def db(stack: Stack) -> Iterator[Database]:
    """The system of record of ``stack``."""
    database = Database(stack.postgres.url)
    yield database
    database.close()


# ------------------------------------------------------------------ Kubernetes API server

DAPR_CRDS = ("components.yaml", "configuration.yaml", "resiliency.yaml", "subscription.yaml")
OPERATOR_NAMESPACE = "support-inbox-system"
OPERATOR_RELEASE = "support-inbox"
"""Release and namespace whose chart-made ServiceAccount is the operator's static identity."""


def helm(*args: str, kubeconfig: Path | None = None, check: bool = True):
    """Run the pinned helm; returns the CompletedProcess (text)."""
    import subprocess

    from devstack.procs import CACHE_DIR

    env = {**os.environ, **({"KUBECONFIG": str(kubeconfig)} if kubeconfig else {})}
    done = subprocess.run(
        [str(CACHE_DIR / "bin" / "helm"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    if check and done.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done


@pytest.fixture(scope="session")
def kube(output_dir: Path):
    """etcd + kube-apiserver + the garbage collector, with our CRD and Dapr's installed and
    the operator's RBAC from the chart applied."""
    from lightkube import Client, KubeConfig, codecs
    from lightkube.core.exceptions import ApiError
    from lightkube.generic_resource import create_namespaced_resource

    from devstack.kube import KubeAPI
    from devstack.procs import CACHE_DIR

    api = KubeAPI(output_dir / "kube").start()
    try:
        admin = Client(config=KubeConfig.from_file(api.admin_kubeconfig), field_manager="tests")
        crds = [REPO / "charts/support-inbox/crds/supportinboxes.supportinbox.io.yaml"] + [
            CACHE_DIR / "src/dapr-v1.18.2/charts/dapr/crds" / name for name in DAPR_CRDS
        ]
        for path in crds:
            for obj in codecs.load_all_yaml(path.read_text()):
                admin.apply(obj, force=True)
        admin.apply(
            codecs.from_dict(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OPERATOR_NAMESPACE}}
            ),
            force=True,
        )
        apply_operator_rbac(admin)
        inbox = create_namespaced_resource(
            "supportinbox.io", "v1alpha1", "SupportInbox", "supportinboxes"
        )
        component = create_namespaced_resource("dapr.io", "v1alpha1", "Component", "components")

        def established() -> bool:
            try:
                admin.list(inbox, namespace="default")
                admin.list(component, namespace="default")
                return True
            except ApiError:
                return False

        wait_for(established, 60, "CRDs established")
        api.admin = admin
        yield api
    finally:
        api.stop()


@pytest.fixture(scope="session")
def admin(kube):
    return kube.admin


def apply_operator_rbac(admin) -> None:
    """The chart's operator ServiceAccount and RBAC, marked as the chart release's so that
    ``helm install`` of that release adopts them."""
    from lightkube import codecs

    rbac = helm(
        "template",
        OPERATOR_RELEASE,
        str(REPO / "charts/support-inbox"),
        "-n",
        OPERATOR_NAMESPACE,
        "--api-versions",
        "dapr.io/v1alpha1/Component",
        "--set",  # the tests' operator serves every namespace they make
        "operator.clusterWide=true",
        "--show-only",
        "templates/operator.yaml",
    ).stdout
    for obj in codecs.load_all_yaml(rbac):
        if obj.kind == "Deployment":
            continue
        obj.metadata.annotations = {
            "meta.helm.sh/release-name": OPERATOR_RELEASE,
            "meta.helm.sh/release-namespace": OPERATOR_NAMESPACE,
        }
        admin.apply(obj, force=True)


def start_operator(kube, output_dir: Path) -> Process:
    """The operator, as its ServiceAccount identity, against ``kube``."""
    return Process(
        "operator",
        [
            sys.executable,
            "-m",
            "kopf",
            "run",
            "--standalone",
            "--all-namespaces",
            "--verbose",
            "-m",
            "inbox_operator.handlers",
        ],
        output_dir / "kube" / "operator.log",
        env={
            **DEVSTACK_ENV,
            "KUBECONFIG": str(kube.operator_kubeconfig),
            "STATUS_REFRESH_INTERVAL_S": "3",
        },
    ).start()


@pytest.fixture(scope="session")
def operator(kube, output_dir: Path) -> Iterator[Process]:
    process = start_operator(kube, output_dir)
    try:
        yield process
    finally:
        process.stop()
