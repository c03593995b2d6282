"""Short-term memory: per channel, the last SHORT_TERM_WINDOW messages and a rolling summary.

Every message of the channel is added. Every SUMMARIZE_INTERVAL messages the summary is due for a
refresh: the memory hands a summary task to the generation service (`schedule`), which runs it
only while no reply is waiting and coalesces requests per channel. The task takes the messages
since the last summary when it runs (so a late refresh covers everything), and gives them back if
it is preempted or fails, to be summarized with the next ones; a channel so busy that its refresh
keeps being postponed keeps the newest SUMMARY_BACKLOG of them. A reply reads whatever summary is
current; it never waits for one.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field, replace

from chains.types import ChatMessage
from llm.generation import BackgroundTask, GenerationRequest

logger = logging.getLogger(__name__)

SUMMARY_BACKLOG = 200  # messages kept for the next summary when refreshes keep being postponed

SummaryRequest = Callable[[str, list[ChatMessage]], GenerationRequest]  # (previous summary, new messages)
Schedule = Callable[[Hashable, BackgroundTask], bool]


@dataclass(frozen=True)
class MemorySnapshot:
    """The window and the summary of one channel at one moment."""

    messages: tuple[ChatMessage, ...] = ()
    summary: str = ""
    first_position: int = 0  # the channel position (count of messages before it) of messages[0]


@dataclass
class _Channel:
    window: deque
    summary: str = ""
    since_summary: list[ChatMessage] = field(default_factory=list)
    in_flight: list[ChatMessage] = field(default_factory=list)
    added: int = 0  # messages added since the channel was first seen (or cleared)
    generation: int = 0  # bumped by clear(), so a summary started before a clear is dropped
    summarized: set = field(default_factory=set)  # ids of the messages the summary was made from


def _words_of(messages) -> set[int]:
    """The ids of the members' messages whose words these hold: their own, and those a reply of the
    character's was made from (`ChatMessage.sources`)."""
    return {i for m in messages for i in (m.message_id, *m.sources) if i}


def _cites(message: ChatMessage, ids: set[int]) -> bool:
    """The message is one of `ids`, or a reply of the character's made from one of them."""
    return message.message_id in ids or not message.sources.isdisjoint(ids)


class _SummaryTask:
    """One channel's summary refresh, run by the generation service when it is idle."""

    def __init__(self, memory: ShortTermMemory, channel_id: int) -> None:
        self.memory, self.channel_id = memory, channel_id
        self.generation = 0

    def prepare(self) -> GenerationRequest | None:
        memory = self.memory
        with memory._lock:
            channel = memory._channel(self.channel_id)
            if not channel.since_summary or memory.summary_request is None:
                return None
            batch, channel.since_summary = channel.since_summary, []
            channel.in_flight, self.generation, previous = batch, channel.generation, channel.summary
        return memory.summary_request(previous, batch)

    def finish(self, text: str) -> None:
        with self.memory._lock:
            channel = self.memory._channel(self.channel_id)
            if channel.generation == self.generation:
                channel.summarized |= _words_of(channel.in_flight)
                channel.in_flight = []
                if text.strip():
                    channel.summary = text.strip()
        logger.debug("summary refreshed for channel %s (%d characters)", self.channel_id, len(text.strip()))

    def abort(self, reason: str) -> None:
        with self.memory._lock:
            channel = self.memory._channel(self.channel_id)
            if channel.generation == self.generation:
                channel.since_summary = (channel.in_flight + channel.since_summary)[-SUMMARY_BACKLOG:]
                channel.in_flight = []
        logger.debug("summary of channel %s postponed: %s", self.channel_id, reason)


