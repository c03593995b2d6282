"""Short-term memory: per channel, the last SHORT_TERM_WINDOW messages and a rolling summary.

Every message of the channel is added. Every SUMMARIZE_INTERVAL messages the summary is refreshed
by the summarizer (an LLM prompt) on a background thread, never on the reply path: a reply reads
whatever summary is current.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from chains.types import ChatMessage

logger = logging.getLogger(__name__)

Summarizer = Callable[[str, list[ChatMessage]], str]


@dataclass(frozen=True)
class MemorySnapshot:
    """The window and the summary of one channel at one moment."""

    messages: tuple[ChatMessage, ...] = ()
    summary: str = ""


@dataclass
class _Channel:
    window: deque
    summary: str = ""
    since_summary: list[ChatMessage] = field(default_factory=list)
    pending: Future | None = None
    generation: int = 0  # bumped by clear(), so a summary started before a clear is dropped


class ShortTermMemory:
    """Per-channel message window and rolling summary."""

    def __init__(self, window: int, summarize_interval: int, summarizer: Summarizer | None = None) -> None:
        self.window = window
        self.interval = summarize_interval
        self.summarizer = summarizer
        self._channels: dict[int, _Channel] = {}
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="summarizer")

    def _channel(self, channel_id: int) -> _Channel:
        if channel_id not in self._channels:
            self._channels[channel_id] = _Channel(window=deque(maxlen=self.window))
        return self._channels[channel_id]

    def add(self, channel_id: int, message: ChatMessage) -> Future | None:
        """Remember a message; returns the background summary job if this one triggered it."""
        with self._lock:
            channel = self._channel(channel_id)
            channel.window.append(message)
            channel.since_summary.append(message)
            if self.summarizer is None or len(channel.since_summary) < self.interval:
                return None
            if channel.pending is not None and not channel.pending.done():
                return None  # the running refresh will be followed by the next interval
            batch, channel.since_summary = channel.since_summary, []
            job = self._executor.submit(self._refresh, channel_id, channel.summary, batch, channel.generation)
            channel.pending = job
            return job

    def _refresh(self, channel_id: int, previous: str, batch: list[ChatMessage], generation: int) -> str:
        try:
            summary = self.summarizer(previous, batch).strip()  # type: ignore[misc]
        except Exception:
            logger.exception("summary refresh failed for channel %s; keeping the previous one", channel_id)
            with self._lock:
                channel = self._channel(channel_id)
                channel.since_summary = batch + channel.since_summary
            return previous
        with self._lock:
            channel = self._channel(channel_id)
            if channel.generation == generation and summary:
                channel.summary = summary
        logger.debug("summary refreshed for channel %s: %s", channel_id, summary)
        return summary

    def snapshot(self, channel_id: int) -> MemorySnapshot:
        with self._lock:
            channel = self._channel(channel_id)
            return MemorySnapshot(tuple(channel.window), channel.summary)

    def clear(self, channel_id: int) -> None:
        """Forget this channel's window and summary (a running refresh is discarded)."""
        with self._lock:
            channel = self._channel(channel_id)
            channel.window.clear()
            channel.since_summary.clear()
            channel.summary = ""
            channel.generation += 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
