"""Promotion by pull request: a registered version becomes what an environment serves once a human merges.

``promote`` reads the version and its evaluation gate from MLflow (never from local files), writes the
environment's values file (model version, storage URI, base, runtime image) on a branch
``promote/<env>/<model>-v<N>`` cut from the remote's base branch in a throw-away worktree (the user's
checkout is not touched), pushes it and opens a pull request whose body compares the version with what the
environment serves now and says how to roll back. After the merge, Argo CD syncs the release and the
promotion workflow runs ``sync_alias`` to move the environment's MLflow alias. A failed or missing gate
blocks promotion to environments that require it, unless forced with a written reason (kept in the commit
and the pull request).
"""

from __future__ import annotations

import copy
import difflib
import logging
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tuneline.config import TunelineConfig
from tuneline.config.loader import ConfigError
from tuneline.errors import TunelineError
from tuneline.io.atomic import write_text_atomic
from tuneline.redact import redact_text, secret_from_env
from tuneline.registry import CANDIDATE, RegistryError, client
from tuneline.results import VersionRecord
from tuneline.serving.github import GitHub, GitHubError, repo_slug
from tuneline.serving.gitops import platform_defaults, values_file

log = logging.getLogger("tuneline")

#: Where KServe's storage initializer puts the model version inside the predictor.
MOUNT = "/mnt/models"
#: URI schemes KServe's storage initializer can fetch (and the chart's schema accepts).
STORAGE_SCHEMES = ("s3://", "gs://", "pvc://", "hf://", "https://")


class PromoteError(TunelineError, RuntimeError):
    """Promotion refused or failed; the message says why, and nothing was pushed unless it says so."""


@dataclass(frozen=True)
class Promotion:
    env: str
    branch: str
    values_path: str
    content: str
    diff: str
    title: str
    body: str
    version: VersionRecord
    current: VersionRecord | None
    commit: str | None = None
    pr_url: str | None = None


def _git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)  # noqa: S603, S607
    if proc.returncode != 0:
        raise PromoteError(f"git {' '.join(args)}: {(proc.stderr or proc.stdout).strip()}")
    return proc.stdout.strip()


def _identity(repo: Path) -> list[str]:
    """The committer: the user's git identity, or tuneline's where none is configured (CI runners)."""
    proc = subprocess.run(["git", "config", "user.email"], cwd=repo, capture_output=True, text=True)  # noqa: S603, S607
    if proc.returncode == 0 and proc.stdout.strip():
        return []
    return ["-c", "user.name=tuneline", "-c", "user.email=tuneline@users.noreply.github.com"]


def _load_values(text: str | None) -> dict[str, Any]:
    data = yaml.safe_load(text) if text else None
    return data if isinstance(data, dict) else {}


def _header(text: str | None, env: str) -> str:
    lines = [line for line in (text or "").splitlines() if line.startswith("#")]
    if not lines:
        lines = [
            f"# Values of the {env} environment: only what differs from charts/tuneline/values.yaml.",
            "# model.* and runtime.image are written by `tuneline promote`; the rest is yours.",
        ]
    return "\n".join(lines) + "\n"


def served_base(record: VersionRecord) -> str:
    """What the runtime loads as base: the bundled copy inside the version, or the hub id it was trained on."""
    base = record.base_model or ""
    return f"{MOUNT}/base" if not base or base.startswith("builtin:") else base


