"""Delivering a reply in Discord: posted at its first sentence, edited as it grows, the validated text last.

Every text handed to `update` is already safe (the chain repairs partial replies exactly as it
repairs final ones), and every post and edit carries `allowed_mentions` that let it ping only the
member it answers. Edits are paced: at least `edit_seconds` apart while the reply grows, and all
of them through a limiter that keeps under Discord's edit rate limit (5 per 5 seconds per channel).
A reply longer than 2,000 characters streams its first message; the rest follows when it is final.
"""

from __future__ import annotations

import logging
import re
import time

import discord
from aiolimiter import AsyncLimiter

from app.split import split_message

logger = logging.getLogger(__name__)

EDITS_PER_WINDOW, EDIT_WINDOW_SECONDS = 5, 5.0  # Discord's limit on editing messages in one channel
FIRST_POST_CHARS = 60  # a first sentence that runs on longer is posted before it ends (cut at a word)
_SENTENCE_END = re.compile(r"[.!?…](?=\s)|\n")


QUOTE_WORDS = 3  # this many words of a message in a row, one of them telling, in a reply: it repeats the message
_WORD = re.compile(r"\w+")
_COMMON = frozenset(
    "about above after again being below could every first great happy hello maybe never other really right since "
    "still thank thanks their there these thing things think those today under until where which while would yeah "
    "yours".split()
)


def _telling(word: str) -> bool:
    """A word that says something of its own: a number, a name, anything of five letters or more but common ones."""
    return any(c.isdigit() for c in word) or (len(word) >= 5 and word not in _COMMON)


def _fragments(text: str) -> set[str]:
    """What repeating `text` shows: every run of QUOTE_WORDS words holding a telling word ("42 Quillmoor Lane",
    not "it is a" or "thank you so"), and each number of three digits or more on its own ("555-0199")."""
    words = _WORD.findall(text.casefold())
    runs = (words[i : i + QUOTE_WORDS] for i in range(len(words) - QUOTE_WORDS + 1))
    numbers = {w for w in words if sum(c.isdigit() for c in w) >= 3}
    return {" ".join(run) for run in runs if any(map(_telling, run))} | numbers


def without_quotes(text: str, gone: list[str], now: list[str] = ()) -> str:
    """`text` without the lines that quote one of the `gone` texts (deleted messages, or edited ones' old
    words; a run of words still in the `now` texts is no quote of what went); '' if no line is left."""
    wanted = set().union(*map(_fragments, gone)) - set().union(set(), *map(_fragments, now))
    if not wanted:
        return text

    def quotes(line: str) -> bool:
        said = f" {' '.join(_WORD.findall(line.casefold()))} "
        return any(f" {fragment} " in said for fragment in wanted)

    return "\n".join(line for line in text.splitlines() if not quotes(line)).strip()


def complete_sentences(text: str) -> str:
    """The text up to the end of its last complete sentence ('' if none has ended yet)."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    if ends:
        return text[: ends[-1]].rstrip()
    return text if len(text) >= FIRST_POST_CHARS else ""


async def safe_call(coroutine):
    """Run a Discord call; a refused one (deleted message, missing permission) is logged, not raised."""
    try:
        return await coroutine
    except discord.HTTPException as exc:
        logger.warning("Discord refused a call: %s %s", exc.status, exc.text)
        return None


class StreamedReply:
    """One reply to `message`, shown as it is generated."""

    def __init__(
        self, message: discord.Message, limiter: AsyncLimiter, edit_seconds: float = 1.0, ping: bool = True
    ) -> None:
        """`ping`: the member answered is notified (a reply is; a busy line is not)."""
        self.message = message
        self.limiter = limiter
        self.edit_seconds = edit_seconds
        self.ping = ping
        self.allowed = discord.AllowedMentions(
            everyone=False, roles=False, users=[message.author] if ping else False, replied_user=ping
        )
        self.sent: discord.Message | None = None
        self.posts: list[tuple[discord.Message, str]] = []  # once finished: each message posted, with its text
        self.shown = ""
        self.first_visible: float | None = None  # time.monotonic() of the first post
        self._last_edit = 0.0

    async def _post(self, text: str) -> discord.Message | None:
        sent = await safe_call(self.message.reply(text, allowed_mentions=self.allowed, mention_author=self.ping))
        if sent is None:  # the message was deleted meanwhile: post without the reference
            sent = await safe_call(self.message.channel.send(text, allowed_mentions=self.allowed))
        if sent is not None and self.first_visible is None:
            self.first_visible = time.monotonic()
        return sent

    async def _edit(self, text: str) -> None:
        async with self.limiter:
            edited = await safe_call(self.sent.edit(content=text, allowed_mentions=self.allowed))
        if edited is not None:
            self.shown = text
        self._last_edit = time.monotonic()

    async def update(self, text: str) -> None:
        """The reply so far (safe text): post it at its first sentence, then edit it, paced."""
        chunks = split_message(text)
        if not chunks:
            return
        if self.sent is None:
            first = complete_sentences(chunks[0])
            if first:
                self.sent = await self._post(first)
                self.shown, self._last_edit = first, time.monotonic()
            return
        visible = chunks[0] if len(chunks) == 1 else complete_sentences(chunks[0]) or chunks[0]
        if visible != self.shown and time.monotonic() - self._last_edit >= self.edit_seconds:
            await self._edit(visible)

    async def finish(self, text: str) -> None:
        """The final, validated text: the last edit (or the first post), then any further 2,000-character parts."""
        chunks = split_message(text) or [text]
        if self.sent is None:
            self.sent = await self._post(chunks[0])
        elif chunks[0] != self.shown:
            await self._edit(chunks[0])
        if self.sent is not None:
            self.posts.append((self.sent, self.shown or chunks[0]))  # what Discord shows
        for chunk in chunks[1:]:
            sent = await safe_call(self.message.channel.send(chunk, allowed_mentions=self.allowed))
            if sent is not None:
                self.posts.append((sent, chunk))
