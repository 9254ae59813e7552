from __future__ import annotations

import gzip
import json
import socket
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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
        # an absolute store per test: MLflow caches one SQLAlchemy engine per URI string, so the relative
        # default would keep writing into whichever test directory used it first
        tracking = f"registry.tracking_uri=sqlite:///{tmp_path / 'mlruns.db'}"
        return load_config(None, ("clean.workers=1", tracking, *overrides))

    return make


@pytest.fixture(autouse=True)
def _chdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def order_records(n: int, seed: int, preference: bool = False) -> list[dict[str, Any]]:
    """Split-stage records of the sample orders→JSON task (what train/evaluate read)."""
    import random

    from tuneline.sample import order

    rng = random.Random(seed)
    out = []
    for i in range(n):
        prompt, answer, fields = order(rng)
        rid = f"{'p' if preference else 's'}{seed}-{i}"
        if preference:
            wrong = answer.replace(f'"qty": {fields["qty"]}', f'"qty": {fields["qty"] + 1}')
            out.append(
                {
                    "id": rid,
                    "prompt": [{"role": "user", "content": prompt}],
                    "chosen": [{"role": "assistant", "content": answer}],
                    "rejected": [{"role": "assistant", "content": wrong}],
                }
            )
        else:
            out.append({"id": rid, **chat(prompt, answer)})
    return out


@pytest.fixture
def split_dir(tmp_path: Path) -> Path:
    """A small split dir in the split stage's layout (sft and preference, train/val/test)."""
    root = tmp_path / "split"
    for split, n, seed in (("train", 64, 1), ("val", 16, 2), ("test", 16, 3)):
        write_jsonl(root / "sft" / f"{split}.jsonl", order_records(n, seed))
        write_jsonl(root / "preference" / f"{split}.jsonl", order_records(n // 2, seed + 10, preference=True))
    return root


# Small, fast training runs: 16 steps of 8 records, checkpoints every 4.
TINY_TRAIN = (
    "train.max_steps=16",
    "train.logging_steps=2",
    "train.save_steps=4",
    "train.eval_steps=8",
    "train.learning_rate=0.003",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    port = free_port()
    import s3fs
    from moto.server import ThreadedMotoServer

    # fsspec caches filesystem instances; one made for an earlier test's server must not be reused
    s3fs.S3FileSystem.clear_instance_cache()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        s3fs.S3FileSystem.clear_instance_cache()


@contextmanager
def running_mlflow_server(root: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """A real ``mlflow server`` on 127.0.0.1 with a SQLite backend in ``root``; ``args`` choose the artifact
    store (default: served from ``root/artifacts``). Yields its URL."""
    import os
    import subprocess
    import sys
    import time
    import urllib.request

    port = free_port()
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    store = list(args) or ["--artifacts-destination", str(root / "artifacts")]
    log = open(root / "server.log", "wb")  # noqa: SIM115 - held open for the server's lifetime
    proc = subprocess.Popen(
        [
            str(mlflow_bin),
            "server",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            *store,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
        env=dict(os.environ, **(env or {})),
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                if resp.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
        time.sleep(0.5)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory):
    """A real MLflow tracking server on 127.0.0.1 with a SQLite backend and a local artifact store."""
    with running_mlflow_server(tmp_path_factory.mktemp("mlflow")) as url:
        yield url


@dataclass(frozen=True)
class EvalAssets:
    split_dir: Path
    model_dir: Path
    judge_dir: Path


def _train_judge(root: Path, tracking: str) -> Path:
    """A builtin:tiny model fully fine-tuned to answer judge prompts in the verdict formats.

    It always rates 8 and always prefers position A: a real model behind a real server whose
    outputs parse, and whose position bias the two-order comparison must cancel.
    """
    import random

    from tuneline.stages.evaluate.judge import Prompts
    from tuneline.stages.train import run_train

    prompts = Prompts.load()
    rng = random.Random(0)
    pieces = [w for r in order_records(32, 5) for m in r["messages"] for w in m["content"].split()]
    pieces += list('0123456789{}":,') + ["\ufffd", "\u0603", "\x12", "\u7c60", "\x00"]

    def junk() -> str:  # what an untrained model answers: random vocabulary, no structure
        return "".join(rng.choice(pieces) + rng.choice(["", " "]) for _ in range(rng.randint(5, 60)))

    records = []
    for i, rec in enumerate(order_records(64, 7)):
        question, reference = rec["messages"][0]["content"], rec["messages"][1]["content"]
        other = rng.choice([order_records(1, 100 + i)[0]["messages"][1]["content"], junk()])
        answer = rng.choice([reference, other, "", junk()])
        records.append(
            {
                "id": f"j{i}s",
                "messages": prompts.single_messages(question, reference, answer)
                + [{"role": "assistant", "content": "Rating: [[8]]"}],
            }
        )
        records.append(
            {
                "id": f"j{i}p",
                "messages": prompts.pairwise_messages(question, reference, answer, other)
                + [{"role": "assistant", "content": "[[A]]"}],
            }
        )
    write_jsonl(root / "judge-split" / "sft" / "train.jsonl", records)
    config = load_config(
        None,
        (
            "train.method=lora",
            "train.full_finetune=true",
            "train.max_steps=60",
            "train.learning_rate=0.003",
            "train.logging_steps=5",
            "train.save_steps=60",
            "train.eval_steps=60",
            "model.max_seq_length=1024",
            f"registry.tracking_uri={tracking}",
        ),
    )
    run_train(config, root / "judge-split", root / "judge", root / "judge-ckpt")
    return root / "judge" / "adapter"  # full fine-tune: a complete model dir with its tokenizer


@pytest.fixture(scope="session")
def eval_assets(tmp_path_factory: pytest.TempPathFactory) -> EvalAssets:
    """A tiny trained candidate with its split, and a format-following judge (trained once per session)."""
    import os

    from tuneline.stages.train import run_train

    root = tmp_path_factory.mktemp("eval-assets")
    tracking = f"sqlite:///{root / 'mlruns.db'}"
    previous = os.getcwd()
    os.chdir(root)
    try:
        split = root / "split"
        for name, n, seed in (("train", 64, 1), ("val", 16, 2), ("test", 16, 3)):
            write_jsonl(split / "sft" / f"{name}.jsonl", order_records(n, seed))
        config = load_config(None, (*TINY_TRAIN, "train.max_steps=40", f"registry.tracking_uri={tracking}"))
        run_train(config, split, root / "candidate", root / "ckpt")
        judge = _train_judge(root, tracking)
    finally:
        os.chdir(previous)
    return EvalAssets(split_dir=split, model_dir=root / "candidate", judge_dir=judge)
