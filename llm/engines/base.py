"""What every engine shares: the per-call options, the statistics it reports, the streaming interface
(`StreamingEngine`), stop-string scanning."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.outputs import GenerationChunk


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


class StreamingEngine:
    """The one interface of the engines (llama.cpp, transformers, an OpenAI-compatible server).

    An engine says how it generates in `pieces`: the text as it comes, reading the call's options and
    filling in its statistics. LangChain's `_stream` and `_call` are made from it here, once: the
    options read from the call's keyword arguments, a chunk per piece (with the callbacks told), and
    the closing chunk with the finish reason (LangChain wants one, even after nothing). Mixed in before
    LangChain's LLM class.
    """

    def pieces(self, prompt: str, stop: list[str] | None, opts: CallOptions, stats: GenerationStats) -> Iterator[str]:
        """The generated text, piece by piece; stops at a stop string, at `opts.should_stop()` or the token limit."""
        raise NotImplementedError

    def _stream(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[GenerationChunk]:
        opts = options(kwargs)
        stats = opts.stats or GenerationStats()
        for text in self.pieces(prompt, stop, opts, stats):
            chunk = GenerationChunk(text=text)
            if run_manager:
                run_manager.on_llm_new_token(text, chunk=chunk)
            yield chunk
        yield GenerationChunk(text="", generation_info={"finish_reason": stats.finish})

    def _call(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> str:
        return "".join(chunk.text for chunk in self._stream(prompt, stop, run_manager, **kwargs))


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
