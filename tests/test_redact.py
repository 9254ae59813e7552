"""What redaction removes from URLs and text, and what it keeps."""

from __future__ import annotations

import pytest

from tuneline.redact import redact_text, redact_url, register_secret, secret_looking_key, url_problem


@pytest.mark.parametrize(
    ("url", "clean"),
    [
        ("https://user:pw@host.example/a/b?x=1", "https://host.example/a/b?…"),
        (
            "https://bucket.s3.amazonaws.com/k.jsonl?X-Amz-Signature=abc&X-Amz-Credential=AKIA",
            "https://bucket.s3.amazonaws.com/k.jsonl?…",
        ),
        ("http://token@127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("http://127.0.0.1:5000/#/models/m/versions/1", "http://127.0.0.1:5000/#/models/m/versions/1"),
        ("https://app.example/cb#access_token=abc", "https://app.example/cb"),
        ("http://[::1]:8080/v1", "http://[::1]:8080/v1"),
        ("s3://bucket/prefix/model", "s3://bucket/prefix/model"),
        ("data/raw/a.jsonl", "data/raw/a.jsonl"),
    ],
)
def test_urls_lose_credentials_and_queries_only(url: str, clean: str) -> None:
    assert redact_url(url) == clean


def test_text_keeps_its_words_and_punctuation() -> None:
    text = "cannot reach http://u:secret-pw@judge.example.org:8080: refused; see https://x.example/a?sig=1."
    assert redact_text(text) == "cannot reach http://judge.example.org:8080: refused; see https://x.example/a?…."
    register_secret("tok-ABCDEF-123")
    assert redact_text("Bearer tok-ABCDEF-123 was refused") == "Bearer *** was refused"


def test_config_checks_name_credentials() -> None:
    assert all(
        secret_looking_key(k)
        for k in ("secret", "password", "session_token", "key", "api_key", "aws_secret_access_key", "client_secret")
    )
    assert not any(secret_looking_key(k) for k in ("endpoint_url", "region_name", "anon", "use_ssl"))
    assert url_problem("http://u:p@host/x") and url_problem("https://h/x?X-Amz-Signature=1")
    assert url_problem("https://h/x?page=2") is None and url_problem("s3://b/k") is None
