"""ModelReady: where the model comes from (pulled, or created from a GGUF file in an image or a
volume) and, while Ollama does not list it, what its Job is doing; against a real HTTP server
on loopback answering ``/api/tags``, and an API client whose Jobs and Pods are given."""

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from inbox_operator import cluster
from inbox_operator.handlers import model_condition, parse_spec
from inbox_operator.spec import Ollama
from kopf import PermanentError
from lightkube.core.exceptions import ApiError
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import Pod

IMAGE = "localhost/support-inbox/model-inbox-tiny:0.1.0"
BASE_SPEC = {
    "database": {"secretRef": {"name": "db"}},
    "broker": {"type": "redis", "host": "redis:6379"},
    "stateStore": {"type": "redis", "host": "redis:6379"},
    "auth": {
        k: {"name": "auth"}
        for k in (
            "jwtSecretRef",
            "operatorsSecretRef",
            "channelApiKeysSecretRef",
            "daprApiTokenSecretRef",
            "appApiTokenSecretRef",
        )
    },
}
# what `ollama create` leaves as the termination message (FallbackToLogsOnError): the
# progress spinner's escape codes, then the error
CLI_LOG = (
    "\x1b[?2026h\x1b[?25l\x1b[1Ggathering model components \x1b[K\n"
    "\x1b[?25h\x1b[?2026lError: open /model-file/model.gguf: no such file or directory\n"
)


