"""The ``tuneline`` command: thin shells over the stage functions.

Every command takes ``--config params.yaml`` and repeatable ``--set a.b=value`` overrides
(the syntax of ``dvc exp run -S``). Expected failures (bad config, bad data, missing
inputs) print one clear message and exit non-zero, never a stack trace.
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import typer
from rich.console import Console

from tuneline.config import ConfigError, TunelineConfig, json_schema, load_config
from tuneline.config.schema import Source
from tuneline.errors import TunelineError
from tuneline.io.atomic import OutputRefused
from tuneline.progress import console, setup_logging
from tuneline.redact import redact_text, secret_from_env
from tuneline.results import VersionRecord

app = typer.Typer(
    help="tuneline: conversations → fine-tuned, evaluated, registered, served LLM.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
config_app = typer.Typer(help="Inspect and validate params.yaml.", no_args_is_help=True)
app.add_typer(config_app, name="config")

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="Config file (default: ./params.yaml if present).")
]
SetOpt = Annotated[list[str] | None, typer.Option("--set", "-S", help="Override a config value: KEY.PATH=VALUE.")]
F = TypeVar("F", bound=Callable[..., Any])
stdout = Console(highlight=False, soft_wrap=True)  # results; logs and progress go to stderr


def friendly(fn: F) -> F:
    """Turn expected errors into a one-line message and an exit code (2: config, 1: stage)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        setup_logging()
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            console.print(f"[bold red]config error:[/] {redact_text(str(exc))}", highlight=False)
            raise typer.Exit(2) from None
        except OutputRefused as exc:
            console.print(f"[bold red]{fn.__name__} refused:[/] {redact_text(str(exc))}", highlight=False)
            raise typer.Exit(2) from None
        except TunelineError as exc:  # every expected failure: its message is the user's one line
            console.print(f"[bold red]{fn.__name__} failed:[/] {redact_text(str(exc))}", highlight=False)
            raise typer.Exit(exc.exit_code) from None
        except OSError as exc:  # a path the user gave that cannot be written or read (a file in the way, no access)
            where = f": {exc.filename}" if exc.filename else ""
            reason = exc.strerror or type(exc).__name__
            console.print(f"[bold red]{fn.__name__} failed:[/] {reason}{redact_text(str(where))}", highlight=False)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _load(config: Path | None, overrides: list[str] | None) -> TunelineConfig:
    return load_config(config, overrides or ())


@app.command()
@friendly
def ingest(
    sources: Annotated[
        list[str] | None, typer.Argument(help="Files, globs, dirs, s3:// gs:// https:// URIs, hf:NAME.")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Output directory (default: paths.ingested).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="Record format for SRC arguments (auto detects).")] = "auto",
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Read raw sources into canonical sft.jsonl / preference.jsonl, quarantining bad records."""
    from tuneline.stages.ingest import run_ingest

    cfg = _load(config, set_)
    try:
        srcs = [Source(uri=s, format=fmt) for s in sources] if sources else None
    except ValueError as exc:
        raise ConfigError(f"--format: {exc.errors()[0]['msg']}") from None  # type: ignore[attr-defined]
    result = run_ingest(cfg, srcs, out or Path(cfg.paths.ingested))
    stdout.print(
        f"ingested → {out or cfg.paths.ingested}: {result.sft} sft, {result.preference} preference, {result.kto} kto, "
        f"{result.quarantined} quarantined"
    )


@app.command()
@friendly
def generate(
    out: Annotated[Path | None, typer.Option(help="Output directory (default: paths.generated).")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    pipeline_step: Annotated[
        bool,
        typer.Option(
            "--pipeline-step", help="As dvc repro runs it: with generate.enabled off, write an empty output and stop."
        ),
    ] = False,
) -> None:
    """Grow training data with a teacher (self-instruct, distil, preference); filtered, deduplicated, resumable."""
    from tuneline.stages.generate import run_generate, skip_generate

    cfg = _load(config, set_)
    out = out or Path(cfg.paths.generated)
    if pipeline_step and not cfg.generate.enabled:
        skip_generate(cfg, out)
        stdout.print(f"generate.enabled is false: nothing generated (empty {out}; ingest does not read it)")
        return
    r = run_generate(cfg, out)
    cost = "" if r.cost_usd is None else f", ${r.cost_usd:.4f}"
    stdout.print(
        f"generated → {out}: kept {r.kept}, dropped {sum(r.dropped.values())} {r.dropped or ''}; teacher calls "
        f"{r.requests} ({r.cache_hits} from cache, {r.failed} failed), {r.prompt_tokens + r.completion_tokens} "
        f"tokens{cost}" + ("; stopped by the token budget" if r.budget_exhausted else "")
    )


@app.command()
@friendly
def clean(
    src: Annotated[Path | None, typer.Argument(help="Ingest output directory (default: paths.ingested).")] = None,
    out: Annotated[Path | None, typer.Option(help="Output directory (default: paths.cleaned).")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Normalize, redact PII, filter and deduplicate; every removal is recorded with its rule."""
    from tuneline.stages.clean import run_clean

    cfg = _load(config, set_)
    out = out or Path(cfg.paths.cleaned)
    result = run_clean(cfg, src or Path(cfg.paths.ingested), out)
    stdout.print(
        f"cleaned → {out}: kept {result.output}, removed {sum(result.removed.values())} {result.removed or ''}"
    )


