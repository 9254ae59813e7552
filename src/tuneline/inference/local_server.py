"""Real servers on this machine, started and stopped by whoever needs them.

``ServerProcess`` runs one server command in its own process group, logs to a file, waits until its
health URL answers 200 (with progress on stderr), and stops the whole group on exit: vLLM and Open WebUI
start worker processes of their own, and none may outlive the command that started them.

``LocalServer`` is ``transformers serve MODEL_DIR`` (the evaluate stage's generate-mode judge, the peer in
the serving benchmark). The server process gets ``HF_HUB_OFFLINE=1`` (it only loads the local dir); the
client reaches it under ``HF_HUB_OFFLINE`` too, as a configured endpoint.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from tuneline.inference.client import EndpointError

log = logging.getLogger("tuneline")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``with ServerProcess(name, cmd, url) as url:`` gives the root URL of a healthy server, stopped on exit.

    ``health_path`` is polled until it answers 200; the process exiting first, or ``startup_timeout_s``
    passing, raises ``EndpointError`` with the tail of the server's log. ``keep_log`` leaves the log file
    (its path is ``log_path``) for the user to read after a ``tuneline serve`` session.
    """

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        url: str,
        env: Mapping[str, str] | None = None,
        health_path: str = "/health",
        startup_timeout_s: float = 180.0,
        log_path: Path | None = None,
    ) -> None:
        self.name = name
        self.command = list(command)
        self.url = url.rstrip("/")
        self.env = dict(env or os.environ)
        self.health_path = health_path
        self.startup_timeout_s = startup_timeout_s
        self.log_path = log_path
        self._own_log = log_path is None
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> str:
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix=f"tuneline-{self.name.split()[0].lower()}-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log.info("starting %s: %s", self.name, " ".join(self.command))
        with open(self.log_path, "ab") as out:
            self._proc = subprocess.Popen(  # noqa: S603 - our own command line
                self.command, stdout=out, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
            )
        try:
            self._wait_healthy()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self.url

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _wait_healthy(self) -> None:
        from tuneline.progress import console

        assert self._proc is not None
        started = time.monotonic()
        with console.status(f"starting {self.name}…") as status:
            while (waited := time.monotonic() - started) < self.startup_timeout_s:
                if self._proc.poll() is not None:
                    raise EndpointError(f"{self.name} exited with code {self._proc.returncode}:\n{self.log_tail()}")
                if healthy(self.url + self.health_path):
                    log.info("%s ready at %s after %.0f s", self.name, self.url, waited)
                    return
                last = self.log_tail(1).strip()[:100]
                status.update(f"starting {self.name}… {waited:.0f} s  [dim]{last}[/]")
                time.sleep(0.5)
        raise EndpointError(f"{self.name} not healthy after {self.startup_timeout_s:.0f}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as fh:
            fh.seek(max(0, os.fstat(fh.fileno()).st_size - 16384))
            return "\n".join(fh.read().decode(errors="replace").splitlines()[-lines:])

    def wait(self) -> int:
        """Block until the server exits by itself (Ctrl-C reaches the caller, whose ``with`` then stops it)."""
        assert self._proc is not None
        return self._proc.wait()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
        if proc is not None:
            _signal_group(proc, signal.SIGKILL)  # workers the server left behind
        if self._own_log and self.log_path is not None:
            self.log_path.unlink(missing_ok=True)


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def healthy(url: str, timeout_s: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 - a server of ours
            return resp.status == 200
    except OSError:
        return False


def _serve_command() -> list[str]:
    exe = Path(sys.executable).parent / "transformers"
    found = str(exe) if exe.exists() else shutil.which("transformers")
    if not found:
        raise EndpointError("the `transformers` command is missing; install tuneline[eval] (transformers[serving])")
    return [found, "serve"]


class LocalServer(ServerProcess):
    """``with LocalServer(model_dir) as url:`` is ``transformers serve`` on 127.0.0.1, stopped on exit."""

    def __init__(self, model_dir: str | Path, port: int | None = None, startup_timeout_s: float = 180.0) -> None:
        self.model_dir = Path(model_dir)
        self.port = port or free_port()
        super().__init__(
            "local transformers server",
            [],
            f"http://127.0.0.1:{self.port}",
            env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"},
            startup_timeout_s=startup_timeout_s,
        )

    def __enter__(self) -> str:
        if not (self.model_dir / "config.json").is_file():
            raise EndpointError(f"cannot serve {self.model_dir}: not a model directory (no config.json)")
        self.command = [
            *_serve_command(),
            str(self.model_dir.resolve()),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--device",
            "cpu" if not _has_cuda() else "auto",
        ]
        return super().__enter__()


def _has_cuda() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False
