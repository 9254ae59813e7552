"""What one stage hands the next, as typed models, with the file names in one place.

The data stages write an :class:`IngestReport`, :class:`CleanReport` and :class:`SplitReport` (``report.json``,
which is also what a step that ran as a RayJob reads back); the train stage writes a :class:`TrainSummary` and a :class:`ModelManifest` into the model dir; evaluate writes
:class:`EvalMetrics`, a :class:`GateDecision` and an :class:`Evaluation`; the registry describes a version as a
:class:`VersionRecord`, which register writes and promotion reads. The CLI, the DVC metrics, the KFP steps and
registration all read these files through the models (``Model.read(path)``), so a misspelt field is an error,
not a silent None. The JSON on disk is the models' own dump: DVC and MLflow read the same files.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict

from tuneline.io.atomic import write_json_atomic

TRAIN_SUMMARY = "train_summary.json"
MODEL_MANIFEST = "tuneline_model.json"
EVAL_METRICS = "metrics.json"
EVAL_GATE = "gate.json"
EVALUATION = "evaluation.json"
DATA_REPORT = "report.json"


class Result(BaseModel):
    """A stage result: immutable, no unknown fields, written and read as JSON."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def write(self, path: str | Path) -> None:
        write_json_atomic(path, self.model_dump(mode="json"))

    @classmethod
    def read(cls, path: str | Path) -> Self:
        return cls.model_validate_json(Path(path).read_text(encoding="utf-8"))


# ----------------------------------------------------------------------- data stages
Counts = dict[str, int]


class IngestReport(Result):
    """What ingest read, wrote and quarantined (``quarantine.jsonl`` holds each bad record's file, line, reason)."""

    stage: Literal["ingest"] = "ingest"
    files: int
    skipped_files: list[str]
    records: int
    sft: int
    preference: int
    kto: int
    quarantined: int
    bad_fraction: float
    by_source: dict[str, Counts]
    by_format: Counts
    by_reason: Counts
    engine: str
    seconds: float
    records_per_second: float

    @property
    def kept(self) -> int:
        return self.sft + self.preference + self.kto


class GenerateReport(Result):
    """What the generate stage asked, kept and dropped (each drop in ``dropped.jsonl`` with its reason), and what
    the teacher cost."""

    stage: Literal["generate"] = "generate"
    enabled: bool = True  # False: the pipeline's generate step with generate.enabled off wrote an empty output
    method: str
    teacher: str
    seeds: int = 0
    requests: int = 0  # teacher calls the run needed
    cache_hits: int = 0  # of those, answered from the cache (a resumed run pays for none of them again)
    failed: int = 0  # calls the teacher could not answer (after retries)
    kept: int = 0
    dropped: dict[str, int] = {}  # reason -> records
    judged: int = 0  # judge calls (the judge filter, preference ranking)
    prompt_tokens: int = 0  # teacher tokens paid for in this run
    completion_tokens: int = 0
    cost_usd: float | None = None  # generate.price_per_million_tokens × tokens, where a price is set
    budget_exhausted: bool = False  # stopped by generate.max_tokens, with what it had
    seconds: float = 0.0


class CleanReport(Result):
    """Records in and out per kind, removals per rule (each in ``removed.jsonl``), redactions per PII kind."""

    stage: Literal["clean"] = "clean"
    input: Counts
    output: Counts
    removed: Counts
    redactions: Counts
    records_with_pii: int
    normalized: int
    examples: dict[str, list[dict[str, Any]]]
    rules: dict[str, Any]
    engine: str
    workers: int
    seconds: float
    records_per_second: float


class Leakage(Result):
    """Val/test records whose prompt also occurs in train (``leakage.jsonl``), and what was done about them."""

    checked: bool
    action: str
    found: int
    by_kind_split_match: Counts
    examples: list[dict[str, Any]]