def new_values(config: TunelineConfig, env: str, current: dict[str, Any], record: VersionRecord) -> dict[str, Any]:
    values = copy.deepcopy(current)
    runtime = (values.get("runtime") or {}).get("kind") or config.serve.runtime
    model = values.setdefault("model", {})
    model.update(
        {
            "name": record.model_name,
            "version": str(record.version),
            "storageUri": record.storage_uri,
            "base": served_base(record),
        }
    )
    values.setdefault("runtime", {})["image"] = platform_defaults(config)["images"][runtime]
    return values


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def pr_body(
    env: str, record: VersionRecord, current: VersionRecord | None, forced_reason: str | None, alias: str
) -> str:
    name, version = record.model_name, record.version
    gate = "passed" if record.gate_passed else ("FAILED" if record.gate_recorded else "missing")
    lines = [
        f"Promotes **{name} v{version}** to **{env}**.",
        "",
        f"- storage: `{record.storage_uri}`",
        f"- evaluation gate: **{gate}**" + (f" ({'; '.join(record.gate_reasons)})" if record.gate_reasons else ""),
        f"- MLflow: {record.ui_hint}",
    ]
    if forced_reason:
        lines += ["", f"> **Forced past the gate.** Reason: {forced_reason}"]
    lines += ["", "## Evaluation against what " + env + " serves now", ""]
    if current is None:
        lines.append(f"{env} serves no registered version yet: nothing to compare with.")
    else:
        cur_v = current.version
        lines += [f"| metric | {env} now (v{cur_v}) | this (v{version}) | change |", "|---|---:|---:|---:|"]
        for key in sorted(set(record.metrics) | set(current.metrics)):
            new, old = record.metrics.get(key), current.metrics.get(key)
            change = _fmt(new - old) if isinstance(new, float) and isinstance(old, float) else ""
            if isinstance(new, float) and isinstance(old, float) and new - old > 0:
                change = "+" + change
            lines.append(
                f"| {key} | {_fmt(old) if old is not None else '—'} | "
                f"{_fmt(new) if new is not None else '—'} | {change} |"
            )
    rollback = f"`tuneline promote --env {env} --version {current.version}`" if current else "revert this pull request"
    lines += [
        "",
        "## After merge",
        "",
        f"Argo CD syncs `tuneline-{env}`; the promotion workflow sets MLflow alias `@{alias}` on v{version} "
        "and runs `tuneline smoke` against the environment when its URL is configured.",
        "",
        "## Rollback",
        "",
        f"Revert this pull request's merge commit (`git revert -m 1 <merge sha>`), or open the opposite "
        f"promotion with {rollback}. Argo CD then syncs the previous values and the workflow moves "
        f"`@{alias}` back; the previous weights are still in the registry, nothing is rebuilt.",
    ]
    return "\n".join(lines) + "\n"


def _current_record(config: TunelineConfig, values: dict[str, Any]) -> VersionRecord | None:
    from tuneline.stages.register import describe_version

    version = str((values.get("model") or {}).get("version") or "")
    if not version or version == "0":
        return None
    try:
        return describe_version(config, version=version)
    except RegistryError as exc:
        log.warning("the environment's current version v%s is not in the registry: %s", version, exc)
        return None


def plan(
    config: TunelineConfig,
    env: str,
    version: str | None = None,
    alias: str | None = None,
    force: bool = False,
    reason: str | None = None,
    repo: Path = Path("."),
) -> Promotion:
    """Everything a promotion would change, without touching git or GitHub (what ``--dry-run`` prints)."""
    from tuneline.stages.register import describe_version

    envs = config.serve.environments
    if env not in envs:
        raise ConfigError(f"--env {env!r}: serve.environments has {', '.join(envs)}")
    if version and alias:
        raise ConfigError("give --version or --alias, not both")
    if force and not (reason and reason.strip()):
        raise ConfigError("--force needs --reason: it goes into the commit and the pull request")
    record = describe_version(config, version=version, alias=None if version else (alias or CANDIDATE))
    if not str(record.storage_uri).startswith(STORAGE_SCHEMES):
        raise PromoteError(
            f"{record.model_name} v{record.version} is stored at {record.storage_uri}, which a "
            f"cluster cannot fetch (KServe reads {', '.join(STORAGE_SCHEMES)}); register it against an "
            "MLflow server whose artifacts live in the bucket (infra/ deploys one)"
        )
    target = envs[env]
    if target.require_gate and not record.gate_passed:
        why = ("; ".join(record.gate_reasons) or "failed") if record.gate_recorded else "no gate result recorded"
        if not force:
            raise PromoteError(
                f"{record.model_name} v{record.version} did not pass the evaluation gate ({why}); "
                f"{env} requires it. Override with --force --reason '...' if you must."
            )
        log.warning("promoting past a failed gate (%s): %s", why, reason)
    rel = values_file(config, env)
    path = Path(repo) / rel
    before = path.read_text() if path.is_file() else None
    current_values = _load_values(before)
    current = _current_record(config, current_values)
    after = _header(before, env) + yaml.safe_dump(new_values(config, env, current_values, record), sort_keys=False)
    diff = "".join(
        difflib.unified_diff(
            (before or "").splitlines(keepends=True), after.splitlines(keepends=True), f"a/{rel}", f"b/{rel}"
        )
    )
    name, number = record.model_name, record.version
    if not diff:
        raise PromoteError(f"{env} already serves {name} v{number} with these values: nothing to promote")
    return Promotion(
        env=env,
        branch=f"promote/{env}/{name}-v{number}",
        values_path=rel,
        content=after,
        diff=diff,
        title=f"Promote {name} v{number} to {env}",
        body=pr_body(env, record, current, reason if force else None, target.alias),
        version=record,
        current=current,
    )


