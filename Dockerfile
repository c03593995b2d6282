# syntax=docker/dockerfile:1
# The character bot: `python -m app bot`, installed with the quick start's pinned files and Makefile.
#
#   docker build -t character-bot:cpu .            # the embedded default: llama.cpp, embedded Chroma, SQLite
#   docker build -t character-bot:cuda --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 .
#
# The CUDA image (PyTorch's CUDA wheels bring the CUDA libraries; the driver comes from the host through
# the NVIDIA container toolkit: `docker run --gpus all`) runs the production path, Mistral-7B in 4-bit with
# a LoRA adapter through transformers: see the README's "Deploy". Pick the wheel index for the host's driver.
# Secrets (DISCORD_BOT_TOKEN, OPENAI_API_KEY) come from the environment only, never from the image.
FROM python:3.11-slim

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH \
    DATA_DIR=/data \
    ADAPTERS_DIR=/adapters \
    LOG_DIR=/logs \
    MODEL_CACHE_DIR=/data/models \
    HF_HOME=/data/huggingface

RUN apt-get update \
    && apt-get install -y --no-install-recommends make libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 bot \
    && mkdir -p /data /adapters /logs /chroma /models \
    && chown bot:bot /data /adapters /logs /chroma /models

WORKDIR /app
# The dependencies first, in their own layer: code changes do not reinstall them.
COPY Makefile requirements.txt constraints.txt requirements-models.txt ./
RUN make setup VENV=/opt/venv PYTHON=python3 TORCH_INDEX=${TORCH_INDEX}
COPY --chown=bot:bot . .

USER bot
VOLUME ["/data", "/adapters", "/logs"]  # /chroma and /models: compose's Chroma server and model copy
CMD ["python", "-m", "app", "bot"]