class SplitReport(Result):
    stage: Literal["split"] = "split"
    strategy: str
    field: str | None
    seed: int
    ratios: dict[str, float]
    counts: dict[str, Counts]  # kind → split → records
    leakage: Leakage
    seconds: float


# ---------------------------------------------------------------------------- train
class TrainSummary(Result):
    method: str
    base: str
    steps: int
    epochs: float
    tokens_seen: int
    tokens_per_second: float
    peak_memory_gib: float
    peak_memory_kind: str
    planned_memory_gib: float
    wall_time_s: float
    train_time_s: float
    final_train_loss: float
    final_val_loss: float | None
    trainable_params: int
    resumed_from: str | None
    precision: str
    optimizer: str
    device: str
    notes: list[str]
    mlflow_run_id: str | None
    fingerprint: str
    world_size: int

    def numeric(self) -> dict[str, float]:
        """The numeric fields (a KFP Metrics artifact)."""
        return {
            k: float(v) for k, v in self.model_dump().items() if isinstance(v, int | float) and not isinstance(v, bool)
        }


class ModelManifest(Result):
    """Where a trained model dir's parts are, and what produced it."""

    base: str
    base_dir: str | None
    adapter_dir: str
    full_finetune: bool
    merged_dir: str | None
    method: str
    sft_adapter: str | None
    mlflow_run_id: str | None
    git_commit: str | None
    data: dict[str, str]
    params_digest: str
    # where a built-in base's weights come from: package, file, sha256, licence, upstream (None for others)
    base_provenance: dict[str, str] | None = None


# ------------------------------------------------------------------------- evaluate
class ReferenceScores(Result):
    """One answer against its reference; the JSON metrics only where the reference is a JSON object."""

    exact_match: float
    rouge_l: float
    token_f1: float
    valid_json: float | None = None
    field_accuracy: float | None = None


#: The reference metrics, in report order (the schema above is the one list).
REFERENCE_METRICS: tuple[str, ...] = tuple(ReferenceScores.model_fields)


class JudgedAnswer(Result):
    """One model's answer to one example: its text, reference scores, the judge's grade and raw output."""

    text: str
    scores: ReferenceScores
    judge_score: float | None
    judge_output: str | None


class PairwiseJudgement(Result):
    """The judge comparing both answers in both orders; ``outcome`` is the candidate's (win/tie/loss)."""

    candidate_first: Literal["candidate", "baseline", "tie"] | None
    baseline_first: Literal["candidate", "baseline", "tie"] | None
    outcome: Literal["win", "tie", "loss"] | None
    output_candidate_first: str | None
    output_baseline_first: str | None


class ExampleRow(Result):
    """One line of ``examples.jsonl``: an example with both answers and every judgement of them."""

    id: str
    category: str
    question: str
    reference: str
    candidate: JudgedAnswer
    baseline: JudgedAnswer | None = None
    pairwise: PairwiseJudgement | None = None

    def answers(self) -> dict[str, JudgedAnswer]:
        return {"candidate": self.candidate, **({"baseline": self.baseline} if self.baseline else {})}


class Score(Result):
    mean: float | None
    ci_low: float | None
    ci_high: float | None
    n: int


class Pairwise(Result):
    win: float | None
    tie: float | None
    loss: float | None
    win_rate: float | None
    n: int
    position_consistency: float | None = None


class Agreement(Result):
    n: int
    accuracy: float | None
    cohen_kappa: float | None


class TruthAgreement(Result):
    """The judge against reference correctness (where it is known): is its verdict worth trusting?"""

    truth_metric: str
    single: Agreement | None
    pairwise: Agreement | None


class JudgeMetrics(Result):
    mode: str = "generate"  # logprobs | generate: how verdicts were read
    candidate_score: Score
    baseline_score: Score | None
    parse_failure_rate: float | None
    pairwise: Pairwise | None
    agreement: Agreement | None  # against human labels (eval.judge.human_labels)
    truth: TruthAgreement | None = None
    requests: int
    cache_hits: int
    request_errors: int


