"""Data-prep benchmark: ingest → clean → split on N synthetic chat records vs. a naive baseline.

    python benchmarks/data_prep.py --n 1000000
    python benchmarks/data_prep.py --scaling --sizes 1000000,2000000,4000000 --ray-workers 1,2

The second form is the engine scaling table: the local engine and Ray (a local Ray with 1 and 2 CPUs, started
once with `ray start --head` and joined by each stage through data.ray.address, as stages join a cluster) side by
side on the same corpora, with the removal counts of each (they must be equal: the run stops if they are not),
and the naive baseline below on the first --baseline-n records of the smallest corpus.
Memory is PSS, summed over every process (with Ray: its GCS, raylet and workers too), and of the largest worker.

Generates N records (~500 characters each) with known shares of exact duplicates, near
duplicates and PII, runs each tuneline stage as its own CLI process (as DVC does) while
sampling the RSS of the whole process tree (workers included), then runs a naive
baseline (pandas + re + datasketch MinHashLSH, everything in memory, one process) on a
subset and prints one table. Records/s are comparable across sizes; the baseline runs on
``--baseline-n`` records because it is slow and holds everything in memory.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unicodedata
from pathlib import Path

import psutil

from tuneline.results import DATA_REPORT, CleanReport

WORDS = [
    "data",
    "model",
    "train",
    "token",
    "query",
    "index",
    "cache",
    "batch",
    "epoch",
    "layer",
    "vector",
    "server",
    "client",
    "answer",
    "question",
    "report",
    "update",
    "order",
    "account",
    "refund",
    "invoice",
    "shipping",
    "deliver",
    "payment",
    "window",
    "screen",
    "button",
    "error",
    "network",
    "storage",
    "backup",
    "restore",
    "deploy",
    "release",
    "version",
    "config",
    "option",
    "value",
    "result",
    "status",
]


def generate(path: Path, n: int, seed: int = 0, dup: float = 0.05, near: float = 0.05, pii: float = 0.1) -> dict:
    rng = random.Random(seed)
    counts = {"exact_dup": 0, "near_dup": 0, "pii": 0}
    recent: list[tuple[str, str]] = []
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            r = rng.random()
            if recent and r < dup:
                user, answer = rng.choice(recent)
                counts["exact_dup"] += 1
            elif recent and r < dup + near:
                user, answer = rng.choice(recent)
                answer = answer + " thanks"
                counts["near_dup"] += 1
            else:
                # ticket numbers stay below 1,000,000 (six digits) at every size, so that a larger corpus holds
                # the same mix of records: a seven-digit number would send every record past 1M through the
                # phone-number validator, and the scaling table would measure the data, not the engine
                user = " ".join(rng.choices(WORDS, k=30)) + f" ticket {i % 1_000_000}?"
                answer = " ".join(rng.choices(WORDS, k=45)) + "."
                if rng.random() < pii:
                    user += f" Reach me at user{i}@example.com or 415-555-{i % 10000:04d}."
                    counts["pii"] += 1
                recent.append((user, answer))
                if len(recent) > 1000:
                    recent.pop(rng.randrange(len(recent)))
            fh.write(
                json.dumps({"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]})
                + "\n"
            )
    return counts


def _ray_processes() -> list[psutil.Process]:
    """The processes of a Ray started with `ray start` (GCS, raylet, agents, workers: ``ray::...``)."""
    out = []
    for p in psutil.process_iter(["name", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if (
            "ray::" in cmd
            or p.info["name"] in ("raylet", "gcs_server")
            or "ray/_private" in cmd
            or "ray/dashboard" in cmd
        ):
            out.append(p)
    return out


class PeakRss:
    """Samples the summed RSS of a process and its children, and their summed PSS (proportional set size: a page
    shared by forked workers counts once, split between them). With ``ray`` the processes of the running Ray are
    sampled too, and ``peak_worker`` is the largest PSS of one ``ray::`` worker (else of one child process)."""

    def __init__(self, pid: int, ray: bool = False) -> None:
        self.proc = psutil.Process(pid)
        self.ray = ray
        self.peak = 0
        self.peak_pss = 0
        self.peak_worker = 0

        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                children = self.proc.children(recursive=True)
                workers = [p for p in _ray_processes() if "ray::" in " ".join(p.cmdline())] if self.ray else children
                procs = {p.pid: p for p in [self.proc, *children, *(_ray_processes() if self.ray else [])]}
                info = {pid: p.memory_full_info() for pid, p in procs.items() if p.is_running()}
                self.peak = max(self.peak, sum(i.rss for i in info.values()))
                self.peak_pss = max(self.peak_pss, sum(i.pss for i in info.values()))
                if workers:
                    self.peak_worker = max(self.peak_worker, max(p.memory_full_info().pss for p in workers))
            except psutil.Error:
                pass
            time.sleep(0.1)  # each sample reads every process's smaps: more often slows what it measures

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def run_stage(args: list[str], cwd: Path, pss: bool = False, ray: bool = False) -> tuple[float, int]:
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tuneline", *args],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **RAY_ENV},
    )
    meter = PeakRss(proc.pid, ray=ray)
    _, err = proc.communicate()
    peak = meter.stop()
    if proc.returncode != 0:
        raise SystemExit(f"tuneline {' '.join(args)} failed:\n{err}")
    run_stage.last_worker = meter.peak_worker  # type: ignore[attr-defined]
    return time.perf_counter() - start, meter.peak_pss if pss else peak


# The benchmark's own local Ray: no token authentication between its processes (a cluster's is KubeRay's to set).
RAY_ENV = {"RAY_AUTH_MODE": "disabled"}


class LocalRay:
    """`ray start --head` with ``cpus`` CPUs, for the stages to join (``data.ray.address``), then `ray stop`.

    A cluster outlives the stages that use it; starting one per stage would charge each stage Ray's start-up.
    """

    def __init__(self, cpus: int) -> None:
        self.cpus = cpus
        self.port = 6400 + cpus
        self.ray = str(Path(sys.executable).parent / "ray")

    def __enter__(self) -> str:
        start = time.perf_counter()
        subprocess.run(
            [
                self.ray,
                "start",
                "--head",
                f"--port={self.port}",
                f"--num-cpus={self.cpus}",
                "--node-ip-address=127.0.0.1",
            ]
            + ["--include-dashboard=false", "--disable-usage-stats"],
            check=True,
            capture_output=True,
            env={**os.environ, **RAY_ENV},
        )
        print(f"ray start ({self.cpus} CPUs): {time.perf_counter() - start:.1f}s, not counted", file=sys.stderr)
        return f"127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        subprocess.run([self.ray, "stop", "--force"], capture_output=True)


def run_chain(work: Path, tag: str, sets: list[str], ray: bool = False) -> tuple[float, int, int, dict]:
    """ingest → clean → split into ``work/<tag>-*``; (seconds, peak PSS of all processes, peak PSS of one worker,
    removals by rule)."""
    flags = [a for s in sets for a in ("--set", s)]
    total, peak, worker = 0.0, 0, 0
    for stage, src, out in (
        ("ingest", "raw", "ingested"),
        ("clean", "ingested", "cleaned"),
        ("split", "cleaned", "split"),
    ):
        src_dir = src if stage == "ingest" else f"{tag}-{src}"
        args = [stage, src_dir, "--out", f"{tag}-{out}", *flags]
        secs, tree = run_stage(args, work, pss=True, ray=ray)
        print(f"  {tag} {stage}: {secs:.1f}s, peak PSS {tree / 2**20:,.0f} MiB", file=sys.stderr)
        total += secs
        peak = max(peak, tree)
        worker = max(worker, run_stage.last_worker)  # type: ignore[attr-defined]
    report = CleanReport.read(work / f"{tag}-cleaned" / DATA_REPORT)
    return total, peak, worker, report.removed


def scaling(args: argparse.Namespace) -> None:
    """The engine scaling table: one corpus per size, every engine on it, removal counts compared."""
    rows = []
    for n in args.sizes:
        work = Path(tempfile.mkdtemp(prefix=f"tuneline-scale-{n}-"))
        (work / "raw").mkdir()
        generate(work / "raw" / "chats.jsonl", n)
        (work / "params.yaml").write_text("")
        engines: list[tuple[str, int]] = [("local, 2 processes", 2)]
        engines += [(f"ray, {w} worker{'s' if w > 1 else ''}", w) for w in args.ray_workers]
        removed_ref = None
        for name, workers in engines:
            tag = name.split(",")[0] + str(workers)
            if name.startswith("ray"):
                with LocalRay(workers) as address:
                    result = run_chain(work, tag, ["data.engine=ray", f"data.ray.address={address}"], ray=True)
            else:
                result = run_chain(work, tag, ["data.engine=local", f"clean.workers={workers}"])
            secs, peak, worker, removed = result
            removed_ref = removed_ref or removed
            if removed != removed_ref:
                raise SystemExit(f"{name} removed {removed}, the local engine {removed_ref}: the engines disagree")
            rows.append((name, n, workers, secs, peak, worker, removed))
            print(f"{name} at {n:,}: {secs:.1f}s", file=sys.stderr)
        if n == args.sizes[0] and args.baseline_n:
            rows.append(baseline_row(work, args.baseline_n))
        shutil.rmtree(work)
    print(f"\nEngine scaling ({os.cpu_count()} cores, python {sys.version.split()[0]}): ingest → clean → split\n")
    print(
        "| engine | records | seconds | records/min | records/min per worker | peak PSS, one worker (MiB) "
        "| peak PSS, all processes (MiB) | removed |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for name, n, workers, secs, peak, worker, removed in rows:
        per_min = 60 * n / secs
        print(
            f"| {name} | {n:,} | {secs:.1f} | {per_min:,.0f} | {per_min / workers:,.0f} | {worker / 2**20:,.0f} "
            f"| {peak / 2**20:,.0f} "
            f"| {', '.join(f'{k} {v:,}' for k, v in sorted(removed.items()))} |"
        )
    if any(r[0].startswith("naive") for r in rows):
        print(
            "\nThe baseline runs on the first records of the smallest corpus (--baseline-n), in one process; its "
            "removals count records, not the same rules (its near step keeps the first of each LSH match, unverified)."
        )
    ray_rows = [r for r in rows if r[0].startswith("ray")]
    if ray_rows:
        extrapolate(max(ray_rows, key=lambda r: (r[1], r[2])))


def baseline_row(work: Path, n: int) -> tuple:
    """The naive baseline on the corpus's first ``n`` records, as a row of the scaling table (one process)."""
    sub = work / "raw_baseline.jsonl"
    with open(work / "raw" / "chats.jsonl") as src, open(sub, "w") as dst:
        for line, _ in zip(src, range(n), strict=False):
            dst.write(line)
    secs, peak = run_baseline(sub, work / "baseline_out", pss=True)
    removed = json.loads((work / "baseline_out" / "removed.json").read_text())
    print(f"naive baseline at {n:,}: {secs:.1f}s", file=sys.stderr)
    return ("naive baseline (pandas + re + datasketch, in memory)", n, 1, secs, peak, peak, removed)


