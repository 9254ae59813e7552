"""The in-process logprob judge: batched, left-padded and length-sorted, it scores each prompt as it would alone."""

from __future__ import annotations

import math

from tests.conftest import order_records
from tuneline.inference.next_token import NextTokenJudge
from tuneline.models.builtin import build_builtin


def test_batched_scores_equal_one_at_a_time_in_the_callers_order(tmp_path) -> None:
    texts = [m["content"] for r in order_records(40, 1) for m in r["messages"]] + [str(d) for d in range(10)]
    model_dir = build_builtin("builtin:tiny", texts, tmp_path / "tiny", seed=3)
    prompts = [
        [{"role": "user", "content": "Rate it: " + "very " * n + "good. Reply with one digit."}]
        for n in (9, 0, 4, 17, 1)
    ]
    judge = NextTokenJudge(model_dir, tuple(str(d) for d in range(1, 10)), batch_size=3)
    batched = judge.top_logprobs(prompts)
    alone = [judge.top_logprobs([p])[0] for p in prompts]
    assert len(batched) == len(prompts)
    for got, want in zip(batched, alone, strict=True):
        assert [t for t, _ in got] == [t for t, _ in want]
        assert all(math.isclose(a, b, abs_tol=1e-4) for (_, a), (_, b) in zip(got, want, strict=True))
    assert {t.strip() for t, _ in batched[0]} == {str(d) for d in range(1, 10)}
    assert batched[0] != batched[3]  # different prompts, different distributions (nothing was mixed up)
