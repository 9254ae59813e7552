"""What `tuneline serve` serves: a trained model dir, or a registered version, as a base plus named adapters.

The base is served under ``<model>-base``; a LoRA adapter under the registered model's name (the stable
name clients use) and, for a registered version, also under ``<model>-v<N>`` (the name that stays bound to
one version while a newer one is swapped in). A full fine-tune has no adapter: the whole model is served
under the registered model's name.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tuneline.config import TunelineConfig
from tuneline.errors import ServeError


@dataclass(frozen=True)
class Adapter:
    name: str
    path: Path
    rank: int


@dataclass(frozen=True)
class ServeTarget:
    """A base model dir and the adapters served on it, each under its name."""

    model_dir: Path
    base: str
    base_name: str
    adapters: tuple[Adapter, ...]
    version: str | None

    @property
    def engine_model(self) -> str:
        """What vLLM is started with (``--model``): an absolute local dir, or a hub id as given."""
        return str(Path(self.base).resolve()) if Path(self.base).exists() else self.base

    @property
    def names(self) -> list[str]:
        """Every name a request may send, the one to use first."""
        return [a.name for a in self.adapters] + [self.base_name]

    @property
    def default_name(self) -> str:
        return self.names[0]


def version_name(model_name: str, version: str) -> str:
    return f"{model_name}-v{version}"


def adapter_rank(adapter_dir: Path) -> int:
    """The LoRA rank vLLM must make room for (``--max-lora-rank``), from the adapter's PEFT config."""
    path = adapter_dir / "adapter_config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ServeError(f"{adapter_dir} is not a LoRA adapter: cannot read {path.name} ({exc})") from None
    ranks = [int(config.get("r") or 0), *(int(r) for r in (config.get("rank_pattern") or {}).values())]
    return max(ranks)


def from_model_dir(config: TunelineConfig, model_dir: Path, version: str | None = None) -> ServeTarget:
    """The serving plan of a tuneline model dir (the train stage's output or a downloaded version)."""
    from tuneline.models.trained import ModelDirError, base_location, read_manifest

    try:
        manifest = read_manifest(model_dir)
        base = base_location(model_dir, manifest)
    except ModelDirError as exc:
        raise ServeError(str(exc)) from None
    name = config.registry.model_name
    adapter_dir = model_dir / manifest.adapter_dir
    if manifest.full_finetune:
        return ServeTarget(model_dir, str(adapter_dir), name, (), version)
    rank = adapter_rank(adapter_dir)
    limit = config.serve.engine.max_lora_rank
    if rank > limit:
        raise ServeError(
            f"the adapter's LoRA rank is {rank}, above serve.engine.max_lora_rank ({limit}); raise it to at least {rank}"
        )
    names = [name] + ([version_name(name, version)] if version else [])
    adapters = tuple(Adapter(n, adapter_dir, rank) for n in names)
    return ServeTarget(model_dir, base, f"{name}-base", adapters, version)


def from_registry(config: TunelineConfig, version: str | None, alias: str | None, workdir: Path) -> ServeTarget:
    """Download a registered version (by number or alias) and plan serving it."""
    from tuneline.registry import client, download_version, version_by_alias

    name = config.registry.model_name
    if alias:
        found = version_by_alias(config.registry.tracking_uri, name, alias)
        if found is None:
            raise ServeError(f"{name!r} has no version with the alias @{alias} (see `tuneline registry show`)")
        version = str(found.version)
    else:
        try:
            client(config.registry.tracking_uri).get_model_version(name, str(version))
        except Exception:  # noqa: BLE001 - MLflow raises many types for a missing version or registry
            raise ServeError(
                f"{name!r} has no version {version} in the registry (see `tuneline registry show`)"
            ) from None
    dest = Path(tempfile.mkdtemp(prefix=f"serve-{name}-v{version}-", dir=workdir))
    model_dir = download_version(config.registry.tracking_uri, name, version, dest)
    return from_model_dir(config, model_dir, str(version))
