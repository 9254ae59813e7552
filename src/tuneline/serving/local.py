"""`tuneline serve`: the fine-tuned model on vLLM on this machine, and optionally a chat page in front.

``VllmServer`` and ``ChatPage`` are real servers started from their own venvs (``serve.local.python``,
``serve.local.chat_python``) as process groups that stop with the ``with`` block (Ctrl-C included).
``ready_message`` is what the user sees once the model answers: URL, names and a request to paste.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
from pathlib import Path

from tuneline.config import TunelineConfig
from tuneline.errors import ServeError
from tuneline.inference.local_server import ServerProcess
from tuneline.serving.target import ServeTarget
from tuneline.serving.vllm import engine_command, engine_env, engine_python

CHAT_SETUP_HINT = "make chat-setup (Open WebUI in its own venv)"


class VllmServer(ServerProcess):
    """vLLM serving ``target`` on ``port`` with serve.engine's limits; the resolver reads ``adapter_store``."""

    def __init__(
        self,
        config: TunelineConfig,
        target: ServeTarget,
        port: int | None = None,
        adapter_store: Path | None = None,
        log_path: Path | None = None,
    ) -> None:
        local = config.serve.local
        self.target = target
        self.port = port or local.port
        store = adapter_store or Path(local.adapter_store)
        store.mkdir(parents=True, exist_ok=True)
        self.adapter_store = store
        host = "127.0.0.1" if local.host in ("0.0.0.0", "::") else local.host  # noqa: S104 - the bind address
        super().__init__(
            "vLLM",
            engine_command(config, engine_python(config), target, self.port),
            f"http://{host}:{self.port}",
            env=engine_env(config, store),
            startup_timeout_s=local.startup_timeout_s,
            log_path=log_path,
        )


class ChatPage(ServerProcess):
    """Open WebUI against an OpenAI-compatible URL, offline: no Ollama, no downloads, no telemetry."""

    def __init__(self, config: TunelineConfig, api_url: str, port: int | None = None, auth: bool = False) -> None:
        local = config.serve.local
        python = chat_python(config)
        self.port = port or local.chat_port
        data_dir = Path(local.chat_data_dir).resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        super().__init__(
            "Open WebUI",
            [str(python.parent / "open-webui"), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            f"http://127.0.0.1:{self.port}",
            env=chat_env(api_url, data_dir, auth),
            startup_timeout_s=local.startup_timeout_s,
        )


def chat_python(config: TunelineConfig) -> Path:
    """The chat page's venv interpreter; a one-line error says how to install it."""
    python = Path(config.serve.local.chat_python)
    if not python.is_file() or not (python.parent / "open-webui").is_file():
        raise ServeError(
            f"Open WebUI is not installed: no {python.parent / 'open-webui'} (serve.local.chat_python); "
            f"run {CHAT_SETUP_HINT}"
        )
    return python


def chat_env(api_url: str, data_dir: Path, auth: bool) -> dict[str, str]:
    """Open WebUI's settings: the served model as its only backend, nothing fetched from outside."""
    secret_file = data_dir / ".webui_secret_key"
    if not secret_file.is_file():
        secret_file.write_text(secrets.token_hex(32))
        secret_file.chmod(0o600)
    drop = ("OPENAI_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")  # the page needs none of the user's credentials
    return {
        **{k: v for k, v in os.environ.items() if k not in drop},
        "DATA_DIR": str(data_dir),
        "WEBUI_SECRET_KEY": secret_file.read_text().strip(),
        "WEBUI_AUTH": "True" if auth else "False",
        "OFFLINE_MODE": "true",
        "HF_HUB_OFFLINE": "1",
        "ENABLE_OLLAMA_API": "False",
        "ENABLE_OPENAI_API": "True",
        "OPENAI_API_BASE_URL": f"{api_url.rstrip('/')}/v1",
        "OPENAI_API_KEY": "none",
        "RAG_EMBEDDING_ENGINE": "openai",
        "ENABLE_RAG_WEB_SEARCH": "False",
        "ENABLE_WEB_SEARCH": "False",
        "ENABLE_VERSION_UPDATE_CHECK": "False",
        # a fine-tune is asked plainly: no built-in tools (vLLM would need a tool parser for their tool_choice
        # "auto"), greedy like `evaluate` (the page shows the answers the evaluation scored), and these settings
        # win over what an earlier run stored in the data dir
        "DEFAULT_MODEL_PARAMS": json.dumps({"function_calling": "legacy", "temperature": 0}),
        "ENABLE_PERSISTENT_CONFIG": "False",
        "ANONYMIZED_TELEMETRY": "False",
        "SCARF_NO_ANALYTICS": "true",
        "DO_NOT_TRACK": "true",
    }


def example_request(url: str, model: str) -> str:
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 64})
    return f"curl -s {url}/v1/chat/completions -H 'content-type: application/json' -d {shlex.quote(body)}"


def ready_message(url: str, target: ServeTarget, chat_url: str | None) -> str:
    lines = [
        f"serving {target.model_dir} at {url} (OpenAI-compatible API)",
        f"models: {', '.join(target.names)}  (the first is the fine-tune; {target.base_name} is the untouched base)",
        "try it:",
        f"  {example_request(url, target.default_name)}",
    ]
    if chat_url:
        lines.append(f"chat page: {chat_url}  (Open WebUI, offline; pick {target.default_name})")
    lines.append("Ctrl-C stops the server" + (" and the chat page" if chat_url else ""))
    return "\n".join(lines)
