"""No credential leaks: a distinct canary in every credential tuneline reads, then every CLI path, then a search.

The canaries sit in the environment (HF_TOKEN, the judge's, the candidate endpoint's and the teacher's own tokens,
GITHUB_TOKEN, KFP_TOKEN, AWS keys, a password in MLFLOW_TRACKING_URI) and in URLs (a signed URL's
``X-Amz-Signature``, ``user:password@`` of an http source). The chain runs for real as a user runs it:
generate against a teacher endpoint, ingest over http from a local server that checks the signature and the password, clean, split, train,
evaluate against TGI contract servers, register into a real MLflow server whose artifacts live in an
S3 server (moto), registry show, promote --dry-run and a real promote to a bare git remote with GitHub
played by a local contract server, pipeline compile and deploy export. Then no canary may appear in any
command's stdout/stderr, any file under the test's folder (the project, the MLflow database and server
log, the git repositories' work trees), the S3 objects, the git history, or the pull request.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import REPO, order_records, running_mlflow_server, write_jsonl
from tests.test_evaluate import perfect_candidate, rule_judge
from tests.test_promote import SLUG, FakeGitHub, git
from tests.tgi_contract import TgiContractServer, chat_completion

CANARIES = {
    name: f"cAnArY{name.replace('_', '')}{i:03d}zq"
    for i, name in enumerate(
        [
            "hf_token",
            "judge_token",
            "candidate_token",
            "teacher_token",
            "github_token",
            "kfp_token",
            "aws_key_id",
            "aws_secret",
            "mlflow_password",
            "url_signature",
            "url_password",
            "config_secret",
            "config_password",
        ]
    )
}


class DataServer:
    """Serves JSONL like an object store behind signed URLs and basic auth would: nothing without the credential."""

    def __init__(self, root: Path) -> None:
        self.root = root

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _serve(self, body: bool) -> None:
                path, _, query = self.path.partition("?")
                signed = f"X-Amz-Signature={CANARIES['url_signature']}" in query.split("&")
                auth = self.headers.get("Authorization", "")
                expected = "Basic " + base64.b64encode(f"reader:{CANARIES['url_password']}".encode()).decode()
                ok = (path == "/signed/orders.jsonl" and signed) or (path == "/private/more.jsonl" and auth == expected)
                if not ok:
                    self.send_response(403)
                    self.end_headers()
                    return
                data = (root / path.rsplit("/", 1)[1]).read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                self._serve(True)

            def do_HEAD(self) -> None:  # noqa: N802
                self._serve(False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def copy_project(dest: Path) -> Path:
    """The repository's tracked files as they are on disk (a user's checkout, without .venv)."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True)
    for rel in filter(None, files.stdout.split("\0")):
        if (REPO / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dest / rel)
    return dest


def json_teacher(path: str, body: dict) -> tuple[int, dict]:
    return 200, chat_completion(json.dumps({"name": "Ana", "item": "lamp", "qty": len(body["messages"])}))


def bearers(server: TgiContractServer) -> set[str | None]:
    return {next((v for k, v in h.items() if k.lower() == "authorization"), None) for _, _, h in server.requests}


def leaks(text: str | bytes) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return [name for name, value in CANARIES.items() if value.encode() in data]


