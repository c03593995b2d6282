"""Editable prompt files and the persona (YAML or Character Card V2), loaded and checked."""

from prompts.loader import PromptError, PromptFile, PromptSet, changed_prompts, load_prompt, load_prompts, prompt_hashes
from prompts.persona import LorebookEntry, Persona, load_persona

__all__ = [
    "LorebookEntry",
    "Persona",
    "PromptError",
    "PromptFile",
    "PromptSet",
    "changed_prompts",
    "load_persona",
    "load_prompt",
    "load_prompts",
    "prompt_hashes",
]
