from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from tuneline.config import TunelineConfig, load_config

REPO = Path(__file__).resolve().parents[1]


def chat(user: str, assistant: str, **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}], **extra}


def write_jsonl(path: Path, records: Iterable[Any], gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in records).encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., TunelineConfig]:
    """Config from defaults plus ``--set`` style overrides (workers=1 keeps unit tests light)."""

    def make(*overrides: str) -> TunelineConfig:
        return load_config(None, ("clean.workers=1", *overrides))

    return make


@pytest.fixture(autouse=True)
def _chdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
