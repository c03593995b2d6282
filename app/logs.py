"""Logging set-up: one place, per-module loggers everywhere else. Logs go to stderr."""

from __future__ import annotations

import logging
import os
import sys

NOISY = ("httpx", "urllib3", "chromadb", "sentence_transformers", "transformers", "llama_index", "filelock", "asyncio")


def quiet_libraries() -> None:
    """Offline mode and no progress bars from the model libraries."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def setup_logging(level: str = "INFO") -> None:
    quiet_libraries()
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        force=True,
    )
    for name in NOISY:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass
