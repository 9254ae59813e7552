"""The judge of generated data: ``eval.judge``'s model and prompts, always in logprob mode (a verdict every time),
each judgement cached like a teacher call.

A generated answer has no reference, so the judge's templates get a note saying so in its place; scores are on
the judge's 1-10 scale, pairwise verdicts are asked in both orders and combined as evaluate combines them (a
flip between orders is a tie).
"""

from __future__ import annotations

from collections.abc import Callable

from tuneline.config import TunelineConfig
from tuneline.inference.cache import CallCache, cache_key
from tuneline.inference.client import Endpoint, EndpointError, run_all
from tuneline.stages.evaluate import judge as jd
from tuneline.stages.generate.teacher import local_model_dir

NO_REFERENCE = "(none: judge the response on its own, for correctness, helpfulness and following the request)"
Request = tuple[tuple[str, ...], list[dict[str, str]]]  # (labels, messages)


class Judge:
    def __init__(self, config: TunelineConfig, cache: CallCache) -> None:
        self.config, self.cache = config, cache
        self.prompts = jd.Prompts.load(config.eval.judge.prompts_dir)
        self.calls = 0

    def scores(self, items: list[tuple[str, str]], tick: Callable[[int], None]) -> list[float | None]:
        """The judge's 1-10 score of each (question, answer)."""
        requests = [(jd.SCORE_TOKENS, self.prompts.single_messages(q, NO_REFERENCE, a, "logprobs")) for q, a in items]
        return [jd.score_from_logprobs(top) if top else None for top in self._ask(requests, tick)]

    def prefer(self, items: list[tuple[str, str, str]], tick: Callable[[int], None]) -> list[jd.Outcome | None]:
        """For each (question, first, second): win (first is better in both orders), loss, or tie."""
        requests: list[Request] = []
        for q, first, second in items:
            requests.append((jd.VERDICT_TOKENS, self.prompts.pairwise_messages(q, NO_REFERENCE, first, second, "logprobs")))  # fmt: skip
            requests.append((jd.VERDICT_TOKENS, self.prompts.pairwise_messages(q, NO_REFERENCE, second, first, "logprobs")))  # fmt: skip
        tops = self._ask(requests, tick)
        outcomes = []
        for i in range(0, len(tops), 2):
            a_first = jd.as_verdict(jd.verdict_from_logprobs(tops[i]) if tops[i] else None, True)
            b_first = jd.as_verdict(jd.verdict_from_logprobs(tops[i + 1]) if tops[i + 1] else None, False)
            outcomes.append(jd.combine(a_first, b_first))
        return outcomes

    def _ask(self, requests: list[Request], tick: Callable[[int], None]) -> list[list[tuple[str, float]] | None]:
        j = self.config.eval.judge
        identity = f"endpoint:{j.endpoint}" if j.endpoint else f"local:{j.model}"
        keys = [cache_key("judge", identity, "logprobs", j.top_logprobs, messages) for _, messages in requests]
        out = [jd.decode_logprobs(self.cache.get(k)) for k in keys]
        missing = [i for i, o in enumerate(out) if o is None]
        if missing:
            fresh = self._run([requests[i] for i in missing], tick)
            self.calls += len(missing)
            for i, top in zip(missing, fresh, strict=True):
                if top is not None:
                    self.cache.put(keys[i], jd.encode_logprobs(top))
                    out[i] = top
        return out

    def _run(self, requests: list[Request], tick: Callable[[int], None]) -> list[list[tuple[str, float]] | None]:
        j = self.config.eval.judge
        if j.endpoint is None:
            from tuneline.inference.next_token import judge_in_process

            path = local_model_dir(j.model, "eval.judge.model")
            return list(judge_in_process(path, requests, on_done=tick, batch_size=self.config.eval.batch_size))
        endpoint = Endpoint.from_config(j.endpoint, j)
        results = run_all(
            endpoint, [m for _, m in requests], 1, on_done=lambda: tick(1), top_logprobs=j.top_logprobs,
            labels=[labels for labels, _ in requests],
        )  # fmt: skip
        return [None if isinstance(r, EndpointError) else (r.top_logprobs or []) for r in results]
