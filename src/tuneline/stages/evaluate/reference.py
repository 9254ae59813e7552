"""Reference metrics of generated answers against the test split's answers.

Valid JSON and field accuracy apply where the reference answer is a JSON object (structured
tasks such as the bundled orders one): the answer must parse with exactly the reference's
keys, and each field counts when its value equals the reference's. Exact match and token F1
follow SQuAD's normalisation (lower case, no punctuation or
articles, collapsed whitespace); ROUGE-L is Google's ``rouge-score`` (LCS F-measure). Eval
loss is the mean negative log-likelihood of the reference answer's tokens given the prompt.
"""

from __future__ import annotations

import json
import math
import re
import string
from collections import Counter
from functools import lru_cache
from typing import Any

from tuneline.results import ReferenceScores

_PUNCT = str.maketrans("", "", string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize(text: str) -> str:
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCT)).split())


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize(prediction) == normalize(reference))


def token_f1(prediction: str, reference: str) -> float:
    pred, ref = normalize(prediction).split(), normalize(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


@lru_cache(maxsize=1)
def _rouge() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def rouge_l(prediction: str, reference: str) -> float:
    return float(_rouge().score(reference, prediction)["rougeL"].fmeasure)


def _json_object(text: str) -> dict[str, Any] | None:
    """``text`` as a JSON object, also when wrapped in a Markdown code fence; None otherwise."""
    body = text.strip()
    if body.startswith("```"):
        body = body.strip("`").removeprefix("json").strip()
    try:
        value = json.loads(body)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def json_fields(prediction: str, reference: str) -> dict[str, float] | None:
    """For a JSON-object reference: does the answer parse with the same keys, and what share of fields match.

    None when the reference is not a JSON object (the metrics do not apply). Values compare
    after JSON normalisation, so ``12`` and ``12.0`` match but ``"12"`` and ``12`` do not.
    """
    ref = _json_object(reference)
    if ref is None or not ref:
        return None
    pred = _json_object(prediction)
    if pred is None:
        return {"valid_json": 0.0, "field_accuracy": 0.0}
    matched = sum(1 for k, v in ref.items() if k in pred and pred[k] == v)
    return {"valid_json": float(set(pred) == set(ref)), "field_accuracy": matched / len(ref)}


def scores(prediction: str, reference: str) -> ReferenceScores:
    """Every reference metric of one answer; valid_json/field_accuracy only when the reference is a JSON object."""
    return ReferenceScores(
        exact_match=exact_match(prediction, reference),
        rouge_l=rouge_l(prediction, reference),
        token_f1=token_f1(prediction, reference),
        **(json_fields(prediction, reference) or {}),
    )


def answer_loss(model: Any, tokenizer: Any, conversations: list[list[dict[str, str]]]) -> dict[str, float | int]:
    """Token-weighted NLL of each conversation's last (assistant) turn; prompts are not scored.

    Conversations whose templated prompt is not a prefix of the templated whole (templates
    that rewrite earlier turns) are skipped and counted.
    """
    import torch

    total_nll, total_tokens, skipped = 0.0, 0, 0
    device = next(model.parameters()).device
    for conv in conversations:
        prompt = tokenizer.apply_chat_template(conv[:-1], add_generation_prompt=True, tokenize=True, return_dict=True)[
            "input_ids"
        ]
        full = tokenizer.apply_chat_template(conv, tokenize=True, return_dict=True)["input_ids"]
        if len(full) <= len(prompt) or full[: len(prompt)] != prompt:
            skipped += 1
            continue
        ids = torch.tensor([full], device=device)
        labels = ids.clone()
        labels[0, : len(prompt)] = -100
        with torch.no_grad():
            logits = model(input_ids=ids).logits.float()
        shift_logits, shift_labels = logits[0, :-1], labels[0, 1:]
        nll = torch.nn.functional.cross_entropy(shift_logits, shift_labels, ignore_index=-100, reduction="sum")
        total_nll += float(nll)
        total_tokens += int((shift_labels != -100).sum())
    loss = total_nll / total_tokens if total_tokens else float("nan")
    return {
        "eval_loss": loss,
        "perplexity": math.exp(loss) if total_tokens and loss < 700 else float("nan"),
        "loss_tokens": total_tokens,
        "loss_skipped": skipped,
    }
