"""Resolve configured sources to concrete files (local, s3://, gs://, https:// via fsspec) or HF datasets."""

from __future__ import annotations

import functools
import glob as _glob
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec

from tuneline.config.schema import Source
from tuneline.redact import redact_text, redact_url
from tuneline.stages.ingest.mapping import FieldMap, from_dataset_info

COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd"}
KINDS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
LF_INFO = "dataset_info.json"  # LLaMA-Factory's index of a data directory


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
    field_map: FieldMap = field(default_factory=FieldMap, hash=False, compare=False)
    storage_options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False, repr=False)
    open_uri: str = field(default="", compare=False, repr=False)
    # (start byte, end byte, first line): one block of an uncompressed JSONL file (both engines read those in parallel)
    line_range: tuple[int, int, int] | None = field(default=None, compare=False)

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
    if not p.is_dir():
        return False
    # what datasets.save_to_disk writes: dataset_dict.json for splits, or state.json beside the Arrow files (a
    # state.json alone is any tool's; its folder's JSONL files are read as files)
    if (p / "dataset_dict.json").is_file() or ((p / "state.json").is_file() and any(p.glob("*.arrow"))):
        return True
    return (p / LF_INFO).is_file() and _lf_info(p) is None  # a saved HF dataset's own info, not LLaMA-Factory's


