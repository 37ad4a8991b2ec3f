"""CPU time and memory of a devstack stack's processes, read from ``/proc`` with psutil.

The benchmarks read :func:`usage` before and after a run: the CPU difference is what the run
cost each process, the memory after it is what the process holds once the run is over.
"""

import os
from dataclasses import dataclass

import psutil

SERVICE_RSS_TARGET_MB = 150
"""Resident memory each service (uvicorn process) is meant to stay under after a run."""
SIDECAR_RSS_TARGET_MB = 60
"""Resident memory each daprd sidecar is meant to stay under after a run."""


@dataclass(frozen=True)
class Usage:
    """One process at one moment.

    Attributes:
        cpu_s: user plus system CPU seconds since it started, its children's included (live
            ones, and exited ones it waited for: PostgreSQL's backends).
        rss_mb: resident memory in MiB.
        uss_mb: memory unique to the process in MiB (USS): resident memory without the pages
            it shares with others, such as the daprd binary that every sidecar maps from the
            same file.
    """

    cpu_s: float
    rss_mb: float
    uss_mb: float


def stack_processes(stack) -> dict[str, psutil.Process]:  # noqa: ANN001
    """The stack's running members by their names (``postgres``, ``redis``, ``gateway``,
    ``gateway-daprd``...), then ``load generator``: this process, which holds the clients.

    Raises:
        psutil.NoSuchProcess: a member exited since the stack started.
    """
    found = {
        member.name: psutil.Process(member.popen.pid)
        for member in stack.members()
        if member.popen is not None
    }
    found["load generator"] = psutil.Process(os.getpid())
    return found


def usage(processes: dict[str, psutil.Process]) -> dict[str, Usage]:
    """name -> :class:`Usage` now.

    Raises:
        psutil.NoSuchProcess: one of them exited.
    """
    found = {}
    for name, process in processes.items():
        with process.oneshot():
            times = process.cpu_times()
            memory = process.memory_full_info()
            cpu = sum(times[:4])  # user, system, and those of exited children waited for
            # this process's children are the stack's members, each counted on its own
            if process.pid != os.getpid():
                for child in process.children(recursive=True):
                    try:
                        child_times = child.cpu_times()
                    except psutil.NoSuchProcess:
                        continue
                    cpu += sum(child_times[:4])
        found[name] = Usage(cpu, memory.rss / 2**20, memory.uss / 2**20)
    return found


def is_sidecar(name: str) -> bool:
    return name.endswith("-daprd")


def is_service(name: str, after: dict[str, Usage]) -> bool:
    """A service instance: a member whose sidecar is among them (``gateway``, ``gateway-2``)."""
    return f"{name}-daprd" in after


def usage_report(before: dict[str, Usage], after: dict[str, Usage], messages: int) -> str:
    """A table: per process, CPU seconds in the run and per 1,000 messages; for services and
    sidecars also RSS and USS in MiB after it, against their memory targets."""
    lines = [
        f"{'process':<22}{'CPU s':>8}{'CPU s/1,000 msg':>17}{'RSS MiB':>9}{'USS MiB':>9}"
        "   memory target"
    ]
    for name, end in after.items():
        cpu = end.cpu_s - before[name].cpu_s
        bound = (
            SIDECAR_RSS_TARGET_MB
            if is_sidecar(name)
            else SERVICE_RSS_TARGET_MB
            if is_service(name, after)
            else None
        )
        target = ""
        if bound is not None:
            target = f"RSS <= {bound}: {'met' if end.rss_mb <= bound else 'MISSED'}"
        # A server's own process is a wrapper (runuser) or one of many (PostgreSQL's backends):
        # its memory alone would mislead, so only services and sidecars show theirs.
        memory = (
            f"{end.rss_mb:>9.0f}{end.uss_mb:>9.0f}" if bound is not None else f"{'-':>9}{'-':>9}"
        )
        lines.append(
            f"{name:<22}{cpu:>8.2f}{cpu * 1000 / messages:>17.1f}{memory}   {target}".rstrip()
        )
    return "\n".join(lines)
