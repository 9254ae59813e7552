"""Judge logic: verdict parsing on real and junk outputs, position-swap combination, statistics, agreement."""

from __future__ import annotations

import math

import pytest

from tuneline.stages.evaluate import judge as jd


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is correct. Rating: [[8]]", 8.0),
        ("Rating: [[ 7.5 ]]", 7.5),
        ("[[10]] is what it deserves", 10.0),
        ("rating: 6/10", 6.0),
        ("**Score:** 3", 3.0),
        ("Rating: [[4]] ... on reflection Rating: [[9]]", 4.0),  # first verdict counts, as in MT-Bench
    ],
)
def test_parse_score_reads_the_rating(text: str, expected: float) -> None:
    assert jd.parse_score(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "great answer!",
        "Rating: [[11]]",
        "Rating: [[0]]",
        "[[A]]",
        "\ufffd(\ufffd key 2026Eme keyEme",
        "7",
        "Rating: [[-3]]",
    ],
)
def test_parse_score_rejects_junk_and_out_of_range(text: str) -> None:
    assert jd.parse_score(text) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A is more accurate. [[A]]", "A"),
        ("[[B]]", "B"),
        ("Both equal: [[C]]", "C"),
        ("[[ B ]]", "B"),
        ("[[A]] ... [[A]]", "A"),
        ("[[A]] no wait [[B]]", None),  # two different verdicts: ambiguous
        ("A is better", None),
        ("[[D]]", None),
        ("", None),
        ("Rating: [[8]]", None),
    ],
)
def test_parse_verdict(text: str, expected: str | None) -> None:
    assert jd.parse_verdict(text) == expected


def test_verdict_letters_map_to_the_model_shown_in_that_position() -> None:
    assert jd.as_verdict("A", candidate_is_a=True) == "candidate"
    assert jd.as_verdict("A", candidate_is_a=False) == "baseline"
    assert jd.as_verdict("B", candidate_is_a=False) == "candidate"
    assert jd.as_verdict("C", candidate_is_a=True) == "tie"
    assert jd.as_verdict(None, candidate_is_a=True) is None


@pytest.mark.parametrize(
    ("first", "second", "outcome"),
    [
        ("candidate", "candidate", "win"),
        ("baseline", "baseline", "loss"),
        ("candidate", "baseline", "tie"),  # the judge followed the position, not the answer
        ("baseline", "candidate", "tie"),
        ("tie", "candidate", "tie"),
        ("tie", "tie", "tie"),
        (None, "candidate", None),
        ("candidate", None, None),
    ],
)
def test_both_orders_combine_into_one_outcome(first, second, outcome) -> None:
    assert jd.combine(first, second) == outcome


def test_a_judge_that_always_picks_position_a_yields_only_ties() -> None:
    """Position bias cancels: 'A' in both orders means candidate once, baseline once."""
    first = jd.as_verdict(jd.parse_verdict("[[A]]"), candidate_is_a=True)
    second = jd.as_verdict(jd.parse_verdict("[[A]]"), candidate_is_a=False)
    assert jd.combine(first, second) == "tie"


def test_pairwise_rates_count_ties_half_and_skip_failures() -> None:
    rates = jd.pairwise_rates(["win", "win", "tie", "loss", None])
    assert rates["n"] == 4
    assert (rates["win"], rates["tie"], rates["loss"]) == (0.5, 0.25, 0.25)
    assert rates["win_rate"] == pytest.approx(0.625)
    assert jd.pairwise_rates([None, None])["win_rate"] is None


def test_mean_ci_is_the_student_t_interval() -> None:
    out = jd.mean_ci([1.0, 2.0, 3.0])
    half = 4.302652729911275 * 1.0 / math.sqrt(3)  # t(0.975, df=2) * sd / sqrt(n)
    assert out["mean"] == 2.0 and out["n"] == 3
    assert out["ci_low"] == pytest.approx(2.0 - half) and out["ci_high"] == pytest.approx(2.0 + half)
    assert jd.mean_ci([5.0])["ci_low"] is None
    assert jd.mean_ci([])["mean"] is None


def test_agreement_with_human_labels() -> None:
    judge = {"a": "win", "b": "loss", "c": "tie", "d": "win", "e": None}
    human = {"a": "win", "b": "loss", "c": "win", "d": "win", "e": "tie", "z": "loss"}
    out = jd.agreement(judge, human)
    assert out["n"] == 4 and out["accuracy"] == 0.75
    # kappa by hand: p_o = .75; judge marginals win .5 loss .25 tie .25; human win .75 loss .25
    p_e = 0.5 * 0.75 + 0.25 * 0.25
    assert out["cohen_kappa"] == pytest.approx((0.75 - p_e) / (1 - p_e))
    assert jd.agreement({"a": None}, {"a": "win"})["accuracy"] is None


def test_bundled_prompts_render_with_every_field() -> None:
    prompts = jd.Prompts.load()
    single = prompts.single_messages("Q-TEXT", "REF-TEXT", "ANS-TEXT")[0]["content"]
    assert all(s in single for s in ("Q-TEXT", "REF-TEXT", "ANS-TEXT", prompts.rubric, "[[N]]"))
    pair = prompts.pairwise_messages("Q", "R", "FIRST-ANSWER", "SECOND-ANSWER")[0]["content"]
    assert pair.index("FIRST-ANSWER") < pair.index("SECOND-ANSWER")
    assert "[[C]]" in pair


def test_prompts_dir_overrides_one_template_and_keeps_the_rest(tmp_path) -> None:
    (tmp_path / "rubric.txt").write_text("Only correctness matters.")
    prompts = jd.Prompts.load(tmp_path)
    assert prompts.rubric == "Only correctness matters."
    assert prompts.single == jd.Prompts.load().single
    assert "Only correctness matters." in prompts.single_messages("q", "r", "a")[0]["content"]


def test_a_template_with_a_wrong_placeholder_fails_before_any_request(tmp_path) -> None:
    (tmp_path / "single.txt").write_text("{rubric} {question} {reference} {answr}")
    with pytest.raises(ValueError, match="single.txt.*answer"):
        jd.Prompts.load(tmp_path)


def test_render_question_keeps_multi_turn_context() -> None:
    prompt = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "order?"},
    ]
    assert jd.render_question(prompt) == "User: hi\nAssistant: hello\nUser: order?"
    assert jd.render_question(prompt[:1]) == "hi"
