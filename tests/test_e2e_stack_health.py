"""A stack never runs on with a dead member: a process that dies after start-up is named, with
the last lines of its log, by the next check (the check before every test, and `make run`'s
watch) instead of surfacing later as "connection refused" somewhere else."""

import os
import signal
import threading
import time

import httpx2 as httpx
import pytest
from devstack.fixtures import running_stacks_alive, start_stack
from devstack.run import watch
from devstack.stack import MemberDied, running_stacks

pytestmark = pytest.mark.e2e


@pytest.fixture
def workers(output_dir, fake_ollama):
    """Two ai-worker instances with their sidecars (``ai-worker``, ``ai-worker-2``)."""
    stack = start_stack(output_dir, "health-ai-worker", fake_ollama, services=("ai-worker",),
                        replicas=2)
    try:
        yield stack
    finally:
        stack.stop()


def crash(process) -> None:
    """SIGKILL from outside, as the kernel or a bug would: not through the stack's API."""
    os.kill(process.popen.pid, signal.SIGKILL)
    process.popen.wait(5)


def test_a_member_that_dies_after_start_fails_the_next_check(workers) -> None:
    assert workers in running_stacks()
    workers.check()  # all alive
    victim = workers.services["ai-worker-2"]
    last_line = victim.sidecar.log_tail(1)
    assert last_line
    crash(victim.sidecar)

    with pytest.raises(MemberDied) as died:
        workers.check()
    message = str(died.value)
    assert "ai-worker-2-daprd" in message and "signal 9" in message
    assert last_line in message  # its last log lines, and where the whole log is
    assert str(victim.sidecar.log_path) in message
    assert [p.name for p in workers.dead()] == ["ai-worker-2-daprd"]

    # the check that runs before every test fails it at once, with the same words
    with pytest.raises(pytest.fail.Exception) as failed:
        running_stacks_alive()
    assert "ai-worker-2-daprd" in str(failed.value) and last_line in str(failed.value)

    # what the tests used to see instead, much later
    with pytest.raises(httpx.ConnectError):
        httpx.get(victim.sidecar_metrics_url, timeout=5)


def test_make_run_watch_reports_a_dead_member_at_once(workers) -> None:
    stopped = threading.Event()
    victim = workers.services["ai-worker"]
    threading.Timer(1.0, crash, args=(victim.app,)).start()
    started = time.monotonic()
    report = watch(workers, stopped, interval_s=0.2)
    assert time.monotonic() - started < 10
    assert report is not None and "ai-worker " in report.replace("\n", " ") + " "
    assert str(victim.app.log_path) in report
    # a Ctrl-C (stopped) ends the watch with no report
    stopped.set()
    assert watch(workers, stopped, interval_s=0.2) is None


def test_members_stopped_or_killed_on_purpose_are_not_dead(workers) -> None:
    """Tests crash members through the stack on purpose (``Process.kill``) and restart them;
    only a death nobody asked for counts."""
    workers.services["ai-worker-2"].sidecar.kill()
    workers.services["ai-worker-2"].app.stop()
    workers.check()
    workers.start_service("ai-worker-2")
    workers.wait_ready("ai-worker-2")
    workers.check()
    workers.stop()
    assert workers not in running_stacks()
