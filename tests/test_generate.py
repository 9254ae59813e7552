"""The generate stage: self-instruct, distil and preference against a teacher; filters, budget, resume after kill -9.

The filter tests talk to a stand-in teacher that speaks TGI's contract (tests/tgi_contract.py) and answers by rule,
so that each filter has something to catch; the real teachers (SmolLM2 in-process here, vLLM in
tests/test_serve_vllm.py) show the mechanics end to end.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import read_jsonl, write_jsonl
from tests.tgi_contract import TgiContractServer, chat_completion, chat_completion_logprobs
from tuneline.results import GenerateReport
from tuneline.sample import SYSTEM, order
from tuneline.stages.generate import GenerateError, run_generate
from tuneline.stages.generate.run import DROPPED, GENERATED

# self-instruct: what the teacher proposes for the request of each seed (generate.seed + i)
NEW = {
    2: ("Dear shop, please send three umbrellas to Zed before Friday.", {"name": "Zed", "item": "umbrella", "qty": 3}),
    6: ("My neighbour Yusuf would like a pair of hiking boots delivered.", None),
    3: ("Could you ship kites over to Yara as soon as possible?", "Sure, kites are on their way!"),
    7: ("Write a short poem about autumn leaves falling.", "Leaves drift down, gold and slow."),
}


def seeds(path: Path, n: int = 12) -> list[dict[str, Any]]:
    rng = random.Random(1)
    records = []
    for _ in range(n):
        prompt, answer, _ = order(rng)
        records.append({"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt},
                                     {"role": "assistant", "content": answer}]})  # fmt: skip
    write_jsonl(path, records)
    return records


def teacher_for(records: list[dict[str, Any]]):
    """Self-instruct requests: a copy of a seed (seed % 4 == 0), one word (1), or NEW's instruction. Answers: the
    seed's own answer to a seed's prompt, NEW's answer (JSON or text), {"name": "Yusuf", ...} with qty 2. The judge
    (logprobs) rates Zed's answer 9, anything else 3; pairwise, it prefers the answer that is JSON."""
    known = {r["messages"][1]["content"]: r["messages"][2]["content"] for r in records}

    def reply(path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        text = body["messages"][-1]["content"]
        if body.get("logprobs"):
            if "[Response A]" in text:
                a = text.split("[Response A]\n")[1].split("\n\n[Response B]")[0]
                letter = "A" if a.startswith("{") else "B"
                return 200, chat_completion_logprobs([(letter, -0.1), ("B" if letter == "A" else "A", -4.0)])
            digit = "9" if '"Zed"' in text.split("[Response to judge]")[1] else "3"
            return 200, chat_completion_logprobs([(digit, -0.1), ("5", -5.0)])
        if text.startswith("Here are examples of tasks"):
            seed = body["seed"]
            if seed % 4 == 0:
                return 200, chat_completion(records[seed % len(records)]["messages"][1]["content"])
            return 200, chat_completion("OK" if seed % 4 == 1 else NEW[seed][0])
        if text in known:  # distil, preference: the seed's answer when greedy, chatter when hot
            return 200, chat_completion(known[text] if body.get("temperature", 0) < 1 else f"Sure thing: {text}")
        answer = next((a for q, a in NEW.values() if q == text), "?")
        answer = {"name": "Yusuf", "item": "hiking boots", "qty": 2} if answer is None else answer
        return 200, chat_completion(answer if isinstance(answer, str) else json.dumps(answer))

    return reply


def config_for(make_config, url: str, tmp_path: Path, *overrides: str):
    return make_config(
        f"generate.seeds={tmp_path / 'seeds.jsonl'}", f"generate.teacher.endpoint={url}", f"eval.judge.endpoint={url}",
        f"paths.generate_cache={tmp_path / 'cache.sqlite'}", *overrides,
    )  # fmt: skip


def run(make_config, tmp_path: Path, name: str, *overrides: str) -> tuple[GenerateReport, list, list]:
    records = seeds(tmp_path / "seeds.jsonl")
    with TgiContractServer(teacher_for(records)) as teacher:
        config = config_for(make_config, teacher.url, tmp_path, "generate.n=8", *overrides)
        report = run_generate(config, tmp_path / name, tmp_path / f"{name}.sqlite")
        assert teacher.violations == []
    return report, read_jsonl(tmp_path / name / GENERATED), read_jsonl(tmp_path / name / DROPPED)


def test_self_instruct_keeps_new_instructions_with_the_seeds_structure(make_config, tmp_path) -> None:
    report, kept, dropped = run(make_config, tmp_path, "plain")
    assert report.dropped == {"too_similar": 2, "malformed_instruction": 2, "invalid_structure": 2}
    assert [r["messages"][1]["content"] for r in kept] == [NEW[2][0], NEW[6][0]]
    assert kept[0]["messages"][0] == {"role": "system", "content": SYSTEM}, "asked under the seeds' system prompt"
    assert json.loads(kept[1]["messages"][2]["content"]) == {"name": "Yusuf", "item": "hiking boots", "qty": 2}
    meta = kept[0]["meta"]["generated"]
    assert meta["method"] == "self_instruct" and meta["teacher"].startswith("http://127.0.0.1")
    assert len(meta["seeds"]) == 3 and all(s.startswith(str(tmp_path / "seeds.jsonl") + ":") for s in meta["seeds"])
    assert len(meta["template"]) == 12 and meta["judge_score"] is None
    assert {d["reason"] for d in dropped if d["reason"] == "too_similar" and d["similarity"] == 1.0}
    assert report.requests == 8 + 4 and report.cache_hits == 0 and report.prompt_tokens == 12 * 11

    # each filter changes what is kept
    loose, kept, _ = run(make_config, tmp_path, "loose", "generate.max_similarity=1.0")
    assert loose.dropped["duplicate_exact"] == 2, "the copied seeds' answers duplicate the seeds themselves"
    judged, kept, dropped = run(make_config, tmp_path, "judged", "generate.min_judge_score=5")
    assert [r["messages"][1]["content"] for r in kept] == [NEW[2][0]] and judged.dropped["low_judge_score"] == 1
    assert kept[0]["meta"]["generated"]["judge_score"] > 8 and judged.judged == 2
    broke, kept, _ = run(make_config, tmp_path, "budget", "generate.max_tokens=1", "generate.teacher.concurrency=2")
    assert broke.budget_exhausted and kept == [] and broke.prompt_tokens == 8 * 11, "one round, then it stops"
    assert broke.dropped["not_generated"] == 4


def test_distil_and_preference(make_config, tmp_path) -> None:
    report, kept, dropped = run(make_config, tmp_path, "distil", "generate.method=distil", "generate.n=4")
    assert kept == [] and report.dropped == {"duplicate_exact": 4}, "the teacher's answers are the seeds' own"
    report, kept, _ = run(
        make_config, tmp_path, "pref", "generate.method=preference", "generate.n=4",
        "generate.preference_temperatures=[0.2,1.2]",
    )  # fmt: skip
    assert report.kept == 4 and report.judged == 8
    for record in kept:
        assert json.loads(record["chosen"]) and record["rejected"].startswith("Sure thing")
        assert record["prompt"][0]["role"] == "system" and record["meta"]["generated"]["method"] == "preference"


def test_the_judges_verdicts_as_unpaired_kto_records(make_config, tmp_path) -> None:
    """generate.kto: preference's pairs come apart (chosen desirable, rejected not); a judged self-instruct answer
    below min_judge_score is an undesirable example instead of a dropped one. They ingest as KTO records."""
    from tuneline.config import ConfigError
    from tuneline.stages.ingest.run import run_ingest

    report, kept, _ = run(
        make_config, tmp_path, "pref", "generate.method=preference", "generate.n=4", "generate.kto=true"
    )
    assert report.kept == 8 and [r["label"] for r in kept] == [True, False] * 4
    assert all(json.loads(r["completion"]) for r in kept if r["label"]), "the judge prefers the JSON answer"
    report, kept, _ = run(make_config, tmp_path, "si", "generate.min_judge_score=5", "generate.kto=true")
    assert "low_judge_score" not in report.dropped and [r["label"] for r in kept] == [True, False]
    assert kept[0]["meta"]["generated"]["judge_score"] > 8 > 4 > kept[1]["meta"]["generated"]["judge_score"]
    sources = _sources([str(tmp_path / "pref" / GENERATED), str(tmp_path / "si" / GENERATED)])
    ingested = run_ingest(make_config(f"paths.raw={tmp_path / 'none'}"), sources, tmp_path / "i")
    assert ingested.kto == 10 and ingested.quarantined == 0
    with pytest.raises(ConfigError, match="generate.kto: self_instruct and distil label answers by the judge"):
        make_config("generate.kto=true")


def test_generated_records_ingest_as_they_are(make_config, tmp_path) -> None:
    from tuneline.stages.ingest.run import run_ingest

    run(make_config, tmp_path, "out")
    run(make_config, tmp_path, "pref", "generate.method=preference", "generate.n=4")
    config = make_config(f"paths.raw={tmp_path / 'none'}")
    sources = [str(tmp_path / "out" / GENERATED), str(tmp_path / "pref" / GENERATED)]
    report = run_ingest(config, _sources(sources), tmp_path / "i")
    assert report.sft == 2 and report.preference == 4 and report.quarantined == 0
    record = read_jsonl(tmp_path / "i" / "sft.jsonl")[0]
    assert record["meta"]["generated"]["method"] == "self_instruct", "provenance survives ingest"


def test_the_pipeline_step_generates_only_when_enabled_and_ingest_reads_it_then(make_config, tmp_path) -> None:
    """What dvc repro and the KFP components run: `generate --pipeline-step` (off: an empty output, on: the
    teacher's records), then ingest, which adds them to data.sources only when generate.enabled."""
    from tuneline.pipeline import steps

    raw = tmp_path / "raw"
    records = seeds(raw / "seeds.jsonl")
    base = (f"paths.raw={raw}", f"generate.seeds={raw / 'seeds.jsonl'}", f"paths.generated={tmp_path / 'gen'}",
            f"paths.generate_cache={tmp_path / 'cache.sqlite'}", "generate.n=8")  # fmt: skip
    sets = [a for s in base for a in ("--set", s)]
    off = subprocess.run([sys.executable, "-m", "tuneline", "generate", "--pipeline-step", *sets],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert off.returncode == 0 and "generate.enabled is false" in off.stdout, off.stderr[-2000:]
    assert GenerateReport.read(tmp_path / "gen" / "report.json").enabled is False
    assert (tmp_path / "gen" / GENERATED).read_text() == "" and not (tmp_path / "cache.sqlite").exists()

    with TgiContractServer(teacher_for(records)) as teacher:
        config = make_config(*base, "generate.enabled=true", f"generate.teacher.endpoint={teacher.url}",
                             f"eval.judge.endpoint={teacher.url}")  # fmt: skip
        steps.generate(config.model_dump_json(), str(tmp_path / "kfp-gen"), str(tmp_path / "gen.md"), "run-1")
    assert "| kept | 2 |" in (tmp_path / "gen.md").read_text()
    counts = {}
    for name, generated in (("with", str(tmp_path / "kfp-gen")), ("without", "")):
        steps.ingest(config.model_dump_json(), str(tmp_path / name), str(tmp_path / f"{name}.md"), "run-1", generated)
        counts[name] = len(read_jsonl(tmp_path / name / "sft.jsonl"))
    assert counts == {"with": len(records) + 2, "without": len(records)}, "a pipeline without the step ignores it"


def _sources(uris: list[str]):
    from tuneline.config.schema import Source

    return [Source(uri=u) for u in uris]


def test_bad_seeds_and_teachers_fail_clearly(make_config, tmp_path) -> None:
    write_jsonl(tmp_path / "seeds.jsonl", [{"messages": [{"role": "user", "content": "hi"}]}])
    (tmp_path / "seeds.jsonl").write_text((tmp_path / "seeds.jsonl").read_text() + "not json\n[1]\n")
    config = make_config(f"generate.seeds={tmp_path / 'seeds.jsonl'}", "generate.teacher.model=no/such-model",
                         f"paths.generate_cache={tmp_path / 'c.sqlite'}")  # fmt: skip
    with pytest.raises(GenerateError, match="generate.teacher.model 'no/such-model' is neither"):
        run_generate(config, tmp_path / "out")
    write_jsonl(tmp_path / "bad.jsonl", [{"text": "no prompt"}])
    with pytest.raises(GenerateError, match=r"bad.jsonl holds no usable seed \(1 unreadable"):
        run_generate(make_config(f"generate.seeds={tmp_path / 'bad.jsonl'}"), tmp_path / "out")
    records = seeds(tmp_path / "seeds.jsonl")
    (tmp_path / "seeds.jsonl").write_text((tmp_path / "seeds.jsonl").read_text() + "not json\n")
    with TgiContractServer(teacher_for(records)) as teacher:
        run_generate(config_for(make_config, teacher.url, tmp_path, "generate.n=2"), tmp_path / "out")
    (problem,) = [d for d in read_jsonl(tmp_path / "out" / DROPPED) if d["reason"] == "unreadable_seed"]
    assert problem["file"] == str(tmp_path / "seeds.jsonl") and problem["line"] == 13


def test_a_run_killed_mid_way_resumes_without_asking_an_answered_call_again(make_config, tmp_path) -> None:
    records = seeds(tmp_path / "seeds.jsonl", n=24)
    args = [
        f"generate.seeds={tmp_path / 'seeds.jsonl'}", "generate.method=distil", "generate.n=24", "generate.samples=2",
        "generate.teacher.concurrency=1", f"paths.generate_cache={tmp_path / 'cache.sqlite'}",
    ]  # fmt: skip
    with TgiContractServer(teacher_for(records), delay_s=0.15) as teacher:
        sets = [a for arg in [*args, f"generate.teacher.endpoint={teacher.url}"] for a in ("--set", arg)]
        command = [sys.executable, "-m", "tuneline", "generate", "--out", str(tmp_path / "out"), *sets]
        proc = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while len(teacher.requests) < 12 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        first = len(teacher.requests)
        assert 12 <= first < 48, "killed mid-way"
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        asked = [json.dumps([b["messages"], b.get("seed"), b.get("temperature")]) for _, b, _ in teacher.requests]
    assert len(set(asked)) == 48, "every call asked"
    assert len(asked) - 48 <= 1, "at most the call in flight at the kill is asked again"
    report = GenerateReport.read(tmp_path / "out" / "report.json")
    assert report.cache_hits >= first - 1 and report.requests == 48


def test_the_in_process_teacher_samples_reproducibly(make_config, tmp_path) -> None:
    """SmolLM2-135M-Instruct in-process: two samples per prompt, the same again from a fresh cache."""
    seeds(tmp_path / "seeds.jsonl", n=2)
    overrides = (
        f"generate.seeds={tmp_path / 'seeds.jsonl'}", "generate.method=distil", "generate.n=2", "generate.samples=2",
        "generate.max_new_tokens=24", "generate.teacher.model=builtin:smollm2-135m",
    )  # fmt: skip
    first = run_generate(make_config(*overrides), tmp_path / "a", tmp_path / "a.sqlite")
    again = run_generate(make_config(*overrides), tmp_path / "b", tmp_path / "b.sqlite")
    assert first.requests == 4 and first.cache_hits == 0 and first.completion_tokens > 0
    answers = [d["answer"] for d in read_jsonl(tmp_path / "a" / DROPPED) if d["reason"] == "invalid_structure"]
    answers += [r["messages"][-1]["content"] for r in read_jsonl(tmp_path / "a" / GENERATED)]
    assert len(answers) == 4 and len(set(answers)) > 2, "sampled: the two samples of a prompt differ"
    assert (tmp_path / "a" / DROPPED).read_text() == (tmp_path / "b" / DROPPED).read_text()
    assert again.completion_tokens == first.completion_tokens
    cached = run_generate(make_config(*overrides), tmp_path / "c", tmp_path / "a.sqlite")
    assert cached.cache_hits == 4 and cached.prompt_tokens == 0, "a second run pays for nothing"


def test_self_instruct_and_preference_run_in_process_with_the_in_process_judge(make_config, tmp_path) -> None:
    """All in this process: SmolLM2 writes instructions and answers, SmolLM2 in logprob mode judges them."""
    write_jsonl(tmp_path / "seeds.jsonl", [{"prompt": order(random.Random(i))[0]} for i in range(4)])
    common = (
        f"generate.seeds={tmp_path / 'seeds.jsonl'}", "generate.n=2", "generate.max_new_tokens=24",
        "generate.teacher.model=builtin:smollm2-135m", "eval.judge.model=builtin:smollm2-135m", "generate.max_similarity=1",
    )  # fmt: skip
    si = run_generate(make_config(*common, "generate.min_judge_score=1"), tmp_path / "si", tmp_path / "c.sqlite")
    asked = si.requests - 2  # the two instruction requests, then one answer per instruction kept
    assert si.failed == 0 and si.judged == asked and si.kept + sum(si.dropped.values()) == 2, si
    assert all(r["meta"]["generated"]["judge_score"] >= 1 for r in read_jsonl(tmp_path / "si" / GENERATED))
    pref = run_generate(make_config(*common, "generate.method=preference"), tmp_path / "p", tmp_path / "c.sqlite")
    assert pref.requests == 4 and pref.failed == 0 and pref.kept + sum(pref.dropped.values()) == 2, pref
    assert pref.judged == 2 * (2 - pref.dropped.get("identical_answers", 0)), "each pair judged in both orders"
    for record in read_jsonl(tmp_path / "p" / GENERATED):
        assert record["chosen"] != record["rejected"] and record["meta"]["generated"]["method"] == "preference"


@pytest.mark.parametrize(
    ("answer", "instruction"),
    [
        (
            "Task 4: Send two lamps to Ana.\nShe needs them by Friday.",
            "Send two lamps to Ana.\nShe needs them by Friday.",
        ),
        ("She wanted a bike.\nTask 2: Zara missed her sister.\nTask 3: more", "She wanted a bike."),  # listing on
        ('"Ship a kite to Yara."\n\nHere is why: ...', "Ship a kite to Yara."),
        ("OK", None),
        ("", None),
        ("word " * 300, None),
    ],
)
def test_a_self_instruct_answer_yields_its_own_task_only(answer: str, instruction: str | None) -> None:
    from tuneline.stages.generate.methods import parse_instruction

    assert parse_instruction(answer) == instruction
