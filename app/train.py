"""Training from the bot or the command line, in a separate process: data prep, then LoRA training.

`python -m app train` and `!train` run `python -m training.data_prep` then
`python -m training.train_lora --recipe TRAIN_RECIPE` as child processes, so a crash or an
out-of-memory kill in training never takes the bot down. The children get the settings they need
and no secret (no bot token, in their environment or from .env). Their output goes to
LOG_DIR/train.log. A recipe that cannot be read fails at once, before any child starts.
The new adapter replaces `adapters/<recipe name>/` only when training completes; a failed or
interrupted run leaves the adapter in use as it was.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)


@dataclass
class TrainingRun:
    returncode: int
    step: str  # "data_prep" or "train_lora": the last step that ran
    tail: str  # the last lines of its output
    adapter: Path

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def adapter_for(recipe: Path, adapters_dir: Path) -> Path:
    from training.recipe import load_recipe

    return adapters_dir / load_recipe(recipe).name


async def run_training(settings, log_file: Path | None = None) -> TrainingRun:
    """Data prep then training, each in its own process; stops at the first failure."""
    from config.settings import child_environment
    from training.recipe import RecipeError

    log_file = log_file or settings.logs_dir / "train.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    recipe = settings.TRAIN_RECIPE
    try:
        adapter = adapter_for(recipe, settings.ADAPTERS_DIR)
    except RecipeError as exc:
        logger.error("training: %s", exc)
        with open(log_file, "a", encoding="utf-8") as log:
            log.write(f"error: {exc}\n")
        return TrainingRun(2, "recipe", str(exc), settings.ADAPTERS_DIR / recipe.stem)
    steps = [
        ("data_prep", [sys.executable, "-m", "training.data_prep"]),
        ("train_lora", [sys.executable, "-m", "training.train_lora", "--recipe", str(recipe)]),
    ]
    tail: list[str] = []
    with open(log_file, "a", encoding="utf-8") as log:
        for step, command in steps:
            logger.info("training: running %s", " ".join(command[1:]))
            process = await asyncio.create_subprocess_exec(
                *command,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=child_environment(settings),
            )
            tail = []
            async for raw in process.stdout:
                line = raw.decode("utf-8", "replace")
                log.write(line)
                tail = (tail + [line.rstrip()])[-8:]
            code = await process.wait()
            log.flush()
            if code != 0:
                logger.error("training: %s failed with exit code %s (see %s)", step, code, log_file)
                return TrainingRun(code, step, "\n".join(tail), adapter)
    return TrainingRun(0, "train_lora", "\n".join(tail), adapter)


def main_train(settings) -> int:
    """`python -m app train`: the same two steps, output on the console as well as in train.log."""
    result = asyncio.run(run_training(settings))
    print(result.tail)
    if not result.ok:
        print(
            f"error: {result.step} failed (exit {result.returncode}); the previous adapter stays in use. "
            f"Details: {settings.logs_dir / 'train.log'}",
            file=sys.stderr,
        )
        return 2 if result.returncode == 2 else 1
    print(f"adapter {result.adapter} is ready: set ADAPTER_PATH={result.adapter} and !reload (or restart)")
    return 0
