"""`python -m training.train_lora --recipe training/recipes/NAME.yaml`: a LoRA adapter on the chat history.

trl's SFTTrainer trains a peft LoRA (QLoRA when the recipe or ENABLE_QUANTIZATION asks for 4-bit)
on the samples of `training.data_prep`, each rendered into the prompt a live reply would get
(`training.render`: the same prompt files, persona, assembly and tokenizer), with the loss on the
reply only. Every argument is logged at start; the progress bar shows an ETA; checkpoints are
written to `adapters/<name>.work/` and `--resume` continues from the last one. The finished
adapter replaces `adapters/<name>/` only at the very end (the old one is kept as
`<name>.previous`), so an interrupted or failed run leaves the adapter in use untouched. The adapter
folder holds `training_meta.json`: base model, data hash, sample counts, the hashes of the prompt
files and persona it was trained with (the bot warns when it serves the adapter with others),
validation loss before and after, throughput.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from errors import UserError
from llm.model import ADAPTER_META_FILE as META_FILE
from prompts import prompt_hashes
from training.data_prep import NotEnoughData, read_jsonl
from training.recipe import Recipe, load_recipe
from training.render import SampleRenderer

logger = logging.getLogger(__name__)

MIN_TRAIN_SAMPLES = 8


@dataclass
class TrainResult:
    adapter: Path
    steps: int
    train_samples: int
    validation_samples: int
    loss_first: float
    loss_last: float
    validation_loss_before: float | None
    validation_loss_after: float | None
    tokens: int
    seconds: float
    peak_memory_mb: float
    resumed_from: str | None = None

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def _precision(recipe: Recipe, device: str) -> dict:
    """The trainer's mixed-precision flags, always both said: trl's SFTConfig turns bf16 on when neither is
    (bf16 matrix products on a CPU without bf16 instructions are many times slower than fp32)."""
    import torch

    if recipe.precision == "fp32" or device != "cuda":
        if recipe.precision != "fp32":
            logger.warning("precision %s needs a GPU: training in fp32 on %s", recipe.precision, device)
        return {"bf16": False, "fp16": False}
    if recipe.precision == "bf16" or torch.cuda.is_bf16_supported():
        return {"bf16": True, "fp16": False}
    return {"bf16": False, "fp16": True}


def load_base(recipe: Recipe, settings):
    """The base model and tokenizer for training (4-bit for QLoRA), loaded as serving loads it."""
    from dataclasses import replace

    from llm.model import load_transformers, resolve_device

    device = resolve_device(settings.DEVICE)
    config = replace(
        settings.model_options(), model_name=recipe.base_model, quantization=recipe.quantization, adapter_path=None
    )
    dtype = None if recipe.quantization else ("float32" if device == "cpu" else "float16")
    return load_transformers(config, dtype=dtype, with_adapter=False)


def tokenized(samples: list[dict], renderer: SampleRenderer) -> tuple[list[dict], int]:
    """Samples as token ids with a completion mask (the loss is on the reply only), and how many did not fit."""
    rows = []
    for sample in samples:
        rendered = renderer.render(sample)
        if rendered is not None:
            rows.append(
                {
                    "input_ids": rendered.prompt_ids + rendered.completion_ids,
                    "completion_mask": [0] * len(rendered.prompt_ids) + [1] * len(rendered.completion_ids),
                }
            )
    return rows, len(samples) - len(rows)


def _peak_memory_mb(device: str) -> float:
    import resource

    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 1e6
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _trainer_config(recipe: Recipe, work: Path, device: str, progress: bool, evaluate: bool):
    """trl's SFTConfig for the recipe: checkpoints in `work`, evaluation when there are validation samples."""
    from trl import SFTConfig

    return SFTConfig(
        output_dir=str(work),
        num_train_epochs=recipe.epochs,
        max_steps=recipe.max_steps,
        per_device_train_batch_size=recipe.per_device_batch_size,
        per_device_eval_batch_size=recipe.per_device_batch_size,
        gradient_accumulation_steps=recipe.gradient_accumulation_steps,
        learning_rate=recipe.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=0.05,  # a ratio when below 1
        max_length=recipe.max_length,
        completion_only_loss=True,  # the rows are token ids already: say that the mask is the loss's
        packing=recipe.packing,
        gradient_checkpointing=recipe.gradient_checkpointing,
        logging_steps=recipe.logging_steps,
        save_strategy="steps",
        save_steps=recipe.save_steps,
        save_total_limit=2,
        eval_strategy="steps" if evaluate else "no",
        eval_steps=recipe.eval_steps,
        report_to="none",
        seed=recipe.seed,
        disable_tqdm=not progress,
        include_num_input_tokens_seen="non_padding",
        use_cpu=device == "cpu",
        **_precision(recipe, device),
    )


