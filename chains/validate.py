"""Validation of a generated reply: repair what can be repaired, reject what cannot.

Always repaired in place: @everyone/@here neutralised, role pings removed, lines in which the
model speaks as another member dropped, chat-template leftovers cut, length capped. Rejected (so
the chain retries once, then falls back to an in-character line): empty, an echo of the message,
or out of character (talking about being an AI or a model).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from rapidfuzz import fuzz

from chains.types import Verdict

ZERO_WIDTH_SPACE = "\u200b"
_TEMPLATE_LEFTOVERS = re.compile(r"<\|[a-z_]+\|>|</s>|\[/?INST\]|<s>", re.I)
_MASS_PING = re.compile(r"@(everyone|here)\b", re.I)
_ROLE_PING = re.compile(r"<@&\d+>")
_SPEAKER_LINE = re.compile(r"^\s*[*_~]*(?P<name>[\w .'\-()]{1,40}?)[*_~]*\s*:\s*(?P<rest>.*)$")
_NOT_SPEAKERS = {"note", "ps", "p.s", "edit", "update", "tip", "fun fact", "answer", "question", "q", "a", "example", "http", "https", "warning", "step 1", "step 2"}
_OUT_OF_CHARACTER = re.compile(
    r"\b(as an ai|an ai (language )?model|language model|i am an ai|i'm an ai|ai assistant|"
    r"smollm|hugging ?face|openai|chatgpt|i am a bot|i'm a bot|my programming)\b", re.I
)


def _cap(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    cut = max(head.rfind(". "), head.rfind("! "), head.rfind("? "), head.rfind("\n"))
    if cut < limit // 2:
        cut = head.rfind(" ")
    return head[: cut + 1 if cut > 0 else limit - 1].rstrip() + "…"


def _speaker(line: str, character: str, members: set[str]) -> str | None:
    """The other member a line is written as ("bob: I quit" -> "bob"), or None."""
    match = _SPEAKER_LINE.match(line)
    if not match:
        return None
    name = match["name"].strip().lower()
    if name == character.lower() or name in _NOT_SPEAKERS or name.isdigit():
        return None
    if name in members or re.fullmatch(r"[\w.'\-]+( \(member\))?", name):
        return match["name"].strip()
    return None


def repair(raw: str, character: str, members: Iterable[str] = ()) -> tuple[str, list[str]]:
    """Clean a raw generation; returns the text and the fixes applied."""
    fixes: list[str] = []
    members_lower = {m.lower() for m in members}
    text = raw
    leftover = _TEMPLATE_LEFTOVERS.search(text)
    if leftover:
        text = text[: leftover.start()]
        fixes.append("cut at chat-template token")
    text = text.strip()
    prefix = re.match(rf"^\s*[*_]*{re.escape(character)}[*_]*\s*:\s*", text, re.I)
    if prefix:
        text = text[prefix.end() :]
    kept = []
    for line in text.splitlines():
        other = _speaker(line, character, members_lower)
        if other:
            fixes.append(f"dropped text written as {other!r}")
            break  # the model has started another member's turn: nothing after it is the reply
        kept.append(line)
    text = "\n".join(kept).strip()
    if _MASS_PING.search(text):
        text = _MASS_PING.sub(lambda m: "@" + ZERO_WIDTH_SPACE + m.group(1), text)
        fixes.append("neutralised @everyone/@here")
    if _ROLE_PING.search(text):
        text = _ROLE_PING.sub("", text).strip()
        fixes.append("removed role ping")
    return text, fixes


def validate(raw: str, message: str, character: str, max_chars: int, members: Iterable[str] = ()) -> Verdict:
    """Repair and judge one generated reply."""
    text, fixes = repair(raw, character, members)
    problems = []
    if not re.search(r"\w", text):
        problems.append("empty")
    elif len(message.strip()) >= 8 and fuzz.ratio(text.lower(), message.lower()) >= 90:
        problems.append("echo of the message")
    if _OUT_OF_CHARACTER.search(text):
        problems.append("out of character")
    if len(text) > max_chars:
        text = _cap(text, max_chars)
        fixes.append(f"capped at {max_chars} characters")
    return Verdict(ok=not problems, text=text, problems=tuple(problems), fixes=tuple(fixes))


def is_safe(text: str) -> bool:
    """True when text has no live mass or role ping."""
    return not _MASS_PING.search(text) and not _ROLE_PING.search(text)
