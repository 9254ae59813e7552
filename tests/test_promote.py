"""Promotion by pull request against a real bare git remote, a real MLflow registry and a local HTTP server
that checks the requests against GitHub's documented REST contract ("Create a pull request", "Add labels to
an issue"): required fields, headers, bearer token, and a head branch that must exist on the remote."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tests.conftest import REPO
from tuneline.cli import app
from tuneline.config import load_config
from tuneline.serving import promote as promotion

TOKEN = "ghp_test_token"
SLUG = "acme/llm"
MODEL = "tuneline-chat"


def git(cwd: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


class FakeGitHub:
    """Answers like api.github.com for the two endpoints promotion uses, and records what it was sent."""

    def __init__(self, remote: Path, fail_pulls: bool = False, token: str = TOKEN) -> None:
        self.requests: list[dict] = []
        self.remote = remote
        self.fail_pulls = fail_pulls
        github = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _reply(self, status: int, body: object) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                github.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                if self.headers.get("Authorization") != f"Bearer {token}":
                    return self._reply(401, {"message": "Bad credentials"})
                if (
                    self.headers.get("Accept") != "application/vnd.github+json"
                    or self.headers.get("X-GitHub-Api-Version") != "2022-11-28"
                ):
                    return self._reply(400, {"message": "missing GitHub media type or API version"})
                if self.path == f"/repos/{SLUG}/pulls":
                    missing = [k for k in ("title", "head", "base") if not isinstance(body.get(k), str)]
                    heads = git(github.remote, "branch", "--list", body.get("head", "-"))
                    if missing or github.fail_pulls or not heads:
                        return self._reply(
                            422,
                            {
                                "message": "Validation Failed",
                                "errors": [{"resource": "PullRequest", "field": "head", "code": "invalid"}],
                            },
                        )
                    return self._reply(
                        201,
                        {
                            "number": 42,
                            "html_url": f"https://github.com/{SLUG}/pull/42",
                            "state": "open",
                            "head": {"ref": body["head"]},
                            "base": {"ref": body["base"]},
                        },
                    )
                if self.path == f"/repos/{SLUG}/issues/42/labels":
                    if not (isinstance(body.get("labels"), list) and all(isinstance(x, str) for x in body["labels"])):
                        return self._reply(422, {"message": "Validation Failed"})
                    return self._reply(200, [{"name": n} for n in body["labels"]])
                return self._reply(404, {"message": "Not Found"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def world(tmp_path, monkeypatch):
    """A bare remote holding main (the environment values), a clone of it, a registry, a fake GitHub."""
    from mlflow import MlflowClient

    remote, work = tmp_path / "remote.git", tmp_path / "work"
    git(tmp_path, "init", "--quiet", "--bare", "-b", "main", str(remote))
    git(tmp_path, "init", "--quiet", "-b", "main", str(work))
    shutil.copytree(REPO / "deploy" / "environments", work / "deploy" / "environments")
    staging = work / "deploy" / "environments" / "staging.yaml"
    current = yaml.safe_load(staging.read_text())
    current["model"] = {
        "name": MODEL,
        "version": "1",
        "storageUri": "s3://b/mlflow/1/run1/artifacts/model",
        "base": "/mnt/models/base",
    }
    staging.write_text(promotion._header(staging.read_text(), "staging") + yaml.safe_dump(current, sort_keys=False))
    git(work, "add", ".")
    git(work, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "-m", "environments")
    git(work, "remote", "add", "origin", str(remote))
    git(work, "push", "--quiet", "origin", "main")

    tracking = f"sqlite:///{tmp_path / 'mlruns.db'}"
    client = MlflowClient(tracking_uri=tracking, registry_uri=tracking)
    client.create_registered_model(MODEL)

    def register(passed: bool | None, score: float, reasons: str = "none") -> str:
        tags = {
            "tuneline.storage_uri": f"s3://b/mlflow/1/run{score}/artifacts/model",
            "base_model": "builtin:tiny",
            "eval.judge_score": str(score),
            "eval.win_rate": str(score / 10),
        }
        if passed is not None:
            tags.update({"gate.passed": str(passed).lower(), "gate.reasons": reasons})
        return str(client.create_model_version(MODEL, source="s3://b/x", tags=tags).version)

    assert register(True, 6.0) == "1"
    github = FakeGitHub(remote)
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    overrides = (
        f"registry.tracking_uri={tracking}",
        f"serve.github_api={github.url}",
        f"serve.repo_url=https://github.com/{SLUG}.git",
    )
    yield {
        "remote": remote,
        "work": work,
        "client": client,
        "register": register,
        "github": github,
        "config": load_config(REPO / "params.yaml", overrides),
        "overrides": overrides,
    }
    github.close()


def cli(world, *args: str):
    sets = [a for o in world["overrides"] for a in ("--set", o)]
    return CliRunner().invoke(app, [*args, "--repo", str(world["work"]), "--config", str(REPO / "params.yaml"), *sets])


def said(result) -> str:
    """The CLI's output with the console's line wrapping undone."""
    return " ".join(result.output.split())


def test_promote_pushes_a_branch_with_only_the_values_change_and_opens_the_pull_request(world):
    v2 = world["register"](True, 7.5)
    world["client"].set_registered_model_alias(MODEL, "candidate", v2)
    head_before = git(world["work"], "rev-parse", "HEAD")

    result = cli(world, "promote", "--env", "staging")
    assert result.exit_code == 0, result.output
    assert "https://github.com/acme/llm/pull/42" in said(result)

    branch = f"promote/staging/{MODEL}-v2"
    tip = git(world["remote"], "rev-parse", branch)
    assert git(world["remote"], "log", "--format=%P", "-1", tip) == git(world["remote"], "rev-parse", "main")
    assert git(world["remote"], "diff", "--name-only", "main", branch) == "deploy/environments/staging.yaml"
    assert git(world["remote"], "log", "--format=%s", "-1", tip) == f"Promote {MODEL} v2 to staging"
    values = yaml.safe_load(git(world["remote"], "show", f"{branch}:deploy/environments/staging.yaml"))
    cfg = world["config"]
    assert values["model"] == {
        "name": MODEL,
        "version": "2",
        "storageUri": "s3://b/mlflow/1/run7.5/artifacts/model",
        "base": "/mnt/models/base",
    }
    assert values["runtime"]["image"] == getattr(cfg.images, cfg.serve.runtime) and values["autoscaling"] == {
        "maxReplicas": 2
    }
    diff = git(world["remote"], "diff", "main", branch)
    assert '-  version: "1"' in diff.replace("'", '"') and '+  version: "2"' in diff.replace("'", '"')

    [pull, labels] = world["github"].requests
    assert pull["path"] == f"/repos/{SLUG}/pulls"
    assert pull["body"]["head"] == branch and pull["body"]["base"] == "main"
    assert pull["body"]["title"] == f"Promote {MODEL} v2 to staging"
    body = pull["body"]["body"]
    assert "| judge_score | 6 | 7.5 | +1.5 |" in body and "staging now (v1)" in body
    assert "## Rollback" in body and "tuneline promote --env staging --version 1" in body and "@staging" in body
    assert labels["body"] == {"labels": ["promotion", "env:staging"]}
    # the user's checkout is untouched: same HEAD, same branch, clean tree, no leftover worktree
    assert git(world["work"], "rev-parse", "HEAD") == head_before
    assert git(world["work"], "branch", "--show-current") == "main"
    assert git(world["work"], "status", "--porcelain") == ""
    assert len(git(world["work"], "worktree", "list").splitlines()) == 1


def test_a_failed_gate_blocks_promotion_and_nothing_is_pushed(world):
    v2 = world["register"](False, 3.0, "judge_score 3.0 < 5.0")
    result = cli(world, "promote", "--env", "staging", "--version", v2)
    assert result.exit_code == 1
    assert "did not pass the evaluation gate (judge_score 3.0 < 5.0)" in said(result)
    assert git(world["remote"], "branch", "--list", "promote/*") == ""
    assert world["github"].requests == []


def test_a_missing_gate_blocks_too(world):
    v2 = world["register"](None, 7.0)
    with pytest.raises(promotion.PromoteError, match="no gate result recorded"):
        promotion.plan(world["config"], "prod", version=v2, repo=world["work"])


def test_force_needs_a_reason_and_records_it(world):
    v2 = world["register"](False, 4.0, "judge_score 4.0 < 5.0")
    no_reason = cli(world, "promote", "--env", "staging", "--version", v2, "--force")
    assert no_reason.exit_code == 2 and "--force needs --reason" in said(no_reason)

    result = cli(world, "promote", "--env", "staging", "--version", v2, "--force", "--reason", "hotfix for #123")
    assert result.exit_code == 0, result.output
    message = git(world["remote"], "log", "--format=%B", "-1", f"promote/staging/{MODEL}-v2")
    assert "Forced-past-gate: hotfix for #123" in message
    body = world["github"].requests[0]["body"]["body"]
    assert "Forced past the gate" in body and "hotfix for #123" in body and "FAILED" in body


def test_dev_takes_a_failed_gate_without_force(world):
    v2 = world["register"](False, 3.0, "judge_score 3.0 < 5.0")
    plan = promotion.plan(world["config"], "dev", version=v2, repo=world["work"])
    assert plan.branch == f"promote/dev/{MODEL}-v2" and "dev serves no registered version yet" in plan.body


def test_dry_run_prints_the_diff_and_body_and_changes_nothing(world):
    v2 = world["register"](True, 8.0)
    result = cli(world, "promote", "--env", "prod", "--version", v2, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "+++ b/deploy/environments/prod.yaml" in said(result) and "storageUri: s3://b/mlflow/1/run8.0" in said(
        result
    )
    assert f"Promote {MODEL} v2 to prod" in said(result) and "@champion" in said(result)
    assert git(world["remote"], "branch", "--list", "promote/*") == "" and world["github"].requests == []
    assert git(world["work"], "status", "--porcelain") == ""


def test_promoting_what_is_already_served_is_refused(world):
    staging = world["work"] / "deploy" / "environments" / "staging.yaml"
    first = promotion.plan(world["config"], "staging", version="1", repo=world["work"])
    staging.write_text(first.content)  # as if that promotion was merged
    with pytest.raises(promotion.PromoteError, match="already serves tuneline-chat v1"):
        promotion.plan(world["config"], "staging", version="1", repo=world["work"])


def test_pull_request_failure_says_the_branch_was_pushed(world):
    world["github"].fail_pulls = True
    v2 = world["register"](True, 7.0)
    result = cli(world, "promote", "--env", "staging", "--version", v2)
    assert result.exit_code == 1
    assert f"branch promote/staging/{MODEL}-v2" in said(result) and "HTTP 422 Validation Failed" in said(result)


def test_no_token_fails_before_anything_is_pushed(world, monkeypatch):
    monkeypatch.delenv("GITHUB_TOKEN")
    v2 = world["register"](True, 7.0)
    result = cli(world, "promote", "--env", "staging", "--version", v2)
    assert result.exit_code == 2 and "$GITHUB_TOKEN is not set" in said(result)
    assert git(world["remote"], "branch", "--list", "promote/*") == ""


def test_unknown_environment_is_a_config_error(world):
    result = cli(world, "promote", "--env", "qa", "--dry-run")
    assert result.exit_code == 2 and "serve.environments has dev, staging, prod" in said(result)


def test_after_merge_sync_alias_moves_the_environment_alias(world):
    v2 = world["register"](True, 7.5)
    assert cli(world, "promote", "--env", "prod", "--version", v2).exit_code == 0
    work = world["work"]
    git(work, "fetch", "--quiet", "origin")
    git(
        work,
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@t",
        "merge",
        "--quiet",
        "--no-ff",
        "-m",
        "merge",
        f"origin/promote/prod/{MODEL}-v2",
    )
    sets = [a for o in world["overrides"] for a in ("--set", o)]
    result = CliRunner().invoke(
        app,
        ["registry", "sync-alias", "--env", "prod", "--repo", str(work), "--config", str(REPO / "params.yaml"), *sets],
    )
    assert result.exit_code == 0, result.output
    assert str(world["client"].get_model_version_by_alias(MODEL, "champion").version) == v2
    assert f"{MODEL} v2 is now @champion" in said(result)


def test_a_version_stored_on_a_local_disk_cannot_be_promoted(world):
    version = str(
        world["client"]
        .create_model_version(
            MODEL,
            source="/tmp/x",
            tags={
                "tuneline.storage_uri": "/home/me/mlruns/1/abc/artifacts/model",
                "gate.passed": "true",
                "gate.reasons": "none",
            },
        )
        .version
    )
    result = cli(world, "promote", "--env", "dev", "--version", version, "--dry-run")
    assert result.exit_code == 1 and "which a cluster cannot fetch" in said(result)


def test_promotion_keeps_the_order_and_comments_of_the_values_file(world):
    v2 = world["register"](True, 7.0)
    plan = promotion.plan(world["config"], "dev", version=v2, repo=world["work"])
    before = (world["work"] / "deploy" / "environments" / "dev.yaml").read_text()
    assert plan.content.startswith(before)  # the env's own lines stay as they were; model and runtime follow