def extrapolate(row: tuple) -> None:
    """Records/min per worker CPU, measured, times the CPUs of the RayJob in params.yaml (extrapolated, linear)."""
    from tuneline.config import load_config

    name, n, workers, secs, *_ = row
    rc = load_config(Path(__file__).resolve().parents[1] / "params.yaml").data.ray.cluster
    per_cpu = 60 * n / secs / workers
    cpus = rc.workers * rc.worker_cpu
    rate = per_cpu * cpus
    corpus = 100_000_000
    hours = corpus / rate / 60
    cost = hours * (cpus + rc.head_cpu) * rc.cpu_hourly_usd
    print(
        f"\nExtrapolated (not measured): {per_cpu:,.0f} records/min per CPU ({name}, {n:,} records) x {cpus} worker "
        f"CPUs (data.ray.cluster: {rc.workers} workers x {rc.worker_cpu}) = {rate:,.0f} records/min; "
        f"{corpus:,} records in {hours * 60:,.0f} min, ${cost:,.2f} at ${rc.cpu_hourly_usd}/vCPU-hour "
        f"(workers and head, data.ray.cluster.cpu_hourly_usd)"
    )


# ------------------------------------------------------------------ naive baseline
_BASE_PII = [
    (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"), "[EMAIL]"),
    (re.compile(r"\b\d{3}[-. ]\d{3}[-. ]\d{4}\b"), "[PHONE]"),
    (re.compile(r"\b\d{3}-\d{2}-\d{4}\b"), "[SSN]"),
    (re.compile(r"\b(?:\d[ -]?){13,19}\b"), "[CREDIT_CARD]"),
    (re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b"), "[IP_ADDRESS]"),
    (re.compile(r"\bAKIA[A-Z0-9]{16}\b"), "[AWS_ACCESS_KEY]"),
]


def baseline(path: Path, out: Path) -> None:
    """What a first script looks like: load everything with pandas, apply regexes, MinHashLSH, sample."""
    import pandas as pd
    from datasketch import MinHash, MinHashLSH

    df = pd.read_json(path, lines=True)

    def clean(msgs: list) -> list:
        res = []
        for m in msgs:
            text = unicodedata.normalize("NFKC", m["content"])
            for pat, label in _BASE_PII:
                text = pat.sub(label, text)
            res.append({"role": m["role"], "content": text})
        return res

    df["messages"] = df["messages"].apply(clean)
    df["text"] = df["messages"].apply(lambda ms: "\n".join(m["content"] for m in ms).lower())
    before = len(df)
    df = df.drop_duplicates("text")
    exact = before - len(df)
    lsh = MinHashLSH(threshold=0.8, num_perm=64)
    keep = []
    for i, text in enumerate(df["text"]):
        words = text.split()
        m = MinHash(num_perm=64)
        for j in range(len(words) - 2):
            m.update(" ".join(words[j : j + 3]).encode())
        if lsh.query(m):
            keep.append(False)
        else:
            lsh.insert(str(i), m)
            keep.append(True)
    removed = {"exact_dedup": exact, "near_dedup": keep.count(False)}
    df = df[keep].drop(columns=["text"])
    df = df.sample(frac=1.0, random_state=42)
    n = len(df)
    out.mkdir(parents=True, exist_ok=True)
    df.iloc[: int(n * 0.8)].to_json(out / "train.jsonl", orient="records", lines=True)
    df.iloc[int(n * 0.8) : int(n * 0.9)].to_json(out / "val.jsonl", orient="records", lines=True)
    df.iloc[int(n * 0.9) :].to_json(out / "test.jsonl", orient="records", lines=True)
    (out / "removed.json").write_text(json.dumps(removed))


def run_baseline(path: Path, out: Path, pss: bool = False) -> tuple[float, int]:
    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import data_prep; "
        f"data_prep.baseline(__import__('pathlib').Path({str(path)!r}), __import__('pathlib').Path({str(out)!r}))"
    )
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code])
    meter = PeakRss(proc.pid)
    proc.wait()
    peak = meter.stop()
    if proc.returncode:
        raise SystemExit("baseline failed")
    return time.perf_counter() - start, meter.peak_pss if pss else peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="synthetic records for tuneline")
    ap.add_argument("--baseline-n", type=int, default=100_000, help="records for the naive baseline (0: skip)")
    ap.add_argument("--workdir", type=Path, default=None, help="where to write data (default: a temp dir)")
    ap.add_argument("--scaling", action="store_true", help="the engine scaling table instead (see above)")
    ap.add_argument("--sizes", type=lambda v: [int(x) for x in v.split(",")], default=[1_000_000, 2_000_000, 4_000_000])
    ap.add_argument(
        "--ray-workers", type=lambda v: [int(x) for x in v.split(",") if x], default=[1, 2], help="'' for none"
    )
    args = ap.parse_args()
    if args.scaling:
        scaling(args)
        return

    work = args.workdir or Path(tempfile.mkdtemp(prefix="tuneline-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    raw = work / "raw" / "chats.jsonl"
    raw.parent.mkdir(exist_ok=True)
    t = time.perf_counter()
    planted = generate(raw, args.n)
    print(
        f"generated {args.n:,} records ({raw.stat().st_size / args.n:.0f} bytes/record) in "
        f"{time.perf_counter() - t:.1f}s; planted {planted}",
        file=sys.stderr,
    )
    (work / "params.yaml").write_text("")  # defaults, as shipped

    rows = []
    total_t, total_peak = 0.0, 0
    for stage, stage_args in (
        ("ingest", ["ingest", "raw", "--out", "ingested"]),
        ("clean", ["clean", "ingested", "--out", "cleaned"]),
        ("split", ["split", "cleaned", "--out", "split"]),
    ):
        secs, peak = run_stage(stage_args, work)
        rows.append((f"tuneline {stage}", args.n, secs, peak))
        total_t += secs
        total_peak = max(total_peak, peak)
        print(f"{stage}: {secs:.1f}s", file=sys.stderr)
    rows.append(("tuneline chain", args.n, total_t, total_peak))
    clean_report = CleanReport.read(work / "cleaned" / DATA_REPORT)

    if args.baseline_n:
        sub = work / "raw_baseline.jsonl"
        with open(raw) as src, open(sub, "w") as dst:
            for i, line in enumerate(src):
                if i >= args.baseline_n:
                    break
                dst.write(line)
        secs, peak = run_baseline(sub, work / "baseline_out")
        rows.append(("naive baseline chain", args.baseline_n, secs, peak))

    cpu = f"{os.cpu_count()} cores"
    print(
        f"\nData-prep benchmark ({cpu}, python {sys.version.split()[0]}); clean removed {clean_report.removed}, "
        f"redacted {clean_report.redactions}\n"
    )
    print("| step | records | seconds | records/s | records/min | peak RSS (MiB) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, n, secs, peak in rows:
        print(f"| {name} | {n:,} | {secs:.1f} | {n / secs:,.0f} | {60 * n / secs:,.0f} | {peak / 2**20:,.0f} |")
    if args.baseline_n:
        speedup = (args.n / total_t) / (args.baseline_n / rows[-1][2])
        print(f"\nspeed-up of the tuneline chain over the naive baseline (records/s): {speedup:.1f}x")


if __name__ == "__main__":
    main()
