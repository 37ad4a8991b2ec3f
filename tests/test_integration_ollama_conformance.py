"""The stand-in Ollama answers as the real server does, where both can be asked.

The real ``ollama serve`` (built for CPU by ``tools/build-ollama.sh``, ``make tools``) runs on a
loopback port with an empty model directory, so every request here is one it can answer
without a model. Each case goes to both servers; status and JSON body must match. What needs
a loaded model (chat replies, streaming, tools) is compared elsewhere.
"""

import json
from pathlib import Path

import httpx2 as httpx
import pytest
from devstack.procs import CACHE_DIR, Process, free_port, http_ok

pytestmark = pytest.mark.integration

OLLAMA_BIN = CACHE_DIR / "bin" / "ollama"
MISSING = "no-such-model:1b"


@pytest.fixture(scope="module")
def real_ollama(output_dir: Path):
    if not OLLAMA_BIN.exists():
        pytest.fail(f"{OLLAMA_BIN} is missing: run `make tools`")
    port = free_port()
    home = output_dir / "ollama-real"
    (home / "models").mkdir(parents=True, exist_ok=True)
    process = Process(
        "ollama",
        [str(OLLAMA_BIN), "serve"],
        output_dir / "ollama-real.log",
        # its own HOME: the server writes an identity key under ~/.ollama on first start
        env={
            "HOME": str(home),
            "PATH": "/usr/bin:/bin",
            "OLLAMA_HOST": f"127.0.0.1:{port}",
            "OLLAMA_MODELS": str(home / "models"),
        },
    ).start()
    url = f"http://127.0.0.1:{port}"
    try:
        process.wait_until(lambda: http_ok(f"{url}/api/version"), 30, "readiness")
        yield url
    finally:
        process.stop()


def answer(url: str, method: str, path: str, body: object = None) -> tuple[int, object]:
    content = None if body is None else (body if isinstance(body, bytes) else json.dumps(body))
    response = httpx.request(method, f"{url}{path}", content=content, timeout=10)
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, response.text


CASES = {
    "chat with an unknown model": (
        "POST",
        "/api/chat",
        {"model": MISSING, "stream": False, "messages": [{"role": "user", "content": "hi"}]},
    ),
    "chat streamed with an unknown model": (
        "POST",
        "/api/chat",
        {"model": MISSING, "messages": [{"role": "user", "content": "hi"}]},
    ),
    "chat without a model": ("POST", "/api/chat", {}),
    "show an unknown model": ("POST", "/api/show", {"model": MISSING}),
    "show an unknown model by its old field": ("POST", "/api/show", {"name": MISSING}),
    "show without a model": ("POST", "/api/show", {}),
    "pull without a model": ("POST", "/api/pull", {}),
}


@pytest.mark.parametrize("case", CASES)
def test_an_error_is_the_real_servers(case: str, real_ollama: str, fake_ollama) -> None:
    method, path, body = CASES[case]
    assert answer(fake_ollama.url, method, path, body) == answer(real_ollama, method, path, body)


def test_version_and_tags_have_the_real_shape(real_ollama: str, fake_ollama) -> None:
    for path in ("/api/version", "/api/tags"):
        real_status, real = answer(real_ollama, "GET", path)
        fake_status, fake = answer(fake_ollama.url, "GET", path)
        assert (fake_status, set(fake)) == (real_status, set(real)), path
    assert (
        answer(fake_ollama.url, "GET", "/api/version")[1]
        == answer(real_ollama, "GET", "/api/version")[1]
    ), "the stand-in claims the pinned server's version"
