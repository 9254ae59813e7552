"""The clean stage on real files: normalization, PII, quality, dedup, audit trail, determinism."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import chat, read_jsonl, write_jsonl
from tuneline.stages.clean import CleanError, run_clean

LONG = (
    "The quarterly report shows revenue grew in every region while costs stayed flat, "
    "and the board approved the new hiring plan for the data platform team next year."
)


def ingested(tmp_path: Path, sft: list[dict], pref: list[dict] | None = None) -> Path:
    d = tmp_path / "ingested"
    write_jsonl(d / "sft.jsonl", [dict(r, id=f"s{i}", source="t", meta={}) for i, r in enumerate(sft)])
    write_jsonl(d / "preference.jsonl", [dict(r, id=f"p{i}", source="t", meta={}) for i, r in enumerate(pref or [])])
    return d


def test_end_to_end_rules_and_audit(tmp_path: Path, make_config):
    src = ingested(
        tmp_path,
        [
            chat("Is cafe\u0301 ok?\x07", "Ｙｅｓ\u200b."),  # s0 normalized (NFC composes; full-width stays)
            chat("mail me: bob@example.com", "ok"),  # s1 PII
            chat(LONG, "Noted."),  # s2 kept
            chat(LONG.replace("flat", "flat,").upper(), "noted."),  # s3 near dup of s2 (case, punctuation)
            chat("  " + LONG + "  ", "Noted."),  # s4 exact dup of s2 after normalization
            chat("spam " * 40, "spam spam spam spam spam spam"),  # s5 repetition
            {"messages": [{"role": "assistant", "content": "lonely"}]},  # s6 too few turns
            chat("\u200b\u200b", "x"),  # s7 empty after normalization
        ],
        pref=[
            {
                "prompt": [{"role": "user", "content": "call 415-555-2671?"}],
                "chosen": [{"role": "assistant", "content": "yes"}],
                "rejected": [{"role": "assistant", "content": "no"}],
            }
        ],
    )
    res = run_clean(make_config(), src, tmp_path / "c")
    kept = {r["id"]: r for r in read_jsonl(tmp_path / "c/sft.jsonl")}
    assert set(kept) == {"s0", "s1", "s2"}
    assert kept["s0"]["messages"][0]["content"] == "Is café ok?" and kept["s0"]["messages"][1]["content"] == "Ｙｅｓ."
    assert kept["s1"]["messages"][0]["content"] == "mail me: [EMAIL]"
    pref = read_jsonl(tmp_path / "c/preference.jsonl")
    assert pref[0]["prompt"][0]["content"] == "call [PHONE]?"
    removed = {r["id"]: r for r in read_jsonl(tmp_path / "c/removed.jsonl")}
    assert {k: v["rule"] for k, v in removed.items()} == {
        "s3": "near_dedup",
        "s4": "exact_dedup",
        "s5": "quality.repetition",
        "s6": "quality.min_turns",
        "s7": "quality.empty_after_cleaning",
    }
    assert removed["s4"]["detail"] == "same text as s2" and removed["s3"]["detail"] == "near duplicate of s2"
    assert res.redactions == {"email": 1, "phone": 1}
    assert res.removed["near_dedup"] == 1
    assert res.examples["pii.email"] == [{"id": "s1", "redacted": "mail me: [EMAIL]"}]
    assert res.input == {"sft": 8, "preference": 1, "kto": 0}
    assert res.output == {"sft": 3, "preference": 1, "kto": 0}


def test_rules_are_switchable(tmp_path: Path, make_config):
    src = ingested(tmp_path, [chat(LONG, "a"), chat(LONG, "a"), chat("x@example.com", "b")])
    run_clean(
        make_config("clean.exact_dedup.enabled=false", "clean.near_dedup.enabled=false", "clean.pii.enabled=false"),
        src,
        tmp_path / "c",
    )
    kept = read_jsonl(tmp_path / "c/sft.jsonl")
    assert len(kept) == 3 and kept[2]["messages"][0]["content"] == "x@example.com"


def test_near_dedup_threshold_is_configurable(tmp_path: Path, make_config):
    words = LONG.split()
    variant = " ".join(words[:-4] + ["completely", "different", "closing", "words"])
    src = ingested(tmp_path, [chat(LONG, "a"), chat(variant, "a")])
    run_clean(make_config("clean.near_dedup.threshold=0.5"), src, tmp_path / "loose")
    run_clean(make_config("clean.near_dedup.threshold=0.95"), src, tmp_path / "strict")
    assert len(read_jsonl(tmp_path / "loose/sft.jsonl")) == 1
    assert len(read_jsonl(tmp_path / "strict/sft.jsonl")) == 2


def test_result_does_not_depend_on_worker_count(tmp_path: Path, make_config):
    recs = [chat(f"{LONG} variant {i % 37} " + "x" * (i % 5), f"answer {i % 11}") for i in range(3000)]
    src = ingested(tmp_path, recs)
    run_clean(make_config("clean.workers=1"), src, tmp_path / "one")
    run_clean(make_config("clean.workers=2"), src, tmp_path / "two")
    for name in ("sft.jsonl", "removed.jsonl"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    assert 0 < len(read_jsonl(tmp_path / "one/sft.jsonl")) < 3000


def test_token_length_filter_uses_the_configured_tokenizer(tmp_path: Path, make_config):
    tokenizers = pytest.importorskip("tokenizers")
    transformers = pytest.importorskip("transformers")
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel({"[UNK]": 0, "hello": 1}, unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(tmp_path / "tok")
    src = ingested(tmp_path, [chat("hello " * 3, "ok"), chat("hello " * 30, "ok")])
    res = run_clean(
        make_config(
            "clean.quality.enabled=false",
            "clean.token_length.enabled=true",
            "clean.token_length.max_tokens=20",
            f"clean.token_length.tokenizer={tmp_path / 'tok'}",
        ),
        src,
        tmp_path / "c",
    )
    assert res.removed == {"token_length": 1}
    # 30 "hello" + 1 "ok" + 4 template tokens per message
    assert read_jsonl(tmp_path / "c/removed.jsonl")[0]["detail"] == "39 tokens > 20"


def test_token_length_with_builtin_model_and_missing_input_fail_clearly(tmp_path: Path, make_config):
    src = ingested(tmp_path, [chat("a", "b")])
    with pytest.raises(CleanError, match="clean.token_length.tokenizer"):
        run_clean(make_config("clean.token_length.enabled=true"), src, tmp_path / "c")
    with pytest.raises(CleanError, match="run `tuneline ingest` first"):
        run_clean(make_config(), tmp_path / "nothing", tmp_path / "c")


# Our own text: Chinese with full-width punctuation, and units with superscripts.
ZH_ANSWER = (
    "好的，我来说明一下退货流程：首先，请在收到商品后的十四天内登录账户，在“我的订单”页面找到需要退货的商品，"
    "点击“申请退货”并选择原因（例如尺寸不合适、颜色与描述不符或者商品有损坏）。其次，系统会生成一张退货标签，"
    "请把它打印出来贴在包裹外面；如果没有打印机，也可以到附近的服务网点请工作人员帮忙。然后，把商品连同原包装、"
    "说明书和赠品一起放回箱子里，交给快递员或者送到指定的快递柜。最后，我们收到包裹并检查无误后，"
    "会在三到五个工作日内把货款退回到您原来的付款账户！如果超过七天还没有收到退款，请随时联系客服，我们会尽快处理。"
    "另外，定制商品和已经拆封的食品不支持无理由退货，敬请谅解？"
)


def test_chinese_text_survives_clean_unchanged_and_nfkc_stays_an_option(tmp_path: Path, make_config):
    units = "加速度的单位是 m/s²，碳酸根离子写作 CO₃²⁻。"
    src = ingested(tmp_path, [chat("请问怎么退货？", ZH_ANSWER), chat("单位怎么写？", units)])
    run_clean(make_config(), src, tmp_path / "out")
    kept = read_jsonl(tmp_path / "out/sft.jsonl")
    assert [r["messages"][1]["content"] for r in kept] == [ZH_ANSWER, units]  # NFC, the default: nothing rewritten
    assert kept[0]["messages"][0]["content"] == "请问怎么退货？"

    run_clean(make_config("clean.normalize.form=NFKC"), src, tmp_path / "nfkc")
    folded = [r["messages"][1]["content"] for r in read_jsonl(tmp_path / "nfkc/sft.jsonl")]
    assert "m/s2," in folded[1] and "CO32\u2212" in folded[1] and "，" not in folded[0]  # what NFKC does, on request


def test_near_dedup_catches_a_small_edit_in_text_without_spaces(tmp_path: Path, make_config):
    assert len(ZH_ANSWER) > 250
    edited = ZH_ANSWER.replace("十四天内", "三十天内", 1)  # three characters of one answer changed
    other = ZH_ANSWER[::-1]  # the same characters in another order: not a near duplicate
    src = ingested(tmp_path, [chat("请问怎么退货？", ZH_ANSWER), chat("请问怎么退货？", edited), chat("倒过来", other)])
    run_clean(make_config(), src, tmp_path / "out")
    kept = [r["messages"][1]["content"] for r in read_jsonl(tmp_path / "out/sft.jsonl")]
    assert kept == [ZH_ANSWER, other]
    [removed] = read_jsonl(tmp_path / "out/removed.jsonl")
    assert removed["rule"] == "near_dedup"


def test_tool_calls_and_kto_records_through_ingest_clean_split(tmp_path: Path, make_config):
    """PII inside a tool call's arguments and in reasoning is redacted like any text; calls survive intact
    otherwise; dedup tells calls apart; KTO records flow to kto/ with their labels."""
    from tests.format_fixtures import SHAPES
    from tuneline.config.schema import Source
    from tuneline.stages.ingest import run_ingest
    from tuneline.stages.split import run_split, split_path

    def tool_chat(email: str, code: str) -> dict:
        call = {"name": "send_receipt", "arguments": {"to": email, "order": code, "copies": 2}}
        return {
            "messages": [
                {"role": "user", "content": f"Send the receipt for {code}, please."},
                {"role": "assistant", "content": "", "reasoning_content": f"Mail it to {email}.", "tool_calls": [call]},
                {"role": "tool", "content": "sent"},
                {"role": "assistant", "content": "Done, the receipt is on its way."},
            ]
        }

    kto = [r for r, kind, _ in SHAPES.values() if kind == "kto"]
    raw = write_jsonl(
        tmp_path / "raw" / "mixed.jsonl",
        [tool_chat("ann@example.com", "A-1"), tool_chat("bo@example.org", "B-2"), *kto],
    )
    cfg = make_config(
        "clean.quality.min_chars=1", "split.ratios.train=1.0", "split.ratios.val=0", "split.ratios.test=0"
    )
    run_ingest(cfg, [Source(uri=str(raw))], tmp_path / "ingested")
    result = run_clean(cfg, tmp_path / "ingested", tmp_path / "cleaned")
    sft = read_jsonl(tmp_path / "cleaned" / "sft.jsonl")
    assert len(sft) == 2, "two calls that differ only in their arguments are not duplicates"
    call = sft[0]["messages"][1]
    assert call["tool_calls"][0]["function"] == {
        "name": "send_receipt",
        "arguments": {"to": "[EMAIL]", "order": "A-1", "copies": 2},
    }
    assert call["reasoning_content"] == "Mail it to [EMAIL]."
    assert result.redactions["email"] == 4
    assert "example.com" not in (tmp_path / "cleaned" / "sft.jsonl").read_text()
    # the four KTO shapes hold two distinct (prompt, answer, label) records: exact dedup keeps one of each
    assert sorted(r["label"] for r in read_jsonl(tmp_path / "cleaned" / "kto.jsonl")) == [False, True]
    assert result.removed["exact_dedup"] == 2

    run_split(cfg, tmp_path / "cleaned", tmp_path / "split")
    labels = sorted(r["label"] for r in read_jsonl(split_path(tmp_path / "split", "kto", "train")))
    assert labels == [False, True]


def test_the_repetition_bound_decides_as_the_full_ratio_does():
    """repetition_above skips the 3-grams when the words alone bound the ratio; it must decide exactly as the
    ratio itself, at every limit, also on texts made to sit right at the limits."""
    import random

    from tuneline.stages.clean.text import repetition_above, repetition_ratio

    rng = random.Random(3)
    texts = [" ".join(rng.choices("abcdefgh"[: rng.randint(1, 8)], k=rng.randint(0, 30))) for _ in range(3000)]
    kept = 0
    for text in texts:
        for limit in (0.1, 0.25, 1 / 3, 0.5, 0.6, 0.75, 0.9, 1.0):
            ratio = repetition_ratio(text)
            assert repetition_above(text, limit) == (ratio if ratio > limit else None), (text, limit)
            kept += ratio > limit
    assert 0 < kept < len(texts) * 8


def test_prompt_text_collapses_every_unicode_whitespace_as_a_regex_would():
    """The leakage key splits on str's whitespace; it must equal collapsing re's \\s runs, for every code point."""
    import re
    import sys

    from tuneline.stages.clean.text import prompt_text

    spaces = "".join(c for c in map(chr, range(sys.maxunicode + 1)) if re.fullmatch(r"\s", c))
    content = f"{spaces}Ask{spaces[::-1]}ME  twice\u3000ok{spaces}"
    rec = {"messages": [{"role": "user", "content": content}, {"role": "assistant", "content": "a"}]}
    assert prompt_text(rec, "sft") == re.sub(r"\s+", " ", content).strip().casefold() == "ask me twice ok"


def test_the_exact_key_folds_the_split_words_as_it_folds_the_text():
    """folded_text folds the joined words of the content instead of splitting the folded text again: equal only
    if casefold maps no character to or from whitespace and is idempotent, which is checked here for every code
    point; then on hostile text, and on messages with reasoning and tool calls (which take the full text)."""
    import random
    import sys

    from tuneline.stages.clean.text import folded_text, message_text

    for c in map(chr, range(sys.maxunicode + 1)):
        folded = c.casefold()
        assert (folded == c) if c.isspace() else not any(f.isspace() for f in folded), hex(ord(c))
        assert folded.casefold() == folded, hex(ord(c))
    rng = random.Random(5)
    alphabet = "aZß\u0130\u03a3\u03c2 \t\n\x1c\x1f\u00a0\u2028\u3000\ufb03Ǆ"
    messages = [{"role": "user", "content": "".join(rng.choices(alphabet, k=rng.randint(0, 20)))} for _ in range(2000)]
    messages += [
        {"role": "assistant", "content": "Ok  ", "reasoning_content": "Think \u00a0 HARD"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": {"q": "A  B"}}}]},
    ]
    for m in messages:
        reference = " ".join(message_text(m).casefold().split())
        assert folded_text(m, m["content"].split()) == folded_text(m) == reference, m


def test_unchanged_records_keep_their_line_and_changed_ones_are_written_anew(tmp_path: Path, make_config):
    """clean writes an unchanged record's input line as it is (orjson reads back what it wrote, byte for byte)
    and serializes again only the records a rule changed: the same output as serializing every record. An input
    written by another tool keeps its own formatting for unchanged records; parsed, the output is the same."""
    import json

    import orjson

    topics = ["weather", "invoices", "gardening", "chess", "sailing"]
    recs = [
        dict(chat(f"How do I start with {t}? Asking for {i} friends.", f"Begin with {t} basics, step {i}."),
            id=f"s{i}", source="t", meta={"n": 1.5e-7, "é": "ü\u2028"})
        for i, t in enumerate(topics)
    ]  # fmt: skip
    recs[2]["messages"][0]["content"] += " Mail me at someone@example.com"
    outs = {}
    for name, dump in (("orjson", lambda r: orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE)),
                       ("json", lambda r: (json.dumps(r, ensure_ascii=False) + "\n").encode())):  # fmt: skip
        src = tmp_path / name
        src.mkdir()
        lines = [dump(r) for r in recs]
        (src / "sft.jsonl").write_bytes(b"".join(lines))
        run_clean(make_config(), src, tmp_path / f"{name}-out")
        out = (tmp_path / f"{name}-out" / "sft.jsonl").read_bytes().splitlines(keepends=True)
        assert [out[i] for i in (0, 1, 3, 4)] == [lines[i] for i in (0, 1, 3, 4)], name
        assert b"[EMAIL]" in out[2] and out[2] == orjson.dumps(orjson.loads(out[2]), option=orjson.OPT_APPEND_NEWLINE)
        outs[name] = [orjson.loads(line) for line in out]
    assert outs["orjson"] == outs["json"] and len(outs["json"]) == 5
