"""Names as members write them, and as they must be compared.

Display names are free text: emoji, symbols, zero-width characters, full-width forms and letters
from other scripts that look like Latin ones (a Cyrillic "Ѕ" in "Ѕusu"). Two names are the same
member's when their `normalize`d forms are equal; a name passes for another when their `skeleton`s
are (Unicode's confusables data, through `confusable_homoglyphs`).
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Iterable, Iterator
from functools import lru_cache

ZERO_WIDTH = re.compile("[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")
_SPACES = re.compile(r"\s+")


def normalize(name: str) -> str:
    """NFKC, zero-width and direction marks removed, spaces collapsed, case-folded."""
    text = ZERO_WIDTH.sub("", unicodedata.normalize("NFKC", name))
    return _SPACES.sub(" ", text).strip().casefold()


@lru_cache(maxsize=4096)
def _latin(char: str) -> str:
    """The Latin character `char` looks like, or `char` itself."""
    from confusable_homoglyphs import categories, confusables

    if char.isascii() or categories.alias(char) in ("LATIN", "COMMON"):
        return char
    found = confusables.is_confusable(char, greedy=True, preferred_aliases=["latin"]) or []
    for entry in found:
        for glyph in entry.get("homoglyphs", ()):
            if glyph["n"].startswith("LATIN") or glyph["c"].isascii():
                return glyph["c"]
    return char


def skeleton(name: str) -> str:
    """What a name looks like: normalized, each character replaced by the Latin one it passes for."""
    folded = unicodedata.normalize("NFKD", normalize(name))
    plain = "".join(c for c in folded if not unicodedata.combining(c))
    return "".join(_latin(c) for c in plain).casefold()


def one_line(text: str) -> str:
    """Text that cannot start a new line of a prompt: line breaks become spaces, zero-width marks go."""
    return _SPACES.sub(" ", ZERO_WIDTH.sub("", text)).strip()


# Markers of the common chat templates, defused in member text even when the loaded tokenizer does
# not know them (a prompt may reach another engine or server with another template).
TEMPLATE_MARKERS = (
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
    "[INST]",
    "[/INST]",
    "<s>",
    "</s>",
    "<<SYS>>",
    "<</SYS>>",
    "<|begin_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|end|>",
    "<start_of_turn>",
    "<end_of_turn>",
    "[SYSTEM_PROMPT]",
    "[/SYSTEM_PROMPT]",
)
_GENERIC_MARKER = r"<\|[^|<>\s]{1,64}\|>"


class SpecialTokenGuard:
    """Defuses the strings a tokenizer would read as control tokens, in text members wrote.

    `<|im_end|>` in a message, a nickname, a lore post or a summary would end the turn and open a
    forged one; with a zero-width space after its first character it is plain text to every
    tokenizer (llama.cpp and servers parse special tokens in the prompt text too).
    """

    def __init__(self, tokenizer=None) -> None:
        specials = set(TEMPLATE_MARKERS)
        if tokenizer is not None:
            specials |= {t for t in getattr(tokenizer, "all_special_tokens", ()) if t}
            added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
            specials |= {t.content for t in added.values() if getattr(t, "special", False) and t.content}
        alternatives = sorted((re.escape(s) for s in specials if len(s) >= 2), key=len, reverse=True)
        self.pattern = re.compile("|".join([*alternatives, _GENERIC_MARKER]))

    def __call__(self, text: str) -> str:
        return self.pattern.sub(lambda m: m.group(0)[0] + "\u200b" + m.group(0)[1:], text) if text else text


class KnownNames:
    """The member names the bot knows beyond the conversation (the store's, and those seen since): a reply
    never speaks as any of them.

    Added to from the event loop and the ingestion thread while replies read it on the generation side:
    iterating gives a snapshot, never a set changing under the reader.
    """

    def __init__(self, names: Iterable[str] = ()) -> None:
        self._names = {n for n in names if n}
        self._lock = threading.Lock()

    def add(self, *names: str | None) -> None:
        with self._lock:
            self._names.update(n for n in names if n)

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            return iter(list(self._names))

    def __len__(self) -> int:
        return len(self._names)
