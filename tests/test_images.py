"""Dockerfiles, checked without a Docker engine: hadolint, multi-stage, non-root, lock file,
and every file they copy exists."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKERFILES = sorted(REPO.glob("services/*/Dockerfile"))
HADOLINT = Path(sys.executable).parent / "hadolint"


def instructions(path: Path) -> list[tuple[str, str]]:
    lines = [
        line
        for line in path.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_every_service_has_a_dockerfile() -> None:
    assert {p.parent.name for p in DOCKERFILES} == {"gateway", "messaging", "ai-worker", "operator"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_hadolint_is_clean(dockerfile: Path) -> None:
    done = subprocess.run(
        [str(HADOLINT), "--failure-threshold", "info", str(dockerfile)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfile_shape(dockerfile: Path) -> None:
    steps = instructions(dockerfile)
    stages = [args for op, args in steps if op == "FROM"]
    assert len(stages) >= 2, "multi-stage build"
    final = len(steps) - 1 - [op for op, _ in steps][::-1].index("FROM")
    final_steps = steps[final:]
    users = [args for op, args in final_steps if op == "USER"]
    assert users and not users[-1].startswith(("0", "root")), "final stage runs as non-root"
    assert any("uv sync --frozen --no-dev" in args for op, args in steps if op == "RUN")
    assert not any(op == "RUN" and "pip install" in args for op, args in final_steps)
    for op, args in steps:
        if op in {"COPY", "ADD"} and "--from=" not in args:
            sources = [a for a in shlex.split(args) if not a.startswith("--")][:-1]
            for source in sources:
                assert (REPO / source).exists(), f"{dockerfile}: {source} does not exist"
    if dockerfile.parent.name == "gateway":
        assert any(
            op == "COPY" and args.split()[-2].startswith("frontend") for op, args in final_steps
        ), "the frontend ships in the gateway image"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_image_command_names_an_importable_module(dockerfile: Path) -> None:
    cmd = [args for op, args in instructions(dockerfile) if op == "CMD"][-1]
    module = re.search(r'"([a-z_]+)\.(main|handlers)', cmd)
    assert module, cmd
    __import__(f"{module.group(1)}.{module.group(2)}")


MODEL_DOCKERFILES = [REPO / "k8s/images/ollama/Dockerfile", REPO / "k8s/images/model/Dockerfile"]
"""The real Ollama server's image and the test model's image (``ollama.modelSource: file``)."""


@pytest.mark.parametrize("dockerfile", MODEL_DOCKERFILES, ids=lambda p: p.parent.name)
def test_the_model_images_are_clean_and_run_as_non_root(dockerfile: Path) -> None:
    done = subprocess.run(
        [str(HADOLINT), "--failure-threshold", "info", str(dockerfile)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    users = [args for op, args in instructions(dockerfile) if op == "USER"]
    assert users and not users[-1].startswith(("0", "root"))


def test_the_model_image_holds_what_the_chart_copies() -> None:
    copies = [args.split() for op, args in instructions(MODEL_DOCKERFILES[1]) if op == "COPY"]
    assert copies == [["model.gguf", "Modelfile", "/model/"]]
    values = (REPO / "charts/support-inbox/values.yaml").read_text()
    assert re.search(r"^    path: /model$", values, re.MULTILINE), "modelFile.path default"


def test_every_dockerfile_build_images_names_exists() -> None:
    script = (REPO / "tools/build-images.sh").read_text()
    named = set(re.findall(r"k8s/images/([a-z-]+)/Dockerfile", script))
    assert {"ollama", "model"} <= named
    missing = [n for n in named if not (REPO / "k8s/images" / n / "Dockerfile").exists()]
    assert not missing, missing
