"""The local-cluster loop without a cluster: skaffold and kind files agree with the repo, and
the Makefile targets that need Docker, kind or skaffold say so clearly when they are missing."""

import os
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def test_skaffold_builds_every_image_and_deploys_the_chart() -> None:
    config = yaml.safe_load((REPO / "skaffold.yaml").read_text())
    artifacts = config["build"]["artifacts"]
    assert {a["image"].rsplit("/", 1)[1] for a in artifacts} == {
        "gateway",
        "messaging",
        "ai-worker",
        "operator",
    }
    for artifact in artifacts:
        assert (REPO / artifact["docker"]["dockerfile"]).is_file()
    (release,) = config["deploy"]["helm"]["releases"]
    assert (REPO / release["chartPath"] / "Chart.yaml").is_file()
    values = yaml.safe_load((REPO / release["chartPath"] / "values.yaml").read_text())
    for key in release["setValueTemplates"]:
        head, tail = key.split(".")
        assert tail in values[head], key
    profiles = {p["name"]: p for p in config["profiles"]}
    assert set(profiles) == {"kind", "minikube", "gpu"}
    for name in ("gpu", "kind"):
        (patch,) = profiles[name]["patches"]
        for path in patch["value"]:
            assert (REPO / path).is_file()


def test_kind_port_mappings_match_the_node_ports() -> None:
    kind = yaml.safe_load((REPO / "k8s/kind-config.yaml").read_text())
    mapped = {m["containerPort"]: m["hostPort"] for m in kind["nodes"][0]["extraPortMappings"]}
    services = list(yaml.safe_load_all((REPO / "k8s/kind-expose.yaml").read_text()))
    node_ports = {s["spec"]["ports"][0]["nodePort"] for s in services}
    assert node_ports == set(mapped)
    assert mapped == {30080: 8080, 30686: 16686, 30318: 4318}


@pytest.mark.parametrize(("target", "tool"), [("images", "docker"), ("dev", "skaffold")])
def test_targets_name_the_missing_tool(target: str, tool: str, tmp_path: Path) -> None:
    # a PATH with make's own needs but none of the container tools
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("bash", "sh", "grep", "sed", "awk", "make", "uv", "python3", "dpkg-query"):
        found = subprocess.run(
            ["bash", "-c", f"command -v {name}"], capture_output=True, text=True
        ).stdout.strip()
        if found:
            (bin_dir / name).symlink_to(found)
    env = {**os.environ, "PATH": str(bin_dir)}
    done = subprocess.run(
        ["make", "--no-print-directory", "-o", "tools", target],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert f"needs {tool}" in done.stdout + done.stderr
