"""The evaluation report people read: markdown (KFP, MLflow, PR bodies) and a self-contained HTML page.

Charts are PNGs: judge score histogram, pairwise win/tie/loss bar, reference metrics of
candidate vs baseline. The HTML inlines them, so the one file can be attached anywhere.
"""

from __future__ import annotations

import base64
import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from tuneline.results import (
    BENCHMARK_METRICS,
    TOOL_METRICS,
    EvalMetrics,
    Evaluation,
    ExampleRow,
    GateDecision,
    ToolCallRow,
)

CHARTS = ("judge_scores.png", "pairwise.png", "reference_metrics.png")


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def write_charts(out: Path, metrics: EvalMetrics, rows: list[ExampleRow]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    charts = out / "charts"
    charts.mkdir(parents=True, exist_ok=True)
    paths = []

    fig, ax = plt.subplots(figsize=(6, 3.2))
    bins = [b + 0.5 for b in range(0, 11)]
    for key, color in (("candidate", "tab:blue"), ("baseline", "tab:gray")):
        values = [a.judge_score for r in rows if (a := r.answers().get(key)) and a.judge_score is not None]
        if values:
            ax.hist(values, bins=bins, alpha=0.6, label=f"{key} (n={len(values)})", color=color)
    ax.set(xlabel="judge score (1-10)", ylabel="answers", title="Judge scores", xticks=range(1, 11))
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no readable judge score", ha="center", va="center", transform=ax.transAxes)
    paths.append(_save(fig, charts / CHARTS[0]))

    fig, ax = plt.subplots(figsize=(6, 1.8))
    pairwise = metrics.judge.pairwise
    left = 0.0
    for key, color in (("win", "tab:green"), ("tie", "tab:olive"), ("loss", "tab:red")):
        share = (getattr(pairwise, key) if pairwise else None) or 0.0
        ax.barh([0], [share], left=left, color=color, label=f"{key} {share:.0%}")
        left += share
    ax.set(xlim=(0, 1), yticks=[], title=f"Candidate vs baseline (n={pairwise.n if pairwise else 0}, both orders)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=3, frameon=False)
    paths.append(_save(fig, charts / CHARTS[1]))

    fig, ax = plt.subplots(figsize=(6, 3))
    names = ["exact_match", "rouge_l", "token_f1"]
    cand = [metrics.candidate.get(n) or 0.0 for n in names]
    ax.bar([i - 0.2 for i in range(3)], cand, width=0.4, label="candidate", color="tab:blue")
    if metrics.baseline:
        ax.bar(
            [i + 0.2 for i in range(3)],
            [metrics.baseline.get(n) or 0.0 for n in names],
            width=0.4,
            label="baseline",
            color="tab:gray",
        )
    ax.set(xticks=range(3), xticklabels=names, ylim=(0, 1), title="Reference metrics")
    ax.legend()
    paths.append(_save(fig, charts / CHARTS[2]))
    return paths


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def per_category(rows: list[ExampleRow]) -> list[dict[str, Any]]:
    groups: dict[str, list[ExampleRow]] = defaultdict(list)
    for row in rows:
        groups[row.category].append(row)
    table = []
    for category, items in sorted(groups.items()):
        scores = [r.candidate.judge_score for r in items if r.candidate.judge_score is not None]
        outcomes = [r.pairwise.outcome for r in items if r.pairwise and r.pairwise.outcome]
        table.append(
            {
                "category": category,
                "n": len(items),
                "exact_match": sum(r.candidate.scores.exact_match for r in items) / len(items),
                "rouge_l": sum(r.candidate.scores.rouge_l for r in items) / len(items),
                "judge_score": sum(scores) / len(scores) if scores else None,
                "win_rate": (sum(o == "win" for o in outcomes) + sum(o == "tie" for o in outcomes) / 2) / len(outcomes)
                if outcomes
                else None,
            }
        )
    return table


def _judge_sections(metrics: EvalMetrics) -> list[str]:
    """Pairwise rates, the judge against the truth, and against human labels, where measured."""
    j, lines = metrics.judge, []
    pw = j.pairwise
    if pw:
        lines += [
            "",
            "## Pairwise (both orders; a flip between orders is a tie)",
            "",
            f"win {_fmt(pw.win)} · tie {_fmt(pw.tie)} · loss {_fmt(pw.loss)} · "
            f"win rate {_fmt(pw.win_rate)} (n={pw.n}, position-consistent "
            f"{_fmt(pw.position_consistency)})",
        ]
    if j.truth and (j.truth.single or j.truth.pairwise):
        lines += ["", f"## Judge against the truth ({j.truth.truth_metric} of each answer)", ""]
        lines += ["| judgement | n | accuracy | Cohen's kappa |", "|---|---|---|---|"]
        for label, a in (("single grade >= 5.5 means correct", j.truth.single), ("pairwise", j.truth.pairwise)):
            if a:
                lines.append(f"| {label} | {a.n} | {_fmt(a.accuracy)} | {_fmt(a.cohen_kappa)} |")
    if j.agreement:
        a = j.agreement
        lines += [
            "",
            f"Agreement with human labels: accuracy {_fmt(a.accuracy)}, Cohen's kappa {_fmt(a.cohen_kappa)} (n={a.n})",
        ]
    return lines


def markdown(
    metrics: EvalMetrics, gate: GateDecision, rows: list[ExampleRow], run: Evaluation, tools: list[ToolCallRow] = ()
) -> str:
    j = metrics.judge
    lines = [
        f"# Evaluation: {run.candidate}",
        "",
        f"**Gate: {'PASS' if gate.passed else 'FAIL'}**" + ("" if gate.passed else " — " + "; ".join(gate.reasons)),
        "",
        f"- Examples: {metrics.examples} from the `{run.split}` split",
        f"- Baseline: {run.baseline}",
        f"- Judge: {run.judge} ({j.requests} judgements, {j.cache_hits} from cache, "
        f"parse failures {_fmt(j.parse_failure_rate)}, verdicts read by {j.mode})",
        "",
        "## Gate checks",
        "",
        "| check | result | detail |",
        "|---|---|---|",
    ]
    for c in gate.checks:
        result = "skipped" if c.passed is None else ("pass" if c.passed else "**fail**")
        lines.append(f"| {c.name} | {result} | {c.detail} |")
    lines += ["", "## Metrics", "", "| metric | candidate | baseline |", "|---|---|---|"]
    base = metrics.baseline or {}
    for name in ("valid_json", "field_accuracy", "exact_match", "rouge_l", "token_f1", "eval_loss", "perplexity"):
        if name in ("valid_json", "field_accuracy") and name not in metrics.candidate:
            continue  # the answers are not JSON: these do not apply
        lines.append(f"| {name} | {_fmt(metrics.candidate.get(name))} | {_fmt(base.get(name))} |")
    cs, bs = j.candidate_score, j.baseline_score
    lines.append(
        f"| judge score (95% CI) | {_fmt(cs.mean, 2)} [{_fmt(cs.ci_low, 2)}, {_fmt(cs.ci_high, 2)}]"
        f" | {_fmt(bs and bs.mean, 2)} [{_fmt(bs and bs.ci_low, 2)}, {_fmt(bs and bs.ci_high, 2)}] |"
    )
    lines += _judge_sections(metrics)
    lines += _tool_section(metrics, tools)
    lines += benchmark_table(metrics, heading="## Benchmarks")
    lines += ["", "## Charts", ""] + [f"![{c}](charts/{c})" for c in CHARTS]
    lines += [
        "",
        "## Per category",
        "",
        "| category | n | exact match | ROUGE-L | judge score | win rate |",
        "|---|---|---|---|---|---|",
    ]
    for c in per_category(rows):
        lines.append(
            f"| {c['category']} | {c['n']} | {_fmt(c['exact_match'])} | {_fmt(c['rouge_l'])} | "
            f"{_fmt(c['judge_score'], 2)} | {_fmt(c['win_rate'])} |"
        )
    lines += [
        "",
        "## Examples (first 10; all in examples.jsonl)",
        "",
        "| id | reference | candidate | baseline | score | pairwise |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows[:10]:
        cells = [
            r.id,
            r.reference,
            r.candidate.text,
            r.baseline.text if r.baseline else "",
            _fmt(r.candidate.judge_score),
            (r.pairwise.outcome if r.pairwise else None) or "n/a",
        ]
        lines.append("| " + " | ".join(_cell(str(c)) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _tool_section(metrics: EvalMetrics, tools: list[ToolCallRow]) -> list[str]:
    """The tool-calling records' metrics side by side, and the calls the candidate got wrong (first 10)."""
    if not tools:
        return []
    base = metrics.baseline or {}
    lines = [
        "",
        f"## Tool calls ({len(tools)} records; scored by BFCL's rules; all in tool_calls.jsonl)",
        "",
        "| metric | candidate | baseline |",
        "|---|---|---|",
    ]
    lines += [f"| {m} | {_fmt(metrics.candidate.get(m))} | {_fmt(base.get(m))} |" for m in TOOL_METRICS]
    wrong = [r for r in tools if not r.candidate.valid][:10]
    if wrong:
        lines += ["", "| id | expected | candidate called | what was wrong |", "|---|---|---|---|"]
        for r in wrong:
            got = r.candidate.parse_error or r.candidate.error
            cells = [r.id, _calls(r.expected), _calls(r.candidate.calls), f"{r.candidate.error_type}: {got}"]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return lines


def benchmark_table(metrics: EvalMetrics, heading: str = "") -> list[str]:
    """BFCL categories and lm-eval tasks, candidate beside baseline: the report's section under ``heading`` (names
    escaped for markdown), or without one the plain table ``tuneline evaluate`` prints."""
    if not metrics.benchmarks:
        return []
    base = metrics.baseline or {}
    cell = _cell if heading else str
    lines = ["", heading, ""] if heading else []
    lines += ["| suite | task | metric | n | candidate | baseline |", "|---|---|---|---:|---:|---:|"]
    for b in metrics.benchmarks:
        lines.append(
            f"| {b.suite} | {cell(b.task)} | {cell(b.metric)} | {b.n} | {_fmt(b.candidate)} | {_fmt(b.baseline)} |"
        )
    for name in BENCHMARK_METRICS:
        if name in metrics.candidate:
            lines.append(f"| **{name}** | | | | **{_fmt(metrics.candidate[name])}** | **{_fmt(base.get(name))}** |")
    return lines


def _calls(calls: list[dict]) -> str:
    return "; ".join(f"{c.get('name')}({json.dumps(c.get('arguments'), sort_keys=True)})" for c in calls) or "no call"


def _cell(text: str, limit: int = 80) -> str:
    """A table cell of data or model output: one line, shortened, every ASCII punctuation mark backslash-escaped
    so the text renders literally (no links, images, emphasis or HTML from a record)."""
    text = text.replace("\n", " ")
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return _MD_PUNCT.sub(r"\\\1", text)


_MD_PUNCT = re.compile(r"([!-/:-@\[-`{-~])")


def html(markdown_text: str, out: Path) -> str:
    """Self-contained HTML of the markdown report, charts inlined as data URIs.

    The markdown quotes data and model output, so raw HTML in it is escaped (``html: False``), unsafe link
    schemes are dropped by markdown-it's link validation, and a Content-Security-Policy forbids scripts,
    so a record that carries ``<script>`` shows as text wherever the report is opened (MLflow, KFP UI).
    """
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown_text)
    for chart in CHARTS:
        path = out / "charts" / chart
        if path.exists():
            data = base64.b64encode(path.read_bytes()).decode()
            body = body.replace(f'src="charts/{chart}"', f'src="data:image/png;base64,{data}"')
    style = (
        "body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25em .5em}"
    )
    csp = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    return (
        f"<!doctype html><html><head><meta charset='utf-8'>"
        f"<meta http-equiv='Content-Security-Policy' content=\"{csp}\"><title>tuneline evaluation</title>"
        f"<style>{style}</style></head><body>{body}</body></html>\n"
    )
