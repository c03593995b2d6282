"""The character's persona: a YAML file of this project, or a Character Card V2 (JSON or PNG).

Both become one `Persona`. `{{char}}` and `{{user}}` placeholders are kept until a reply is
built, when `render()` fills them in. `creator_notes` of a card are kept but never shown to the model.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from prompts.loader import PromptError

_DEFAULT_FALLBACK = "*{{char}} tilts their head* sorry, I lost my train of thought. ask me again?"
_DEFAULT_BUSY = "*{{char}} is answering someone else* one moment!"
_DEFAULT_UNKNOWN = "*{{char}} searches their memory* I don't know that one. someone who was there might!"


@dataclass(frozen=True)
class LorebookEntry:
    """A Character Card V2 character_book entry: text inserted when its keys appear in the chat."""

    keys: tuple[str, ...]
    content: str
    secondary_keys: tuple[str, ...] = ()
    selective: bool = False
    constant: bool = False
    enabled: bool = True
    priority: int = 0
    insertion_order: int = 0

    def matches(self, text: str) -> bool:
        """True when the entry should be inserted for this chat text (case-insensitive)."""
        if not self.enabled:
            return False
        if self.constant:
            return True
        lowered = text.lower()
        if not any(k.lower() in lowered for k in self.keys if k):
            return False
        if self.selective and self.secondary_keys:
            return any(k.lower() in lowered for k in self.secondary_keys if k)
        return True


@dataclass(frozen=True)
class Persona:
    """Everything the prompts need to know about the character."""

    name: str
    description: str = ""
    personality: str = ""
    speaking_style: str = ""
    scenario: str = ""
    examples: tuple[tuple[str, str], ...] = ()
    greeting: str = ""
    system_prompt: str = ""
    post_history_instructions: str = ""
    fallback_lines: tuple[str, ...] = (_DEFAULT_FALLBACK,)
    busy_lines: tuple[str, ...] = (_DEFAULT_BUSY,)
    unknown_lines: tuple[str, ...] = (_DEFAULT_UNKNOWN,)
    lorebook: tuple[LorebookEntry, ...] = ()
    lorebook_scan_depth: int = 4
    examples_in_prompt: int = 1
    tags: tuple[str, ...] = ()
    creator_notes: str = ""
    extensions: dict = field(default_factory=dict)
    source: Path | None = None

    def render(self, text: str, user: str = "user") -> str:
        """Fill the {{char}} and {{user}} placeholders, literally (a name is text, never a pattern or a new line)."""
        user = " ".join(user.split()) or "someone"
        text = re.sub(r"\{\{\s*char\s*\}\}", lambda _: self.name, text, flags=re.IGNORECASE)
        return re.sub(r"\{\{\s*user\s*\}\}", lambda _: user, text, flags=re.IGNORECASE)

    def core(self, user: str) -> str:
        """The persona text given to the model: always in the prompt, never cut."""
        parts = [
            self.system_prompt,
            self.description,
            f"Personality: {self.personality}" if self.personality else "",
            f"Style: {self.speaking_style}" if self.speaking_style else "",
            self.scenario,
        ]
        shots = [f"{u}\n{self.name}: {c}" for u, c in self.examples[: self.examples_in_prompt]]
        if shots:
            parts.append("Example:\n" + "\n".join(shots))
        parts.append(self.post_history_instructions)
        return self.render("\n".join(p.strip() for p in parts if p and p.strip()), user)

    def fallback(self, index: int = 0) -> str:
        return self.render(self.fallback_lines[index % len(self.fallback_lines)])

    def busy(self, index: int = 0) -> str:
        return self.render(self.busy_lines[index % len(self.busy_lines)])

    def unknown(self, index: int = 0) -> str:
        """Said to a question that neither the lore nor the conversation answers, instead of an invented answer."""
        return self.render(self.unknown_lines[index % len(self.unknown_lines)])


def _lines(value: object, path: Path, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise PromptError(f"{path}: '{key}' must be a string or a list of strings")


def _from_yaml(path: Path) -> Persona:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise PromptError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not str(data.get("name", "")).strip():
        raise PromptError(f"{path}: a persona needs at least a 'name'")
    examples = []
    for i, item in enumerate(data.get("example_messages") or []):
        if not isinstance(item, dict) or not {"user", "char"} <= item.keys():
            raise PromptError(f"{path}: example_messages[{i}] needs 'user' and 'char'")
        examples.append((str(item["user"]), str(item["char"])))
    return Persona(
        name=str(data["name"]).strip(),
        description=str(data.get("description") or ""),
        personality=str(data.get("personality") or ""),
        speaking_style=str(data.get("speaking_style") or ""),
        scenario=str(data.get("scenario") or ""),
        examples=tuple(examples),
        greeting=str(data.get("greeting") or ""),
        system_prompt=str(data.get("system_prompt") or ""),
        post_history_instructions=str(data.get("post_history_instructions") or ""),
        fallback_lines=_lines(data.get("fallback_lines"), path, "fallback_lines") or (_DEFAULT_FALLBACK,),
        busy_lines=_lines(data.get("busy_lines"), path, "busy_lines") or (_DEFAULT_BUSY,),
        unknown_lines=_lines(data.get("unknown_lines"), path, "unknown_lines") or (_DEFAULT_UNKNOWN,),
        examples_in_prompt=int(data.get("examples_in_prompt", 1)),
        source=path,
    )


def _parse_mes_example(text: str) -> tuple[tuple[str, str], ...]:
    """Split a card's mes_example (<START>-separated dialogues) into (user line, char line) pairs."""
    pairs = []
    for dialogue in re.split(r"<START>", text or "", flags=re.IGNORECASE):
        user_line = None
        for line in dialogue.strip().splitlines():
            match = re.match(r"\s*\{\{(user|char)\}\}\s*:\s*(.*)", line, flags=re.IGNORECASE)
            if not match:
                continue
            if match.group(1).lower() == "user":
                user_line = f"{{{{user}}}}: {match.group(2)}"
            elif user_line is not None:
                pairs.append((user_line, match.group(2)))
                user_line = None
    return tuple(pairs)


