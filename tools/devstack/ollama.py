"""The real Ollama server (``make tools`` builds it) with the test model made here.

The model, ``inbox-tiny``, is made by ``tools/make-model.py`` from the seed messages (a
deterministic 18 MB GGUF file and a Modelfile) into :data:`MODEL_DIR`, again only when that
script or the data changed. :class:`OllamaServer` runs ``ollama serve`` on a loopback port with a
home and model directory of its own and registers the model with ``ollama create`` (the CLI
uploads the GGUF file through ``POST /api/blobs/<digest>`` and calls ``POST /api/create``: no
registry is asked).

Usage: ``python -m devstack.ollama model [--out DIR]`` makes the model and prints its directory.
"""

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from devstack.dataset import DATA_FILE
from devstack.procs import CACHE_DIR, Process, free_port, http_ok

REPO = Path(__file__).resolve().parents[2]
OLLAMA_BIN = CACHE_DIR / "bin" / "ollama"
MAKE_MODEL = REPO / "tools" / "make-model.py"
TEST_MODEL = "inbox-tiny"
"""The name the test model is created under (``inbox-tiny:latest``)."""
MODEL_DIR = CACHE_DIR / "models" / TEST_MODEL
"""Where :func:`ensure_model` keeps ``model.gguf`` and ``Modelfile``."""
_STAMP = ".inputs"


def _inputs_digest() -> str:
    digest = hashlib.sha256()
    for path in (MAKE_MODEL, DATA_FILE):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def ensure_model(out: Path = MODEL_DIR) -> Path:
    """Make the test model into ``out`` (``model.gguf`` and ``Modelfile``) unless it was made
    from the same script and data already (about 4 s, once). Returns ``out``.

    Raises:
        subprocess.CalledProcessError: make-model.py failed (its output is on stderr).
    """
    stamp = out / _STAMP
    wanted = _inputs_digest()
    if stamp.exists() and stamp.read_text() == wanted and (out / "model.gguf").exists():
        return out
    shutil.rmtree(out, ignore_errors=True)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run(
        [sys.executable, str(MAKE_MODEL), "--out", str(tmp), "--data", str(DATA_FILE)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    (tmp / _STAMP).write_text(wanted)
    tmp.rename(out)
    return out


class OllamaServer:
    """``ollama serve`` on ``127.0.0.1:<free port>``, its home and models under ``run_dir``.

    Args:
        run_dir: the server's HOME (it writes an identity key under ``~/.ollama``), model
            store (``models/``) and log (``ollama.log``).
        env: more ``OLLAMA_*`` settings, e.g. ``{"OLLAMA_MAX_QUEUE": "1"}``.
    """

    def __init__(self, run_dir: Path, env: dict[str, str] | None = None) -> None:
        if not OLLAMA_BIN.exists():
            raise FileNotFoundError(f"{OLLAMA_BIN} is missing: run `make tools`")
        self.run_dir = run_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (run_dir / "models").mkdir(parents=True, exist_ok=True)
        self.env = {
            "HOME": str(run_dir),
            "PATH": "/usr/bin:/bin",
            "OLLAMA_HOST": f"127.0.0.1:{self.port}",
            "OLLAMA_MODELS": str(run_dir / "models"),
            "OLLAMA_NOPRUNE": "1",
            **(env or {}),
        }
        self.process = Process(
            "ollama", [str(OLLAMA_BIN), "serve"], run_dir / "ollama.log", env=self.env
        )

    def start(self, timeout_s: float = 30) -> "OllamaServer":
        """Start it and wait for ``GET /api/version``.

        Raises:
            devstack.procs.StartError: it exited or did not answer within ``timeout_s`` s.
        """
        self.process.start()
        self.process.wait_until(lambda: http_ok(f"{self.url}/api/version"), timeout_s, "readiness")
        return self

    def create(self, name: str = TEST_MODEL, model_dir: Path | None = None) -> str:
        """Register ``model_dir``'s Modelfile (default: :func:`ensure_model`'s) as ``name``
        with ``ollama create``. Returns ``name``.

        Raises:
            subprocess.CalledProcessError: the server refused it (the CLI's output attached).
        """
        model_dir = model_dir or ensure_model()
        subprocess.run(
            [str(OLLAMA_BIN), "create", name, "-f", str(model_dir / "Modelfile")],
            check=True,
            capture_output=True,
            text=True,
            cwd=model_dir,
            env={**os.environ, **self.env},
            timeout=120,
        )
        return name

    @property
    def log(self) -> str:
        return self.process.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.process.stop()

    def kill(self) -> None:
        """SIGKILL it at once (a crash)."""
        self.process.kill()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devstack.ollama")
    commands = parser.add_subparsers(dest="command", required=True)
    model = commands.add_parser("model", help="make the test model; print its directory")
    model.add_argument("--out", type=Path, default=MODEL_DIR)
    args = parser.parse_args(argv)
    print(ensure_model(args.out))


if __name__ == "__main__":
    main()
