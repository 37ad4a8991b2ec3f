"""`make run` installs only what it runs (`tools/install.sh run`), while `make tools` and
`make test` still install everything the tests need (`tools/install.sh all`)."""

import os
import shutil
import subprocess

import pytest
from devstack.procs import CACHE_DIR
from devstack.stack import REPO


def dry_run(target: str) -> str:
    """The commands ``make TARGET`` would run (``make -n``)."""
    done = subprocess.run(
        ["make", "-n", target], cwd=REPO, capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout


def test_make_run_installs_only_the_run_group() -> None:
    commands = dry_run("run")
    assert "tools/install.sh run" in commands
    assert "tools/install.sh all" not in commands


@pytest.mark.parametrize("target", ["tools", "test"])
def test_make_tools_and_test_install_everything(target: str) -> None:
    assert "tools/install.sh all" in dry_run(target)


def test_the_run_group_on_a_fresh_tool_dir_builds_only_daprd(tmp_path) -> None:
    """A fresh tool directory holding only daprd (copied, so its build is skipped): the run
    group starts no other build (no Kubernetes, helm, Jaeger or Dapr control plane)."""
    if not (CACHE_DIR / "bin" / "daprd").exists():
        pytest.fail(f"{CACHE_DIR / 'bin' / 'daprd'} is missing: run `make tools`")
    (tmp_path / "bin").mkdir()
    shutil.copy2(CACHE_DIR / "bin" / "daprd", tmp_path / "bin" / "daprd")
    done = subprocess.run(
        [str(REPO / "tools" / "install.sh"), "run"],
        cwd=REPO,
        env={**os.environ, "INBOX_TOOLS_DIR": str(tmp_path), "BROKER": "redis"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "done ('run' group" in done.stdout
    assert sorted(p.stem for p in (tmp_path / "logs").glob("*.log")) == ["daprd", "python-env"]
    assert sorted(os.listdir(tmp_path / "bin")) == ["daprd"]


def test_an_unknown_group_is_refused() -> None:
    done = subprocess.run(
        [str(REPO / "tools" / "install.sh"), "everything"], capture_output=True, text=True
    )
    assert done.returncode == 2 and "usage" in done.stderr
