"""Training benchmark: LoRA throughput (tokens/s) and peak memory for a recipe on this machine,
and the projected time for 63,000 messages.

The sample server is imported into a temporary store, prepared by `training.data_prep` and
trained with the recipe (default: cpu-smoke) for `steps` optimizer steps.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from bench.machine import describe

MESSAGES = 63_000
DESIGN_CLAIM = "13-18 hours for 63,000 messages on an RTX 2080 Ti (Mistral-7B QLoRA)"


def run(out: Path, recipe_path: Path = Path("training/recipes/cpu-smoke.yaml"), steps: int = 10) -> dict:
    import torch

    from config.logs import setup_logging
    from config.settings import load_settings
    from indexes.filters import Filters
    from indexes.importer import import_exports
    from indexes.store import MessageStore
    from training.data_prep import prepare
    from training.recipe import load_recipe
    from training.train_lora import train

    setup_logging("WARNING")
    with tempfile.TemporaryDirectory() as folder:
        settings = load_settings(DATA_DIR=Path(folder), ADAPTERS_DIR=Path(folder) / "adapters", DISCORD_CHANNEL_ID=None)
        store = MessageStore(settings.store_path)
        import_exports(store, Path("data/sample/export.json"), Filters(), progress=False)
        store.close()
        report = prepare(settings)
        recipe = load_recipe(recipe_path, settings)
        recipe.max_steps, recipe.save_steps, recipe.eval_steps = steps, 10_000, 10_000
        result = train(recipe, settings, progress=False)
    samples_seen = steps * recipe.per_device_batch_size * recipe.gradient_accumulation_steps
    tokens_per_sample = result.tokens / samples_seen if samples_seen else 0.0
    samples_63k = MESSAGES * report.kept / max(report.read, 1)
    projected_hours = samples_63k * tokens_per_sample * recipe.epochs / result.tokens_per_second / 3600
    device = "cuda: " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    figures = {
        "recipe": recipe.name,
        "base_model": recipe.base_model,
        "device": device,
        "steps": steps,
        "tokens": result.tokens,
        "seconds": result.seconds,
        "tokens_per_second": result.tokens_per_second,
        "peak_memory_mb": result.peak_memory_mb,
        "tokens_per_sample": tokens_per_sample,
        "samples_for_63k": samples_63k,
        "epochs": recipe.epochs,
        "projected_hours_63k": projected_hours,
        "loss_first": result.loss_first,
        "loss_last": result.loss_last,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "training.json").write_text(
        json.dumps({"machine": describe(), "at": time.strftime("%Y-%m-%d %H:%M"), **figures}, indent=2)
    )
    return figures


def report(r: dict) -> str:
    return "\n".join(
        [
            f"# Training throughput: {r['recipe']} ({r['base_model']}), {r['steps']} steps on {r['device']}",
            f"machine      {describe()}",
            f"throughput   {r['tokens_per_second']:,.0f} tokens/s ({r['tokens']:,} tokens in {r['seconds']:.0f} s); "
            f"peak memory {r['peak_memory_mb']:,.0f} MB",
            f"loss         {r['loss_first']:.3f} -> {r['loss_last']:.3f}",
            f"projection   63,000 messages = about {r['samples_for_63k']:,.0f} samples "
            f"x {r['tokens_per_sample']:.0f} tokens x {r['epochs']:g} epoch(s): "
            f"{r['projected_hours_63k']:.1f} hours with this recipe here",
            f"design       claimed {DESIGN_CLAIM}; not measured here (no GPU on this machine)",
        ]
    )