class Tags(BaseHTTPRequestHandler):
    models: list[str] = []

    def log_message(self, *_: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = json.dumps({"models": [{"name": m} for m in self.models]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def ollama() -> Iterator[str]:
    """An ``/api/tags`` server on loopback listing ``Tags.models`` (empty at first)."""
    Tags.models = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Tags)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


class Client:
    """The two ``list`` calls :func:`cluster.model_job` makes, over given objects, filtered
    by namespace and labels as the API server does; ``refuse`` answers 403 as RBAC would."""

    def __init__(self, objects: list[Any], refuse: bool = False) -> None:
        self.objects = objects
        self.refuse = refuse

    async def list(self, kind: type, namespace: str, labels: dict[str, str]) -> Any:
        if self.refuse:
            response = httpx.Response(
                403,
                json={
                    "kind": "Status",
                    "status": "Failure",
                    "message": 'jobs.batch is forbidden: User "system:serviceaccount:x:op" '
                    'cannot list resource "jobs"',
                    "reason": "Forbidden",
                    "code": 403,
                },
                request=httpx.Request("GET", "https://api/apis/batch/v1/jobs"),
            )
            raise ApiError(response=response)
        for obj in self.objects:
            meta = obj.metadata
            if (
                isinstance(obj, kind)
                and meta.namespace == namespace
                and all((meta.labels or {}).get(k) == v for k, v in labels.items())
            ):
                yield obj


def job(
    name: str,
    model: str = "inbox-tiny",
    component: str = "ollama-create",
    created: str = "2026-01-01T10:00:00Z",
    status: dict | None = None,
) -> Job:
    return Job.from_dict(
        {
            "metadata": {
                "name": name,
                "namespace": "support",
                "creationTimestamp": created,
                "labels": {
                    "app.kubernetes.io/instance": "inbox",
                    "app.kubernetes.io/component": component,
                },
                "annotations": {"supportinbox.io/model": model},
            },
            "spec": {"template": {"spec": {"containers": []}}},
            "status": status or {},
        }
    )


def pod(job_name: str, phase: str, init: list[dict] = (), main: list[dict] = ()) -> Pod:
    return Pod.from_dict(
        {
            "metadata": {
                "name": f"{job_name}-x",
                "namespace": "support",
                "creationTimestamp": "2026-01-01T10:00:01Z",
                "labels": {"batch.kubernetes.io/job-name": job_name},
            },
            "status": {
                "phase": phase,
                "initContainerStatuses": list(init),
                "containerStatuses": list(main),
            },
        }
    )


def status(name: str, *, state: dict, last: dict | None = None, image: str = "i") -> dict:
    return {
        "name": name,
        "image": image,
        "imageID": "",
        "ready": False,
        "restartCount": 1 if last else 0,
        "state": state,
        "lastState": last or {},
    }


def file_spec(url: str, model: str = "inbox-tiny", **model_file: Any) -> Any:
    return parse_spec(
        {
            **BASE_SPEC,
            "ollama": {
                "url": url,
                "model": model,
                "modelSource": "file",
                "modelFile": model_file or {"image": IMAGE},
            },
        }
    )


# ------------------------------------------------------------------ the spec


def test_a_file_source_needs_exactly_one_of_image_and_volume() -> None:
    for model_file in ({}, {"image": IMAGE, "volume": {"hostPath": {"path": "/srv"}}}):
        with pytest.raises(PermanentError, match="exactly one of image and volume"):
            parse_spec({**BASE_SPEC, "ollama": {"modelSource": "file", "modelFile": model_file}})
    with pytest.raises(PermanentError, match="spec.ollama.modelSource"):
        parse_spec({**BASE_SPEC, "ollama": {"modelSource": "git"}})


@pytest.mark.parametrize(
    ("ollama", "origin"),
    [
        ({}, "pulled"),
        ({"modelSource": "file", "modelFile": {"image": IMAGE}}, f"image {IMAGE}"),
        (
            {
                "modelSource": "file",
                "modelFile": {"volume": {"persistentVolumeClaim": {"claimName": "gguf"}}},
            },
            "volume persistentVolumeClaim gguf at /model",
        ),
        (
            {
                "modelSource": "file",
                "modelFile": {"volume": {"hostPath": {"path": "/srv/models"}}, "path": "/tiny"},
            },
            "volume hostPath /srv/models at /tiny",
        ),
    ],
)
def test_the_origin_names_the_source(ollama: dict, origin: str) -> None:
    said = Ollama.model_validate(ollama).origin()
    assert (
        said == origin if origin == "pulled" else said == f"created from the GGUF file in {origin}"
    )


# ------------------------------------------------------------------ the Job's state


def test_a_pod_waiting_for_its_image_is_pending_and_says_why() -> None:
    waiting = {"waiting": {"reason": "ErrImageNeverPull", "message": f"image {IMAGE} not present"}}
    state = cluster.job_state(
        job("j").to_dict(),
        [pod("j", "Pending", init=[status("copy-model", state=waiting)]).to_dict()],
    )
    assert state.phase == "pending"
    assert state.text == f"Job j pending (copy-model ErrImageNeverPull: image {IMAGE} not present)"


def test_a_retrying_job_is_running_with_its_last_failure_line() -> None:
    failed = {
        "terminated": {
            "exitCode": 1,
            "reason": "Error",
            "message": CLI_LOG,
            "finishedAt": "2026-01-01T10:00:05Z",
        }
    }
    state = cluster.job_state(
        job("j", status={"active": 1}).to_dict(),
        [
            pod(
                "j",
                "Running",
                main=[status("create", state={"running": {}}, last=failed)],
            ).to_dict()
        ],
    )
    assert state.phase == "running"
    assert state.text == (
        "Job j running; last failure: create exited 1 (Error): "
        "Error: open /model-file/model.gguf: no such file or directory"
    )


def test_a_failed_job_gives_its_reason_and_the_last_failure() -> None:
    crashed = {
        "terminated": {
            "exitCode": 1,
            "reason": "Error",
            "message": "Error: something\n",
            "finishedAt": "2026-01-01T10:01:00Z",
        }
    }
    earlier = {"terminated": {"exitCode": 2, "finishedAt": "2026-01-01T10:00:00Z"}}
    failed = {
        "conditions": [
            {
                "type": "Failed",
                "status": "True",
                "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit",
            }
        ]
    }
    state = cluster.job_state(
        job("j", status=failed).to_dict(),
        [
            pod(
                "j",
                "Failed",
                main=[status("create", state=crashed, last=earlier)],
            ).to_dict()
        ],
    )
    assert state.phase == "failed"
    assert state.text == (
        "Job j failed (BackoffLimitExceeded: Job has reached the specified backoff limit); "
        "last failure: create exited 1 (Error): Error: something"
    )


def test_a_long_failure_line_is_bounded() -> None:
    done = {
        "terminated": {"exitCode": 1, "message": "x" * 5000, "finishedAt": "2026-01-01T10:00:00Z"}
    }
    failure = cluster.last_failure([pod("j", "Running", main=[status("c", state=done)]).to_dict()])
    assert failure is not None and len(failure) < 350 and failure.endswith("...")


# ------------------------------------------------------------------ the condition


async def test_an_available_model_says_how_it_came(ollama: str) -> None:
    Tags.models = ["inbox-tiny:latest"]
    condition = await model_condition(Client([]), file_spec(ollama), "support", "inbox")
    assert (condition.status, condition.reason) == ("True", "ModelAvailable")
    assert condition.message == (
        f"inbox-tiny is available at {ollama} (created from the GGUF file in image {IMAGE})"
    )
    pulled = parse_spec({**BASE_SPEC, "ollama": {"url": ollama, "model": "inbox-tiny"}})
    condition = await model_condition(Client([]), pulled, "support", "inbox")
    assert condition.message == f"inbox-tiny is available at {ollama} (pulled)"


async def test_a_missing_model_reports_the_newest_job_for_it(ollama: str) -> None:
    waiting = {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling"}}
    objects = [
        job(
            "inbox-ollama-create-1",
            created="2026-01-01T09:00:00Z",
            status={"conditions": [{"type": "Complete", "status": "True"}]},
        ),
        job("inbox-ollama-create-2", created="2026-01-01T10:00:00Z"),
        pod("inbox-ollama-create-2", "Pending", init=[status("copy-model", state=waiting)]),
        # another model's Job, another release's, the pull Job: none of them
        job("inbox-ollama-create-3", model="other", created="2026-01-01T11:00:00Z"),
        job("inbox-ollama-pull-4", component="ollama-pull", created="2026-01-01T12:00:00Z"),
    ]
    condition = await model_condition(Client(objects), file_spec(ollama), "support", "inbox")
    assert (condition.status, condition.reason) == ("False", "ModelJobPending")
    assert condition.message == (
        f"inbox-tiny is not available at {ollama} (has: none); it is to be created from the "
        f"GGUF file in image {IMAGE}: Job inbox-ollama-create-2 pending "
        "(copy-model ImagePullBackOff: Back-off pulling)"
    )


async def test_without_a_job_or_with_one_that_completed_the_source_is_still_said(
    ollama: str,
) -> None:
    Tags.models = ["inbox-tiny:latest"]
    spec = file_spec(ollama, model="qwen2.5:0.5b")
    condition = await model_condition(Client([job("j")]), spec, "support", "inbox")
    assert (condition.status, condition.reason) == ("False", "ModelUnavailable")
    assert condition.message == (
        f"qwen2.5:0.5b is not available at {ollama} (has: inbox-tiny:latest); it is to be "
        f"created from the GGUF file in image {IMAGE}: no Job for it is found (the chart's "
        "runs at each install and upgrade)"
    )
    done = job(
        "j", model="qwen2.5:0.5b", status={"conditions": [{"type": "Complete", "status": "True"}]}
    )
    condition = await model_condition(Client([done]), spec, "support", "inbox")
    assert condition.reason == "ModelUnavailable"
    assert condition.message.endswith(": Job j completed")


async def test_a_job_the_operator_may_not_read_leaves_the_source(ollama: str) -> None:
    condition = await model_condition(
        Client([], refuse=True), file_spec(ollama), "support", "inbox"
    )
    assert (condition.status, condition.reason) == ("False", "ModelUnavailable")
    assert f"created from the GGUF file in image {IMAGE}: its Job is unreadable: " in (
        condition.message
    )
    assert "cannot list resource" in condition.message


async def test_an_unreachable_ollama_is_said_first() -> None:
    spec = file_spec("http://127.0.0.1:9")
    condition = await model_condition(Client([]), spec, "support", "inbox")
    assert condition.reason == "ModelUnavailable"
    assert condition.message.startswith("Ollama at http://127.0.0.1:9 is unreachable")
