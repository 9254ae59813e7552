"""Where a base model's files come from: built-in, local dir, object-store prefix or hub id.

Object-store prefixes are copied once into a local cache keyed by URI (atomically, so an
interrupted download is never mistaken for a model). Hub ids load with
``local_files_only`` when ``TUNELINE_OFFLINE`` (or ``HF_HUB_OFFLINE``) is set; with the latter, the
inference client still reaches its configured endpoints (see ``tuneline.inference.client``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from pathlib import Path

from tuneline.io.atomic import atomic_dir
from tuneline.models.builtin import build_builtin
from tuneline.models.cache import cache_root, offline
from tuneline.models.catalogue import builtin_name, is_builtin, is_packaged
from tuneline.models.packaged import materialize

REMOTE_SCHEMES = ("s3://", "gs://", "gcs://", "az://", "abfs://")


def fetch_remote(uri: str) -> Path:
    """Copy an object-store model prefix to the local cache (once) and return the local dir."""
    import fsspec

    target = cache_root() / "models" / hashlib.sha256(uri.encode()).hexdigest()[:16]
    if (target / "config.json").is_file():
        return target
    fs, root = fsspec.core.url_to_fs(uri)
    if not fs.exists(f"{root.rstrip('/')}/config.json"):
        raise FileNotFoundError(f"{uri} has no config.json: not a model directory")
    with atomic_dir(target, "tuneline model cache") as tmp:
        fs.get(root.rstrip("/") + "/", str(tmp), recursive=True)
    return target


def resolve_base(base: str, builtin_dir: Path, texts: Callable[[], Iterable[str]], seed: int) -> str:
    """Return a name or path that ``from_pretrained`` can load for ``base``.

    ``builtin:*`` is built into ``builtin_dir`` from ``texts`` (its tokenizer is trained on
    them), which makes the model directory self-contained.
    """
    if is_builtin(base):
        return str(build_builtin(base, texts(), builtin_dir, seed=seed))
    if base.startswith(REMOTE_SCHEMES):
        return str(fetch_remote(base))
    if Path(base).is_dir():
        return str(Path(base).resolve())
    return base


class NotLocal(LookupError):
    """A model name that is no packaged built-in, directory or cached hub model; the message is why the hub
    lookup failed (its error type), for the caller's message that names its config key."""


def local_model_dir(name: str) -> Path:
    """A directory for ``name`` without the network: a packaged built-in (converted once, cached), a directory,
    or a model in the local hub cache; :class:`NotLocal` otherwise."""
    if is_packaged(name):
        return materialize(builtin_name(name))
    if Path(name).is_dir():
        return Path(name)
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=True))
    except Exception as exc:  # noqa: BLE001 - any failure means "not available offline"
        raise NotLocal(type(exc).__name__) from None


def pretrained_kwargs(revision: str | None = None) -> dict:
    kwargs: dict = {"local_files_only": offline()}
    if revision:
        kwargs["revision"] = revision
    return kwargs


def linear_target_modules(model: object) -> list[str]:
    """LoRA targets for any architecture: the distinct names of linear layers inside the decoder blocks."""
    import torch

    linear_types: tuple[type, ...] = (torch.nn.Linear,)
    try:
        import bitsandbytes as bnb

        linear_types += (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt)
    except ImportError:  # pragma: no cover - bitsandbytes is a training dependency
        pass
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    names = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()  # type: ignore[attr-defined]
        if isinstance(module, linear_types) and module is not output and "." in name
    }
    return sorted(names)