def _card_json(path: Path) -> dict:
    if path.suffix.lower() == ".png":
        from PIL import Image

        with Image.open(path) as image:
            chunk = image.text.get("chara") if hasattr(image, "text") else None
        if not chunk:
            raise PromptError(f"{path}: PNG has no 'chara' tEXt chunk (not a character card)")
        try:
            return json.loads(base64.b64decode(chunk))
        except (ValueError, json.JSONDecodeError) as exc:
            raise PromptError(f"{path}: 'chara' chunk is not base64 JSON: {exc}") from None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise PromptError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno})") from None


def _from_card(path: Path) -> Persona:
    card = _card_json(path)
    if card.get("spec") != "chara_card_v2" or not isinstance(card.get("data"), dict):
        raise PromptError(f"{path}: not a Character Card V2 (spec must be 'chara_card_v2' with 'data')")
    data = card["data"]
    if not str(data.get("name", "")).strip():
        raise PromptError(f"{path}: card data has no 'name'")
    book = data.get("character_book") or {}
    entries = []
    for raw in book.get("entries") or []:
        if not isinstance(raw, dict) or not raw.get("content"):
            continue
        entries.append(
            LorebookEntry(
                keys=tuple(str(k) for k in raw.get("keys") or ()),
                content=str(raw["content"]),
                secondary_keys=tuple(str(k) for k in raw.get("secondary_keys") or ()),
                selective=bool(raw.get("selective", False)),
                constant=bool(raw.get("constant", False)),
                enabled=bool(raw.get("enabled", True)),
                priority=int(raw.get("priority") or 0),
                insertion_order=int(raw.get("insertion_order") or 0),
            )
        )
    extensions = data.get("extensions") or {}
    return Persona(
        name=str(data["name"]).strip(),
        description=str(data.get("description") or ""),
        personality=str(data.get("personality") or ""),
        scenario=str(data.get("scenario") or ""),
        examples=_parse_mes_example(str(data.get("mes_example") or "")),
        greeting=str(data.get("first_mes") or ""),
        system_prompt=str(data.get("system_prompt") or ""),
        post_history_instructions=str(data.get("post_history_instructions") or ""),
        lorebook=tuple(entries),
        lorebook_scan_depth=int(book.get("scan_depth") or 4),
        tags=tuple(str(t) for t in data.get("tags") or ()),
        creator_notes=str(data.get("creator_notes") or ""),
        extensions=dict(extensions) if isinstance(extensions, dict) else {},
        source=path,
    )


def load_persona(path: Path) -> Persona:
    """Load a persona from YAML, or a Character Card V2 from .json or .png."""
    if not path.is_file():
        raise PromptError(f"{path}: persona file not found (set PERSONA_FILE)")
    if path.suffix.lower() in {".yaml", ".yml"}:
        return _from_yaml(path)
    if path.suffix.lower() in {".json", ".png"}:
        return _from_card(path)
    raise PromptError(f"{path}: persona must be .yaml, .json or .png")
