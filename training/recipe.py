"""Training recipes (`training/recipes/*.yaml`): what a run trains and how, read and checked.

The bot reads a recipe before it starts a training process (`python -m app train`, `!train`), so a
wrong key is reported at once, naming the file; `training.train_lora` trains with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from errors import UserError


class RecipeError(UserError, ValueError):
    """A recipe file cannot be used; the message names the file and the key."""


@dataclass
class Recipe:
    name: str
    base_model: str
    epochs: float = 1.0
    max_steps: int = -1
    per_device_batch_size: int = 4
    gradient_accumulation_steps: int = 1
    learning_rate: float = 2e-4
    max_length: int = 512
    precision: str = "fp32"
    gradient_checkpointing: bool = False
    quantization: bool = False
    packing: bool = False
    lora: dict = field(default_factory=lambda: {"r": 8, "alpha": 16, "dropout": 0.05, "target_modules": "all-linear"})
    save_steps: int = 50
    eval_steps: int = 50
    logging_steps: int = 10
    seed: int = 1234


def load_recipe(path: Path, settings=None) -> Recipe:
    """A recipe, with the EPOCHS/GRADIENT_ACCUMULATION_STEPS/LEARNING_RATE/USE_FP16/ENABLE_QUANTIZATION settings
    on top."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        recipe = Recipe(**data)
    except (OSError, yaml.YAMLError) as exc:
        raise RecipeError(f"{path}: cannot read the recipe: {exc}") from None
    except TypeError as exc:
        raise RecipeError(f"{path}: {exc} (see training/recipes/cpu-smoke.yaml for the keys)") from None
    if recipe.precision not in ("fp32", "fp16", "bf16"):
        raise RecipeError(f"{path}: precision must be fp32, fp16 or bf16, not {recipe.precision!r}")
    if settings is not None:
        if settings.EPOCHS is not None:
            recipe.epochs = settings.EPOCHS
        if settings.GRADIENT_ACCUMULATION_STEPS is not None:
            recipe.gradient_accumulation_steps = settings.GRADIENT_ACCUMULATION_STEPS
        if settings.LEARNING_RATE is not None:
            recipe.learning_rate = settings.LEARNING_RATE
        if settings.USE_FP16 is not None:
            recipe.precision = "fp16" if settings.USE_FP16 else "fp32"
        if settings.ENABLE_QUANTIZATION:
            recipe.quantization = True
    return recipe
