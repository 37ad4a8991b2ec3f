"""`make run`: the whole Support Inbox on this machine until Ctrl-C.

Starts PostgreSQL, the broker (``BROKER``: redis, rabbitmq, kafka, jetstream) and state store
(``STATE_STORE``: redis, postgresql), ``REPLICAS`` instances each of the gateway, messaging and
ai-worker beside their own daprd,
asks the model server ``OLLAMA`` says: ``auto`` (the default) Ollama at ``OLLAMA_URL`` when it
serves ``OLLAMA_MODEL``, else a stand-in that speaks Ollama's API; ``real`` the Ollama server
``make tools`` built, with the test model made here (``inbox-tiny``); ``stand-in`` the stand-in,
seeds conversations from real support messages and keeps a customer stream going. Prints
each server and instance as it becomes ready; when any of its processes dies, says which,
with the last lines of its log, and stops everything (exit status 1).
"""

import argparse
import json
import os
import signal
import sys
import threading
import urllib.request

from ai_worker.settings import Settings

from devstack.dataset import write_training_examples
from devstack.fake_ollama import MODEL, start_server
from devstack.jaeger import JAEGER_BIN, Jaeger
from devstack.ollama import OLLAMA_BIN, OllamaServer
from devstack.procs import Process
from devstack.seed import CustomerStream
from devstack.stack import BROKERS, REPO, STATE_STORES, MemberDied, Stack
from devstack.widget_demo import start_demo


