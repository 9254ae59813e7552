"""Resolve configured sources to concrete files (local, s3://, gs://, https:// via fsspec) or HF datasets."""

from __future__ import annotations

import glob as _glob
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec

from tuneline.config.schema import Source
from tuneline.redact import redact_text, redact_url

COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd"}
KINDS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
_HF_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")


class SourceError(ValueError):
    """A source cannot be read at all (no files, unknown kind, unreachable store)."""


@dataclass(frozen=True)
class ResolvedFile:
    """One file to read. ``uri`` names it in records, reports and logs (credentials and signed-URL queries
    removed); ``open_uri`` is what is opened and is never written anywhere."""

    uri: str
    kind: str
    format: str
    compression: str | None = None
    hf_split: str = "train"
    storage_options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False, repr=False)
    open_uri: str = field(default="", compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.open_uri:
            object.__setattr__(self, "open_uri", self.uri)


def infer_kind(path: str) -> tuple[str | None, str | None]:
    """``data.jsonl.gz`` → ("jsonl", "gzip"); unknown extensions give ``(None, ...)``."""
    suffixes = [s.lower() for s in Path(path.split("?", 1)[0]).suffixes]
    compression = COMPRESSIONS.get(suffixes[-1]) if suffixes else None
    if compression:
        suffixes = suffixes[:-1]
    return (KINDS.get(suffixes[-1]) if suffixes else None), compression


def _protocol(uri: str) -> str:
    return uri.split("://", 1)[0] if "://" in uri else "file"


def _is_hf_dir(path: str) -> bool:
    p = Path(path)
    return p.is_dir() and any((p / m).exists() for m in _HF_MARKERS)


def _display(path: str, uri: str, proto: str) -> str:
    """The URI a record's ``source`` names: relative local paths stay relative, so ids do not depend on the checkout."""
    if proto == "file":
        return path if os.path.isabs(uri) else os.path.relpath(path)
    return path if proto in ("http", "https") else f"{proto}://{path}"


def resolve(
    source: Source, storage_options: dict[str, dict[str, Any]] | None = None
) -> tuple[list[ResolvedFile], list[str]]:
    """Expand one source into files; returns ``(files, skipped)`` where skipped are unsupported files in a directory."""
    uri = source.uri
    if source.kind == "hf" or uri.startswith("hf:") or (_protocol(uri) == "file" and _is_hf_dir(uri)):
        return [ResolvedFile(uri=uri, kind="hf", format=source.format, hf_split=source.hf_split)], []

    proto = _protocol(uri)
    opts = dict((storage_options or {}).get(proto, {}))
    skipped: list[str] = []
    try:
        fs, path = fsspec.core.url_to_fs(uri, **opts)
        if proto in ("http", "https"):
            paths = [path]
        elif _glob.has_magic(path):
            paths = sorted(fs.glob(path))
        elif fs.isdir(path):
            found = sorted(p for p in fs.find(path) if not Path(p).name.startswith("."))
            paths = []
            for p in found:
                (paths if infer_kind(p)[0] else skipped).append(p)
        elif fs.exists(path):
            paths = [path]
        else:
            raise SourceError(f"source {redact_url(uri)!r} does not exist")
    except SourceError:
        raise
    except (OSError, ValueError, ImportError) as exc:
        raise SourceError(f"cannot list source {redact_url(uri)!r}: {redact_text(str(exc))}") from None
    if not paths:
        raise SourceError(f"source {redact_url(uri)!r} matched no files")

    files = []
    for p in paths:
        full = _display(p, uri, proto)
        kind, compression = infer_kind(p)
        if source.kind != "auto":
            kind = source.kind
        if kind is None:
            raise SourceError(
                f"cannot tell the file kind of {redact_url(full)!r}: set kind (jsonl, json, csv, parquet) on the source"
            )
        files.append(
            ResolvedFile(
                uri=redact_url(full),
                kind=kind,
                format=source.format,
                compression=compression,
                storage_options=opts,
                open_uri=full,
            )
        )
    skipped = [redact_url(_display(s, uri, proto)) for s in skipped]
    return files, skipped