@pytest.mark.slow
def test_no_canary_reaches_output_files_mlflow_git_or_the_pull_request(tmp_path: Path, s3_endpoint: str) -> None:
    import boto3

    proj = copy_project(tmp_path / "proj")
    raw = tmp_path / "served"
    write_jsonl(raw / "orders.jsonl", order_records(60, 1))
    write_jsonl(raw / "more.jsonl", order_records(30, 2))
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket="artifacts")
    aws = {
        "AWS_ACCESS_KEY_ID": CANARIES["aws_key_id"],
        "AWS_SECRET_ACCESS_KEY": CANARIES["aws_secret"],
        "AWS_DEFAULT_REGION": "us-east-1",
        "MLFLOW_S3_ENDPOINT_URL": s3_endpoint,
    }
    (tmp_path / "mlflow").mkdir()

    remote, work = tmp_path / "remote.git", tmp_path / "gitops"
    git(tmp_path, "init", "--quiet", "--bare", "-b", "main", str(remote))
    git(tmp_path, "init", "--quiet", "-b", "main", str(work))
    shutil.copytree(REPO / "deploy" / "environments", work / "deploy" / "environments")
    git(work, "add", ".")
    git(work, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "-m", "environments")
    git(work, "remote", "add", "origin", str(remote))
    git(work, "push", "--quiet", "origin", "main")

    data = DataServer(raw)
    github = FakeGitHub(remote, token=CANARIES["github_token"])
    outputs: list[tuple[str, str]] = []
    with (
        running_mlflow_server(
            tmp_path / "mlflow", "--default-artifact-root", "s3://artifacts/mlflow", "--no-serve-artifacts", env=aws
        ) as mlflow_url,
        TgiContractServer(rule_judge) as judge,
        TgiContractServer(json_teacher) as teacher,
    ):
        host = mlflow_url.removeprefix("http://")
        env = dict(
            os.environ,
            COLUMNS="200",
            HF_TOKEN=CANARIES["hf_token"],
            TUNELINE_JUDGE_TOKEN=CANARIES["judge_token"],
            TUNELINE_CANDIDATE_TOKEN=CANARIES["candidate_token"],
            TUNELINE_TEACHER_TOKEN=CANARIES["teacher_token"],
            GITHUB_TOKEN=CANARIES["github_token"],
            KFP_TOKEN=CANARIES["kfp_token"],
            MLFLOW_TRACKING_URI=f"http://tuneline:{CANARIES['mlflow_password']}@{host}",
            GIT_AUTHOR_NAME="t",
            GIT_AUTHOR_EMAIL="t@t",
            GIT_COMMITTER_NAME="t",
            GIT_COMMITTER_EMAIL="t@t",
            **aws,
        )
        sets = ["--set", f"serve.github_api={github.url}", "--set", f"serve.repo_url=https://github.com/{SLUG}.git"]

        def run(*args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
            r = subprocess.run(
                [sys.executable, "-m", "tuneline", *args],
                cwd=proj,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            outputs.append((" ".join(args[:2]), r.stdout + r.stderr))
            assert r.returncode == expect, f"{args}: {r.stdout}\n{r.stderr}"
            return r

        try:
            run(
                "generate", "--set", f"generate.seeds={raw / 'orders.jsonl'}", "--set", "generate.method=distil",
                "--set", "generate.n=3", "--set", f"generate.teacher.endpoint={teacher.url}",
            )  # fmt: skip
            run(
                "ingest",
                f"{data.url}/signed/orders.jsonl?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential="
                f"{CANARIES['aws_key_id']}%2F20261201&X-Amz-Signature={CANARIES['url_signature']}",
                f"http://reader:{CANARIES['url_password']}@{data.url.removeprefix('http://')}/private/more.jsonl",
                "--set",
                "data.allow_insecure_sources=true",  # the stand-in server is plain http on this machine
            )
            run("clean", "--set", "clean.workers=1")
            run("split")
            run(
                "train",
                "--set",
                "train.max_steps=4",
                "--set",
                "train.save_steps=2",
                "--set",
                "train.eval_steps=2",
                "--set",
                "train.logging_steps=1",
            )
            with TgiContractServer(perfect_candidate(proj / "data/split")) as candidate:
                run(
                    "evaluate",
                    "--set",
                    f"eval.judge.endpoint={judge.url}",
                    "--set",
                    f"eval.candidate_endpoint={candidate.url}",
                    "--set",
                    "eval.baseline=base",
                    "--set",
                    "eval.judge.max_new_tokens=8",
                    "--set",
                    "eval.max_new_tokens=16",
                )
            run("register")
            run("registry", "show")
            run("promote", "--env", "dev", "--dry-run", "--repo", str(work), *sets)
            run("promote", "--env", "dev", "--repo", str(work), *sets)
            run("pipeline", "compile")
            run("deploy", "export")
            # credentials in config are refused, naming the key but not echoing the value
            r = run(
                "pipeline",
                "compile",
                "--set",
                f"data.source_options={{s3: {{secret: {CANARIES['config_secret']}}}}}",
                expect=2,
            )
            assert "data.source_options.s3.secret" in r.stderr
            r = run(
                "evaluate", "--set", f"eval.judge.endpoint=http://u:{CANARIES['config_password']}@example.org", expect=2
            )
            assert "eval.judge.endpoint" in r.stderr
        finally:
            data.close()
            github.close()

        # each endpoint got its own token, and only it
        assert bearers(judge) == {f"Bearer {CANARIES['judge_token']}"}
        assert bearers(teacher) == {f"Bearer {CANARIES['teacher_token']}"}
        assert bearers(candidate) == {f"Bearer {CANARIES['candidate_token']}"}

    # the registered version really went through the server and the object store
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="artifacts").get("Contents", [])]
    assert any("/artifacts/" in k for k in keys)
    assert len(github.requests) == 2 and github.requests[0]["path"] == f"/repos/{SLUG}/pulls"

    found = {where: leaks(text) for where, text in outputs if leaks(text)}
    for path in sorted(tmp_path.rglob("*")):
        if path.is_file() and "/.git/" not in path.as_posix() and (names := leaks(path.read_bytes())):
            found[str(path.relative_to(tmp_path))] = names
    for key in keys:
        if names := leaks(s3.get_object(Bucket="artifacts", Key=key)["Body"].read()):
            found[f"s3://artifacts/{key}"] = names
    for repo in (work, remote):
        if names := leaks(git(repo, "log", "-p", "--all", "--format=%H%n%an <%ae>%n%B")):
            found[f"git history of {repo.name}"] = names
    for req in github.requests:
        if names := leaks(str(req["body"])):
            found[f"GitHub request {req['path']}"] = names
    assert not found, f"credentials leaked: {found}"