def promote(
    config: TunelineConfig,
    env: str,
    version: str | None = None,
    alias: str | None = None,
    force: bool = False,
    reason: str | None = None,
    repo: Path = Path("."),
    token: str | None = None,
) -> Promotion:
    """Plan, then commit on a fresh branch from ``<remote>/<base>``, push, and open the pull request."""
    serve = config.serve
    token = token or secret_from_env(serve.token_env)
    if not token:
        raise ConfigError(
            f"${serve.token_env} is not set: promotion opens a pull request with it "
            "(use --dry-run to only see the change)"
        )
    repo = Path(_git(Path(repo), "rev-parse", "--show-toplevel"))
    _git(repo, "fetch", "--quiet", serve.remote, serve.base_branch)
    base_ref = f"{serve.remote}/{serve.base_branch}"
    with tempfile.TemporaryDirectory(prefix="tuneline-promote-") as tmp:
        tree = Path(tmp) / "tree"
        _git(repo, "worktree", "add", "--quiet", "--detach", str(tree), base_ref)
        try:
            promotion = plan(config, env, version, alias, force, reason, repo=tree)
            write_text_atomic(tree / promotion.values_path, promotion.content)
            _git(tree, "checkout", "--quiet", "-B", promotion.branch)
            _git(tree, "add", promotion.values_path)
            trailer = _gate_trailer(promotion.version, env, reason if force else None)
            _git(
                tree,
                *_identity(tree),
                "commit",
                "--quiet",
                "-m",
                redact_text(promotion.title),
                "-m",
                redact_text(
                    f"MLflow: {promotion.version.ui_hint}\nStorage: {promotion.version.storage_uri}\n\n{trailer}"
                ),
            )
            commit = _git(tree, "rev-parse", "HEAD")
            _git(tree, "push", "--quiet", "--force-with-lease", serve.remote, f"HEAD:refs/heads/{promotion.branch}")
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(tree)],
                cwd=repo,  # noqa: S603, S607
                capture_output=True,
            )
    gh = GitHub(serve.github_api, token)
    slug = repo_slug(serve.repo_url)
    try:
        pr = gh.open_pull_request(
            slug, promotion.branch, serve.base_branch, redact_text(promotion.title), redact_text(promotion.body)
        )
        gh.add_labels(slug, pr.number, ["promotion", f"env:{env}"])
    except GitHubError as exc:
        raise PromoteError(
            f"branch {promotion.branch} ({commit[:12]}) was pushed, but the pull request failed: {exc}"
        ) from None
    return Promotion(**{**promotion.__dict__, "commit": commit, "pr_url": pr.url})


def _gate_trailer(record: VersionRecord, env: str, forced_reason: str | None) -> str:
    if record.gate_passed:
        return "Gate: passed"
    if forced_reason:
        return f"Forced-past-gate: {forced_reason}"
    return f"Gate: {'failed' if record.gate_recorded else 'missing'} (not required for {env})"


def sync_alias(config: TunelineConfig, env: str, repo: Path = Path(".")) -> tuple[str, str, str]:
    """Point ``env``'s MLflow alias at the version its values file deploys (run after the merge)."""
    envs = config.serve.environments
    if env not in envs:
        raise ConfigError(f"--env {env!r}: serve.environments has {', '.join(envs)}")
    path = Path(repo) / values_file(config, env)
    model = _load_values(path.read_text() if path.is_file() else None).get("model") or {}
    name, version = model.get("name"), str(model.get("version") or "")
    if not name or not version or version == "0":
        raise PromoteError(f"{path} names no model version to alias")
    alias = envs[env].alias
    try:
        client(config.registry.tracking_uri).set_registered_model_alias(name, alias, version)
    except Exception as exc:  # noqa: BLE001 - MLflow and connection errors alike
        raise PromoteError(f"cannot set @{alias} on {name} v{version}: {exc}") from None
    return name, version, alias