@app.command()
@friendly
def split(
    src: Annotated[Path | None, typer.Argument(help="Clean output directory (default: paths.cleaned).")] = None,
    out: Annotated[Path | None, typer.Option(help="Output directory (default: paths.split).")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Split into train/val/test deterministically and audit train→val/test leakage."""
    from tuneline.stages.split import run_split

    cfg = _load(config, set_)
    out = out or Path(cfg.paths.split)
    result = run_split(cfg, src or Path(cfg.paths.cleaned), out)
    stdout.print(f"split → {out}: {result.counts}, leaked {result.leakage.found}")


@app.command()
@friendly
def train(
    src: Annotated[Path | None, typer.Argument(help="Split directory (default: paths.split).")] = None,
    out: Annotated[Path | None, typer.Option(help="Model directory (default: paths.model).")] = None,
    checkpoints: Annotated[Path | None, typer.Option(help="Checkpoint directory (default: paths.checkpoints).")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Fine-tune the base model (QLoRA/LoRA SFT or DPO); resumes from the newest complete checkpoint."""
    from tuneline.launch.training import launch_training

    cfg = _load(config, set_)
    out = out or Path(cfg.paths.model)
    s = launch_training(cfg, src or cfg.paths.split, out, checkpoints or cfg.paths.checkpoints)
    val = f", val loss {s.final_val_loss:.4f}" if s.final_val_loss is not None else ""
    stdout.print(
        f"train → {out}: {s.steps} steps, loss {s.final_train_loss:.4f}{val}, "
        f"{s.tokens_per_second:,.0f} tok/s, peak {s.peak_memory_gib:.2f} GiB, mlflow run {s.mlflow_run_id}"
    )


@app.command()
@friendly
def evaluate(
    model: Annotated[Path | None, typer.Argument(help="Model directory (default: paths.model).")] = None,
    split_dir: Annotated[Path | None, typer.Option("--split", help="Split directory (default: paths.split).")] = None,
    out: Annotated[Path | None, typer.Option(help="Output directory (default: paths.eval).")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Compare the candidate with a baseline: reference metrics, LLM-as-judge, quality gate, report."""
    from tuneline.stages.evaluate import run_evaluate
    from tuneline.stages.evaluate.report import benchmark_table

    cfg = _load(config, set_)
    result = run_evaluate(cfg, model, split_dir, out)
    m, g = result.metrics, result.gate
    score = m.judge.candidate_score.mean
    rate = m.judge.pairwise.win_rate if m.judge.pairwise else None
    failures = m.judge.parse_failure_rate

    def num(value: float | None, spec: str) -> str:
        return "n/a" if value is None else format(value, spec)

    stdout.print(
        f"evaluate → {result.out}: exact match {num(m.candidate.get('exact_match'), '.3f')}, ROUGE-L "
        f"{num(m.candidate.get('rouge_l'), '.3f')}, judge score {num(score, '.2f')}, win rate {num(rate, '.3f')}, "
        f"judge parse failures {num(failures, '.0%')}"
    )
    for line in benchmark_table(m):  # BFCL categories and lm-eval tasks, candidate beside baseline
        stdout.print(line, markup=False, highlight=False)
    stdout.print(f"gate: {'PASS' if g.passed else 'FAIL'}" + ("" if g.passed else " — " + "; ".join(g.reasons)))
    for check in g.checks:  # one line each: what was measured, what it was held to
        status = "skipped" if check.passed is None else ("pass" if check.passed else "FAIL")
        stdout.print(f"  {status:7} {check.name}: {check.detail}")


@app.command()
@friendly
def register(
    model: Annotated[Path | None, typer.Argument(help="Model directory (default: paths.model).")] = None,
    eval_dir: Annotated[Path | None, typer.Option("--eval", help="Evaluate output (default: paths.eval).")] = None,
    out: Annotated[Path | None, typer.Option(help="Registration record (default: paths.registration).")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Register the model in MLflow with its lineage; alias `candidate` when the gate passed."""
    from tuneline.stages.register import run_register

    cfg = _load(config, set_)
    r = run_register(cfg, model, eval_dir, out)
    _print_registration(r.record)


def _print_registration(record: VersionRecord) -> None:
    aliases = ", ".join(f"@{a}" for a in record.aliases) or "none"
    stdout.print(
        f"registered: {record.model_name} version {record.version}{' (already registered)' if record.existing else ''}"
    )
    stdout.print(f"aliases: {aliases}")
    stdout.print(
        f"gate: {'PASS' if record.gate_passed else 'FAIL'}"
        + ("" if record.gate_passed else " — " + "; ".join(record.gate_reasons))
    )
    stdout.print(f"storage: {record.storage_uri}")
    stdout.print(f"see it: {record.ui_hint}")


registry_app = typer.Typer(help="Read the MLflow model registry.", no_args_is_help=True)
app.add_typer(registry_app, name="registry")


@registry_app.command("show")
@friendly
def registry_show(
    version: Annotated[str | None, typer.Option(help="Version number (default: the latest).")] = None,
    alias: Annotated[str | None, typer.Option(help="Show the version carrying this alias instead.")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Show a registered version: aliases, gate result, lineage tags and where its artifacts are."""
    from tuneline.stages.register import describe_version

    cfg = _load(config, set_)
    _print_registration(describe_version(cfg, version=version, alias=alias))


mlflow_app = typer.Typer(help="Local MLflow tracking server.", no_args_is_help=True)
app.add_typer(mlflow_app, name="mlflow")


@mlflow_app.command("up")
@friendly
def mlflow_up(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 5000,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Serve the UI over the configured SQLite store (`registry.tracking_uri`) with an artifact proxy."""
    import os

    cfg = _load(config, set_)
    store = cfg.registry.tracking_uri
    if not store.startswith(("sqlite:", "postgresql", "mysql", "file:")) and "://" in store:
        raise ConfigError(f"registry.tracking_uri is a server ({store}); open it in a browser instead")
    cmd = [
        str(Path(sys.executable).parent / "mlflow"),
        "server",
        "--backend-store-uri",
        store,
        "--artifacts-destination",
        str(Path("mlartifacts").resolve()),
        "--host",
        host,
        "--port",
        str(port),
    ]
    stdout.print(
        f"MLflow UI on http://{host}:{port} (Ctrl-C to stop); then export MLFLOW_TRACKING_URI=http://{host}:{port}"
    )
    os.execv(cmd[0], cmd)  # noqa: S606 - replaces this process with the server


pipeline_app = typer.Typer(help="Kubeflow Pipelines: compile, submit, run locally.", no_args_is_help=True)
app.add_typer(pipeline_app, name="pipeline")


@pipeline_app.command("compile")
@friendly
def pipeline_compile(
    check: Annotated[bool, typer.Option(help="Write nothing; exit 1 when a committed file is stale.")] = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Compile pipelines/tuneline.yaml and components/*/component.yaml (defaults from params.yaml)."""
    from tuneline.pipeline.compile import compile_all, stale

    cfg = _load(config, set_)
    _write_generated(check, lambda: stale(cfg), lambda: compile_all(cfg), "tuneline pipeline compile")


def _write_generated(check: bool, stale: Callable[[], list[Path]], write: Callable[[], list[Path]], fix: str) -> None:
    """Write committed generated files, or with ``check`` list the stale ones and exit 1 if there are any."""
    if check:
        paths = stale()
        for path in paths:
            console.print(f"[bold red]stale:[/] {path} (run: {fix})", highlight=False)
        raise typer.Exit(1 if paths else 0)
    for path in write():
        stdout.print(f"wrote {path}")


def _pipeline_args(params: list[str] | None, gpu: str | None, cfg: TunelineConfig) -> dict[str, Any]:
    import json

    import yaml

    from tuneline.gpu_pools import UnknownGpuError, scheduling

    args: dict[str, Any] = {}
    for item in params or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--param {item!r}: expected NAME=VALUE")
        args[key] = yaml.safe_load(value)
    if "config_overrides" in args and not isinstance(args["config_overrides"], str):
        args["config_overrides"] = json.dumps(args["config_overrides"])
    if gpu:
        try:
            args["gpu_node_selector"] = scheduling(cfg, gpu).node_selector
        except UnknownGpuError as exc:
            raise ConfigError(f"--gpu: {exc}") from None
    return args


ParamOpt = Annotated[list[str] | None, typer.Option("--param", "-p", help="Pipeline parameter NAME=VALUE (YAML).")]
GpuOpt = Annotated[str | None, typer.Option(help="GPU pool for training (sets gpu_node_selector), e.g. l4.")]


@pipeline_app.command("submit")
@friendly
def pipeline_submit(
    package: Annotated[Path, typer.Option(help="Compiled pipeline.")] = Path("pipelines/tuneline.yaml"),
    host: Annotated[str | None, typer.Option(help="KFP API URL (default: kubeflow.host; none: in-cluster).")] = None,
    namespace: Annotated[str | None, typer.Option(help="Namespace (default: kubeflow.namespace).")] = None,
    experiment: Annotated[str | None, typer.Option(help="Experiment (default: kubeflow.experiment).")] = None,
    run_name: Annotated[str | None, typer.Option(help="Run name (default: tuneline-<time>).")] = None,
    param: ParamOpt = None,
    gpu: GpuOpt = None,
    wait: Annotated[bool, typer.Option(help="Follow the run until it ends; exit 1 unless it succeeded.")] = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Start a run of the compiled pipeline on a KFP endpoint and print its URL."""
    import time

    from tuneline.pipeline.submit import submit

    cfg = _load(config, set_)
    if not package.is_file():
        raise ConfigError(f"--package: {package} not found; run `tuneline pipeline compile`")
    name = run_name or time.strftime("tuneline-%Y%m%d-%H%M%S")
    result = submit(cfg, package, _pipeline_args(param, gpu, cfg), name, host, namespace, experiment, wait)
    stdout.print(f"run {result.run_id}: {result.url}")
    if wait:
        stdout.print(f"state: {result.state}")
        if result.state != "SUCCEEDED":
            raise typer.Exit(1)


@pipeline_app.command("run-local")
@friendly
def pipeline_run_local(
    root: Annotated[Path, typer.Option(help="Pipeline root: one folder per run, per task, per output.")] = Path(
        "kfp-local"
    ),
    param: ParamOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Run the whole pipeline here with kfp.local (subprocesses, CPU, offline), same DAG as on the cluster."""
    from tuneline.pipeline.local import run_local

    cfg = _load(config, set_)
    run_dir = run_local(cfg, root, _pipeline_args(param, None, cfg))
    stdout.print(f"pipeline finished: {run_dir}")
    for summary in sorted(run_dir.glob("*/summary")):
        stdout.print(summary.read_text(encoding="utf-8"))


infra_app = typer.Typer(help="GPU node pools shared by infra/, the training step and the chart.", no_args_is_help=True)
app.add_typer(infra_app, name="infra")


@infra_app.command("export")
@friendly
def infra_export(
    infra_dir: Annotated[Path, typer.Option("--dir", help="The infra/ folder holding eks/ and gke/.")] = Path("infra"),
    check: Annotated[bool, typer.Option(help="Write nothing; exit 1 when a committed file is stale.")] = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Write infra/{eks,gke}/gpu_pools.auto.tfvars.json from params.yaml (plan.gpus + infra.gpu_pools)."""
    from tuneline.gpu_pools import export_tfvars, stale_tfvars

    cfg = _load(config, set_)
    _write_generated(
        check, lambda: stale_tfvars(cfg, infra_dir), lambda: export_tfvars(cfg, infra_dir), "tuneline infra export"
    )


@infra_app.command("scheduling")
@friendly
def infra_scheduling(
    gpu: Annotated[str, typer.Argument(help="A GPU with a node pool (infra.gpu_pools).")],
    cloud: Annotated[str | None, typer.Option(help="eks | gke (default: infra.cloud).")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Print the nodeSelector and tolerations that put a pod on that GPU's pool, as JSON."""
    import json

    from tuneline.gpu_pools import CLOUDS, UnknownGpuError, scheduling

    cfg = _load(config, set_)
    if cloud not in (None, *CLOUDS):
        raise ConfigError(f"--cloud: expected eks or gke, got {cloud!r}")
    try:
        result = scheduling(cfg, gpu, cloud)  # type: ignore[arg-type]
    except UnknownGpuError as exc:
        raise ConfigError(str(exc)) from None
    sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")


@app.command()
@friendly
def plan(
    model: Annotated[
        str | None, typer.Option(help="Base model: preset (llama-2-7b...), builtin:*, dir or hub id.")
    ] = None,
    method: Annotated[str | None, typer.Option(help="qlora | lora | full | dpo | kto (default: train.method).")] = None,
    seq_len: Annotated[int | None, typer.Option(help="Sequence length (default: model.max_seq_length).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Per-GPU batch (default: train.batch_size).")] = None,
    tokens: Annotated[float, typer.Option(help="Training tokens per epoch, for time and cost.")] = 10e6,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Estimate peak GPU memory, the smallest fitting GPU, time and cost for a fine-tune."""
    from tuneline.planner import make_plan

    cfg = _load(config, set_)
    if method not in (None, "qlora", "lora", "full", "dpo", "kto"):
        raise ConfigError(f"--method: expected qlora, lora, full, dpo or kto, got {method!r}")
    if not math.isfinite(tokens) or tokens <= 0 or tokens > 1e18:
        raise ConfigError(f"--tokens: expected a positive number of tokens up to 1e18, got {tokens!r}")
    for flag, value in (("--seq-len", seq_len), ("--batch-size", batch_size)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag}: expected a positive integer, got {value}")
    try:
        result = make_plan(
            cfg, base=model, method=method, seq_len=seq_len, batch_size=batch_size, train_tokens=int(tokens)
        )
    except ValueError as exc:
        raise ConfigError(f"--model: {exc}") from None
    if as_json:
        sys.stdout.write(result.to_json() + "\n")
        return
    _print_plan(result, cfg.train.epochs)


def _print_plan(result: Any, epochs: float) -> None:
    from rich.table import Table

    from tuneline.planner import node_selectors

    memory = Table(title=f"{result.base} · {result.method} · seq {result.seq_len} × batch {result.batch_size}")
    memory.add_column("memory term")
    memory.add_column("GiB", justify="right")
    for name, gib in result.memory.rows():
        memory.add_row(name, f"{gib:.2f}")
    stdout.print(memory)
    gpus = Table(title=f"{result.train_tokens * epochs:,.0f} training tokens")
    for col in ("GPU", "memory GiB", "fits", "tokens/s", "hours", "cost USD"):
        gpus.add_column(col, justify="left" if col == "GPU" else "right")
    for o in result.options:
        gpus.add_row(
            o.gpu.name,
            f"{o.gpu.memory_gib:g}",
            "yes" if o.fits else "no",
            f"{o.tokens_per_second:,.0f}",
            f"{o.hours:.2f}",
            f"{o.cost_usd:.2f}",
        )
    stdout.print(gpus)
    if result.recommended:
        labels = ", ".join(
            f"{cloud}: {k}={v}" for cloud, sel in node_selectors(result.recommended).items() for k, v in sel.items()
        )
        stdout.print(f"recommended: {result.recommended.name} ({labels})")
    else:
        stdout.print("no GPU in the catalogue fits: use qlora, a shorter sequence, a smaller batch or several GPUs")


@app.command()
@friendly
def sample(
    out: Annotated[Path, typer.Option(help="Directory to write the sample raw data into.")] = Path("data/raw"),
    n: Annotated[int, typer.Option(help="Number of task examples.")] = 600,
    seed: Annotated[int, typer.Option(help="Generator seed.")] = 0,
    task: Annotated[
        Literal["orders", "tools"],
        typer.Option(help="orders: the bundled orders→JSON task; tools: tool-calling records (OpenAI format)."),
    ] = "orders",
) -> None:
    """(Re)generate the bundled sample dataset (several formats, with deliberate defects), or a tool-calling one."""
    from tuneline.sample import write_sample
    from tuneline.tool_sample import write_tool_sample

    files = (write_tool_sample if task == "tools" else write_sample)(out, n=n, seed=seed)
    stdout.print(f"wrote {len(files)} files to {out}")


@config_app.command("schema")
@friendly
def config_schema(
    out: Annotated[Path | None, typer.Option(help="Write the JSON Schema here instead of stdout.")] = None,
) -> None:
    """Print the JSON Schema of params.yaml (for yaml-language-server and review)."""
    text = json_schema()
    if out is None:
        sys.stdout.write(text)
    else:
        from tuneline.io.atomic import write_text_atomic

        write_text_atomic(out, text)


plots_app = typer.Typer(help="The `dvc plots show` page, self-contained offline.", no_args_is_help=True)
app.add_typer(plots_app, name="plots")


@plots_app.command("template")
@friendly
def plots_template(
    out: Annotated[Path, typer.Option(help="Where .dvc/config's plots.html_template points.")] = Path(
        ".dvc/plots_template.html"
    ),
) -> None:
    """Write the HTML template with vega, vega-lite and vega-embed inlined (`make setup` runs it)."""
    from tuneline.plots_page import write_template

    stdout.print(f"wrote {write_template(out)}")


deploy_app = typer.Typer(help="Serving: the chart's generated defaults and the Argo CD apps.", no_args_is_help=True)
app.add_typer(deploy_app, name="deploy")


@deploy_app.command("export")
@friendly
def deploy_export(
    root: Annotated[Path, typer.Option("--root", help="Repository root.")] = Path("."),
    check: Annotated[bool, typer.Option(help="Write nothing; exit 1 when a committed file is stale.")] = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Write charts/tuneline/files/platform.json and deploy/argocd/<env>.yaml from params.yaml (serve, images)."""
    from tuneline.serving.gitops import export, stale

    cfg = _load(config, set_)
    _write_generated(check, lambda: stale(cfg, root), lambda: export(cfg, root), "tuneline deploy export")


@app.command("promote")
@friendly
def promote(
    env: Annotated[str, typer.Option("--env", help="Target environment (serve.environments).")],
    version: Annotated[str | None, typer.Option(help="Registered version to promote.")] = None,
    alias: Annotated[
        str | None, typer.Option(help="Promote the version carrying this alias (default: candidate).")
    ] = None,
    force: Annotated[bool, typer.Option(help="Promote even though the evaluation gate failed or is missing.")] = False,
    reason: Annotated[
        str | None, typer.Option(help="Why --force: recorded in the commit and the pull request.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the values diff and the PR body; change nothing.")
    ] = False,
    repo: Annotated[Path, typer.Option(help="The git checkout to promote from.")] = Path("."),
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Open a pull request that points an environment's values at a registered model version."""
    from tuneline.serving import promote as promotion

    cfg = _load(config, set_)
    if dry_run:
        result = promotion.plan(cfg, env, version, alias, force, reason, repo=repo)
        stdout.print(f"branch: {result.branch}\n\n{result.diff}\n--- pull request: {result.title}\n\n{result.body}")
        return
    result = promotion.promote(cfg, env, version, alias, force, reason, repo=repo)
    stdout.print(f"pushed {result.branch} ({result.commit[:12] if result.commit else ''})")
    stdout.print(f"pull request: {result.pr_url}")


@registry_app.command("sync-alias")
@friendly
def registry_sync_alias(
    env: Annotated[str, typer.Option("--env", help="Environment whose values file names the version.")],
    repo: Annotated[Path, typer.Option(help="Repository root.")] = Path("."),
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Set the environment's MLflow alias on the version its values deploy (the promotion follow-up)."""
    from tuneline.serving.promote import sync_alias

    name, version, alias = sync_alias(_load(config, set_), env, repo)
    stdout.print(f"{name} v{version} is now @{alias}")


@app.command("smoke")
@friendly
def smoke(
    url: Annotated[str, typer.Option(help="Root URL of the inference server (TGI, vLLM, transformers serve).")],
    model: Annotated[str | None, typer.Option(help="Model (or LoRA adapter) name to ask; default: /v1/models.")] = None,
    prompt: Annotated[str, typer.Option(help="The one user message sent.")] = "Say hello in five words.",
    max_tokens: Annotated[int, typer.Option(min=1, help="Tokens to generate.")] = 16,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds per request.")] = 120.0,
    token_env: Annotated[
        str, typer.Option(help="Env var with a bearer token, if the endpoint needs one.")
    ] = "TUNELINE_ENDPOINT_TOKEN",
    token_header: Annotated[
        str, typer.Option(help="Header that carries the token: Authorization (bearer) or an API-key header.")
    ] = "Authorization",
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Health check plus one chat completion, with latencies; exit 1 when either fails."""
    import json

    from tuneline.serving.smoke import smoke as run_smoke

    result = run_smoke(url, model, prompt, max_tokens, timeout, secret_from_env(token_env), token_header)
    if json_out:
        sys.stdout.write(json.dumps(result.to_dict()) + "\n")
        return
    stdout.print(f"health: HTTP {result.health_status} in {result.health_s * 1000:.0f} ms")
    stdout.print(
        f"chat ({result.model}): {result.chat_s * 1000:.0f} ms, {result.completion_tokens} tokens: "
        f"{result.reply.strip()[:200]!r}"
    )
    stdout.print("smoke: OK")


ModelDirArg = Annotated[
    Path | None, typer.Argument(help="A trained model dir (default: paths.model); or pick a registered version.")
]
VersionOpt = Annotated[str | None, typer.Option("--version", help="A registered version of registry.model_name.")]
AliasOpt = Annotated[str | None, typer.Option("--alias", help="The registered version with this alias.")]


def _serve_target(cfg: TunelineConfig, model_dir: Path | None, version: str | None, alias: str | None, work: Path):
    from tuneline.errors import ServeError
    from tuneline.serving.target import from_model_dir, from_registry

    if sum(x is not None for x in (model_dir, version, alias)) > 1:
        raise ServeError("give one of MODEL_DIR, --version and --alias")
    if version or alias:
        return from_registry(cfg, version, alias, work)
    return from_model_dir(cfg, model_dir or Path(cfg.paths.model))


@app.command("serve")
@friendly
def serve(
    model_dir: ModelDirArg = None,
    version: VersionOpt = None,
    alias: AliasOpt = None,
    chat: Annotated[bool, typer.Option("--chat", help="Also start Open WebUI against it (offline).")] = False,
    port: Annotated[int | None, typer.Option(help="API port (default: serve.local.port).")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Serve the fine-tuned model on vLLM (OpenAI-compatible API) until Ctrl-C; --chat adds a chat page."""
    import contextlib
    import tempfile

    from tuneline.errors import ServeError
    from tuneline.serving.local import ChatPage, VllmServer, chat_python, ready_message
    from tuneline.serving.vllm import engine_python

    cfg = _load(config, set_)
    engine_python(cfg)  # a missing engine (or chat page) is said before anything is downloaded or started
    if chat:
        chat_python(cfg)
    with tempfile.TemporaryDirectory(prefix="tuneline-serve-") as work, contextlib.ExitStack() as stack:
        target = _serve_target(cfg, model_dir, version, alias, Path(work))
        server = VllmServer(cfg, target, port, log_path=Path(work) / "vllm.log")
        url = stack.enter_context(server)
        chat_url = stack.enter_context(ChatPage(cfg, url)) if chat else None
        stdout.print(ready_message(url, target, chat_url))
        _stop_on_signals()
        try:
            code = server.wait()
        except KeyboardInterrupt:
            stack.close()  # the servers first: nothing, not even a stalled terminal, may delay stopping them
            console.print("stopped")
            return
        raise ServeError(f"vLLM exited with code {code}:\n{server.log_tail()}")


def _stop_on_signals() -> None:
    """SIGINT and SIGTERM both stop the servers (the ``except KeyboardInterrupt`` above). Without this, `kill`
    (systemd, a container stop) would end this process and leave vLLM and Open WebUI running in their own
    sessions, and a serve started from a non-interactive shell's background (which ignores SIGINT) could not be
    stopped by SIGINT at all."""
    import signal

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupt)


adapters_app = typer.Typer(help="Adapters on a running vLLM server: list, swap in a new version, publish.")
app.add_typer(adapters_app, name="adapters")
UrlOpt = Annotated[str, typer.Option(help="Root URL of the vLLM server.")]


@adapters_app.command("list")
@friendly
def adapters_list(url: UrlOpt = "http://127.0.0.1:8000") -> None:
    """The names a request may send now (base and loaded adapters)."""
    from tuneline.serving.adapters import served_models

    for name in served_models(url, secret_from_env("TUNELINE_ENDPOINT_TOKEN")):
        stdout.print(name)


@adapters_app.command("swap")
@friendly
def adapters_swap(
    model_dir: ModelDirArg = None,
    version: VersionOpt = None,
    alias: AliasOpt = None,
    url: UrlOpt = "http://127.0.0.1:8000",
    retire: Annotated[list[str] | None, typer.Option(help="Adapter names to unload afterwards (repeatable).")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Serve a new version on a running server without a restart: published to the store, loaded under its
    version name, reloaded in place under the stable name, the retired names unloaded."""
    import tempfile

    from tuneline.errors import ServeError
    from tuneline.serving.adapters import publish, swap

    cfg = _load(config, set_)
    with tempfile.TemporaryDirectory(prefix="tuneline-swap-") as work:
        target = _serve_target(cfg, model_dir, version, alias, Path(work))
        if not target.adapters:
            raise ServeError(f"{target.model_dir} is a full fine-tune, not an adapter: deploy it with a restart")
        store = Path(cfg.serve.local.adapter_store)
        stable, *named = target.adapters
        published = publish(stable.path, store, (named[0] if named else stable).name, target.engine_model)
        token = secret_from_env("TUNELINE_ENDPOINT_TOKEN")
        swap(url, stable.name, published.name, published, retire or (), token)
    stdout.print(f"{stable.name} now serves {published.name} ({published})")


@adapters_app.command("publish")
@friendly
def adapters_publish(
    model_dir: ModelDirArg = None,
    version: VersionOpt = None,
    alias: AliasOpt = None,
    store: Annotated[Path | None, typer.Option(help="Adapter store (default: serve.local.adapter_store).")] = None,
    base: Annotated[
        str | None,
        typer.Option(help="The servers' --model (the chart's model.base, e.g. /mnt/models/base); default: local."),
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Publish a version into the adapter store: every vLLM replica resolves it on the first request naming it."""
    import tempfile

    from tuneline.errors import ServeError
    from tuneline.serving.adapters import publish

    cfg = _load(config, set_)
    with tempfile.TemporaryDirectory(prefix="tuneline-publish-") as work:
        target = _serve_target(cfg, model_dir, version, alias, Path(work))
        if not target.adapters:
            raise ServeError(f"{target.model_dir} is a full fine-tune, not an adapter: nothing to publish")
        adapter = target.adapters[-1]
        store = store or Path(cfg.serve.local.adapter_store)
        path = publish(adapter.path, store, adapter.name, base or target.engine_model)
    stdout.print(f"published {adapter.name} to {path}")


@config_app.command("show")
@friendly
def config_show(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Validate params.yaml (with overrides) and print the effective config."""
    import yaml

    sys.stdout.write(yaml.safe_dump(_load(config, set_).model_dump(mode="json"), sort_keys=False))


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
