"""Records passed between the stages of the reply chain."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class ChatMessage:
    """One message of the channel, as the chain sees it."""

    author: str
    content: str
    author_id: int = 0
    from_character: bool = False  # written by the bot itself
    message_id: int | None = None
    timestamp: datetime = field(default_factory=_now)
    sources: frozenset[int] = frozenset()  # the character's reply: ids of the messages its prompt held


@dataclass(frozen=True)
class LoreItem:
    """A piece of lore or history found for the reply."""

    content: str
    author: str = ""
    date: str = ""
    score: float = 0.0
    source: str = "index"  # "index" or "lorebook"
    scores: dict = field(default_factory=dict)
    reasons: str = ""
    thread: str = ""  # what a reply answers (the start of its thread), when it is one
    message_ids: tuple[int, ...] = ()  # the message and the thread it answers, whose words this holds
    asks: bool = False  # a message that asks rather than answers (indexes.answers.only_asks)
    more_ids: tuple[int, ...] = ()  # its author's next messages, that its words go on in (indexes.answers.goes_on)

    @property
    def held_ids(self) -> tuple[int, ...]:
        """Every stored message whose words this holds: a reply made from it is made from all of them."""
        return (*self.message_ids, *self.more_ids)


@dataclass(frozen=True)
class Verdict:
    """What validation decided about one generated reply."""

    ok: bool
    text: str
    problems: tuple[str, ...] = ()
    fixes: tuple[str, ...] = ()  # what was repaired in place (pings neutralised, lines dropped)
