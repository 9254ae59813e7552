"""Base models: the offline built-in model, resolution of hub ids / dirs / object-store prefixes, LoRA targets."""
