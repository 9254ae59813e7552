"""Where tuneline keeps models on this machine, and whether it may reach a model hub at all."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("TUNELINE_CACHE", Path.home() / ".cache" / "tuneline"))


def offline() -> bool:
    return any(
        os.environ.get(var, "").lower() in ("1", "true", "yes") for var in ("TUNELINE_OFFLINE", "HF_HUB_OFFLINE")
    )


def link_copy(src: Path, dst: Path) -> Path:
    """Copy a model dir by hard links where the filesystem allows (the 0.5 GB of weights are never rewritten)."""

    def copy(s: str, d: str) -> None:
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    shutil.copytree(src, dst, copy_function=copy, dirs_exist_ok=False)
    return dst
