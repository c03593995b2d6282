"""A scripted stand-in for a generation engine: streams its answers word by word, honours the engine contract."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

from langchain_core.language_models.llms import LLM
from langchain_core.outputs import GenerationChunk

from llm.engines.base import options


class ScriptedLLM(LLM):
    """Answers from a list, piece by piece; `delay` before the first piece (prefill), `piece_delay` between pieces.

    Like the real engines it stops as soon as `should_stop()` is true, and records what it was asked,
    how many pieces it produced, and whether a generation was stopped early.
    """

    responses: list[str] = ["Mrrp, the cursed cartridge still hums at night, traveler."]
    delay: float = 0.0
    piece_delay: float = 0.0
    leading_spaces: bool = False  # pieces as real tokenizers cut them (" It", " is"), not "It ", "is "
    error: str = ""
    calls: int = 0
    prompts: list = []
    stops: list = []
    temperatures: list = []
    pieces: int = 0
    stopped_early: int = 0
    running: int = 0
    most_running: int = 0

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _stream(
        self, prompt: str, stop: list[str] | None = None, run_manager: Any = None, **kwargs: Any
    ) -> Iterator[GenerationChunk]:
        opts = options(kwargs)
        self.calls += 1
        self.prompts.append(prompt)
        self.stops.append(list(stop or []))
        self.temperatures.append(opts.temperature)
        text = self.responses[(self.calls - 1) % len(self.responses)]
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            deadline = time.monotonic() + self.delay
            while time.monotonic() < deadline:  # "prefill": stoppable, like the engines' prefill batches
                if opts.should_stop():
                    self.stopped_early += 1
                    break
                time.sleep(0.005)
            if self.error:
                raise RuntimeError(self.error)
            pieces = re.findall(r"\s*\S+|\s+" if self.leading_spaces else r"\S+\s*|\s+", text)
            for piece in pieces if not opts.should_stop() else []:
                if opts.should_stop():
                    self.stopped_early += 1
                    break
                if self.piece_delay:
                    time.sleep(self.piece_delay)
                self.pieces += 1
                if opts.stats is not None:
                    opts.stats.generated_tokens += 1
                yield GenerationChunk(text=piece)
        except GeneratorExit:  # the reader closed the stream: stopped like the engines stop
            self.stopped_early += 1
            raise
        finally:
            self.running -= 1
        yield GenerationChunk(text="")  # as the engines do: LangChain wants a chunk, even for nothing

    def _call(self, prompt: str, stop: list[str] | None = None, run_manager: Any = None, **kwargs: Any) -> str:
        return "".join(chunk.text for chunk in self._stream(prompt, stop, run_manager, **kwargs))
