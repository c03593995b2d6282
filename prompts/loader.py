"""Prompt files: a YAML header declaring the variables, then an f-string style template.

A file whose template uses a variable it does not declare (or declares one it never uses) is
refused at load time, and formatting without a declared variable raises, so a typo in a prompt
stops start-up instead of producing a silently broken reply.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import yaml
from langchain_core.prompts import PromptTemplate

from errors import UserError

REQUIRED_PROMPTS = ("system", "summarize", "lore")
# Prompt files a prompts folder made for an earlier version may lack: their shipped text is used then.
OPTIONAL_PROMPTS = {
    "context": (
        "---\ndescription: what the character remembers for this reply\nvariables: [summary, lore]\n---\n"
        "{summary}\n{lore}\n"
    ),
    "answer": (
        "---\ndescription: the answer line from lore\nvariables: [author, content]\n---\n"
        'as {author} put it: "{content}"\n'
    ),
}


class PromptError(UserError, ValueError):
    """A prompt or persona file is malformed; the message names the file."""


@dataclass(frozen=True)
class PromptFile:
    """One prompt file: its declared variables and the LangChain template built from it."""

    name: str
    path: Path
    description: str
    variables: tuple[str, ...]
    template: PromptTemplate

    def format(self, **values: object) -> str:
        missing = [v for v in self.variables if v not in values]
        if missing:
            raise PromptError(f"{self.path}: missing value for {', '.join(missing)}")
        return self.template.format(**{v: values[v] for v in self.variables})


@dataclass(frozen=True)
class PromptSet:
    """The prompts the chain needs, plus the section headings."""

    system: PromptFile
    summarize: PromptFile
    lore: PromptFile
    context: PromptFile  # the summary and the lore, placed right before the message
    answer: PromptFile  # a question answered from the lore it found (chains/grounding.py)
    headings: dict[str, str]


def _split_header(text: str, path: Path) -> tuple[dict, str]:
    if not text.startswith("---"):
        raise PromptError(f"{path}: must start with a '---' header declaring its variables")
    try:
        _, header, body = text.split("---", 2)
    except ValueError:
        raise PromptError(f"{path}: the '---' header is not closed") from None
    try:
        meta = yaml.safe_load(header) or {}
    except yaml.YAMLError as exc:
        raise PromptError(f"{path}: header is not valid YAML: {exc}") from None
    if not isinstance(meta, dict):
        raise PromptError(f"{path}: header must be a mapping with 'variables'")
    return meta, body.strip("\n")


def load_prompt(path: Path, text: str | None = None) -> PromptFile:
    """Load one prompt file (or `text` standing for it) and check its declared variables against the template."""
    text = path.read_text(encoding="utf-8") if text is None else text
    meta, body = _split_header(text, path)
    declared = meta.get("variables")
    if not isinstance(declared, list) or not all(isinstance(v, str) for v in declared):
        raise PromptError(f"{path}: header needs 'variables: [name, ...]'")
    try:
        template = PromptTemplate.from_template(body)
    except Exception as exc:  # malformed braces
        raise PromptError(f"{path}: template does not parse: {exc}") from None
    used = set(template.input_variables)
    undeclared, unused = used - set(declared), set(declared) - used
    if undeclared:
        raise PromptError(f"{path}: uses undeclared variable(s) {sorted(undeclared)}")
    if unused:
        raise PromptError(f"{path}: declares variable(s) it never uses {sorted(unused)}")
    return PromptFile(path.stem, path, str(meta.get("description", "")), tuple(declared), template)


def load_prompts(folder: Path) -> PromptSet:
    """Load every prompt the chain needs from `folder`."""
    files = {}
    for name in REQUIRED_PROMPTS:
        path = folder / f"{name}.txt"
        if not path.is_file():
            raise PromptError(f"{path}: prompt file is missing")
        files[name] = load_prompt(path)
    for name, shipped in OPTIONAL_PROMPTS.items():
        path = folder / f"{name}.txt"
        files[name] = load_prompt(path) if path.is_file() else load_prompt(path, shipped)
    headings_path = folder / "sections.yaml"
    headings = yaml.safe_load(headings_path.read_text(encoding="utf-8")) if headings_path.is_file() else {}
    if not isinstance(headings, dict):
        raise PromptError(f"{headings_path}: must be a mapping of section name to heading")
    return PromptSet(headings={str(k): str(v) for k, v in headings.items()}, **files)


def prompt_hashes(folder: Path, persona_file: Path) -> dict[str, str]:
    """A short sha256 of each prompt file `load_prompts` reads from `folder`, by file name, and of the persona.

    Recorded with eval runs and adapters: an adapter trained with other prompt files saw another
    prompt than the one it is served with.
    """
    names = [f"{name}.txt" for name in (*REQUIRED_PROMPTS, *OPTIONAL_PROMPTS)] + ["sections.yaml"]
    files = [(name, folder / name) for name in names] + [("persona", persona_file)]
    return {name: hashlib.sha256(path.read_bytes()).hexdigest()[:16] for name, path in files if path.is_file()}


def changed_prompts(recorded: dict[str, str], current: dict[str, str]) -> list[str]:
    """The files whose hashes differ between two `prompt_hashes`, or that only one of them has."""
    return sorted(name for name in recorded.keys() | current.keys() if recorded.get(name) != current.get(name))
