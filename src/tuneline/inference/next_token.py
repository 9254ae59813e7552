"""The judge in-process for logprob mode: the next-token distribution after the chat prompt.

``transformers serve`` rejects ``logprobs``, so a local judge in logprob mode runs here: one
batched forward pass per group of prompts (no generation), reading the log-probability of
every vocabulary token whose text, stripped, is one of the allowed labels. The result has the
shape an OpenAI/TGI endpoint gives in ``top_logprobs`` (``[(token, logprob), ...]``), so both
paths share the same reduction to a verdict (``tuneline.stages.evaluate.judge``).
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tuneline.models.resolve import pretrained_kwargs


class NextTokenJudge:
    """A causal LM that answers "which of these labels comes next, and how likely is each"."""

    def __init__(self, model_dir: str | Path, labels: tuple[str, ...], batch_size: int = 8) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir), **pretrained_kwargs())
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "left"
        self.model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32, **pretrained_kwargs())
        self.model.eval()
        self.batch_size = batch_size
        self.label_ids = self._label_ids(labels)

    def _label_ids(self, labels: tuple[str, ...]) -> list[tuple[int, str]]:
        """Every token id whose decoded text, stripped of whitespace, is an allowed label."""
        wanted = set(labels)
        found = []
        for token_id in range(len(self.tokenizer)):
            text = self.tokenizer.decode([token_id])
            if text.strip() in wanted:
                found.append((token_id, text))
        missing = wanted - {t.strip() for _, t in found}
        if missing:
            raise ValueError(f"the judge's vocabulary has no single token for {sorted(missing)}")
        return found

    def top_logprobs(
        self, conversations: list[list[dict[str, str]]], on_done: Callable[[int], None] | None = None
    ) -> list[list[tuple[str, float]]]:
        import torch

        ids = torch.tensor([i for i, _ in self.label_ids])
        # batches of similar length waste little on padding; answers go back in the callers' order
        lengths = [
            len(self.tokenizer.apply_chat_template(c, add_generation_prompt=True, return_dict=True)["input_ids"])
            for c in conversations
        ]
        order = sorted(range(len(conversations)), key=lambda i: lengths[i])
        results: list[list[tuple[str, float]]] = [[] for _ in conversations]
        for start in range(0, len(order), self.batch_size):
            picked = order[start : start + self.batch_size]
            batch = [conversations[i] for i in picked]
            enc = self.tokenizer.apply_chat_template(
                batch, add_generation_prompt=True, padding=True, return_tensors="pt", return_dict=True
            )
            # left padding: positions count real tokens only, so a padded prompt scores as it would alone
            positions = (enc["attention_mask"].cumsum(-1) - 1).clamp(min=0)
            with torch.no_grad():
                logits = self.model(**enc, position_ids=positions).logits[:, -1, :].float()
            logprobs = torch.log_softmax(logits, dim=-1)[:, ids]
            for i, row in zip(picked, logprobs.tolist(), strict=True):
                results[i] = [(text, lp) for (_, text), lp in zip(self.label_ids, row, strict=True)]
            if on_done:
                on_done(len(batch))
        return results

    def close(self) -> None:
        del self.model
        gc.collect()


def judge_in_process(
    model_dir: str | Path,
    requests: list[tuple[tuple[str, ...], list[dict[str, str]]]],
    on_done: Callable[[int], None] | None = None,
    batch_size: int = 8,
) -> list[list[tuple[str, float]]]:
    """``requests`` are (allowed labels, messages); answers come back in order."""
    every = tuple(sorted({label for labels, _ in requests for label in labels}))
    judge: Any = NextTokenJudge(model_dir, every, batch_size=batch_size)
    try:
        out: list[list[tuple[str, float]] | None] = [None] * len(requests)
        by_labels: dict[tuple[str, ...], list[int]] = {}
        for i, (labels, _) in enumerate(requests):
            by_labels.setdefault(labels, []).append(i)
        for labels, indexes in by_labels.items():
            answers = judge.top_logprobs([requests[i][1] for i in indexes], on_done)
            for i, top in zip(indexes, answers, strict=True):
                out[i] = [(t, lp) for t, lp in top if t.strip() in labels]
        return [o or [] for o in out]
    finally:
        judge.close()
