"""The two GitHub REST calls promotion makes: open a pull request, label it.

Endpoints and fields as documented in GitHub's REST reference ("Create a pull request",
``POST /repos/{owner}/{repo}/pulls``; "Add labels to an issue", ``POST /repos/{owner}/{repo}/issues/{n}/labels``),
with the recommended ``Accept`` and ``X-GitHub-Api-Version`` headers and a bearer token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tuneline.errors import TunelineError

API_VERSION = "2022-11-28"


class GitHubError(TunelineError, RuntimeError):
    """GitHub refused or could not be reached; the message carries its answer."""


@dataclass(frozen=True)
class PullRequest:
    number: int
    url: str


def repo_slug(repo_url: str) -> str:
    """``owner/name`` from an https or ssh GitHub URL."""
    match = re.search(r"[:/]([^/:]+)/([^/]+?)(?:\.git)?/?$", repo_url)
    if not match:
        raise GitHubError(f"cannot tell owner/name from the repository URL {repo_url!r}")
    return f"{match.group(1)}/{match.group(2)}"


class GitHub:
    def __init__(self, api_url: str, token: str, timeout_s: float = 30.0) -> None:
        import requests

        self.api_url = api_url.rstrip("/")
        self.timeout_s = timeout_s
        self.session = requests.Session()
        self.session.headers.update(
            {
                "Accept": "application/vnd.github+json",
                "Authorization": f"Bearer {token}",
                "X-GitHub-Api-Version": API_VERSION,
                "User-Agent": "tuneline-promote",
            }
        )

    def _post(self, path: str, body: dict) -> dict:
        import requests

        try:
            resp = self.session.post(f"{self.api_url}{path}", json=body, timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise GitHubError(f"cannot reach {self.api_url}: {exc}") from None
        if resp.status_code >= 300:
            try:
                detail = resp.json()
                message = detail.get("message", "")
                errors = "; ".join(str(e.get("message") or e) for e in detail.get("errors", []))
            except ValueError:
                message, errors = resp.text[:200], ""
            raise GitHubError(f"POST {path}: HTTP {resp.status_code} {message}{' — ' + errors if errors else ''}")
        return resp.json()

    def open_pull_request(self, slug: str, head: str, base: str, title: str, body: str) -> PullRequest:
        data = self._post(
            f"/repos/{slug}/pulls",
            {"title": title, "head": head, "base": base, "body": body, "maintainer_can_modify": True},
        )
        return PullRequest(number=int(data["number"]), url=str(data["html_url"]))

    def add_labels(self, slug: str, number: int, labels: list[str]) -> None:
        self._post(f"/repos/{slug}/issues/{number}/labels", {"labels": labels})
