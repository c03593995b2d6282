"""transformers through langchain-huggingface's HuggingFacePipeline: the GPU production path.

`StreamingPipeline` is a HuggingFacePipeline whose stream
- stops at the next token once `should_stop()` is true (a stopping criterion), so a cancelled or
  timed-out generation never keeps the model busy;
- stops at stop strings (another speaker's turn, the chat template's end of turn), which are never
  passed on;
- reuses the KV cache of the prompt prefix shared with the previous request of the same slot, as
  llama.cpp does: the cache is cropped to the common prefix and only the rest is computed. With
  `static_cache` a pre-allocated cache is used instead (no reuse; for compiled decoding on a GPU).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from langchain_huggingface import HuggingFacePipeline
from pydantic import PrivateAttr

from llm.engines.base import CallOptions, EngineError, GenerationStats, StopScanner, StreamingEngine

logger = logging.getLogger(__name__)


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class StreamingPipeline(StreamingEngine, HuggingFacePipeline):
    """HuggingFacePipeline with cancellable, stop-string-aware, prefix-reusing streaming."""

    generation: dict = {}  # generate() defaults: max_new_tokens, do_sample, temperature, top_p, ...
    static_cache: bool = False
    _caches: dict = PrivateAttr(default_factory=dict)  # slot -> (token ids the cache holds, DynamicCache)

    def pieces(self, prompt: str, stop: list[str] | None, opts: CallOptions, stats: GenerationStats) -> Iterator[str]:
        import torch
        from transformers import DynamicCache, StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        model, tokenizer = self.pipeline.model, self.pipeline.tokenizer
        ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt").input_ids.to(model.device)
        prompt_ids = ids[0].tolist()
        settings = dict(self.generation)
        if opts.max_new_tokens:
            settings["max_new_tokens"] = opts.max_new_tokens
        if opts.temperature is not None:
            settings.update(
                do_sample=opts.temperature > 0, temperature=opts.temperature if opts.temperature > 0 else None
            )
            if opts.temperature <= 0:
                settings.pop("top_p", None)
        cached = 0
        if self.static_cache:
            settings["cache_implementation"] = "static"
        else:
            held_ids, cache = self._caches.pop(opts.slot, ([], None))
            cached = min(_common_prefix(held_ids, prompt_ids), len(prompt_ids) - 1)
            if cache is None or cached <= 0:
                cache, cached = DynamicCache(config=model.config), 0
            elif cache.get_seq_length() > cached:
                cache.crop(cached - cache.get_seq_length())
            settings["past_key_values"] = cache
        stats.prompt_tokens, stats.cached_tokens = len(prompt_ids), cached
        closed = threading.Event()

        class Cancel(StoppingCriteria):
            def __call__(self, input_ids, scores, **_: Any):
                stop_now = closed.is_set() or opts.should_stop()
                return torch.full((input_ids.shape[0],), stop_now, dtype=torch.bool, device=input_ids.device)

        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        outcome: dict[str, Any] = {}

        def generate() -> None:
            try:
                with torch.inference_mode():
                    outcome["sequences"] = model.generate(
                        input_ids=ids,
                        attention_mask=torch.ones_like(ids),
                        streamer=streamer,
                        stopping_criteria=StoppingCriteriaList([Cancel()]),
                        **settings,
                    )
            except BaseException as exc:  # handed to the consumer
                outcome["error"] = exc
                streamer.end()

        worker = threading.Thread(target=generate, name="generate", daemon=True)
        started, first = time.perf_counter(), None
        worker.start()
        scanner = StopScanner(stop or ())
        try:
            for text in streamer:
                if first is None:
                    first = time.perf_counter()
                passed = scanner.feed(text)
                if passed:
                    yield passed
                if scanner.stopped:
                    stats.finish = "stop"
                    return
                if opts.should_stop():
                    stats.finish = "cancelled"
                    return
            if tail := scanner.flush():
                yield tail
        finally:
            closed.set()  # a consumer that stops early stops generate() at its next token
            worker.join()
            if first is not None:  # the streamer's first text comes after the prompt and the first token
                stats.prefill_seconds, stats.decode_seconds = first - started, time.perf_counter() - first
            if "error" in outcome:
                raise EngineError(f"transformers generation failed: {outcome['error']}") from outcome["error"]
            sequences = outcome.get("sequences")
            if sequences is not None:
                generated = sequences.shape[1] - len(prompt_ids)
                stats.generated_tokens = generated
                if not stats.finish:
                    stats.finish = "length" if generated >= settings.get("max_new_tokens", 0) else "stop"
                cache = settings.get("past_key_values")
                if cache is not None:
                    self._caches[opts.slot] = (sequences[0, : cache.get_seq_length()].tolist(), cache)

    def _generate(self, prompts, stop=None, run_manager=None, **kwargs):  # invoke() goes through the same path
        from langchain_core.outputs import Generation, LLMResult

        return LLMResult(generations=[[Generation(text=self._call(p, stop, run_manager, **kwargs))] for p in prompts])