def _lf_info(directory: Path) -> dict[str, Any] | None:
    """The LLaMA-Factory index of ``directory``: an object of entries, each an object (HF's
    dataset_info.json is one object describing one dataset: features, builder_name, ...)."""
    import json

    try:
        info = json.loads((directory / LF_INFO).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SourceError(f"cannot read {directory / LF_INFO}: {exc}") from None
    if not isinstance(info, dict) or not info or "features" in info or "builder_name" in info:
        return None
    if not all(isinstance(v, dict) for v in info.values()):
        return None
    return info


def _source_map(source: Source) -> FieldMap:
    return FieldMap(
        columns=dict(source.columns), role_key=source.role_key, content_key=source.content_key, roles=dict(source.roles)
    )


def _resolve_lf(source: Source, directory: Path, info: dict[str, Any]) -> tuple[list[ResolvedFile], list[str]]:
    """Read a LLaMA-Factory data directory as LLaMA-Factory does: the local files its entries name, each
    with its formatting, columns and tags; everything else in the directory is listed as skipped."""
    entries, skipped_entries = from_dataset_info(info)
    files: list[ResolvedFile] = []
    skipped = [f"{directory / LF_INFO}: entry {name!r} ({why})" for name, why in skipped_entries]
    used: set[Path] = {directory / LF_INFO}
    for entry in entries:
        target = directory / entry.file_name
        if not target.exists():
            skipped.append(f"{target} (listed as {entry.name!r} in {LF_INFO}, not found)")
            continue
        paths = sorted(p for p in target.rglob("*") if not p.is_dir()) if target.is_dir() else [target]
        for p in paths:
            used.add(p)
            kind, compression = infer_kind(str(p))
            why = local_problem(p, directory) or (None if kind else "unsupported file kind")
            if why or kind is None:
                skipped.append(f"{p} (listed as {entry.name!r} in {LF_INFO}; {why})")
                continue
            display = _display(str(p), source.uri, "file")
            fmt = entry.format if source.format == "auto" else source.format
            files.append(
                ResolvedFile(uri=display, kind=kind, format=fmt, compression=compression, field_map=entry.field_map)
            )
    for p in sorted(directory.rglob("*")):
        if p.is_file() and p not in used and not p.name.startswith("."):
            skipped.append(f"{_display(str(p), source.uri, 'file')} (not listed in {LF_INFO})")
    return files, skipped


def _not_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # os.fsdecode kept the undecodable bytes as surrogate escapes
        return True
    return False


def printable(name: str) -> str:
    """A path as text that can be logged and written to JSON (undecodable bytes as ``\\xNN``)."""
    return os.fsencode(name).decode("utf-8", "backslashreplace") if _not_utf8(name) else name


@functools.lru_cache(maxsize=64)
def _resolved(root: Path) -> Path:
    return root.resolve()


def local_problem(path: Path, root: Path) -> str | None:
    """Why a local path found under ``root`` is not read, or None: only regular files inside the source are (a
    FIFO or a device would block the reader forever; a symlink or ``../`` leading elsewhere would publish
    files the source does not hold)."""
    try:
        st = path.stat()  # follows symlinks: what would be read
    except OSError as exc:
        return f"unreadable: {exc.strerror or type(exc).__name__}"
    if _not_utf8(str(path)):
        return "its name is not UTF-8: rename it"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file (a FIFO, device or socket): refused"
    if not path.resolve().is_relative_to(_resolved(root)):
        return "resolves outside the source (a symlink or ../): refused"
    return None


def _display(path: str, uri: str, proto: str) -> str:
    """The URI a record's ``source`` names: relative local paths stay relative, so ids do not depend on the checkout."""
    if proto == "file":
        return path if os.path.isabs(uri) else os.path.relpath(path)
    return path if proto in ("http", "https") else f"{proto}://{path}"


def refuse_insecure_url(uri: str) -> None:
    """Plain http, and URLs naming this machine or a private, link-local or reserved address (a cloud metadata
    server is one), are refused: a data source must not turn ingest into a way to read internal services."""
    import ipaddress
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    if parts.scheme == "http":
        raise SourceError(f"source {redact_url(uri)!r} is plain http: use https, or set data.allow_insecure_sources")
    host = (parts.hostname or "").lower()
    try:
        ip = ipaddress.ip_address(host)
        internal = not ip.is_global
    except ValueError:
        internal = host == "localhost" or host.endswith((".localhost", ".local", ".internal"))
    if internal:
        raise SourceError(
            f"source {redact_url(uri)!r} names an internal address ({host}): refused unless "
            "data.allow_insecure_sources is set"
        )


def resolve(
    source: Source, storage_options: dict[str, dict[str, Any]] | None = None, allow_insecure: bool = False
) -> tuple[list[ResolvedFile], list[str]]:
    """Expand one source into files; returns ``(files, skipped)``, skipped naming each file or entry not read
    and why (an unsupported kind in a directory, a LLaMA-Factory entry that is a hub dataset, ...)."""
    uri = source.uri
    if _protocol(uri) in ("http", "https") and not allow_insecure:
        refuse_insecure_url(uri)
    if source.kind == "hf" or uri.startswith("hf:") or (_protocol(uri) == "file" and _is_hf_dir(uri)):
        hf = ResolvedFile(
            uri=uri, kind="hf", format=source.format, hf_split=source.hf_split, field_map=_source_map(source)
        )
        return [hf], []
    proto = _protocol(uri)
    if proto == "file" and (Path(uri) / LF_INFO).is_file():
        info = _lf_info(Path(uri))
        if info is not None:
            return _resolve_lf(source, Path(uri), info)
    opts = dict((storage_options or {}).get(proto, {}))
    paths, skipped = _list(uri, proto, opts)
    files = [_file(source, p, uri, proto, opts) for p in paths]
    return files, [f"{redact_url(printable(_display(s, uri, proto)))} ({why})" for s, why in skipped]


def _list(uri: str, proto: str, opts: dict[str, Any]) -> tuple[list[str], list[tuple[str, str]]]:
    """The paths a file, glob, directory or URL names, and (in a directory) those not read, with why."""
    skipped: list[tuple[str, str]] = []
    try:
        fs, path = fsspec.core.url_to_fs(uri, **opts)
        if proto in ("http", "https"):
            paths = [path]
        elif _glob.has_magic(path):
            paths = sorted(fs.glob(path))
        elif fs.isdir(path):
            found = _walk_local(path) if proto == "file" else _walk_remote(fs, path)
            paths = [p for p, why in found if why is None]
            skipped = [(p, why) for p, why in found if why is not None]
        elif fs.exists(path):
            problem = local_problem(Path(path), Path(path).parent) if proto == "file" else None
            if problem and "regular" in problem:
                raise SourceError(f"source {redact_url(uri)!r} is {problem.split(':')[0]}")
            paths = [path]
        else:
            raise SourceError(f"source {redact_url(uri)!r} does not exist")
    except SourceError:
        raise
    except (OSError, ValueError, ImportError) as exc:
        raise SourceError(f"cannot list source {redact_url(uri)!r}: {redact_text(str(exc))}") from None
    except Exception as exc:  # noqa: BLE001 - object-store clients raise their own types (botocore, google.auth)
        detail = f"{type(exc).__name__}: {redact_text(str(exc))}"
        raise SourceError(f"cannot list source {redact_url(uri)!r}: {detail}") from None
    if not paths:
        why = "; ".join(f"{printable(p)}: {reason}" for p, reason in skipped[:3])
        raise SourceError(f"source {redact_url(uri)!r} holds no file tuneline reads" + (f" ({why})" if why else ""))
    return paths, skipped


def _walk_remote(fs: Any, root: str) -> list[tuple[str, str | None]]:
    """Every object under ``root`` (hidden names left out), sorted, with why it is not read (or None)."""
    found = sorted(p for p in fs.find(root) if not Path(p).name.startswith("."))
    return [(p, None if infer_kind(p)[0] else "unsupported file kind") for p in found]


def _walk_local(root: str) -> list[tuple[str, str | None]]:
    """Every file under a local directory (hidden names left out), sorted, with why it is not read (or None).

    One ``scandir`` per directory: a plain regular file is known from its directory entry, so only symlinks and
    special files pay for a ``stat`` and a path resolution (20,000 small files must not mean 20,000 of those).
    A symlinked directory is entered once, and only when it resolves inside ``root``."""
    found: list[tuple[str, str | None]] = []
    pending, entered = [root], {os.path.realpath(root)}
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
                elif entry.is_symlink() and entry.is_dir():
                    real = os.path.realpath(entry.path)
                    if not Path(real).is_relative_to(_resolved(Path(root))):
                        found.append((entry.path, "a directory that resolves outside the source: refused"))
                    elif real not in entered:
                        entered.add(real)
                        pending.append(entry.path)
                else:
                    found.append((entry.path, _why_not_local(entry, root)))
    return sorted(found)


def _why_not_local(entry: os.DirEntry, root: str) -> str | None:
    if entry.is_symlink() or not entry.is_file(follow_symlinks=False) or _not_utf8(entry.path):
        problem = local_problem(Path(entry.path), Path(root))
        if problem:
            return problem
    return None if infer_kind(entry.path)[0] else "unsupported file kind"


def _file(source: Source, path: str, uri: str, proto: str, opts: dict[str, Any]) -> ResolvedFile:
    full = _display(path, uri, proto)
    kind, compression = infer_kind(path)
    if source.kind != "auto":
        kind = source.kind
    if kind is None:
        raise SourceError(
            f"cannot tell the file kind of {redact_url(full)!r}: set kind (jsonl, json, csv, parquet) on the source"
        )
    return ResolvedFile(
        uri=redact_url(full),
        kind=kind,
        format=source.format,
        compression=compression,
        storage_options=opts,
        open_uri=full,
        field_map=_source_map(source),
    )
