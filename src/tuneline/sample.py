"""The bundled sample dataset: a narrow, learnable task in every supported format, plus defects.

Task: turn a free-text order into a compact JSON object, e.g.
``"Order: 3 x lamp for Alice"`` → ``{"name": "Alice", "item": "lamp", "qty": 3}``.
A tiny model learns this format-following task on CPU in minutes, so fine-tuning
visibly beats the untouched base on held-out exact match.

The same orders are spread over OpenAI messages JSONL, a ShareGPT JSON array, an Alpaca
CSV and a preference Parquet file; ``support_messy.jsonl.gz`` carries the defects the
data stages must handle (invalid JSON and UTF-8, schema errors, duplicates, PII and
PII look-alikes, BOM, CRLF, blank lines).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
from pathlib import Path

from tuneline.io.atomic import write_text_atomic

NAMES = [
    "Alice",
    "Bob",
    "Chen",
    "Dana",
    "Emeka",
    "Farah",
    "Goran",
    "Hana",
    "Ivan",
    "Julia",
    "Kofi",
    "Lena",
    "Mateo",
    "Nora",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sven",
    "Tara",
]
ITEMS = [
    "lamp",
    "chair",
    "notebook",
    "pencil",
    "kettle",
    "blanket",
    "mug",
    "backpack",
    "candle",
    "clock",
    "scarf",
    "helmet",
    "teapot",
    "ladder",
    "mirror",
    "basket",
    "wallet",
    "umbrella",
    "bucket",
    "pillow",
]
TEMPLATES = [
    "Order: {qty} x {item} for {name}",
    "{name} wants {qty} {item}",
    "Please send {qty} {item} to {name}",
    "New order from {name}: {item}, quantity {qty}",
]
SYSTEM = "Convert the order into JSON with keys name, item, qty."
CATEGORIES = ["home", "office", "outdoor"]


def order(rng: random.Random) -> tuple[str, str, dict]:
    fields = {"name": rng.choice(NAMES), "item": rng.choice(ITEMS), "qty": rng.randint(1, 20)}
    prompt = rng.choice(TEMPLATES).format(**fields)
    answer = json.dumps({"name": fields["name"], "item": fields["item"], "qty": fields["qty"]})
    return prompt, answer, fields


def _meta(rng: random.Random, i: int) -> dict:
    return {"category": rng.choice(CATEGORIES), "timestamp": f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}T12:00:00Z"}


def write_sample(out: str | Path, n: int = 600, seed: int = 0) -> list[Path]:
    rng = random.Random(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    examples = []
    while len(examples) < n:
        prompt, answer, fields = order(rng)
        if prompt not in seen:
            seen.add(prompt)
            examples.append((prompt, answer, fields))
    n_msg, n_share, n_alp = int(n * 0.4), int(n * 0.2), int(n * 0.2)
    parts = {
        "messages": examples[:n_msg],
        "sharegpt": examples[n_msg : n_msg + n_share],
        "alpaca": examples[n_msg + n_share : n_msg + n_share + n_alp],
        "preference": examples[n_msg + n_share + n_alp :],
    }
    files = []

    lines = []
    for i, (prompt, answer, _) in enumerate(parts["messages"]):
        user: object = prompt if i % 5 else [{"type": "text", "text": prompt}]
        msgs = [{"role": "system", "content": SYSTEM}] if i % 2 else []
        msgs += [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
        lines.append(json.dumps({"messages": msgs, "meta": _meta(rng, i)}))
    files.append(out / "orders_messages.jsonl")
    write_text_atomic(files[-1], "\n".join(lines) + "\n")

    share = [
        {
            "conversations": [
                {"from": "system", "value": SYSTEM},
                {"from": "human", "value": p},
                {"from": "gpt", "value": a},
            ],
            **_meta(rng, i),
        }
        for i, (p, a, _) in enumerate(parts["sharegpt"])
    ]
    files.append(out / "orders_sharegpt.json")
    write_text_atomic(files[-1], json.dumps(share, indent=1) + "\n")

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["instruction", "input", "output", "category", "timestamp"])
    writer.writeheader()
    for i, (p, a, _) in enumerate(parts["alpaca"]):
        writer.writerow({"instruction": "To JSON:", "input": p, "output": a, **_meta(rng, i)})
    files.append(out / "orders_alpaca.csv")
    write_text_atomic(files[-1], buf.getvalue())

    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    for i, (p, a, f) in enumerate(parts["preference"]):
        wrong = dict(f, qty=f["qty"] + 1) if i % 2 else None
        rejected = json.dumps(wrong) if wrong else f"Sure! {f['name']} ordered {f['qty']} {f['item']}."
        rows.append({"prompt": p, "chosen": a, "rejected": rejected, **_meta(rng, i)})
    files.append(out / "orders_preference.parquet")
    pq.write_table(pa.Table.from_pylist(rows), files[-1])

    files.append(out / "support_messy.jsonl.gz")
    files[-1].write_bytes(gzip.compress(_messy(examples[:3]), mtime=0))
    return files


def _messy(examples: list[tuple[str, str, dict]]) -> bytes:
    """Defects on purpose: each line exercises a validation, dedup or PII rule."""

    def chat(user: str, assistant: str) -> dict:
        return {
            "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}],
            "meta": {"category": "support", "timestamp": "2026-06-01T09:00:00Z"},
        }

    p0, a0, _ = examples[0]
    good = [
        chat("My email is jane.roe@example.com, please update my order.", "Done, I updated the order for [EMAIL]."),
        chat("Call me at 415-555-2671 about the refund.", "We will call you today."),
        chat("Charge card 4111 1111 1111 1111 for order #4111111111111112.", "The card was charged."),
        chat("My SSN is 123-45-6789 and my server is 10.0.12.7", "Thanks, we never need your SSN."),
        chat("Pay to IBAN DE89 3704 0044 0532 0130 00 please.", "Payment scheduled."),
        chat("Here is my key AKIAIOSFODNN7EXAMPLE, is that ok?", "Please rotate that key now."),
        chat("Upgrade from v2.4.1 to 3.0.0 on 2026-01-15 with lr=3e-4 and batch 32?", "Yes, release 3.0.0 is fine."),
        chat("Is café the same as cafe\u0301? Ｆｕｌｌ ｗｉｄｔｈ\u200b text.", "They normalize to the same text."),
        chat(p0, a0),  # exact duplicate of a messages record
        chat(p0 + " ", a0),  # near duplicate (extra whitespace)
    ]
    lines = [json.dumps(r, ensure_ascii=False).encode() for r in good]
    lines[0] = b"\xef\xbb\xbf" + lines[0]  # BOM
    lines[1] = lines[1] + b"\r"  # CRLF
    bad = [
        b'{"messages": [{"role": "user", "content": "unterminated"}',
        b'["not", "an", "object"]',
        json.dumps({"messages": [{"content": "no role"}, {"role": "assistant", "content": "x"}]}).encode(),
        json.dumps({"messages": [{"role": "wizard", "content": "hi"}, {"role": "assistant", "content": "x"}]}).encode(),
        json.dumps({"messages": [{"role": "user", "content": "   "}, {"role": "assistant", "content": "x"}]}).encode(),
        json.dumps({"messages": [{"role": "user", "content": "question without answer"}]}).encode(),
        b'{"messages": [{"role": "user", "content": "caf\xe9"}, {"role": "assistant", "content": "x"}]}',
        json.dumps({"prompt": "Pick one", "chosen": "same", "rejected": "same"}).encode(),
        json.dumps({"text": "a record in no known format"}).encode(),
    ]
    body = lines[:5] + [b""] + bad[:5] + lines[5:] + [b"   "] + bad[5:]
    return b"\n".join(body) + b"\n"