class ToolAnswer(Result):
    """One model's answer to a tool-calling turn: the calls it made and BFCL's verdict on them."""

    calls: list[dict[str, Any]]
    valid: bool
    error_type: str  # "" when valid; else BFCL's kind: wrong_func_name, missing_required, type_error, ...
    error: str
    parse_error: str | None = None  # it claimed a call that was not valid JSON


class ToolCallRow(Result):
    """A tool-calling test record: what should be called (``[]``: nothing) and each model's answer."""

    id: str
    category: str
    question: str
    expected: list[dict[str, Any]]
    candidate: ToolAnswer
    baseline: ToolAnswer | None = None


#: Tool-call metrics (in ``metrics.json``'s candidate and baseline, beside the reference metrics): all but the
#: parse failure rate are accuracies, higher is better, usable as the gate's primary or regression metrics.
TOOL_METRICS: tuple[str, ...] = (
    "tool_call_accuracy",  # turns whose calls are all right (name, arguments, count), of those that should call
    "tool_name_accuracy",  # turns calling exactly the expected functions, of those that should call
    "tool_argument_accuracy",  # turns with right arguments, of those with the right functions
    "tool_irrelevance_accuracy",  # turns making no call, of those where no call belongs
    "tool_parse_failure_rate",  # answers claiming a call that is not valid JSON, of all tool turns
)


class BenchmarkScore(Result):
    """One benchmark task's score for the candidate and the baseline (eval.benchmarks): a BFCL category's
    accuracy, or an lm-evaluation-harness task's metric."""

    suite: Literal["bfcl", "lm_eval"]
    task: str  # a BFCL category, an lm-eval task
    metric: str  # accuracy (BFCL); the task's own metric name (lm-eval: exact_match, acc, ...)
    n: int  # questions asked
    candidate: float | None
    baseline: float | None = None
    higher_is_better: bool = True

    @property
    def key(self) -> str:
        """Its name in MLflow metrics and registry tags: ``bench.<suite>.<task>.<metric>`` (MLflow's characters)."""
        return re.sub(r"[^\w.\- /]", "_", f"bench.{self.suite}.{self.task}.{self.metric}")


#: The benchmarks' summaries in ``metrics.json``'s candidate and baseline (gate metrics like the others):
#: BFCL accuracy over every question asked, and lm-eval's mean over tasks of each one's first higher-is-better metric.
BENCHMARK_METRICS: tuple[str, ...] = ("bfcl_accuracy", "lm_eval_score")


class EvalMetrics(Result):
    examples: int
    candidate: dict[str, float | None]
    baseline: dict[str, float | None] | None
    judge: JudgeMetrics
    gate_passed: bool | None = None
    tool_examples: int = 0
    benchmarks: list[BenchmarkScore] = []


class GateCheck(Result):
    name: str
    passed: bool | None  # None: skipped
    value: float | None
    threshold: float
    detail: str


class GateDecision(Result):
    passed: bool
    checks: list[GateCheck]
    reasons: list[str]


class Evaluation(Result):
    """What was evaluated against what (the report's header, registration's lineage)."""

    candidate: str
    baseline: str
    baseline_kind: str
    baseline_info: dict[str, Any]
    judge: str
    split: str
    model_dir: str
    train_run_id: str | None
    seconds: float
    mlflow_run_id: str | None = None


# ------------------------------------------------------------------------- registry
class VersionRecord(Result):
    """One registered model version as promotion and ``registry show`` see it (credentials removed)."""

    model_name: str
    version: str
    aliases: list[str]
    gate_recorded: bool
    gate_passed: bool
    gate_reasons: list[str]
    storage_uri: str
    source: str
    run_id: str | None
    input_digest: str | None
    base_model: str | None
    metrics: dict[str, float | str]
    tracking_uri: str
    ui_hint: str
    existing: bool = False  # register found a version with these exact inputs and created none
