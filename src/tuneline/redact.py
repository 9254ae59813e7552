"""Keep credentials out of everything tuneline writes or says.

Contract: what goes into a message, a log line, a file, an MLflow tag, a commit or a pull request passes
through :func:`redact_url` (one URL) or :func:`redact_text` (free text, e.g. an exception from a library),
which remove

* the ``user:password@`` part of any URL,
* the query string of any URL (signed URLs carry their signature there: ``X-Amz-Signature``, ``sig``,
  ``token``; a query is dropped whole rather than guessed at, so ``?…`` marks that one was there) and any
  fragment but a UI route (``#/models/...``),
* every secret value tuneline itself read from the environment (:func:`secret_from_env` registers it).

Config values that end up compiled into the pipeline spec or committed are checked by
:func:`secret_looking_key` / :func:`url_problem` at load time instead: those must not hold secrets at all.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s'\"<>()\[\]{}`,;]+")
_SECRET_KEY = re.compile(r"(secret|passw|token|credential|private|api[_-]?key|access[_-]?key|^key$|signature)", re.I)
_known: set[str] = set()


def redact_url(url: str) -> str:
    """``url`` without user info, query (``?…`` stands for a removed one) or fragment, but for a UI route."""
    try:
        parts = urlsplit(url)
        if not parts.scheme or not (parts.netloc or parts.query):
            return url
        host = parts.hostname or ""
        if ":" in host:  # an IPv6 literal
            host = f"[{host}]"
        if parts.port is not None:
            host = f"{host}:{parts.port}"
    except ValueError:  # not a URL after all (or a malformed one): keep only what cannot hold a secret
        return url.split("://", 1)[0] + "://" + MASK
    marker = "?…" if parts.query else ""
    # a UI route (#/models/x/versions/1) is kept; any other fragment may carry a token (#access_token=...)
    fragment = f"#{parts.fragment}" if parts.fragment.startswith("/") and "=" not in parts.fragment else ""
    return urlunsplit((parts.scheme, host, parts.path, "", "")) + marker + fragment


def redact_text(text: str) -> str:
    """Free text with every URL passed through :func:`redact_url` and every registered secret masked."""
    if not text:
        return text
    for secret in sorted(_known, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return _URL.sub(_redact_match, text)


def _redact_match(match: re.Match[str]) -> str:
    url = match.group(0)
    tail = len(url) - len(url.rstrip(".:!?"))  # sentence punctuation after a URL is not part of it
    return redact_url(url[: len(url) - tail]) + url[len(url) - tail :]


def register_secret(value: str | None) -> None:
    """Mask ``value`` wherever :func:`redact_text` runs from now on (values under 6 characters are ignored)."""
    if value and len(value) >= 6:
        _known.add(value)


def secret_from_env(name: str | None) -> str | None:
    """Read a credential from environment variable ``name`` and register it for masking."""
    value = os.environ.get(name) if name else None
    register_secret(value)
    return value or None


def secret_looking_key(key: str) -> bool:
    """Whether a config key names a credential (``secret``, ``password``, ``token``, ``key``, ...)."""
    return bool(_SECRET_KEY.search(key))


def url_problem(url: str) -> str | None:
    """Why ``url`` must not be written into a committed or compiled config, or None when it may."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if not parts.scheme:
        return None
    if parts.password or parts.username:
        return "carries user info (user:password@): put the credentials in the environment"
    if parts.query and any(
        secret_looking_key(k.split("=", 1)[0]) or k.lower().startswith("x-amz-") for k in parts.query.split("&")
    ):
        return "carries a signature or token in its query: pass a signed URL on the command line, not in config"
    return None


class RedactingFilter(logging.Filter):
    """A logging filter that redacts the final message of every record (arguments included)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact_text(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


class RedactingStream:
    """A text stream that redacts what is written through it (libraries print URLs: MLflow's "View run at")."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(redact_text(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def redact_standard_streams() -> None:
    """Route this process's stdout and stderr through :class:`RedactingStream` (idempotent)."""
    if not isinstance(sys.stdout, RedactingStream):
        sys.stdout = RedactingStream(sys.stdout)
    if not isinstance(sys.stderr, RedactingStream):
        sys.stderr = RedactingStream(sys.stderr)
