"""What every engine shares: the per-call options, the statistics it reports, stop-string scanning."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


class EngineError(RuntimeError):
    """The engine refused or failed a generation; the message says why."""


@dataclass
class GenerationStats:
    """Filled in by the engine during one generation."""

    prompt_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens reused from the KV cache of an earlier request
    generated_tokens: int = 0
    finish: str = ""  # "stop", "length", "cancelled"
    prefill_seconds: float | None = None  # as the engine measured them, where it reports them
    decode_seconds: float | None = None

    @property
    def computed_tokens(self) -> int:
        return max(self.prompt_tokens - self.cached_tokens, 0)


def _never() -> bool:
    return False


@dataclass(frozen=True)
class CallOptions:
    """The keyword arguments an engine accepts on `.stream()` and `.invoke()`."""

    max_new_tokens: int | None = None
    temperature: float | None = None
    slot: int = 0  # KV-cache slot: replies and background work keep separate caches
    should_stop: Callable[[], bool] = _never
    stats: GenerationStats | None = None


def options(kwargs: dict[str, Any]) -> CallOptions:
    """The engine options found among a LangChain call's keyword arguments."""
    known = {
        k: kwargs[k]
        for k in ("max_new_tokens", "temperature", "slot", "should_stop", "stats")
        if k in kwargs and kwargs[k] is not None
    }
    return CallOptions(**known)


class StopScanner:
    """Finds stop strings in streamed text, holding back what could be the start of one.

    `feed(piece)` returns the text that is safe to pass on; `stopped` turns true at the first stop
    string, and nothing from the stop string on is ever returned.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self.stopped = False
        self._held = ""

    def feed(self, piece: str) -> str:
        if self.stopped:
            return ""
        text = self._held + piece
        cut = min((i for i in (text.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped, self._held = True, ""
            return text[:cut]
        keep = 0  # the longest tail of `text` that is a proper prefix of a stop string
        for stop in self.stops:
            for size in range(min(len(stop) - 1, len(text)), keep, -1):
                if text.endswith(stop[:size]):
                    keep = size
                    break
        self._held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

    def flush(self) -> str:
        """What is still held back once the stream has ended without a stop string."""
        held, self._held = ("" if self.stopped else self._held), ""
        return held
