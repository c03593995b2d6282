"""Validation of a generated reply: repair what can be repaired, reject what cannot.

Always repaired in place: @everyone/@here neutralised, role pings removed, a speaker label the
reply opens with ("Susu: ...", "bob: ...") removed (the text is kept: the character says it),
everything from a later line in which the model speaks as another member on cut, chat-template
leftovers cut, length capped. Rejected (so the chain retries once, then falls back to an
in-character line): empty, an echo of the message, or out of character (talking about being an
AI or a model).

`stream_view` applies the same repairs to a reply that is still being generated, showing only
what can no longer change into something unsafe.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from rapidfuzz import fuzz

from chains.types import Verdict

ZERO_WIDTH_SPACE = "\u200b"
_TEMPLATE_LEFTOVERS = re.compile(r"<\|[a-z_]+\|>|</s>|\[/?INST\]|<s>", re.I)
_MASS_PING = re.compile(r"@(everyone|here)\b", re.I)
_ROLE_PING = re.compile(r" ?<@&\d+>")
_SPEAKER_LINE = re.compile(r"^\s*[*_~]*@?(?P<name>[\w .'\-()]{1,40}?)[*_~]*\s*:\s*(?P<rest>.*)$")
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


def _opening_label(text: str, character: str, members: set[str]) -> re.Match | None:
    """A speaker label the text opens with: the character's own name, or another member's."""
    own = re.match(rf"^\s*[*_]*@?{re.escape(character)}[*_]*\s*:\s*", text, re.I)
    if own:
        return own
    match = _SPEAKER_LINE.match(text.split("\n", 1)[0])
    if match and _speaker(match.group(0), character, members):
        return re.match(r"^\s*[*_~]*[^:\n]*?[*_~]*\s*:\s*", text)
    return None


def _cut_speaker_lines(text: str, character: str, members: set[str]) -> tuple[str, str | None]:
    """The text up to the first line written as another member, and that member (or None)."""
    kept = []
    for line in text.split("\n"):
        other = _speaker(line, character, members)
        if other:
            return "\n".join(kept), other  # the model has started another member's turn: the reply ends
        kept.append(line)
    return text, None


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
    label = _opening_label(text, character, members_lower)
    if label:
        text = text[label.end() :]
        fixes.append(f"removed the opening label {label.group(0).strip()!r}")
    text, other = _cut_speaker_lines(text, character, members_lower)
    if other:
        fixes.append(f"dropped text written as {other!r}")
    text = text.strip()
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


_MAY_BECOME_LABEL = re.compile(r"^\s*[*_~]*@?[\w .'\-()]{0,40}$")
_UNFINISHED_MARKUP = re.compile(r"(<[^>\s]*|\[/?[A-Za-z]*|@\w*)$")


def stream_view(raw: str, character: str, max_chars: int, members: Iterable[str] = ()) -> tuple[str, bool]:
    """What may be shown of a reply still being generated, and whether it has ended.

    The shown text is the repaired text (pings neutralised, labels and other members' lines
    removed) minus what the next pieces could still change: a last line that may yet turn into
    "name:", an unfinished `<...>`, `[INST` or `@word`. It is never longer than `max_chars`.
    `ended` is true once the model has started another member's line or a chat-template token:
    nothing after that belongs to the reply, so the generation can stop.
    """
    members_lower = {m.lower() for m in members}
    ended = bool(_TEMPLATE_LEFTOVERS.search(raw))
    if not ended:
        lines = raw.lstrip().split("\n")
        ended = any(_speaker(line, character, members_lower) for line in lines[1:])
    text, _ = repair(raw, character, members_lower)
    if not ended:
        last = raw.rsplit("\n", 1)[-1]
        if _MAY_BECOME_LABEL.match(last) and ":" not in last:
            # the line being written may still become "name: ...": hold it back
            text = text[: len(text) - len(last.strip())] if last.strip() and text.endswith(last.strip()) else text
        text = _UNFINISHED_MARKUP.sub("", text)
        space = max(text.rfind(" "), text.rfind("\n"))
        text = text[:space] if space > 0 and not raw.endswith((" ", "\n")) else text
    text = text.rstrip()
    if _OUT_OF_CHARACTER.search(text) or not is_safe(text):
        return "", ended
    return (_cap(text, max_chars) if len(text) > max_chars else text), ended
