"""A persistent cache of completions, so that re-running an evaluation does not pay for the same call twice.

SQLite, one committed row per answered request: an interrupted run keeps what it already
paid for. Keys cover everything that changes the answer (judge identity, API, token budget,
messages); failed calls are never cached.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any


def cache_key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class CallCache:
    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None
        self.hits = 0
        self.misses = 0
        self._db: sqlite3.Connection | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path)
            self._db.execute("CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, text TEXT NOT NULL)")
            self._db.commit()

    def get(self, key: str) -> str | None:
        if self._db is None:
            self.misses += 1
            return None
        row = self._db.execute("SELECT text FROM calls WHERE key = ?", (key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return str(row[0])

    def put(self, key: str, text: str) -> None:
        if self._db is not None:
            self._db.execute("INSERT OR REPLACE INTO calls (key, text) VALUES (?, ?)", (key, text))
            self._db.commit()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
