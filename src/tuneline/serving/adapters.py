"""Adapters on a running vLLM server: listed, loaded, swapped and retired without a restart.

Two mechanisms, one store layout (``<store>/<served name>/`` holding a PEFT adapter):

- **The runtime LoRA API** (``/v1/load_lora_adapter``, ``/v1/unload_lora_adapter``; vLLM with
  ``VLLM_ALLOW_RUNTIME_LORA_UPDATING``): ``swap`` loads the new version under its own name, reloads the
  stable name in place (requests naming it never see a 404: vLLM replaces the adapter under the name),
  then unloads the retired versions. This is what `tuneline serve swap` does on a local server.
- **The filesystem resolver** (``VLLM_LORA_RESOLVER_CACHE_DIR``): a request naming an adapter that is not
  loaded makes vLLM look for ``<store>/<name>/`` and load it. Every replica, including one the autoscaler
  starts later, finds a version once it is ``publish``-ed into the store; the chart mounts the same store.

vLLM's resolver only accepts an adapter whose ``base_model_name_or_path`` is exactly the server's ``--model``
(``/mnt/models/base`` in the chart, the base's absolute path locally), so ``publish`` rewrites that field in the
published copy (the registered artifacts are left untouched).
"""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from tuneline.errors import ServeError
from tuneline.io.atomic import write_json_atomic

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")


def _call(url: str, path: str, payload: dict | None = None, token: str | None = None, timeout_s: float = 120) -> str:
    data = json.dumps(payload).encode() if payload is not None else None
    headers = {"content-type": "application/json"} if data else {}
    if token:
        headers["authorization"] = f"Bearer {token}"
    request = urllib.request.Request(f"{url.rstrip('/')}{path}", data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:  # noqa: S310 - the server we manage
            return resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:300]
        hint = " (is VLLM_ALLOW_RUNTIME_LORA_UPDATING set on the server?)" if exc.code == 404 and data else ""
        raise ServeError(f"{path} answered HTTP {exc.code}{hint}: {detail}") from None
    except OSError as exc:
        raise ServeError(f"{url} is unreachable: {exc}") from None


def served_models(url: str, token: str | None = None) -> list[str]:
    """Names a request may send right now: the base and every loaded adapter (``/v1/models``)."""
    body = json.loads(_call(url, "/v1/models", token=token))
    return [m["id"] for m in body.get("data", [])]


def load(url: str, name: str, path: Path, inplace: bool = False, token: str | None = None) -> None:
    payload = {"lora_name": name, "lora_path": str(Path(path).resolve()), "load_inplace": inplace}
    _call(url, "/v1/load_lora_adapter", payload, token)


def unload(url: str, name: str, token: str | None = None) -> None:
    _call(url, "/v1/unload_lora_adapter", {"lora_name": name}, token)


def swap(
    url: str, stable: str, new_name: str, path: Path, retire: Iterable[str] = (), token: str | None = None
) -> None:
    """Serve ``path`` as ``new_name`` and under the ``stable`` name, then retire old versions' names."""
    loaded = set(served_models(url, token))
    if new_name not in loaded:
        load(url, new_name, path, token=token)
    load(url, stable, path, inplace=stable in loaded, token=token)
    for name in retire:
        if name in loaded and name not in (stable, new_name):
            unload(url, name, token)


def publish(adapter_dir: Path, store: Path, name: str, base_model: str) -> Path:
    """Copy an adapter into the resolver's store as ``<store>/<name>``, bound to the server's ``base_model``.

    The copy appears whole (written beside, then renamed), so a resolver never loads half an adapter.
    Publishing a name again replaces it."""
    config_path = adapter_dir / "adapter_config.json"
    if not config_path.is_file():
        raise ServeError(f"{adapter_dir} is not a LoRA adapter (no adapter_config.json)")
    store.mkdir(parents=True, exist_ok=True)
    staging = store / f".{name}.publishing"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    for file in ADAPTER_FILES[1:]:
        if (adapter_dir / file).is_file():
            shutil.copy2(adapter_dir / file, staging / file)
    config = json.loads(config_path.read_text())
    write_json_atomic(staging / "adapter_config.json", {**config, "base_model_name_or_path": base_model})
    target = store / name
    if target.exists():
        retired = store / f".{name}.retired"
        shutil.rmtree(retired, ignore_errors=True)
        target.rename(retired)
        staging.rename(target)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        staging.rename(target)
    return target
