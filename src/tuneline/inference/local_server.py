"""A real OpenAI-compatible server on 127.0.0.1 for offline runs: ``transformers serve MODEL_DIR``.

Started and stopped by whoever needs it (the evaluate stage's judge, the smoke tests). The
server process gets ``HF_HUB_OFFLINE=1`` (it only loads the local dir); the client reaches it under
``HF_HUB_OFFLINE`` too, as a configured endpoint.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType

from tuneline.inference.client import EndpointError

log = logging.getLogger("tuneline")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve_command() -> list[str]:
    exe = Path(sys.executable).parent / "transformers"
    found = str(exe) if exe.exists() else shutil.which("transformers")
    if not found:
        raise EndpointError("the `transformers` command is missing; install tuneline[eval] (transformers[serving])")
    return [found, "serve"]


class LocalServer:
    """``with LocalServer(model_dir) as url:`` gives the root URL of a healthy server, stopped on exit."""

    def __init__(self, model_dir: str | Path, port: int | None = None, startup_timeout_s: float = 180.0) -> None:
        self.model_dir = Path(model_dir)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.startup_timeout_s = startup_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None

    def __enter__(self) -> str:
        if not (self.model_dir / "config.json").is_file():
            raise EndpointError(f"cannot serve {self.model_dir}: not a model directory (no config.json)")
        fd, log_name = tempfile.mkstemp(prefix="tuneline-serve-", suffix=".log")
        self._log_path = Path(log_name)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
        cmd = [
            *_serve_command(),
            str(self.model_dir.resolve()),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--device",
            "cpu" if not _has_cuda() else "auto",
        ]
        log.info("starting local judge server: %s", " ".join(cmd))
        self._proc = subprocess.Popen(cmd, stdout=fd, stderr=subprocess.STDOUT, env=env)  # noqa: S603
        os.close(fd)
        try:
            self._wait_healthy()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self.url

    def _wait_healthy(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise EndpointError(f"local server exited with code {self._proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as resp:  # noqa: S310 - 127.0.0.1
                    if resp.status == 200:
                        log.info("local server ready at %s", self.url)
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise EndpointError(f"local server not healthy after {self.startup_timeout_s:.0f}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        if self._log_path is None or not self._log_path.exists():
            return ""
        return "\n".join(self._log_path.read_text(errors="replace").splitlines()[-lines:])

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        if self._log_path is not None:
            self._log_path.unlink(missing_ok=True)


def _has_cuda() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False
