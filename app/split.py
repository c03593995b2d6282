"""Splitting a long reply into Discord messages of at most 2,000 characters.

Cuts fall at a paragraph, line, sentence or word boundary, never inside a word where a boundary
exists. A cut inside a ``` code block closes the block at the end of the chunk and reopens it, with
its language, at the start of the next one, so every chunk renders as the author meant.
"""

from __future__ import annotations

import re

DISCORD_LIMIT = 2000
FENCE = re.compile(r"^```(\S*)", re.MULTILINE)


def _open_fence(text: str) -> str | None:
    """The language of a code block left open at the end of `text` ('' for none), or None."""
    language = None
    for match in FENCE.finditer(text):
        language = match.group(1) if language is None else None
    return language


def _cut(text: str, limit: int) -> int:
    """Where to cut `text` (len > limit) so the first part is at most `limit` characters."""
    window = text[:limit]
    for pattern in ("\n\n", "\n", ". ", "! ", "? ", " "):
        at = window.rfind(pattern)
        if at > limit // 3:
            return at + len(pattern.rstrip(" ")) if pattern.strip() else at + 1
    return limit  # one unbroken run of characters: cut it


def split_message(text: str, limit: int = DISCORD_LIMIT) -> list[str]:
    """Chunks of at most `limit` characters; code blocks stay closed in each chunk."""
    chunks: list[str] = []
    reopen = ""
    rest = text.strip()
    while rest:
        body = reopen + rest
        if len(body) <= limit:
            chunks.append(body)
            break
        room = limit - 4  # space to close a code block: "\n```"
        at = _cut(body, room)
        chunk = body[:at].rstrip()
        language = _open_fence(chunk)
        if language is not None:
            chunk += "\n```"
            reopen = f"```{language}\n"
        else:
            reopen = ""
        if chunk.strip() and chunk.strip() != "```":
            chunks.append(chunk)
        rest = body[at:].lstrip("\n ") if not reopen else body[at:].lstrip("\n")
        if reopen and rest.startswith(reopen):
            rest = rest[len(reopen) :]
    return chunks
