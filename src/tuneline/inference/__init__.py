"""Talking to inference servers: TGI, vLLM, KServe's Hugging Face runtime or any OpenAI-compatible API.

The client is ``huggingface_hub``'s ``AsyncInferenceClient`` (the client TGI's maintainers
recommend); :mod:`.local_server` starts a real ``transformers serve`` on 127.0.0.1 for offline runs.
"""

from tuneline.inference.client import Completion, Endpoint, EndpointError
from tuneline.inference.local_server import LocalServer

__all__ = ["Completion", "Endpoint", "EndpointError", "LocalServer"]