def _ollama_has(url: str, model: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/api/tags", timeout=3) as response:  # noqa: S310
            names = {m.get("name") for m in json.loads(response.read()).get("models", [])}
    except (OSError, ValueError):
        return False
    return model in names or f"{model}:latest" in names


def watch(
    stack: Stack,
    stopped: threading.Event,
    others: tuple[Process, ...] = (),
    interval_s: float = 1.0,
) -> str | None:
    """Wait until ``stopped`` is set (returns ``None``) or a process dies: a member of
    ``stack`` or one of ``others`` (returns what died, with the last lines of its log).

    Checked every ``interval_s`` seconds, so a dead sidecar is reported within that time
    rather than as failed requests later.
    """
    while not stopped.wait(interval_s):
        try:
            stack.check()
        except MemberDied as exc:
            return str(exc)
        for process in others:
            if process.died:
                return (
                    f"{process.name} died ({process.exit_reason()}), last lines of "
                    f"{process.log_path}:\n{process.log_tail(20)}"
                )
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    parser.add_argument(
        "--seed",
        type=int,
        default=int(os.environ.get("SEED_MESSAGES", "30")),
        help="customer messages posted at start",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=float(os.environ.get("CUSTOMER_RATE", "4")),
        help="new customer messages per minute afterwards (0 stops the stream)",
    )
    parser.add_argument(
        "--broker",
        default=os.environ.get("BROKER", "redis"),
        choices=[b for b in BROKERS if b != "in-memory"],
        help="pub/sub broker behind inbox-pubsub and inbox-broadcast",
    )
    parser.add_argument(
        "--state-store",
        default=os.environ.get("STATE_STORE", "redis"),
        choices=STATE_STORES,
        help="state store behind inbox-state",
    )
    parser.add_argument(
        "--ollama",
        default=os.environ.get("OLLAMA", "auto"),
        choices=("auto", "real", "stand-in"),
        help="model server: OLLAMA_URL if it serves OLLAMA_MODEL (auto), the built "
        "`ollama serve` with the test model (real), or the stand-in",
    )
    parser.add_argument(
        "--replicas",
        type=int,
        default=int(os.environ.get("REPLICAS", "1")),
        help="instances of each service, each with its own daprd",
    )
    args = parser.parse_args()
    if os.environ.get("BROKER") == "in-memory":
        parser.error(
            "BROKER=in-memory: the in-memory pub/sub delivers only within one sidecar, and the "
            "inbox runs three services with a sidecar each; choose redis, rabbitmq, kafka or "
            "jetstream"
        )

    run_dir = REPO / ".devstack"
    ollama_url = os.environ.get("OLLAMA_URL", "")
    ollama_model = os.environ.get("OLLAMA_MODEL", Settings.model_fields["ollama_model"].default)
    model_server = None
    if args.ollama == "real":
        if not OLLAMA_BIN.exists():
            parser.error(f"OLLAMA=real: {OLLAMA_BIN} is missing; `make tools-run OLLAMA=real`")
        print("Starting Ollama (built by make tools) with the test model inbox-tiny…")
        real = OllamaServer(run_dir / "ollama").start()
        model_server, ollama_url = real.process, real.url
        try:
            ollama_model = real.create()
        except BaseException:
            real.stop()
            raise
        print(
            f"Using Ollama at {ollama_url} with model {ollama_model} (random weights: "
            "schema-valid nonsense, not advice)"
        )
    elif args.ollama == "auto" and ollama_url and _ollama_has(ollama_url, ollama_model):
        print(f"Using Ollama at {ollama_url} with model {ollama_model}")
    else:
        why = (
            "OLLAMA=stand-in"
            if args.ollama == "stand-in"
            else f"{ollama_url} does not serve {ollama_model}"
            if ollama_url
            else "OLLAMA_URL is unset"
        )
        # FAKE_TOKEN_DELAY_S: a pause between streamed words, to watch replies being written
        model_server, ollama_url = start_server(
            run_dir / "logs" / "fake-ollama.log",
            token_delay_s=float(os.environ.get("FAKE_TOKEN_DELAY_S", "0")),
        )
        ollama_model = MODEL
        print(f"{why}: using the stand-in model server (fake-insight:1b) at {ollama_url}")

    jaeger = None
    if JAEGER_BIN.exists():
        jaeger = Jaeger(run_dir / "jaeger").start()
    else:
        print(f"{JAEGER_BIN} is missing (`make tools` builds it): tracing is off")
    stack = Stack(
        run_dir,
        ollama_url,
        ollama_model,
        pg_dir=run_dir / "postgres",
        gateway_port=args.port,
        broker=args.broker,
        state_store=args.state_store,
        replicas=args.replicas,
        otlp_endpoint=jaeger.otlp_http_endpoint if jaeger else None,
        # the intent step learns from the demo set's training split; make eval keeps the rest
        env={
            **(jaeger.browser_env if jaeger else {}),
            "AI_INTENT_EXAMPLES": str(write_training_examples(run_dir / "intent-examples.jsonl")),
        },
        progress=lambda line: print(f"  {line}", flush=True),
    )
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    stream = None
    widget_site = assistant_site = None
    status = 0
    try:
        print(
            f"Starting PostgreSQL, {args.broker} (pub/sub), {args.state_store} (state store), "
            f"and {args.replicas} x gateway/messaging/ai-worker with their daprd sidecars…"
        )
        stack.start()
        stream = CustomerStream(stack.gateway_url, stack.channel_key, args.seed, args.rate).start()
        widget_site, widget_site_url = start_demo(
            stack.gateway_url,
            stack.widget_channel,
            run_dir / "logs" / "widget-demo.log",
            port=stack.widget_site_port,
        )
        assistant_site, assistant_site_url = start_demo(
            stack.gateway_url,
            stack.widget_assistant_channel,
            run_dir / "logs" / "widget-demo-assistant.log",
            port=stack.widget_assistant_site_port,
        )
        user, password = stack.operator
        print(
            f"\nSupport Inbox is running: {stack.gateway_url}/\n"
            f"  log in as {user} / {password} (admin), or {' / '.join(stack.agent)} (agent)   "
            f"(API docs: {stack.gateway_url}/docs)\n"
            f"  {args.seed} real customer messages seeded, then {args.rate:g} per minute "
            "(BANKING77, PolyAI, CC BY 4.0)\n"
            f"  customer chat widget on a demo site: {widget_site_url}   (operators answer)\n"
            f"  the same with the AI assistant answering first: {assistant_site_url}\n"
            f"  channel API key: {stack.channel_key}\n"
            f"  logs: {stack.log_dir}\n"
            "  metrics (Prometheus text format):\n"
            + "".join(
                f"    {name}: {service.metrics_url}   daprd: {service.sidecar_metrics_url}\n"
                for name, service in stack.services.items()
            )
            + (
                f"  traces: {jaeger.ui_url}/api/traces/<trace_id>  (Jaeger's query API: the page,\n"
                "          every service and sidecar; the AI panel's `trace` link opens one)\n"
                if jaeger
                else ""
            )
            + "Press Ctrl-C to stop."
        )
        members = (model_server, widget_site, assistant_site, jaeger.process if jaeger else None)
        others = tuple(p for p in members if p is not None)
        died = watch(stack, stopped, others)
        if died:
            print(f"\n{died}\n\nThe inbox cannot work without it: stopping everything.")
            status = 1
    except KeyboardInterrupt:
        pass
    finally:
        # A Ctrl-C reaches this process twice (from the terminal and forwarded by `uv run`);
        # the second must not interrupt the clean-up.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("\nStopping…")
        if stream:
            stream.stop()
        for site in (widget_site, assistant_site):
            if site:
                site.stop()
        stack.stop()
        if jaeger:
            jaeger.stop()
        if model_server:
            model_server.stop()
        print("Stopped.")
    return status


if __name__ == "__main__":
    sys.exit(main())