class ShortTermMemory:
    """Per-channel message window and rolling summary."""

    def __init__(
        self,
        window: int,
        summarize_interval: int,
        summary_request: SummaryRequest | None = None,
        schedule: Schedule | None = None,
    ) -> None:
        self.window = window
        self.interval = summarize_interval
        self.summary_request = summary_request
        self.schedule = schedule
        self._channels: dict[int, _Channel] = {}
        self._lock = threading.Lock()

    def _channel(self, channel_id: int) -> _Channel:
        if channel_id not in self._channels:
            self._channels[channel_id] = _Channel(window=deque(maxlen=self.window))
        return self._channels[channel_id]

    def add(self, channel_id: int, message: ChatMessage) -> bool:
        """Remember a message; True when it made a summary refresh due (and it was handed on)."""
        with self._lock:
            channel = self._channel(channel_id)
            channel.window.append(message)
            channel.added += 1
            channel.since_summary.append(message)
            if len(channel.since_summary) > SUMMARY_BACKLOG:  # a busy channel postponing its summary
                del channel.since_summary[0]
            due = (
                self.summary_request is not None
                and self.schedule is not None
                and len(channel.since_summary) >= self.interval
            )
        if due:
            self.schedule(("summary", channel_id), _SummaryTask(self, channel_id))
        return due

    def resize(self, window: int, summarize_interval: int) -> None:
        """A new window length and summary interval; each channel keeps its newest messages."""
        with self._lock:
            self.interval = summarize_interval
            if window != self.window:
                self.window = window
                for channel in self._channels.values():
                    channel.window = deque(channel.window, maxlen=window)

    def snapshot(self, channel_id: int) -> MemorySnapshot:
        with self._lock:
            channel = self._channel(channel_id)
            return MemorySnapshot(tuple(channel.window), channel.summary, channel.added - len(channel.window))

    def forget(self, author_ids: set[int], names: set[str] = frozenset()) -> int:
        """Drop a member's messages from every channel; a channel they spoke in also loses its summary.

        Messages match by author id, or by name (`names`, normalized) for messages without one.
        Returns how many messages were dropped.
        """
        from chains.names import normalize

        wanted = {normalize(n) for n in names}

        def theirs(message: ChatMessage) -> bool:
            if message.from_character:
                return False
            return message.author_id in author_ids if message.author_id else normalize(message.author) in wanted

        dropped = 0
        with self._lock:
            for channel in self._channels.values():
                kept = [m for m in channel.window if not theirs(m)]
                if len(kept) == len(channel.window) and not any(
                    theirs(m) for m in channel.since_summary + channel.in_flight
                ):
                    continue
                dropped += len(channel.window) - len(kept)
                channel.window = deque(kept, maxlen=self.window)
                channel.since_summary = [m for m in channel.since_summary if not theirs(m)]
                channel.in_flight = []
                channel.summary, channel.summarized = "", set()  # it may hold their words
                channel.generation += 1  # a summary being made of their words is dropped too
        return dropped

    def drop(self, message_ids: set[int]) -> int:
        """Drop messages (deleted on Discord, no longer kept) from every channel; returns how many were held.

        The character's replies made from one of them go too (the model may have quoted it), a summary
        made from one is dropped (it may hold its words), and a summary being made from one is
        discarded; the other messages it covered wait for the next summary.
        """
        return self._rewrite(lambda m: None if _cites(m, message_ids) else m, message_ids)

    def edit(self, message_id: int, content: str) -> bool:
        """A message's new words replace the old ones wherever it is remembered (the character's replies
        made from the old words go, as `drop` says); True if it was."""

        def change(message: ChatMessage) -> ChatMessage | None:
            if message.message_id == message_id:
                return replace(message, content=content)
            return None if _cites(message, {message_id}) else message

        return bool(self._rewrite(change, {message_id}))

    def cited(self) -> set[int]:
        """The ids of the members' messages whose words memory holds: every message kept, the summaries and
        the character's replies made from others (see `ChatMessage.sources`)."""
        with self._lock:
            return {
                i
                for channel in self._channels.values()
                for i in _words_of([*channel.window, *channel.since_summary, *channel.in_flight]) | channel.summarized
            }

    def prompt_sources(self, channel_id: int) -> set[int]:
        """What a prompt made now from this channel's memory holds: the window (with what the character's
        replies in it were made from) and the summary's messages."""
        with self._lock:
            channel = self._channel(channel_id)
            return _words_of(channel.window) | channel.summarized

    def said(self, message_ids: set[int]) -> dict[int, str]:
        """The words of these messages that memory holds, by id."""
        with self._lock:
            return {
                m.message_id: m.content
                for channel in self._channels.values()
                for m in [*channel.window, *channel.since_summary, *channel.in_flight]
                if m.message_id in message_ids
            }

    def said_by(self, author_ids: set[int]) -> dict[int, str]:
        """The words of these members' messages that memory holds, by message id (kept or not in the store)."""
        with self._lock:
            return {
                m.message_id: m.content
                for channel in self._channels.values()
                for m in [*channel.window, *channel.since_summary, *channel.in_flight]
                if m.message_id and m.author_id in author_ids and not m.from_character
            }

    def _rewrite(self, change, message_ids: set[int]) -> int:
        touched = 0
        with self._lock:
            for channel in self._channels.values():
                held = [
                    m for m in [*channel.window, *channel.since_summary, *channel.in_flight] if _cites(m, message_ids)
                ]
                summarized = bool(channel.summarized & message_ids)
                if not held and not summarized:
                    continue
                touched += len({m.message_id for m in held if m.message_id in message_ids}) or 1
                channel.window = deque((m for m in map(change, channel.window) if m is not None), maxlen=self.window)
                if summarized or any(_cites(m, message_ids) for m in channel.in_flight):
                    channel.summary, channel.summarized = "", set()  # it may hold the old words
                    channel.since_summary = channel.in_flight + channel.since_summary
                    channel.in_flight = []
                    channel.generation += 1  # a summary being made of them is dropped
                channel.since_summary = [m for m in map(change, channel.since_summary) if m is not None]
        return touched

    def clear(self, channel_id: int) -> None:
        """Forget this channel's window and summary (a summary being made is discarded)."""
        with self._lock:
            channel = self._channel(channel_id)
            channel.window.clear()
            channel.since_summary.clear()
            channel.in_flight = []
            channel.summary = ""
            channel.summarized = set()
            channel.added = 0
            channel.generation += 1

    def close(self) -> None:
        """Nothing to stop: summaries run on the generation service."""
