"""The chat template tuneline gives the bases it builds or converts: ChatML with ``{% generation %}`` markers.

TRL trains on assistant tokens only when the template marks them; SmolLM2's own template does not, so the
packaged base gets this one (same text, same default system prompt) and ``builtin:tiny`` too. Pure text:
no model, tokenizer or package is needed to build it.
"""

from __future__ import annotations

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
    An assistant turn with ``weight: 0`` is rendered the same but outside the markers: context, not a target.
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
        "{% set turn %}"
        "{% if message.get('reasoning_content') %}{{ '<think>\\n' + message['reasoning_content'] + '\\n</think>\\n\\n' }}"
        "{% endif %}{{ message['content'] }}"
        "{% for call in message.get('tool_calls') or [] %}"
        "{% if message['content'] or not loop.first %}{{ '\\n' }}{% endif %}"
        "{% set fn = call['function'] if call['function'] is defined else call %}"
        "{{ '<tool_call>\\n{\"name\": \"' + fn['name'] + '\", \"arguments\": ' }}"
        "{% if fn['arguments'] is string %}{{ fn['arguments'] }}{% else %}{{ fn['arguments'] | tojson }}{% endif %}"
        "{{ '}\\n</tool_call>' }}{% endfor %}{{ '<|im_end|>' }}{% endset %}"
        "{{ '<|im_start|>assistant\\n' }}"
        "{% if message.get('weight', 1) == 0 %}{{ turn }}{% else %}{% generation %}{{ turn }}{% endgeneration %}{% endif %}"
        "{{ '\\n' }}"
        "{% else %}"
        "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
        "{% endif %}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )


CHAT_TEMPLATE = chatml_template()
