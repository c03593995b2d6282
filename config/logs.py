"""Logging set-up: one place, per-module loggers everywhere else.

Logs go to stderr, and for the bot also to a rotating file. A filter on every handler replaces
secrets (the bot token) wherever they would appear, whatever the library that logs them.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import re
import sys
from pathlib import Path

NOISY = ("httpx", "urllib3", "chromadb", "sentence_transformers", "transformers", "llama_index", "filelock", "asyncio")


def quiet_libraries() -> None:
    """Offline mode, no progress bars and only errors from the model libraries.

    Said through their environment variables, which they read when imported: a command that never loads a
    model (`index check`, `stats`) does not import transformers to quiet it (seconds at every start).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # read when transformers is imported
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


URL_CREDENTIALS = re.compile(r"(?<=://)[^/?#\s@]+@")  # user:password@ or a lone token@


class RedactSecrets(logging.Filter):
    """Replaces each secret in a record's message (and traceback text) by [redacted], and any
    `user:password@` or `token@` inside a URL, whatever its length."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s and len(s) >= 8]

    def _clean(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "[redacted]")
        return URL_CREDENTIALS.sub("[redacted]@", text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._clean(record.exc_text)
        record.msg, record.args = self._clean(message), None
        return True


def setup_logging(
    level: str = "INFO",
    log_file: Path | None = None,
    max_mb: float = 5.0,
    backups: int = 5,
    secrets: list[str] = (),
    to_stderr: bool = True,
) -> None:
    """Logging to stderr, plus a rotating log file when `log_file` is given.

    `to_stderr=False` (the console channel without --verbose) keeps the screen for the conversation:
    log lines and the libraries' warnings (Python warnings are logged too) go to the file, and only
    errors ("generation failed") to the screen as well. A log file that cannot be written is said on
    stderr, and everything is logged there instead.
    """
    quiet_libraries()
    file_handler = None
    if log_file is not None:
        try:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            file_handler = logging.handlers.RotatingFileHandler(
                log_file, maxBytes=int(max_mb * 1e6), backupCount=backups, encoding="utf-8"
            )
        except OSError as exc:
            print(f"cannot write the log file {log_file} ({exc}): logging to the screen", file=sys.stderr)
            to_stderr = True
    screen = logging.StreamHandler(sys.stderr)
    if not to_stderr and file_handler is not None:
        screen.setLevel(logging.ERROR)
    handlers: list[logging.Handler] = [screen, *([file_handler] if file_handler else [])]
    logging.captureWarnings(not to_stderr)
    redact = RedactSecrets(list(secrets))
    for handler in handlers:
        handler.addFilter(redact)
        on_screen = not isinstance(handler, logging.handlers.RotatingFileHandler)
        handler.setFormatter(logging.Formatter(FORMAT, datefmt="%H:%M:%S" if on_screen else "%Y-%m-%d %H:%M:%S"))
    logging.basicConfig(level=level, handlers=handlers, force=True)
    for name in NOISY:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    if "transformers" in sys.modules:  # imported before quiet_libraries set its variables: told directly
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