def _lora_config(recipe: Recipe):
    """peft's LoraConfig for the recipe's `lora` section."""
    from peft import LoraConfig

    return LoraConfig(
        r=recipe.lora.get("r", 8),
        lora_alpha=recipe.lora.get("alpha", 16),
        lora_dropout=recipe.lora.get("dropout", 0.05),
        target_modules=recipe.lora.get("target_modules", "all-linear"),
        task_type="CAUSAL_LM",
    )


def train(
    recipe: Recipe,
    settings,
    data: Path | None = None,
    name: str | None = None,
    resume: bool = False,
    adapters_dir: Path | None = None,
    callbacks: list | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train the recipe on the prepared data; returns figures; the adapter is swapped in at the end."""
    import datasets
    from datasets import Dataset
    from trl import SFTTrainer

    name = name or recipe.name
    data = data or settings.training_data
    adapters_dir = adapters_dir or settings.ADAPTERS_DIR
    if not data.is_file():
        raise NotEnoughData(f"no training data at {data}: run `python -m training.data_prep` first")
    raw = data.read_bytes()  # read once: what is hashed is what is trained on, whatever happens to the file
    digest = hashlib.sha256(raw).hexdigest()
    samples, problems = read_jsonl(data, raw.decode("utf-8", "replace"))
    for problem in problems:
        logger.warning("%s", problem)
    train_samples = [s for s in samples if s.get("split", "train") == "train"]
    validation_samples = [s for s in samples if s.get("split") == "validation"]
    learned = learned_words(settings, samples)  # a message that says something else by the end was edited
    if len(train_samples) < MIN_TRAIN_SAMPLES:
        raise NotEnoughData(f"not enough data ({len(train_samples)} samples, need {MIN_TRAIN_SAMPLES})")
    work, final = adapters_dir / f"{name}.work", adapters_dir / name
    checkpoint = resume and any(work.glob("checkpoint-*"))
    if resume and not checkpoint:
        logger.warning("--resume: no checkpoint in %s, starting from the beginning", work)
    if not resume and work.exists():
        shutil.rmtree(work)

    if not progress:
        datasets.disable_progress_bars()
    model, tokenizer, device = load_base(recipe, settings)
    renderer = SampleRenderer.from_settings(tokenizer, settings, recipe.max_length)
    train_rows, too_long = tokenized(train_samples, renderer)
    validation_rows, too_long_validation = tokenized(validation_samples, renderer)
    if too_long or too_long_validation:
        logger.warning(
            "%d samples left out: the frame, persona and reply do not fit max_length %d (raise it in the recipe)",
            too_long + too_long_validation,
            recipe.max_length,
        )
    if len(train_rows) < MIN_TRAIN_SAMPLES:
        raise NotEnoughData(
            f"not enough data ({len(train_rows)} samples fit max_length {recipe.max_length}, need {MIN_TRAIN_SAMPLES})"
        )
    config = _trainer_config(recipe, work, device, progress, evaluate=bool(validation_rows))
    lora = _lora_config(recipe)
    logger.info("training %s on %d samples (%d validation) from %s", name, len(train_rows), len(validation_rows), data)
    logger.info("recipe: %s", json.dumps(asdict(recipe)))
    logger.info("arguments: %s", config.to_json_string())
    trainer = SFTTrainer(
        model=model,
        args=config,
        processing_class=tokenizer,
        peft_config=lora,
        callbacks=callbacks,
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(validation_rows) if validation_rows else None,
    )
    before = _validation_loss(trainer) if validation_rows and not checkpoint else None
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=True if checkpoint else None)
    seconds = time.perf_counter() - started
    after = _validation_loss(trainer) if validation_rows else None
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    tokens = int(trainer.state.num_input_tokens_seen or 0)
    result = TrainResult(
        adapter=final,
        steps=trainer.state.global_step,
        train_samples=len(train_rows),
        validation_samples=len(validation_rows),
        loss_first=losses[0] if losses else float("nan"),
        loss_last=losses[-1] if losses else float("nan"),
        validation_loss_before=before,
        validation_loss_after=after,
        tokens=tokens,
        seconds=seconds,
        peak_memory_mb=_peak_memory_mb(device),
        resumed_from=str(work) if checkpoint else None,
    )
    used = train_samples + validation_samples
    still_allowed(settings, used, learned)
    _publish(
        trainer,
        tokenizer,
        recipe,
        result,
        (data, digest),
        final,
        prompt_hashes(settings.PROMPTS_DIR, settings.PERSONA_FILE),
        used,
        learned,
    )
    return result


class DataWithdrawn(UserError, RuntimeError):
    """Training data was deleted, edited, forgotten or withdrawn while training ran: the adapter is not published."""


def learned_words(settings, samples: list[dict]) -> dict[int, str]:
    """The digests of the stored words of the samples' messages as training reads them (never the words)."""
    from indexes.members import digests
    from indexes.store import MessageStore

    if not settings.store_path.is_file():
        return {}
    store = MessageStore(settings.store_path)
    try:
        return digests(store, {int(i) for s in samples for i in s.get("message_ids", [])})
    finally:
        store.close()


def still_allowed(settings, samples: list[dict], learned: dict[int, str] | None = None) -> None:
    """Refuse to publish an adapter whose data a member deleted, edited, forgot or withdrew while it trained.

    `learned`: the digests of the words training read (learned_words); a message whose words differ now was
    learned in words it no longer says.
    """
    from indexes.members import edited_since, excluded_authors
    from indexes.store import MessageStore

    if not settings.store_path.is_file():
        return
    store = MessageStore(settings.store_path)
    try:
        ids = {int(i) for s in samples for i in s.get("message_ids", [])}
        gone = len(ids) - len(store.get(ids))
        edited = edited_since(store, learned or {})
        left = {int(a) for s in samples for a in s.get("author_ids", [])} & excluded_authors(store)
    finally:
        store.close()
    if gone or edited or left:
        raise DataWithdrawn(
            f"while training ran, {gone} of its messages were deleted, {edited} edited and {len(left)} of its "
            "members forgot or withdrew consent: the adapter was not published (the current one stays); "
            "run training again"
        )


def _validation_loss(trainer) -> float | None:
    """Validation loss, or None when no validation sample fits in max_length."""
    loss = trainer.evaluate().get("eval_loss")
    if loss is None:
        logger.warning("no validation loss: every validation sample is longer than max_length (raise it in the recipe)")
    return loss


def _publish(
    trainer,
    tokenizer,
    recipe: Recipe,
    result: TrainResult,
    data: tuple[Path, str],
    final: Path,
    prompts: dict[str, str],
    samples: list[dict],
    learned: dict[int, str],
) -> None:
    """Write the adapter next to the current one, then swap: the old one becomes <name>.previous.

    `data`: the training file and the hash of what was read from it. The adapter records the ids of
    the messages and members it learned from (indexes.members.TRAINED_ON), never their words, and a short
    hash of each message's words (`learned`: a message edited since makes the adapter stale).
    """
    from indexes.members import TRAINED_ON

    staging = final.with_name(final.name + ".new")
    if staging.exists():
        shutil.rmtree(staging)
    trainer.model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    meta = {
        "base_model": recipe.base_model,
        "recipe": asdict(recipe),
        "data": {
            "path": str(data[0]),
            "sha256": data[1],
            "train_samples": result.train_samples,
            "validation_samples": result.validation_samples,
        },
        "prompt_files": prompts,
        "validation_loss_before": result.validation_loss_before,
        "validation_loss_after": result.validation_loss_after,
        "steps": result.steps,
        "train_loss_first": result.loss_first,
        "train_loss_last": result.loss_last,
        "tokens": result.tokens,
        "seconds": round(result.seconds, 1),
        "tokens_per_second": round(result.tokens_per_second, 1),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    (staging / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    trained_on = {
        "message_ids": sorted({int(i) for s in samples for i in s.get("message_ids", [])}),
        "author_ids": sorted({int(a) for s in samples for a in s.get("author_ids", [])}),
        "digests": {str(i): digest for i, digest in sorted(learned.items())},
    }
    (staging / TRAINED_ON).write_text(json.dumps(trained_on), encoding="utf-8")
    previous = final.with_name(final.name + ".previous")
    if final.exists():
        if previous.exists():
            shutil.rmtree(previous)
        final.replace(previous)
    staging.replace(final)
    logger.info("adapter written to %s (previous one kept as %s)", final, previous.name)


def main(argv: list[str] | None = None) -> int:
    from config.logs import setup_logging
    from config.settings import load_settings

    parser = argparse.ArgumentParser(
        prog="python -m training.train_lora", description="Train a LoRA adapter on the prepared chat history."
    )
    parser.add_argument("--recipe", type=Path, required=True, help="training/recipes/NAME.yaml")
    parser.add_argument(
        "--data", type=Path, help="samples from python -m training.data_prep (default: DATA_DIR/training_data.jsonl)"
    )
    parser.add_argument("--name", help="adapter name (default: the recipe's)")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint of an interrupted run")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        setup_logging(settings.LOG_LEVEL)
        recipe = load_recipe(args.recipe, settings)
        result = train(recipe, settings, args.data, args.name, args.resume)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"adapter     {result.adapter} ({result.steps} steps{', resumed' if result.resumed_from else ''})\n"
        f"loss        train {result.loss_first:.3f} -> {result.loss_last:.3f}; validation "
        f"{result.validation_loss_before if result.validation_loss_before is not None else '-'} "
        f"-> {result.validation_loss_after}\n"
        f"throughput  {result.tokens_per_second:,.0f} tokens/s ({result.tokens:,} tokens in {result.seconds:.0f} s), "
        f"peak memory {result.peak_memory_mb:,.0f} MB\n"
        f"use it      ADAPTER_PATH={result.adapter} (then !reload in Discord)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
