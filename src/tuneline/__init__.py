"""tuneline: conversations in, a fine-tuned, evaluated, registered and served LLM out."""

import logging

__version__ = "0.1.0"


def _not_the_kernels_hub_notice(record: logging.LogRecord) -> bool:
    """bitsandbytes (0.48+) warns at import, on every command, that it could not fetch an optional CPU kernel
    from the Hugging Face hub (the `kernels` package); its own CPU code runs instead. Only that notice is
    dropped, every other bitsandbytes warning still shows. Can go when bitsandbytes stops warning about it."""
    return not record.getMessage().startswith("Failed to load CPU gemm_4bit_forward from kernels-community")


logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(_not_the_kernels_hub_notice)
