"""tuneline: conversations in, a fine-tuned, evaluated, registered and served LLM out."""

__version__ = "0.1.0"
